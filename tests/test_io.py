"""File helpers: atomic writes and validated readers."""

import numpy as np
import pandas as pd
import pytest

from fmriflow import io
from fmriflow.errors import InputError


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError), io.atomic_output(target) as tmp:
        np.save(tmp, np.arange(3))
        raise RuntimeError("killed halfway")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_keeps_the_previous_file_until_done(tmp_path):
    target = tmp_path / "table.tsv"
    io.write_table(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError), io.atomic_output(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError
    assert target.read_text() == "a\n1\n"


def test_npy_writer_commits_only_complete_arrays(tmp_path):
    target = tmp_path / "m.npy"
    with io.npy_writer(target, (3, 2), np.float32) as out:
        out[:] = 7
    np.testing.assert_array_equal(np.load(target), np.full((3, 2), 7, np.float32))
    with pytest.raises(ValueError), io.npy_writer(tmp_path / "n.npy", (3, 2), np.float32) as out:
        raise ValueError
    assert not (tmp_path / "n.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]


def test_a_disk_without_room_is_one_message_and_leaves_no_temporary(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    target = tmp_path / "masked.npy"
    with pytest.raises(InputError) as info, io.npy_writer(target, (100, 50), np.float32):
        pass
    assert str(target) in str(info.value)
    assert "needs 20 kB but its disk has 1 kB free" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_up_while_reserving_is_one_message(tmp_path, monkeypatch):
    """The blocks of the memory map are allocated first: the disk filling up is an error
    there, not a SIGBUS when the mapping is written."""
    import errno
    import os

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    target = tmp_path / "masked.npy"
    with pytest.raises(InputError, match="its disk is full") as info:
        with io.npy_writer(target, (100, 50), np.float32) as out:
            out[:] = 1
    assert str(target) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def write_events(path, rows):
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def test_read_events_accepts_a_good_table(tmp_path):
    path = write_events(tmp_path / "e.tsv", {"label": ["rest", "face"], "run": [0, 0]})
    events = io.read_events(path, n_volumes=2)
    assert events["label"].tolist() == ["rest", "face"] and events["run"].tolist() == [0, 0]


def test_read_events_wrong_length(tmp_path):
    path = write_events(tmp_path / "e.tsv", {"label": ["rest"] * 3, "run": [0] * 3})
    with pytest.raises(InputError) as info:
        io.read_events(path, n_volumes=5)
    message = str(info.value)
    assert str(path) in message and "3 rows but the BOLD image has 5 volumes" in message


@pytest.mark.parametrize("missing", ["label", "run"])
def test_read_events_missing_column(tmp_path, missing):
    columns = {"label": ["rest"], "run": [0]}
    del columns[missing]
    path = write_events(tmp_path / "e.tsv", columns)
    with pytest.raises(InputError, match=rf"lacks the column\(s\) \['{missing}'\]"):
        io.read_events(path)


def test_read_events_bad_runs_and_labels(tmp_path):
    path = write_events(tmp_path / "e.tsv", {"label": ["a", "b"], "run": [0, 1.5]})
    with pytest.raises(InputError, match="whole numbers"):
        io.read_events(path)
    path = write_events(tmp_path / "f.tsv", {"label": ["a", None], "run": [0, 0]})
    with pytest.raises(InputError, match="empty label"):
        io.read_events(path)


def test_json_round_trip_is_deterministic(tmp_path):
    io.write_json({"b": 1, "a": [1, 2]}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert io.read_json(tmp_path / "x.json") == {"a": [1, 2], "b": 1}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        io.read_json(tmp_path / "bad.json")


def _gzipped_image(tmp_path, rng):
    """A small 4D .nii.gz, and its uncompressed bytes."""
    import gzip

    import nibabel as nib

    path = tmp_path / "bold.nii.gz"
    img = nib.Nifti1Image(rng.normal(size=(8, 9, 7, 20)).astype(np.float32), np.eye(4))
    nib.save(img, path)
    return path, gzip.decompress(path.read_bytes())


def test_a_complete_gzip_is_recognised_by_its_trailer(tmp_path, monkeypatch):
    """The trailer records the announced size: no decompression is needed, and
    gzip_recorded_size is what decompression finds."""
    path, raw = _gzipped_image(tmp_path, np.random.default_rng(0))
    assert io.gzip_recorded_size(path) == len(raw) == io.decompressed_size(path)
    monkeypatch.setattr(io, "decompressed_size", lambda path: pytest.fail("decompressed"))
    io.check_complete(path, "BOLD image")


def test_a_gzip_of_several_members_is_decompressed_to_check_it(tmp_path, rng):
    """The last member's trailer records only its own size: the stream is read to its
    end instead, complete or not."""
    import gzip

    path, raw = _gzipped_image(tmp_path, rng)
    half = len(raw) // 2
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    assert io.gzip_recorded_size(path) == len(raw) - half
    io.check_complete(path, "BOLD image")
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:-40]))
    with pytest.raises(InputError, match="truncated") as info:
        io.check_complete(path, "BOLD image")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_a_truncated_gzip_is_found(tmp_path, rng, keep):
    path, _ = _gzipped_image(tmp_path, rng)
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(InputError, match="truncated") as info:
        io.check_complete(path, "BOLD image")
    assert str(path) in str(info.value)
