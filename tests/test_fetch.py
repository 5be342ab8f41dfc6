"""Offline tests of the download path: the real nilearn fetchers on stand-ins.

The fetchers' data folder is pre-populated with tiny files in nilearn's
exact layout (``standins.py``), so ``fetch_haxby`` and ``fetch_adhd`` find
everything locally. The network is blocked at the socket level for every
test; tests that expect a download attempt check that it was made and
refused, all others check that none was made.
"""

import csv
import hashlib
import importlib.util
import json
import logging
import re
import shutil
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import requests
from nilearn.datasets.func import adhd_ids

from fmriflow import fetch
from fmriflow.errors import InputError
from fmriflow.node import run as run_node

import standins
from conftest import SCRIPTS

ADHD_IDS = list(adhd_ids())


class NetworkBlockedError(requests.exceptions.ConnectionError):
    """Raised by the patched socket functions: no network in tests."""


@pytest.fixture
def network(monkeypatch):
    """Block every socket connection and name lookup; yield the attempts."""
    attempts = []

    def blocker(kind):
        def blocked(*args, **kwargs):
            target = args[1:] if kind in ("connect", "connect_ex") else args
            attempts.append((kind, target))
            raise NetworkBlockedError(f"network access blocked in tests: {kind}{target}")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", blocker("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", blocker("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", blocker("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", blocker("getaddrinfo"))
    yield attempts


@pytest.fixture
def offline(network):
    """Network blocked, and no connection may even be attempted."""
    yield network
    assert network == [], f"network access was attempted: {network}"


@pytest.fixture(scope="session")
def pristine(tmp_path_factory):
    """Stand-ins of Haxby (subjects 1, 2, 6) and ADHD (first 3), built once."""
    root = tmp_path_factory.mktemp("pristine")
    standins.make_haxby(root, subjects=(1, 2, 6))
    standins.make_adhd(root, subjects=3)
    return root


@pytest.fixture
def downloads(pristine, tmp_path):
    """A private copy of the stand-ins, which a test may alter."""
    return Path(shutil.copytree(pristine, tmp_path / "downloads"))


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"node_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NODE


def node(name, *argv):
    """Run scripts/<name>.py's node in this process, as from the command line."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with warnings.catch_warnings():
            run_node(load_script(name), argv=[str(a) for a in argv])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


def download_node(description, download_dir, fetcher, subjects, url=None):
    settings = json.dumps({"fetcher": fetcher, "subjects": subjects, "url": url})
    node(
        "download",
        "--description",
        description,
        "--name",
        fetcher,
        "--settings",
        settings,
        "--download-dir",
        download_dir,
    )


ROLE_FILES = {"roi": "roi.nii.gz", "anat": "anat.nii.gz", "confounds": "confounds.tsv"}


def import_node(description, data_dir, subject, label=None):
    """Run import_download and import_download_file for every role the subject has,
    as the workflow does; ``label`` is the --subject value, default the subject."""
    folder = Path(data_dir) / f"sub-{subject}"
    label = subject if label is None else label
    node(
        "import_download",
        "--description",
        description,
        "--bold",
        folder / "bold.nii.gz",
        "--events",
        folder / "events.tsv",
        "--subject",
        label,
    )
    fetcher = json.loads(Path(description).read_text())["provenance"]["fetcher"].split("_")[-1]
    for role in fetch.subject_roles(fetcher, subject):
        node(
            "import_download_file",
            "--description",
            description,
            "--file",
            folder / ROLE_FILES[role],
            "--subject",
            label,
            "--role",
            role,
        )
    return folder


def read_labels_txt(path):
    """labels.txt read without pandas: header ``labels chunks``, then rows."""
    lines = Path(path).read_text().splitlines()
    assert lines[0].split() == ["labels", "chunks"]
    rows = [line.split() for line in lines[1:] if line.strip()]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def read_tab_table(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return rows[0], rows[1:]


def expected_haxby(downloads, subject):
    folder = (downloads / "haxby2001" / f"subj{subject}").resolve()
    files = {
        "bold": folder / "bold.nii.gz",
        "labels": folder / "labels.txt",
        "roi": folder / "mask4_vt.nii.gz",
    }
    if subject != "6":
        files["anat"] = folder / "anat.nii.gz"
    return files


def expected_adhd(downloads, subject):
    folder = (downloads / "adhd" / "data" / subject).resolve()
    return {
        "bold": folder / f"{subject}_rest_tshift_RPI_voreg_mni.nii.gz",
        "confounds": folder / f"{subject}_regressors.csv",
    }


def resolved(files):
    return {s: {k: Path(v).resolve() for k, v in roles.items()} for s, roles in files.items()}


# fetch.download: the real nilearn fetchers, offline


@pytest.mark.parametrize("subjects", [["1", "6"], ["6", "1"], ["2"]])
def test_download_haxby_finds_the_standins(offline, downloads, subjects):
    fetched = fetch.download("haxby", subjects, downloads)
    assert fetched["tr"] == 2.5
    assert list(fetched["files"]) == subjects
    expected = {s: expected_haxby(downloads, s) for s in subjects}
    assert resolved(fetched["files"]) == expected
    for roles in fetched["files"].values():
        assert all(Path(p).is_file() for p in roles.values())


@pytest.mark.parametrize("subjects", [ADHD_IDS[:2], ADHD_IDS[2:3], [ADHD_IDS[1], ADHD_IDS[0]]])
def test_download_adhd_finds_the_standins(offline, downloads, subjects):
    fetched = fetch.download("adhd", subjects, downloads)
    assert fetched["tr"] == 2.0
    expected = {s: expected_adhd(downloads, s) for s in subjects}
    assert resolved(fetched["files"]) == expected


def test_adhd_standins_share_one_grid(pristine):
    affines = [nib.load(expected_adhd(pristine, s)["bold"]).affine for s in ADHD_IDS[:3]]
    for affine in affines[1:]:
        np.testing.assert_array_equal(affine, affines[0])


def test_haxby_standins_follow_the_real_formats(pristine):
    from nilearn.datasets._utils import read_md5_sum_file

    root = pristine / "haxby2001"
    sums = read_md5_sum_file(root / "MD5SUMS")
    assert sorted(sums) == [f"subj{s}-2010.01.14.tar.gz" for s in (1, 2, 6)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", h) for h in sums.values())

    labels, chunks = read_labels_txt(root / "subj1" / "labels.txt")
    assert set(labels) == set(standins.HAXBY_CATEGORIES) | {"rest"}
    assert sorted(set(chunks)) == list(range(max(chunks) + 1))
    assert chunks == sorted(chunks)
    bold = nib.load(root / "subj1" / "bold.nii.gz")
    assert bold.get_data_dtype() == np.int16
    assert bold.shape[3] == len(labels)

    # A weak but real category signal inside VT: category patterns of two
    # runs are more alike for the same category than for different ones.
    vt = nib.load(root / "subj1" / "mask4_vt.nii.gz").get_fdata() != 0
    data = bold.get_fdata()[vt].T
    labels, chunks = np.array(labels), np.array(chunks)
    means = [
        [data[(labels == c) & (chunks == run)].mean(axis=0) for c in standins.HAXBY_CATEGORIES]
        for run in (0, 1)
    ]
    # Each voxel's baseline is removed (its mean over the categories).
    means = [np.array(m) - np.mean(m, axis=0) for m in means]
    similarity = np.corrcoef(means[0], means[1])[:8, 8:]
    same = np.diag(similarity).mean()
    different = similarity[~np.eye(8, dtype=bool)].mean()
    assert same > different + 0.3


# download + import_download nodes: the canonical layout


def test_haxby_nodes_give_the_canonical_layout(offline, downloads, tmp_path):
    data = tmp_path / "data" / "haxby"
    description = data / "dataset.json"
    download_node(description, downloads, "haxby", [1, 6])

    info = json.loads(description.read_text())
    assert info["source"] == "fetch"
    assert info["kind"] == "task"
    assert info["tr"] == 2.5
    assert info["subjects"] == ["1", "6"]
    assert resolved(info["files"]) == {s: expected_haxby(downloads, s) for s in ("1", "6")}
    every_file = [p for roles in info["files"].values() for p in roles.values()]
    assert sorted(info["sha256"]) == sorted(every_file)
    for path in every_file:
        assert info["sha256"][path] == sha256(path)

    for subject in ("1", "6"):
        folder = import_node(description, data, subject)
        source = expected_haxby(downloads, subject)

        assert sha256(folder / "bold.nii.gz") == sha256(source["bold"])

        labels, chunks = read_labels_txt(source["labels"])
        header, rows = read_tab_table(folder / "events.tsv")
        assert header == ["label", "run"]
        assert [r[0] for r in rows] == labels
        assert [int(r[1]) for r in rows] == chunks
        assert len(rows) == nib.load(source["bold"]).shape[3]

        roi, vt = nib.load(folder / "roi.nii.gz"), nib.load(source["roi"])
        np.testing.assert_array_equal(np.asanyarray(roi.dataobj) != 0, vt.get_fdata() != 0)
        np.testing.assert_allclose(roi.affine, vt.affine)

        if subject == "6":
            assert not (folder / "anat.nii.gz").exists()
        else:
            anat = nib.load(folder / "anat.nii.gz")
            np.testing.assert_array_equal(anat.get_fdata(), nib.load(source["anat"]).get_fdata())
        assert not (folder / "confounds.tsv").exists()


def test_adhd_nodes_give_the_canonical_layout(offline, downloads, tmp_path):
    data = tmp_path / "data" / "adhd"
    description = data / "dataset.json"
    download_node(description, downloads, "adhd", 2)

    info = json.loads(description.read_text())
    subjects = ADHD_IDS[:2]
    assert info["kind"] == "rest"
    assert info["space"].startswith("MNI")
    assert info["tr"] == 2.0
    assert info["subjects"] == subjects
    every_file = [p for roles in info["files"].values() for p in roles.values()]
    assert sorted(info["sha256"]) == sorted(every_file)
    for path in every_file:
        assert info["sha256"][path] == sha256(path)

    for subject in subjects:
        folder = import_node(description, data, subject)
        source = expected_adhd(downloads, subject)
        n_volumes = nib.load(source["bold"]).shape[3]

        header, rows = read_tab_table(folder / "events.tsv")
        assert header == ["label", "run"]
        assert len(rows) == n_volumes
        assert {r[0] for r in rows} == {"rest"}
        assert len({r[1] for r in rows}) == 1

        raw_header, raw_rows = read_tab_table(source["confounds"])
        raw = np.array(raw_rows, dtype=float)
        keep = [k for k, name in enumerate(raw_header) if name != "constant"]
        confounds = pd.read_csv(folder / "confounds.tsv", sep="\t")
        assert list(confounds.columns) == [raw_header[k] for k in keep]
        np.testing.assert_allclose(confounds.to_numpy(), raw[:, keep], rtol=1e-12)
        assert len(confounds) == n_volumes

        assert not (folder / "roi.nii.gz").exists()
        assert not (folder / "anat.nii.gz").exists()


def test_import_subject_label_from_the_command_line(offline, downloads, tmp_path, capsys):
    haxby = tmp_path / "haxby" / "dataset.json"
    download_node(haxby, downloads, "haxby", [1])
    # Labels are text: 1 is subject "1", and 0010042 keeps its leading zeros.
    folder = import_node(haxby, haxby.parent, "1", label="1")
    assert (folder / "events.tsv").is_file()

    adhd = tmp_path / "adhd" / "dataset.json"
    download_node(adhd, downloads, "adhd", [ADHD_IDS[0]])
    folder = import_node(adhd, adhd.parent, ADHD_IDS[0], label=ADHD_IDS[0])
    assert folder.name == f"sub-{ADHD_IDS[0]}" and (folder / "confounds.tsv").is_file()
    with pytest.raises(SystemExit):
        import_node(adhd, adhd.parent, "4130", label="4130")
    message = capsys.readouterr().err
    assert "error:" in message and "'4130' is not among the downloaded subjects" in message


# Checksums


@pytest.mark.parametrize("role", ["bold", "labels", "roi"])
def test_import_refuses_a_file_changed_after_download(offline, downloads, tmp_path, capsys, role):
    data = tmp_path / "data" / "haxby"
    description = data / "dataset.json"
    download_node(description, downloads, "haxby", [1])
    changed = Path(json.loads(description.read_text())["files"]["1"][role])
    with changed.open("ab") as handle:
        handle.write(b"\0")

    with pytest.raises(SystemExit) as exit_info:
        import_node(description, data, "1")
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert str(changed) in message
    assert "changed since it was downloaded" in message
    written = {"bold": "bold.nii.gz", "labels": "events.tsv", "roi": "roi.nii.gz"}[role]
    assert not (data / "sub-1" / written).exists()


def test_import_refuses_a_missing_download(offline, downloads, tmp_path, capsys):
    data = tmp_path / "data" / "haxby"
    description = data / "dataset.json"
    download_node(description, downloads, "haxby", [1])
    removed = Path(json.loads(description.read_text())["files"]["1"]["labels"])
    removed.unlink()
    with pytest.raises(SystemExit):
        import_node(description, data, "1")
    message = capsys.readouterr().err
    assert str(removed) in message and "missing" in message


def test_registry_detects_a_file_changed_between_downloads(offline, downloads, tmp_path, capsys):
    first = tmp_path / "first" / "dataset.json"
    download_node(first, downloads, "haxby", [1, 2])
    registry = json.loads((downloads / fetch.REGISTRY).read_text())
    files = json.loads(first.read_text())["files"]
    for roles in files.values():
        for path in roles.values():
            assert registry[str(Path(path).resolve())] == sha256(path)

    # Unchanged files: a second download is accepted and agrees.
    second = tmp_path / "second" / "dataset.json"
    download_node(second, downloads, "haxby", [1, 2])
    assert json.loads(second.read_text())["sha256"] == json.loads(first.read_text())["sha256"]

    changed = Path(files["2"]["bold"])
    original = sha256(changed)
    with changed.open("ab") as handle:
        handle.write(b"\0")
    third = tmp_path / "third" / "dataset.json"
    with pytest.raises(SystemExit):
        download_node(third, downloads, "haxby", [1, 2])
    message = capsys.readouterr().err
    assert str(changed) in message
    assert "changed since it was downloaded" in message
    assert not third.exists()
    registry = json.loads((downloads / fetch.REGISTRY).read_text())
    assert registry[str(changed.resolve())] == original


def test_registry_checks_the_files_of_each_download(offline, downloads):
    fetched = fetch.download("haxby", ["1"], downloads)
    fetch.record_checksums(fetched["files"], downloads)
    changed = Path(fetched["files"]["1"]["labels"])
    changed.write_text(changed.read_text().replace("face", "cat", 1))
    # Fetching another subject does not look at subject 1's files...
    other = fetch.download("haxby", ["2"], downloads)
    fetch.record_checksums(other["files"], downloads)
    # ...but fetching subject 1 again does.
    with pytest.raises(InputError, match="changed since it was downloaded") as error:
        fetch.record_checksums(fetch.download("haxby", ["1"], downloads)["files"], downloads)
    assert error.value.what == str(changed)


# No stand-ins and no network


URL = re.compile(r"https?://[^\s:]+")


def check_network_message(error, attempts):
    message = str(error)
    urls = URL.findall(error.what)
    assert urls, f"no URL in {error.what!r}"
    hosts = {a[1][0] for a in attempts if a[0] == "getaddrinfo"}
    hosts |= {a[1][0][0] for a in attempts if a[0] != "getaddrinfo"}
    assert urlparse(urls[0]).hostname in hosts
    for advice in ("retry", "fetch.url", "'local' dataset"):
        assert advice in message
    return urls[0]


@pytest.mark.parametrize(("fetcher", "subjects"), [("haxby", ["1"]), ("adhd", ADHD_IDS[:1])])
def test_offline_without_files_is_an_input_error(network, tmp_path, fetcher, subjects):
    empty = tmp_path / "downloads"
    with pytest.raises(InputError) as error:
        fetch.download(fetcher, subjects, empty)
    assert network, "the fetcher should have tried (and failed) to connect"
    assert isinstance(error.value.__cause__, requests.RequestException)
    check_network_message(error.value, network)
    if fetcher == "haxby":
        # The whole-brain mask is fetched from NITRC even with a mirror url.
        assert str(empty / "haxby2001") in error.value.fix


def test_offline_mirror_url_is_named(network, tmp_path):
    downloads = tmp_path / "downloads"
    standins.make_haxby(downloads, subjects=())
    (downloads / "haxby2001" / "MD5SUMS").unlink()
    mirror = "https://mirror.example.org/haxby2001/"
    with pytest.raises(InputError) as error:
        fetch.download("haxby", ["1"], downloads, url=mirror)
    assert check_network_message(error.value, network) == mirror + "MD5SUMS"


@pytest.mark.parametrize(("fetcher", "subjects"), [("haxby", [1, 6]), ("adhd", 1)])
def test_offline_download_node_leaves_no_description(network, tmp_path, capsys, fetcher, subjects):
    description = tmp_path / "data" / fetcher / "dataset.json"
    with pytest.raises(SystemExit) as exit_info:
        download_node(description, tmp_path / "downloads", fetcher, subjects)
    assert exit_info.value.code == 1
    assert network
    message = capsys.readouterr().err
    assert URL.search(message) and "fetch.url" in message
    assert not description.exists()
    assert not list(description.parent.glob("*dataset.json"))


# Unknown subjects


@pytest.mark.parametrize(
    ("fetcher", "subjects"),
    [("haxby", ["7"]), ("haxby", ["1", "0"]), ("adhd", ["1234567"]), ("adhd", [ADHD_IDS[0], "x"])],
)
def test_unknown_subject_names_the_config_key(offline, downloads, fetcher, subjects):
    with pytest.raises(InputError, match=r"fetch\.subjects"):
        fetch.fetch_subjects(fetcher, subjects)
    with pytest.raises(InputError, match=r"fetch\.subjects") as error:
        fetch.download(fetcher, subjects, downloads)
    bad = [s for s in subjects if s not in ("1", ADHD_IDS[0])]
    assert str(bad) in error.value.problem


@pytest.mark.parametrize(("fetcher", "subjects"), [("haxby", [7]), ("adhd", ["1234567"])])
def test_unknown_subject_stops_the_download_node(
    offline, downloads, tmp_path, capsys, fetcher, subjects
):
    description = tmp_path / "dataset.json"
    with pytest.raises(SystemExit):
        download_node(description, downloads, fetcher, subjects)
    assert "fetch.subjects" in capsys.readouterr().err
    assert not description.exists()
