"""The stimulus table: Miyawaki's labels, the lag, the split, and bad input at the nodes."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from fmriflow import fetch, local, stimuli
from fmriflow.errors import InputError

from conftest import SCRIPTS, run_node_script

SHAPE = (10, 10)


def write_labels(path, images, rest):
    """A Miyawaki label file: each image in Fortran order, rows of -1 for rest."""
    rows = images.reshape(len(images), 10, 10).reshape(len(images), 100, order="F").copy()
    rows[rest] = -1
    np.savetxt(path, rows, fmt="%d", delimiter=",")


@pytest.fixture
def images(rng):
    return rng.integers(0, 2, (12, 10, 10))


def test_miyawaki_labels_become_row_major_pixels(tmp_path, images):
    rest = np.zeros(12, bool)
    rest[:3] = True
    path = tmp_path / "data_random_run01_label.csv"
    write_labels(path, images, rest)
    pixels, found_rest = fetch.miyawaki_run_labels(path, 12)
    np.testing.assert_array_equal(found_rest, rest)
    # Reference: nilearn's examples read the file and reshape in Fortran order.
    expected = np.reshape(np.loadtxt(path, delimiter=",", dtype=int), (-1, 10, 10), order="F")
    np.testing.assert_array_equal(pixels[~rest].reshape(-1, 10, 10), expected[~rest])
    assert (pixels[rest] == 0).all()
    np.testing.assert_array_equal(pixels[~rest].reshape(-1, 10, 10), images[~rest])


def test_labels_with_the_wrong_number_of_rows_are_named(tmp_path, images):
    path = tmp_path / "data_figure_run03_label.csv"
    write_labels(path, images, np.zeros(12, bool))
    with pytest.raises(InputError, match="12 rows but its run's image has 13 volumes") as error:
        fetch.miyawaki_run_labels(path, 13)
    assert str(path) in str(error.value)


def test_labels_that_do_not_reshape_to_the_grid_are_named(tmp_path, images):
    path = tmp_path / "data_figure_run04_label.csv"
    np.savetxt(path, images.reshape(12, 100)[:, :99], fmt="%d", delimiter=",")
    with pytest.raises(InputError, match="99 values, which do not reshape to the 10x10"):
        fetch.miyawaki_run_labels(path, 12)
    np.savetxt(path, np.full((12, 100), 2), fmt="%d", delimiter=",")
    with pytest.raises(InputError, match="0/1 pixels, or all -1 for rest"):
        fetch.miyawaki_run_labels(path, 12)


def test_lagged_pairs_are_nilearns_slices_within_each_run():
    runs = np.repeat([1, 2, 3], [7, 5, 6])
    bold_rows, stimulus_rows = stimuli.lagged_pairs(runs, 2)
    volumes = np.arange(len(runs))
    expected_bold = np.concatenate([volumes[runs == r][2:] for r in (1, 2, 3)])
    expected_stimulus = np.concatenate([volumes[runs == r][:-2] for r in (1, 2, 3)])
    np.testing.assert_array_equal(bold_rows, expected_bold)
    np.testing.assert_array_equal(stimulus_rows, expected_stimulus)
    np.testing.assert_array_equal(stimuli.lagged_pairs(runs, 0)[0], volumes)
    with pytest.raises(InputError, match="not more than the haemodynamic lag"):
        stimuli.lagged_pairs(runs, 5)


def canonical_table(rng, runs, splits, rest_every=3):
    n = len(runs)
    rest = np.arange(n) % rest_every == 0
    pixels = rng.integers(0, 2, (n, 100)) * ~rest[:, None]
    return stimuli.stimulus_table(pixels, runs, splits, rest, stimuli.grid_columns(SHAPE))


def test_a_written_table_reads_back(tmp_path, rng):
    runs = np.repeat([1, 2, 3], 9)
    table = canonical_table(rng, runs, np.where(runs == 3, "test", "train"))
    path = tmp_path / "stimuli.tsv"
    table.to_csv(path, sep="\t", index=False)
    read = stimuli.read_stimuli(path, len(runs), SHAPE, runs=runs)
    np.testing.assert_array_equal(read.features, table.filter(like="px_").to_numpy())
    np.testing.assert_array_equal(read.rest, table["rest"].to_numpy() == 1)
    pairs = stimuli.split_pairs(read, 2, "test", include_rest=False)
    assert set(pairs.runs) == {3} and not read.rest[pairs.stimulus_rows].any()
    np.testing.assert_array_equal(pairs.bold_rows - pairs.stimulus_rows, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.iloc[:-1], "26 rows but the BOLD image has 27 volumes"),
        (lambda t: t.drop(columns=["px_9_9"]), "do not form the 10x10 stimulus grid"),
        (lambda t: t.assign(split=["train"] * 20 + ["test"] * 7), "have both training and test"),
        (lambda t: t.assign(split="train"), "no test run"),
        (lambda t: t.assign(split="validation"), "'split' has the value(s) ['validation']"),
        (lambda t: t.assign(px_0_0="dark"), "'px_0_0' has empty or non-numeric values"),
    ],
)
def test_a_bad_table_gets_one_message_naming_it(tmp_path, rng, change, message):
    runs = np.repeat([1, 2, 3], 9)
    table = change(canonical_table(rng, runs, np.where(runs == 3, "test", "train")))
    path = tmp_path / "stimuli.tsv"
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match=re.escape(message)) as error:
        stimuli.read_stimuli(path, 27, SHAPE)
    assert str(path) in str(error.value)


def test_a_test_run_without_figures_is_refused(tmp_path, rng):
    runs = np.repeat([1, 2, 3, 4], 9)
    table = canonical_table(rng, runs, np.where(runs >= 3, "test", "train"))
    table.loc[table["run"] == 4, "rest"] = 1
    table.loc[table["run"] == 4, table.columns[3:]] = 0
    path = tmp_path / "stimuli.tsv"
    table.to_csv(path, sep="\t", index=False)
    read = stimuli.read_stimuli(path, 36, SHAPE)
    with pytest.raises(InputError, match=r"test run\(s\) \[4\] have no stimulus volume"):
        stimuli.split_pairs(read, 2, "test", include_rest=False, path=str(path))


def test_local_tables_per_run_are_concatenated_in_run_order(tmp_path, rng):
    paths = []
    for run, split in enumerate(("train", "train", "test")):
        table = canonical_table(rng, np.zeros(8, int), [split] * 8).drop(columns=["run"])
        path = tmp_path / f"run-{run + 1}_stimuli.tsv"
        table.to_csv(path, sep="\t", index=False)
        paths.append(str(path))
    merged = local.stimuli_table(paths, [8, 8, 8], shape=list(SHAPE), run_labels=["2", "4", "6"])
    np.testing.assert_array_equal(merged["run"], np.repeat([2, 4, 6], 8))
    expected = pd.concat([pd.read_csv(p, sep="\t") for p in paths], ignore_index=True)
    np.testing.assert_array_equal(merged.filter(like="px_"), expected.filter(like="px_"))
    with pytest.raises(InputError, match="8 rows but its BOLD image"):
        local.stimuli_table(paths, [8, 9, 8])
    with pytest.raises(InputError, match="needs a 'run' column"):
        local.stimuli_table(paths[:1], [4, 4])


def test_reconstruct_node_stops_on_a_test_run_without_figures(tmp_path):
    """One message naming the file, and nothing written."""
    from fmriflow import retinotopy
    from fmriflow.dataset import write_description, write_events
    from fmriflow.io import save_mask, write_table

    subject = retinotopy.simulate_retinotopy_subject(
        shape=(10, 10, 8), n_train_runs=3, n_test_runs=2, n_blocks_train=6, rng=0
    )
    table = subject.stimuli.copy()
    last = table["run"] == table["run"].max()
    table.loc[last, "rest"] = 1
    table.loc[last, stimuli.grid_columns(SHAPE)] = 0
    write_table(table, tmp_path / "stimuli.tsv")
    write_events(subject.events, tmp_path / "events.tsv")
    save_mask(subject.brain, subject.affine, tmp_path / "mask.nii.gz")
    np.save(tmp_path / "clean.npy", subject.bold[subject.brain].T.astype(np.float32))
    write_description(
        tmp_path / "dataset.json",
        name="d",
        source="simulate",
        kind="stimulus",
        tr=2.0,
        space="native",
        subjects=["01"],
        stimulus={"shape": [10, 10]},
    )
    out = tmp_path / "out"
    arguments = []
    for key, name in (
        ("clean", "clean.npy"),
        ("events", "events.tsv"),
        ("stimuli", "stimuli.tsv"),
        ("mask", "mask.nii.gz"),
        ("description", "dataset.json"),
    ):
        arguments += [f"--{key}", tmp_path / name]
    for name in ("images", "accuracy", "pixel_accuracy", "summary"):
        suffix = "json" if name == "summary" else "tsv"
        arguments += [f"--{name.replace('_', '-')}", out / f"{name}.{suffix}"]
    for name in ("images_png", "pixel_accuracy_png"):
        arguments += [f"--{name.replace('_', '-')}", out / f"{name}.png"]
    analysis = {"name": "r", "dataset": "d", "lag_volumes": 2}
    result = run_node_script(
        SCRIPTS / "reconstruct.py", *arguments, "--analysis", json.dumps(analysis)
    )
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()
    assert len(message) == 1, result.stderr
    assert "stimuli.tsv" in message[0] and "have no stimulus volume" in message[0]
    assert not out.exists() or not any(out.iterdir())
