"""Tests of the 'local' source: a lab's own BIDS / fMRIPrep-style files.

A tiny fake BIDS tree with fMRIPrep derivatives (2 subjects x 3 runs) is
built in a temporary folder. Every reference value is computed here, from
the arrays and tables the test wrote, by code independent of
``fmriflow.local`` (plain loops over events, the csv module for tables,
hashlib for checksums, np.concatenate for the runs).
"""

import csv
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from fmriflow import node
from fmriflow.errors import InputError
from fmriflow.local import (
    bids_events_to_labels,
    concatenate_runs,
    confounds_table,
    events_table,
    expand,
    header_tr,
    missing_files,
    run_numbers,
    subject_files,
    tr_disagreements,
)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"

TR = 2.0
SHAPE = (7, 8, 6)
AFFINE = np.array(
    [[3.0, 0, 0, -9.0], [0, 3.0, 0, -12.0], [0, 0, 3.0, -6.0], [0, 0, 0, 1]],
)
SUBJECTS = ["01", "02"]
RUNS = ["1", "2", "3"]
RUN_VOLUMES = {"1": 16, "2": 14, "3": 18}
CATEGORIES = ["face", "house", "chair"]
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
CONFOUND_COLUMNS = [*MOTION, "csf", "white_matter", "framewise_displacement"]
# Columns of fMRIPrep's table whose first row is n/a (temporal derivatives).
DERIVATIVES = ["framewise_displacement", "std_dvars", "trans_x_derivative1", "csf_derivative1"]

FUNC = "sub-{subject}/func/sub-{subject}_task-objects_run-{run}"
TEMPLATES = {
    "bold": "derivatives/fmriprep/" + FUNC + "_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
    "events": FUNC + "_events.tsv",
    "confounds": "derivatives/fmriprep/" + FUNC + "_desc-confounds_timeseries.tsv",
    "roi": "derivatives/rois/sub-{subject}_space-MNI152NLin2009cAsym_desc-VT_mask.nii.gz",
    "anat": "derivatives/fmriprep/sub-{subject}/anat/"
    "sub-{subject}_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",
}


# ---------------------------------------------------------------- fake tree


def design(subject, run):
    """BIDS events of one run: adjacent blocks, an off-grid onset, trailing rest.

    Block 1 covers t = 4..10 s (volumes 2-5); block 2 starts exactly where
    block 1 ends (t = 12 s, volume 6) and ends at 18 s, so volume 9 (t = 18)
    is rest; block 3 starts off the TR grid (19 s) so its first volume is
    t = 20 s. Everything after 23 s is rest.
    """
    shift = SUBJECTS.index(subject) + RUNS.index(run)
    names = [CATEGORIES[(shift + k) % 3] for k in range(3)]
    return pd.DataFrame(
        {
            "onset": [4.0, 12.0, 19.0],
            "duration": [8.0, 6.0, 4.0],
            "trial_type": names,
            "response_time": [1.25, np.nan, 0.875],
        }
    )


def reference_labels(events, n_volumes, tr, rest="rest"):
    """Label of each volume by a plain loop: the event covering t = i * TR."""
    labels = []
    for i in range(n_volumes):
        t = i * tr
        covering = [
            str(row["trial_type"])
            for _, row in events.iterrows()
            if row["onset"] <= t < row["onset"] + row["duration"]
        ]
        assert len(set(covering)) <= 1, "the test design must not overlap"
        labels.append(covering[0] if covering else rest)
    return labels


def fmriprep_confounds(rng, n_volumes):
    """A table in fMRIPrep's format: n/a in the first row of derivative columns."""
    columns = ["global_signal", "csf", "white_matter", "csf_derivative1", *MOTION]
    columns += ["trans_x_derivative1", "framewise_displacement", "std_dvars"]
    frame = pd.DataFrame(rng.normal(size=(n_volumes, len(columns))), columns=columns)
    frame[DERIVATIVES] = frame[DERIVATIVES].astype(float)
    frame.loc[0, DERIVATIVES] = np.nan
    return frame


def write_tsv(frame, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a", lineterminator="\n")


def save_image(data, affine, path, tr=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    if tr is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (tr,))
    nib.save(img, path)


def build_tree(root, seed=0):
    """Write the fake BIDS + fMRIPrep tree; return the templates and references."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1)[:, None, None, None] / 2
    radius = np.sqrt(
        (((grid - centre) / (np.array(SHAPE)[:, None, None, None] / 2.5)) ** 2).sum(0)
    )
    brain = radius < 1.0
    refs = {"bold": {}, "events": {}, "confounds": {}, "roi": {}, "anat": {}}
    for subject in SUBJECTS:
        for run in RUNS:
            n = RUN_VOLUMES[run]
            data = rng.normal(size=SHAPE + (n,)).astype(np.float32)
            data += np.where(brain, 800.0, 50.0).astype(np.float32)[..., None]
            path = root / TEMPLATES["bold"].format(subject=subject, run=run)
            save_image(data, AFFINE, path, tr=TR)
            refs["bold"][subject, run] = data
            events = design(subject, run)
            write_tsv(events, root / TEMPLATES["events"].format(subject=subject, run=run))
            refs["events"][subject, run] = events
            confounds = fmriprep_confounds(rng, n)
            write_tsv(confounds, root / TEMPLATES["confounds"].format(subject=subject, run=run))
            refs["confounds"][subject, run] = confounds
        vt = brain & (grid[1] < SHAPE[1] / 2) & (rng.random(SHAPE) < 0.8)
        save_image(vt.astype(np.uint8), AFFINE, root / TEMPLATES["roi"].format(subject=subject))
        refs["roi"][subject] = vt
        # The anatomy is on its own, finer grid.
        anat_affine = AFFINE.copy()
        anat_affine[:3, :3] /= 2
        anat = rng.random(tuple(2 * s for s in SHAPE)).astype(np.float32)
        save_image(anat, anat_affine, root / TEMPLATES["anat"].format(subject=subject))
        refs["anat"][subject] = (anat, anat_affine)
    templates = {key: str(root / value) for key, value in TEMPLATES.items()}
    return templates, refs


def local_settings(templates, **changes):
    """A complete 'local' config section, as the schema's defaults fill it."""
    settings = {
        "kind": "task",
        "tr": TR,
        "space": "MNI152NLin2009cAsym",
        "subjects": list(SUBJECTS),
        "runs": list(RUNS),
        "events_format": "bids",
        "rest_label": "rest",
        "labels": list(CATEGORIES),
        "confound_columns": list(CONFOUND_COLUMNS),
        "brain_mask": None,
        **templates,
    }
    settings.update(changes)
    return settings


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_tsv_plain(path):
    """Read a tab-separated file with the csv module (independent of pandas)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return rows[0], rows[1:]


def reference_confounds(refs, subject, columns):
    """Selected confounds of all runs, with the first-row n/a replaced by 0."""
    parts = []
    for run in RUNS:
        frame = refs["confounds"][subject, run][columns].to_numpy(dtype=float, copy=True)
        assert np.isnan(frame[1:]).sum() == 0
        frame[0][np.isnan(frame[0])] = 0.0
        parts.append(frame)
    return np.vstack(parts)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    templates, refs = build_tree(root)
    return root, templates, refs


# ---------------------------------------------------------------- expand


def test_expand_with_run_gives_one_path_per_run_in_order():
    paths = expand("/d/sub-{subject}/run-{run}_bold.nii.gz", "07", ["2", "10", 1])
    assert paths == [
        "/d/sub-07/run-2_bold.nii.gz",
        "/d/sub-07/run-10_bold.nii.gz",
        "/d/sub-07/run-1_bold.nii.gz",
    ]


def test_expand_without_run_gives_one_path_and_ignores_runs():
    assert expand("/d/sub-{subject}_mask.nii.gz", "07", ["1", "2"]) == ["/d/sub-07_mask.nii.gz"]
    assert expand("/d/sub-{subject}_mask.nii.gz", "07", None) == ["/d/sub-07_mask.nii.gz"]


@pytest.mark.parametrize("runs", [None, []])
def test_expand_run_template_without_runs_is_an_input_error(runs):
    with pytest.raises(InputError, match=r"local\.runs"):
        expand("/d/sub-{subject}_run-{run}.nii.gz", "01", runs)


def test_expand_formats_zero_padded_runs():
    assert expand("r-{run:02d}_s-{subject}", "1", [1, 12]) == ["r-01_s-1", "r-12_s-1"]


def test_expand_unknown_placeholder_is_an_input_error_naming_the_template():
    template = "/d/sub-{subject}/ses-{session}/bold.nii.gz"
    with pytest.raises(InputError, match=r"\{session\}") as info:
        expand(template, "01", ["1"])
    assert template in str(info.value)


def test_missing_files_names_path_and_template(tree, tmp_path):
    _, templates, _ = tree
    settings = local_settings(templates, events=str(tmp_path / "sub-{subject}_run-{run}.tsv"))
    problems = missing_files(settings, SUBJECTS)
    assert len(problems) == len(SUBJECTS) * len(RUNS)
    assert str(tmp_path / "sub-02_run-3.tsv") in problems[-1]
    assert "local.events" in problems[-1]
    assert missing_files(local_settings(templates), SUBJECTS) == []


# ---------------------------------------------------------------- events


@pytest.mark.parametrize("run", RUNS)
def test_bids_events_to_labels_matches_independent_labels(tree, run):
    _, _, refs = tree
    events = refs["events"]["01", run]
    n = RUN_VOLUMES[run]
    labels = bids_events_to_labels(events, n, TR, "events.tsv")
    assert list(labels) == reference_labels(events, n, TR)
    names = list(events["trial_type"])
    # The cases the design was built for (see design()).
    assert list(labels[:2]) == ["rest", "rest"]
    assert labels[5] == names[0]  # t = 10, last volume of block 1
    assert labels[6] == names[1]  # t = 12, exactly where block 2 starts
    assert labels[9] == "rest"  # t = 18, exactly where block 2 ends
    assert labels[10] == names[2]  # t = 20, first volume after the 19 s onset
    assert set(labels[12:]) == {"rest"}  # after the last event


def test_bids_events_to_labels_non_integer_tr_and_custom_rest_label():
    events = pd.DataFrame(
        {"onset": [0.0, 3.75, 9.0], "duration": [2.5, 5.0, 1.2], "trial_type": ["a", "b", "a"]}
    )
    tr, n = 1.25, 12
    labels = bids_events_to_labels(events, n, tr, "x.tsv", rest_label="fixation")
    assert list(labels) == reference_labels(events, n, tr, rest="fixation")


def test_bids_events_to_labels_skips_events_without_trial_type():
    events = pd.DataFrame(
        {
            "onset": [2.0, 3.0],
            "duration": [4.0, 1.0],
            "trial_type": ["face", np.nan],
        }
    )
    labels = bids_events_to_labels(events, 5, TR, "x.tsv")
    assert list(labels) == ["rest", "face", "face", "rest", "rest"]


def test_overlapping_events_name_the_file_and_the_volume():
    events = pd.DataFrame(
        {"onset": [0.0, 8.0], "duration": [10.0, 4.0], "trial_type": ["face", "house"]}
    )
    # Volume 4 (t = 8 s) is the first covered by both.
    with pytest.raises(InputError, match=r"volume 4\b") as info:
        bids_events_to_labels(events, 10, TR, "/study/sub-01_run-1_events.tsv")
    assert "/study/sub-01_run-1_events.tsv" in str(info.value)
    assert "face" in str(info.value) and "house" in str(info.value)


def test_bids_events_lacking_columns_is_an_input_error():
    events = pd.DataFrame({"onset": [0.0], "trial_type": ["a"]})
    with pytest.raises(InputError, match="duration") as info:
        bids_events_to_labels(events, 4, TR, "/study/ev.tsv")
    assert "/study/ev.tsv" in str(info.value)


def test_events_table_reads_bids_files_and_numbers_runs(tree):
    _, templates, refs = tree
    paths = expand(templates["events"], "02", RUNS)
    lengths = [RUN_VOLUMES[r] for r in RUNS]
    table = events_table(paths, lengths, TR, "bids", "rest", run_labels=["4", "07", 9])
    expected = sum(
        (reference_labels(refs["events"]["02", r], RUN_VOLUMES[r], TR) for r in RUNS), []
    )
    assert list(table["label"]) == expected
    # The lab's run labels, not positions: messages and outputs name runs as the lab does.
    assert list(table["run"]) == [
        run for run, n in zip([4, 7, 9], lengths, strict=True) for _ in range(n)
    ]


def test_run_numbers_are_the_labs_whole_number_labels_or_count_from_one():
    assert run_numbers(["02", "05", 7], 3) == [2, 5, 7]
    assert run_numbers(["a", "b"], 2) == [1, 2]
    assert run_numbers(["1", "01"], 2) == [1, 2]  # not distinct as numbers
    assert run_numbers(None, 3) == [1, 2, 3]
    assert run_numbers(["3"], 2) == [1, 2]


def test_events_table_single_per_volume_table_for_all_runs(tmp_path):
    lengths = [4, 3, 5]
    labels = [f"c{i % 3}" for i in range(sum(lengths))]
    path = tmp_path / "labels.tsv"
    write_tsv(pd.DataFrame({"label": labels}), path)
    table = events_table([str(path)], lengths, TR, "per_volume", "rest")
    assert list(table["label"]) == labels
    assert list(table["run"]) == [1] * 4 + [2] * 3 + [3] * 5  # no labels: counted from 1


def test_events_table_single_bids_file_for_several_runs_is_an_input_error(tree):
    _, templates, _ = tree
    path = templates["events"].format(subject="01", run="1")
    with pytest.raises(InputError, match=r"1 events file\(s\) for 3 BOLD run\(s\)") as info:
        events_table([path], [RUN_VOLUMES[r] for r in RUNS], TR, "bids", "rest")
    assert path in str(info.value)


def test_per_volume_empty_label_is_an_input_error(tmp_path):
    path = tmp_path / "labels.tsv"
    write_tsv(pd.DataFrame({"label": ["a", "b", np.nan, "a"]}), path)
    with pytest.raises(InputError, match="empty label.*volume 2") as info:
        events_table([str(path)], [4], TR, "per_volume", "rest")
    assert str(path) in str(info.value)


def test_per_volume_run_column_must_be_whole_numbers(tmp_path):
    path = tmp_path / "labels.tsv"
    write_tsv(pd.DataFrame({"label": ["a", "b", "a"], "run": ["r1", "r1", "r2"]}), path)
    with pytest.raises(InputError, match="whole numbers") as info:
        events_table([str(path)], [3], TR, "per_volume", "rest")
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- confounds


def test_confounds_table_sets_leading_na_to_zero_and_keeps_columns(tree):
    _, templates, refs = tree
    paths = expand(templates["confounds"], "01", RUNS)
    lengths = [RUN_VOLUMES[r] for r in RUNS]
    table = confounds_table(paths, lengths, CONFOUND_COLUMNS)
    assert list(table.columns) == CONFOUND_COLUMNS
    assert len(table) == sum(lengths)
    np.testing.assert_allclose(
        table.to_numpy(), reference_confounds(refs, "01", CONFOUND_COLUMNS), rtol=1e-12
    )
    # The first volume of every run had n/a in framewise_displacement.
    starts = np.cumsum([0, *lengths[:-1]])
    assert (table["framewise_displacement"].to_numpy()[starts] == 0).all()


def test_confounds_table_keeps_all_columns_when_none_requested(tree):
    _, templates, _ = tree
    path = expand(templates["confounds"], "02", ["2"])
    header, _ = read_tsv_plain(path[0])
    table = confounds_table(path, [RUN_VOLUMES["2"]], None)
    assert list(table.columns) == header
    assert not table.isna().any().any()


def _write_confounds(path, columns):
    frame = pd.DataFrame(columns)
    write_tsv(frame, path)
    return str(path)


def test_confounds_missing_columns_name_file_and_columns(tmp_path):
    path = _write_confounds(tmp_path / "c.tsv", {"trans_x": [0.0, 1.0, 2.0]})
    with pytest.raises(InputError) as info:
        confounds_table([path], [3], ["trans_x", "csf", "rot_z"])
    message = str(info.value)
    assert path in message and "'csf'" in message and "'rot_z'" in message
    assert "'trans_x'" not in message.split("it has")[0]


def test_confounds_na_in_the_middle_names_file_and_column(tmp_path):
    path = _write_confounds(
        tmp_path / "c.tsv",
        {"trans_x": [0.0, 1.0, 2.0, 3.0], "csf": [np.nan, 1.0, np.nan, 2.0]},
    )
    with pytest.raises(InputError) as info:
        confounds_table([path], [4], ["trans_x", "csf"])
    message = str(info.value)
    assert path in message and "'csf'" in message and "'trans_x'" not in message


def test_confounds_non_numeric_values_are_an_error_not_zeros(tmp_path):
    path = _write_confounds(
        tmp_path / "c.tsv", {"trans_x": [0.0, 1.0, 2.0], "note": ["ok", "ok", "moved"]}
    )
    with pytest.raises(InputError) as info:
        confounds_table([path], [3], ["trans_x", "note"])
    assert path in str(info.value) and "'note'" in str(info.value)


def test_confounds_column_entirely_na_is_an_error(tmp_path):
    path = _write_confounds(
        tmp_path / "c.tsv", {"trans_x": [0.0, 1.0, 2.0], "csf": [np.nan, np.nan, np.nan]}
    )
    with pytest.raises(InputError) as info:
        confounds_table([path], [3], ["trans_x", "csf"])
    assert path in str(info.value) and "'csf'" in str(info.value)


def test_confounds_row_count_must_match_the_run(tmp_path):
    path = _write_confounds(tmp_path / "c.tsv", {"trans_x": [0.0, 1.0, 2.0]})
    with pytest.raises(InputError, match="3 rows but the run has 4 volumes"):
        confounds_table([path], [4], ["trans_x"])


def test_confounds_single_table_for_all_runs(tmp_path):
    lengths = [3, 4]
    values = np.arange(7.0)
    path = _write_confounds(tmp_path / "c.tsv", {"csf": values})
    table = confounds_table([path], lengths, ["csf"])
    np.testing.assert_array_equal(table["csf"].to_numpy(), values)
    with pytest.raises(InputError, match=r"2 confounds file\(s\) for 3 BOLD run\(s\)"):
        confounds_table([path, path], [3, 2, 2], ["csf"])


# ---------------------------------------------------------------- runs


def test_concatenate_runs_equals_numpy_concatenation(tree):
    _, templates, refs = tree
    paths = expand(templates["bold"], "01", RUNS)
    image, lengths = concatenate_runs(paths)
    expected = np.concatenate([refs["bold"]["01", r] for r in RUNS], axis=3)
    assert lengths == [RUN_VOLUMES[r] for r in RUNS]
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), expected)
    np.testing.assert_allclose(image.affine, AFFINE)


def test_concatenate_runs_applies_each_runs_scaling(tmp_path):
    rng = np.random.default_rng(3)
    raws, paths, expected = [], [], []
    for k, (slope, inter) in enumerate([(0.5, 10.0), (2.0, -3.0)]):
        raw = rng.integers(-1000, 1000, size=SHAPE + (5,), dtype=np.int16)
        img = nib.Nifti1Image(raw, AFFINE)
        img.header.set_slope_inter(slope, inter)
        path = tmp_path / f"run{k}.nii.gz"
        nib.save(img, path)
        raws.append(raw)
        paths.append(str(path))
        expected.append(raw.astype(np.float64) * slope + inter)
    image, _ = concatenate_runs(paths)
    np.testing.assert_allclose(np.asanyarray(image.dataobj), np.concatenate(expected, axis=3))


@pytest.mark.parametrize("change", ["shape", "affine"])
def test_concatenate_runs_refuses_runs_on_different_grids(tmp_path, change):
    first = tmp_path / "run1.nii.gz"
    second = tmp_path / "run2.nii.gz"
    save_image(np.ones(SHAPE + (4,), np.float32), AFFINE, first)
    if change == "shape":
        save_image(np.ones((SHAPE[0] + 1, *SHAPE[1:], 4), np.float32), AFFINE, second)
    else:
        moved = AFFINE.copy()
        moved[0, 3] += 1.5
        save_image(np.ones(SHAPE + (4,), np.float32), moved, second)
    with pytest.raises(InputError, match="same grid") as info:
        concatenate_runs([str(first), str(second)])
    assert str(second) in str(info.value) and str(first) in str(info.value)
    # Say what differs: equal shapes are not reported as different.
    expected = "shape" if change == "shape" else "affine differs from the first run's"
    assert expected in str(info.value)
    if change == "affine":
        assert "by up to 1.5" in str(info.value)


# ---------------------------------------------------------------- nodes


def load_script(name):
    spec = importlib.util.spec_from_file_location(
        f"fmriflow_script_{name}", REPO / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_node():
    """Run a node in this process through fmriflow.node.run, as from the command line."""
    handlers = logging.root.handlers[:]
    level = logging.root.level

    def call(script, **options):
        argv = []
        for key, value in options.items():
            flag = f"--{key.replace('_', '-')}"
            # Lists of source files as several paths; paths and text as they
            # are; other values as YAML (JSON's flow style).
            if key.startswith("source_"):
                argv += [flag, *map(str, value)]
            elif isinstance(value, str | os.PathLike):
                argv += [flag, str(value)]
            else:
                argv += [flag, json.dumps(value)]
        node.run(load_script(script).NODE, argv=argv)

    yield call
    # node.run configures logging for a whole process; give pytest its own back.
    logging.captureWarnings(False)
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


OPTIONAL_FILES = {"roi": "roi.nii.gz", "anat": "anat.nii.gz", "confounds": "confounds.tsv"}


def import_subject(run_node, settings, folder, subject, confounds_with_bold=True):
    """What the workflow's import_local and import_local_file jobs do for one subject
    (its confounds imported with the BOLD image, as where every subject has them, or
    by a job of their own)."""
    files = subject_files(settings, subject)
    events = {"source_events": files["events"]} if "events" in files else {}
    together = confounds_with_bold and "confounds" in files
    confounds = (
        {"source_confounds": files["confounds"], "confounds": folder / "confounds.tsv"}
        if together
        else {}
    )
    run_node(
        "import_local",
        source_bold=files["bold"],
        **events,
        **confounds,
        bold=folder / "bold.nii.gz",
        events=folder / "events.tsv",
        tr=settings["tr"],
        events_format=settings["events_format"],
        rest_label=settings["rest_label"],
        runs=settings["runs"],
        columns=settings["confound_columns"],
    )
    for role, name in OPTIONAL_FILES.items():
        if role in files and not (role == "confounds" and together):
            bold = {"source_bold": files["bold"]} if role == "confounds" else {}
            run_node(
                "import_local_file",
                **{f"source_{role}": files[role]},
                **bold,
                file=folder / name,
                role=role,
                columns=settings["confound_columns"],
            )


def describe_and_import(run_node, settings, out, subjects=SUBJECTS):
    description = out / "dataset.json"
    run_node("describe_local", description=description, name="lab", settings=settings)
    for subject in subjects:
        import_subject(run_node, settings, out / f"sub-{subject}", subject)
    return description


def test_nodes_write_the_canonical_layout(tree, tmp_path, run_node):
    _, templates, refs = tree
    settings = local_settings(templates)
    out = tmp_path / "data" / "lab"
    description = describe_and_import(run_node, settings, out)

    meta = json.loads(description.read_text())
    assert meta["source"] == "local" and meta["tr"] == TR
    assert meta["space"] == settings["space"] and meta["subjects"] == SUBJECTS
    sources = [
        templates[key].format(subject=subject, run=run)
        for subject in SUBJECTS
        for key in TEMPLATES
        for run in (RUNS if "{run}" in TEMPLATES[key] else [None])
    ]
    assert len(sources) == len(SUBJECTS) * (3 * len(RUNS) + 2)
    assert meta["sha256"] == {path: sha256_of(path) for path in sources}

    for subject in SUBJECTS:
        folder = out / f"sub-{subject}"
        lengths = [RUN_VOLUMES[r] for r in RUNS]
        bold = nib.load(folder / "bold.nii.gz")
        expected = np.concatenate([refs["bold"][subject, r] for r in RUNS], axis=3)
        np.testing.assert_array_equal(np.asanyarray(bold.dataobj), expected)
        np.testing.assert_allclose(bold.affine, AFFINE)
        assert bold.header.get_zooms()[3] == pytest.approx(TR)

        header, rows = read_tsv_plain(folder / "events.tsv")
        assert header == ["label", "run"]
        assert len(rows) == sum(lengths) == bold.shape[3]
        labels = sum(
            (reference_labels(refs["events"][subject, r], RUN_VOLUMES[r], TR) for r in RUNS), []
        )
        assert [row[0] for row in rows] == labels
        assert [int(row[1]) for row in rows] == [
            int(run) for run, n in zip(RUNS, lengths, strict=True) for _ in range(n)
        ]

        header, rows = read_tsv_plain(folder / "confounds.tsv")
        assert header == CONFOUND_COLUMNS
        np.testing.assert_allclose(
            np.array(rows, dtype=float),
            reference_confounds(refs, subject, CONFOUND_COLUMNS),
            rtol=1e-12,
        )

        roi = nib.load(folder / "roi.nii.gz")
        np.testing.assert_array_equal(np.asanyarray(roi.dataobj) != 0, refs["roi"][subject])
        np.testing.assert_allclose(roi.affine, AFFINE)
        anat = nib.load(folder / "anat.nii.gz")
        np.testing.assert_array_equal(anat.get_fdata(), refs["anat"][subject][0])
        np.testing.assert_allclose(anat.affine, refs["anat"][subject][1])


def test_confounds_imported_with_the_image_equal_those_of_a_job_of_their_own(
    tree, tmp_path, run_node
):
    _, templates, _ = tree
    settings = local_settings(templates)
    together, apart = tmp_path / "together", tmp_path / "apart"
    import_subject(run_node, settings, together, "02", confounds_with_bold=True)
    import_subject(run_node, settings, apart, "02", confounds_with_bold=False)
    for name in ("bold.nii.gz", "events.tsv", "confounds.tsv"):
        assert sha256_of(together / name) == sha256_of(apart / name), name
    # One job wrote the BOLD image and the confounds: its provenance names both sources.
    sidecar = (together / "import_local.provenance.json").read_text()
    for path in subject_files(settings, "02")["confounds"]:
        assert sha256_of(path) in sidecar


def test_confounds_output_without_their_sources_is_refused(tree, tmp_path, run_node, capsys):
    _, templates, _ = tree
    files = subject_files(local_settings(templates), "01")
    with pytest.raises(SystemExit):
        run_node(
            "import_local",
            source_bold=files["bold"],
            bold=tmp_path / "bold.nii.gz",
            events=tmp_path / "events.tsv",
            confounds=tmp_path / "confounds.tsv",
            tr=TR,
        )
    err = capsys.readouterr().err
    assert "source_confounds and output confounds" in err and "without the other" in err
    assert not list(tmp_path.iterdir())


def test_import_single_file_per_subject_with_per_volume_events(tmp_path, run_node):
    rng = np.random.default_rng(5)
    study = tmp_path / "study"
    data = rng.normal(size=SHAPE + (12,)).astype(np.float32)
    save_image(data, AFFINE, study / "sub-01_bold.nii.gz", tr=TR)
    labels = [CATEGORIES[i % 3] if i % 4 else "rest" for i in range(12)]
    run_column = [3] * 6 + [7] * 6  # the lab's own run numbers are kept
    write_tsv(pd.DataFrame({"label": labels, "run": run_column}), study / "sub-01_events.tsv")
    settings = local_settings(
        {
            "bold": str(study / "sub-{subject}_bold.nii.gz"),
            "events": str(study / "sub-{subject}_events.tsv"),
            "confounds": None,
            "roi": None,
            "anat": None,
        },
        subjects=["01"],
        runs=None,
        events_format="per_volume",
    )
    out = tmp_path / "data" / "lab"
    folder = out / "sub-01"
    describe_and_import(run_node, settings, out, subjects=["01"])
    assert sha256_of(folder / "bold.nii.gz") == sha256_of(study / "sub-01_bold.nii.gz")
    # A symbolic link to the lab's file (by its absolute path), not a copy.
    assert (folder / "bold.nii.gz").is_symlink()
    assert os.readlink(folder / "bold.nii.gz") == str((study / "sub-01_bold.nii.gz").resolve())
    header, rows = read_tsv_plain(folder / "events.tsv")
    assert [row[0] for row in rows] == labels
    assert [int(row[1]) for row in rows] == run_column
    assert sorted(p.name for p in folder.iterdir() if "provenance" not in p.name) == [
        "bold.nii.gz",
        "events.tsv",
    ]


def test_link_bold_false_copies_the_image(tmp_path, run_node):
    rng = np.random.default_rng(6)
    source = tmp_path / "study" / "sub-01_bold.nii.gz"
    save_image(rng.normal(size=SHAPE + (6,)).astype(np.float32), AFFINE, source, tr=TR)
    bold = tmp_path / "out" / "bold.nii.gz"
    run_node(
        "import_local",
        source_bold=[source],
        bold=bold,
        events=tmp_path / "out" / "events.tsv",
        tr=TR,
        link_bold=False,
    )
    assert not bold.is_symlink() and sha256_of(bold) == sha256_of(source)
    # A copy, not a hard link: Snakemake touches outputs, which must not
    # reach the lab's original file.
    assert not os.path.samefile(bold, source)


def test_an_uncompressed_bold_image_is_compressed_on_import(tmp_path, run_node):
    """A lab's plain .nii lands as a real gzip file under the canonical .nii.gz name."""
    rng = np.random.default_rng(8)
    data = rng.normal(size=SHAPE + (6,)).astype(np.float32)
    source = tmp_path / "study" / "sub-01_bold.nii"
    save_image(data, AFFINE, source, tr=TR)
    write_tsv(pd.DataFrame({"label": ["face", "house"] * 3}), tmp_path / "study" / "ev.tsv")
    bold = tmp_path / "out" / "bold.nii.gz"
    digests = []
    for _ in range(2):
        run_node(
            "import_local",
            source_bold=[source],
            source_events=[tmp_path / "study" / "ev.tsv"],
            bold=bold,
            events=tmp_path / "out" / "events.tsv",
            tr=TR,
            events_format="per_volume",
        )
        with gzip.open(bold, "rb") as stream:
            assert stream.read() == source.read_bytes()
        digests.append(sha256_of(bold))
    assert digests[0] == digests[1]  # no time stamp or name in the gzip header


def test_header_tr_reads_the_time_unit_and_ignores_an_unrecorded_tr(tmp_path):
    data = np.zeros(SHAPE + (3,), dtype=np.float32)
    save_image(data, AFFINE, tmp_path / "sec.nii.gz", tr=2.5)
    assert header_tr(tmp_path / "sec.nii.gz") == 2.5
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_zooms(img.header.get_zooms()[:3] + (700.0,))
    img.header.set_xyzt_units("mm", "msec")
    nib.save(img, tmp_path / "msec.nii.gz")
    assert header_tr(tmp_path / "msec.nii.gz") == pytest.approx(0.7)
    img.header.set_zooms(img.header.get_zooms()[:3] + (0.0,))
    nib.save(img, tmp_path / "none.nii.gz")
    assert header_tr(tmp_path / "none.nii.gz") is None
    # nibabel's default header: a 1 with no time unit says nothing.
    nib.save(nib.Nifti1Image(data, AFFINE), tmp_path / "default.nii.gz")
    assert header_tr(tmp_path / "default.nii.gz") is None


def test_tr_disagreements_list_every_image_unless_the_config_overrides(tree):
    _, templates, _ = tree
    settings = local_settings(templates, tr=0.7)
    found = tr_disagreements(settings, list(SUBJECTS))
    assert len(found) == len(SUBJECTS) * len(RUNS)
    assert {recorded for _, recorded in found} == {TR}
    assert found[0][0] == templates["bold"].format(subject=SUBJECTS[0], run=RUNS[0])
    assert tr_disagreements(local_settings(templates), list(SUBJECTS)) == []
    overriding = local_settings(templates, tr=0.7, tr_overrides_header=True)
    assert tr_disagreements(overriding, list(SUBJECTS)) == []


def test_import_single_file_with_a_config_tr_overriding_the_header(tmp_path, run_node):
    rng = np.random.default_rng(6)
    data = rng.normal(size=SHAPE + (8,)).astype(np.float32)
    save_image(data, AFFINE, tmp_path / "study" / "sub-01_bold.nii.gz", tr=TR)
    write_tsv(
        pd.DataFrame({"label": ["face", "house"] * 4}), tmp_path / "study" / "sub-01_events.tsv"
    )
    folder = tmp_path / "out"
    run_node(
        "import_local",
        source_bold=[tmp_path / "study" / "sub-01_bold.nii.gz"],
        source_events=[tmp_path / "study" / "sub-01_events.tsv"],
        bold=folder / "bold.nii.gz",
        events=folder / "events.tsv",
        tr=0.7,
        events_format="per_volume",
        rest_label="rest",
    )
    imported = nib.load(folder / "bold.nii.gz")
    assert header_tr(folder / "bold.nii.gz") == pytest.approx(0.7)
    np.testing.assert_array_equal(imported.get_fdata(dtype=np.float32), data)
    np.testing.assert_array_equal(imported.affine, AFFINE)


def test_import_per_volume_events_one_file_per_run(tmp_path, run_node, tree):
    _, templates, _ = tree
    events = tmp_path / "sub-{subject}_run-{run}_labels.tsv"
    expected = []
    for run in RUNS:
        n = RUN_VOLUMES[run]
        labels = [CATEGORIES[(i + int(run)) % 3] for i in range(n)]
        # A 'run' column in per-run files is ignored: runs follow local.runs.
        write_tsv(
            pd.DataFrame({"label": labels, "run": [99] * n}),
            Path(str(events).format(subject="02", run=run)),
        )
        expected += labels
    settings = local_settings(
        templates, subjects=["02"], events=str(events), events_format="per_volume"
    )
    out = tmp_path / "data" / "lab"
    describe_and_import(run_node, settings, out, subjects=["02"])
    header, rows = read_tsv_plain(out / "sub-02" / "events.tsv")
    assert [row[0] for row in rows] == expected
    lengths = [RUN_VOLUMES[r] for r in RUNS]
    assert [int(row[1]) for row in rows] == [
        int(r) for r, n in zip(RUNS, lengths, strict=True) for _ in range(n)
    ]


def test_import_per_volume_events_with_wrong_length_fails_cleanly(
    tmp_path, run_node, tree, capsys
):
    _, templates, _ = tree
    events = tmp_path / "sub-01_run-{run}_labels.tsv"
    for run in RUNS:
        n = RUN_VOLUMES[run] - (run == "2")
        write_tsv(pd.DataFrame({"label": ["a"] * n}), Path(str(events).format(run=run)))
    settings = local_settings(
        templates,
        subjects=["01"],
        events=str(tmp_path / "sub-{subject}_run-{run}_labels.tsv"),
        events_format="per_volume",
    )
    folder = tmp_path / "data" / "lab" / "sub-01"
    with pytest.raises(SystemExit) as info:
        import_subject(run_node, settings, folder, "01")
    assert info.value.code == 1
    err = capsys.readouterr().err
    bad = str(events).format(run="2")
    assert bad in err and f"{RUN_VOLUMES['2'] - 1} rows" in err
    assert "Traceback" not in err
    assert not (folder / "bold.nii.gz").exists() and not (folder / "events.tsv").exists()


@pytest.mark.parametrize("layout", ["one file", "runs", "uncompressed"])
def test_a_truncated_bold_image_is_named_at_import_and_nothing_is_kept(
    tmp_path, run_node, capsys, layout
):
    """A transfer cut short: the source file is named, no output stays behind."""
    rng = np.random.default_rng(7)
    study = tmp_path / "study"
    suffix = ".nii" if layout == "uncompressed" else ".nii.gz"
    runs = ["1", "2"] if layout == "runs" else [None]
    paths = []
    for run in runs:
        path = study / (f"sub-01_run-{run}_bold{suffix}" if run else f"sub-01_bold{suffix}")
        save_image(rng.normal(size=SHAPE + (12,)).astype(np.float32), AFFINE, path, tr=TR)
        paths.append(path)
    damaged = paths[-1]
    content = damaged.read_bytes()
    damaged.write_bytes(content[: int(len(content) * 0.6)])
    folder = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        run_node(
            "import_local",
            source_bold=paths,
            bold=folder / "bold.nii.gz",
            events=folder / "events.tsv",
            tr=TR,
            runs=[r for r in runs if r],
        )
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert str(damaged) in err and "truncated" in err
    assert "Traceback" not in err
    assert not folder.exists() or not any(folder.iterdir())


def test_import_rest_without_events_numbers_runs(tmp_path, run_node, tree):
    _, templates, refs = tree
    settings = local_settings(
        templates, kind="rest", events=None, subjects=["01"], confound_columns=None
    )
    out = tmp_path / "data" / "lab"
    describe_and_import(run_node, settings, out, subjects=["01"])
    header, rows = read_tsv_plain(out / "sub-01" / "events.tsv")
    lengths = [RUN_VOLUMES[r] for r in RUNS]
    assert {row[0] for row in rows} == {"rest"}
    assert [int(row[1]) for row in rows] == [
        int(r) for r, n in zip(RUNS, lengths, strict=True) for _ in range(n)
    ]
    header, _ = read_tsv_plain(out / "sub-01" / "confounds.tsv")
    assert header == list(refs["confounds"]["01", "1"].columns)


def test_import_missing_source_names_the_path(tmp_path, run_node, tree, capsys):
    _, templates, _ = tree
    template = str(tmp_path / "nowhere" / "sub-{subject}_run-{run}_events.tsv")
    settings = local_settings(templates, events=template)
    folder = tmp_path / "data" / "lab" / "sub-01"
    with pytest.raises(SystemExit):
        import_subject(run_node, settings, folder, "01")
    err = capsys.readouterr().err
    assert template.format(subject="01", run="1") in err and "not found" in err
    assert not folder.exists() or not any(folder.iterdir())


def test_import_local_brain_mask_copies_it(tmp_path, run_node, tree):
    _, _, refs = tree
    brain = tmp_path / "brainmask.nii.gz"
    save_image(refs["roi"]["01"].astype(np.uint8), AFFINE, brain)
    copy = tmp_path / "data" / "lab" / "brainmask.nii.gz"
    run_node("import_local_brain_mask", source=brain, brain_mask=copy)
    assert sha256_of(copy) == sha256_of(brain)
    assert not os.path.samefile(copy, brain)


def test_import_local_from_the_command_line(tmp_path, tree):
    """The script itself, in a fresh interpreter, with YAML parameters."""
    _, templates, _ = tree
    settings = local_settings(templates, subjects=["02"])
    folder = tmp_path / "sub-02"
    sources = subject_files(settings, "02")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "import_local.py"),
            "--source-bold",
            *sources["bold"],
            "--source-events",
            *sources["events"],
            "--bold",
            str(folder / "bold.nii.gz"),
            "--events",
            str(folder / "events.tsv"),
            "--tr",
            yaml.safe_dump(settings["tr"]).split("\n")[0],
            "--log",
            str(tmp_path / "import.log"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    bold = nib.load(folder / "bold.nii.gz")
    assert bold.shape[3] == sum(RUN_VOLUMES.values())
    assert "node import_local: done" in (tmp_path / "import.log").read_text()


# ---------------------------------------------------------------- workflow


def snakemake(workdir, configfile, *extra):
    return subprocess.run(
        [
            str(SNAKEMAKE),
            "--cores",
            "2",
            "-d",
            str(workdir),
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            str(configfile),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )


def dataset_config(settings, mask="roi"):
    return {
        "source": "local",
        "local": settings,
        "preprocess": {
            "mask": mask,
            "bad_voxels": "error",
            "clean": {"confounds": True, "standardize": "zscore_sample"},
        },
    }


def write_config(path, settings, mask="roi"):
    path.write_text(yaml.safe_dump({"datasets": {"lab": dataset_config(settings, mask)}}))
    return path


def written_files(workdir):
    return [p for sub in ("data", "results") for p in (workdir / sub).rglob("*") if p.is_file()]


def file_states(root):
    return {p: (p.stat().st_mtime_ns, sha256_of(p)) for p in root.rglob("*") if p.is_file()}


def check_standardized(clean, lengths):
    """Each run of each voxel has mean 0 and sample standard deviation 1."""
    for part in np.split(clean, np.cumsum(lengths)[:-1]):
        np.testing.assert_allclose(part.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(part.std(axis=0, ddof=1), 1, atol=1e-3)


@pytest.mark.workflow
def test_workflow_runs_a_local_dataset_end_to_end(tree, tmp_path):
    root, templates, refs = tree
    config = write_config(tmp_path / "lab.yaml", local_settings(templates))
    before = file_states(root)
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, config)
    assert result.returncode == 0, result.stderr[-3000:]

    lengths = [RUN_VOLUMES[r] for r in RUNS]
    for subject in SUBJECTS:
        clean = np.load(work / "results" / "lab" / f"sub-{subject}" / "clean.npy")
        # The ROI mask was used: one column per ROI voxel, one row per volume.
        assert clean.shape == (sum(lengths), int(refs["roi"][subject].sum()))
        check_standardized(clean, lengths)

    # The lab's files were only read: same bytes, same modification times.
    assert file_states(root) == before
    # Every subject has confounds: one job per subject imported them with the image.
    assert len(list((work / "logs" / "import_local").glob("*.log"))) == len(SUBJECTS)
    assert not (work / "logs" / "import_local_confounds").exists()
    # A second invocation has nothing to do (script edits are not the point here).
    triggers = ["--rerun-triggers", "mtime", "params", "input", "software-env"]
    again = snakemake(work, config, "-n", *triggers)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.workflow
def test_workflow_imports_confounds_apart_where_some_subjects_lack_them(tree, tmp_path):
    _, templates, refs = tree
    settings = local_settings(templates)
    listed = {
        subject: {"runs": list(RUNS), **subject_files(settings, subject)} for subject in SUBJECTS
    }
    del listed["02"]["confounds"]
    settings = local_settings({key: None for key in templates}, files=listed)
    config = write_config(tmp_path / "lab.yaml", settings)
    work = tmp_path / "work"
    work.mkdir()
    cleaned = [f"results/lab/sub-{subject}/clean.npy" for subject in SUBJECTS]
    planned = snakemake(work, config, "-n", "--quiet", "rules", "--printshellcmds", *cleaned)
    assert planned.returncode == 0, planned.stderr[-3000:]
    counts = dict(
        re.findall(r"^(import_local\w*)\s+(\d+)$", planned.stdout + planned.stderr, re.M)
    )
    assert counts["import_local"] == "2" and counts["import_local_confounds"] == "1", counts
    assert "import_local_with_confounds" not in counts, counts

    result = snakemake(work, config, "--printshellcmds", *cleaned)
    assert result.returncode == 0, result.stderr[-3000:]
    header, rows = read_tsv_plain(work / "data/lab/sub-01/confounds.tsv")
    assert header == CONFOUND_COLUMNS
    np.testing.assert_allclose(
        np.array(rows, dtype=float), reference_confounds(refs, "01", CONFOUND_COLUMNS), rtol=1e-12
    )
    assert not (work / "data/lab/sub-02/confounds.tsv").exists()


@pytest.mark.workflow
def test_workflow_missing_file_fails_before_any_job(tree, tmp_path):
    root, templates, _ = tree
    template = str(root / "derivatives" / "fmriprep" / "sub-{subject}_typo_run-{run}.tsv")
    config = write_config(tmp_path / "lab.yaml", local_settings(templates, confounds=template))
    work = tmp_path / "work"
    work.mkdir()
    for extra in (["-n"], []):
        result = snakemake(work, config, *extra)
        assert result.returncode != 0
        message = result.stdout + result.stderr
        assert template.format(subject="01", run="1") in message
        assert "local.confounds" in message
        assert "configured file(s) not found" in message
        assert written_files(work) == []


@pytest.mark.workflow
def test_workflow_refuses_a_tr_that_disagrees_with_the_headers(tree, tmp_path):
    _, templates, _ = tree
    config = write_config(tmp_path / "lab.yaml", local_settings(templates, tr=0.7))
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, config, "-n")
    message = result.stdout + result.stderr
    assert result.returncode != 0
    first = templates["bold"].format(subject=SUBJECTS[0], run=RUNS[0])
    assert f"local.tr is 0.7 s but the header of {first} records a TR of 2 s" in message
    assert "Set tr: 2 if the header is right" in message and "tr_overrides_header" in message
    assert written_files(work) == []
    overriding = local_settings(templates, tr=0.7, tr_overrides_header=True)
    config = write_config(tmp_path / "override.yaml", overriding)
    result = snakemake(work, config, "-n")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.workflow
def test_workflow_refuses_task_data_without_events(tree, tmp_path):
    _, templates, _ = tree
    settings = local_settings(templates, events=None)
    del settings["kind"]  # the default, task
    config = write_config(tmp_path / "lab.yaml", settings)
    result = snakemake(tmp_path, config, "-n")
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "datasets.lab.local" in message and "no events are given" in message
    assert "set kind: rest" in message
    assert written_files(tmp_path) == []
    config = write_config(
        tmp_path / "rest.yaml", local_settings(templates, events=None, kind="rest")
    )
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.workflow
def test_workflow_checks_labels_and_radius_against_the_lab_files(tree, tmp_path):
    """Labels missing from the events and a radius below the voxel size (read from the
    headers) stop the workflow before any job."""
    _, templates, _ = tree
    config = {"datasets": {"lab": dataset_config(local_settings(templates))}}
    config["decoding"] = [
        {"name": "x", "dataset": "lab", "labels": [CATEGORIES[0], "dog"], "voxels": "mask"}
    ]
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, path, "-n")
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "decoding[0].labels" in message and "label(s) ['dog'] are not in the events" in message
    assert f"subject {SUBJECTS[0]}" in message
    del config["decoding"]
    config["searchlight"] = [
        {"name": "s", "dataset": "lab", "labels": list(CATEGORIES[:2]), "radius": 2.0}
    ]
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, path, "-n")
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "searchlight[0].radius" in message and "smaller than the voxel size (3" in message
    assert written_files(tmp_path) == []


@pytest.mark.workflow
def test_workflow_says_when_yaml_read_subject_labels_as_numbers(tree, tmp_path):
    _, templates, _ = tree
    config = tmp_path / "lab.yaml"
    write_config(config, local_settings(templates, subjects=["01"]))
    # As a user writes it: subjects: [01], which YAML reads as the number 1.
    config.write_text(config.read_text().replace("- '01'", "- 01"))
    assert yaml.safe_load(config.read_text())["datasets"]["lab"]["local"]["subjects"] == [1]
    result = snakemake(tmp_path, config, "-n")
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert templates["bold"].format(subject="1", run=RUNS[0]) in message
    assert "subjects 1 was read as a number" in message and "subjects: ['01', '02']" in message


@pytest.mark.workflow
def test_workflow_unknown_placeholder_fails_at_parse_time(tree, tmp_path):
    _, templates, _ = tree
    template = templates["roi"].replace("sub-{subject}_", "sub-{subject}_ses-{session}_")
    config = write_config(tmp_path / "lab.yaml", local_settings(templates, roi=template))
    result = snakemake(tmp_path, config, "-n")
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert template in message and "{session}" in message
    assert written_files(tmp_path) == []


@pytest.mark.workflow
def test_local_example_config_is_valid(tmp_path):
    example = REPO / "config" / "local-example.yaml"
    settings = yaml.safe_load(example.read_text())["datasets"]["objects"]["local"]
    result = snakemake(tmp_path, example, "-n")
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Invalid config" not in message
    expected = sum(
        len(expand(settings[key], s, settings["runs"]))
        for s in settings["subjects"]
        for key in TEMPLATES
        if settings.get(key)
    )
    assert f"{expected} configured file(s) not found" in message
    assert settings["bold"].format(subject="01", run="1") in message
    assert written_files(tmp_path) == []


@pytest.mark.workflow
def test_workflow_links_single_bold_files_and_puts_the_template_mask_once(tmp_path):
    """One .nii.gz per subject: linked, never touched, re-imported when it changes.

    The MNI brain mask is put on the dataset's grid by one template_mask job
    and every subject's mask is nilearn's template resampled to its grid.
    """
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_to_img

    rng = np.random.default_rng(12)
    study = tmp_path / "study"
    for subject in SUBJECTS:
        data = 100 + rng.normal(size=SHAPE + (30,)).astype(np.float32)
        save_image(data, AFFINE, study / f"sub-{subject}_bold.nii.gz", tr=TR)
    settings = {
        "kind": "rest",
        "tr": TR,
        "space": "MNI152NLin2009cAsym",
        "subjects": list(SUBJECTS),
        "bold": str(study / "sub-{subject}_bold.nii.gz"),
    }
    dataset = {
        "source": "local",
        "local": settings,
        "preprocess": {"mask": "mni_brain", "clean": {"high_pass": None, "low_pass": None}},
    }
    config = tmp_path / "lab.yaml"
    config.write_text(yaml.safe_dump({"datasets": {"lab": dataset}}))
    work = tmp_path / "work"
    work.mkdir()
    masks = [f"results/lab/sub-{subject}/mask.nii.gz" for subject in SUBJECTS]
    before = file_states(study)
    # (an option ends --configfile's list of files before the targets)
    result = snakemake(work, config, "--printshellcmds", *masks)
    assert result.returncode == 0, result.stderr[-3000:]

    assert file_states(study) == before
    for subject in SUBJECTS:
        bold = work / "data" / "lab" / f"sub-{subject}" / "bold.nii.gz"
        assert bold.is_symlink()
        assert os.path.samefile(bold, study / f"sub-{subject}_bold.nii.gz")
        sidecar = json.loads((bold.parent / "import_local.provenance.json").read_text())
        assert sha256_of(study / f"sub-{subject}_bold.nii.gz") in json.dumps(sidecar)

    reference = resample_to_img(
        load_mni152_brain_mask(),
        nib.load(study / "sub-01_bold.nii.gz").slicer[..., 0],
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    expected = np.asarray(reference.dataobj) != 0
    assert expected.any()
    template = nib.load(work / "results" / "lab" / "template_mask.nii.gz")
    np.testing.assert_array_equal(np.asarray(template.dataobj) != 0, expected)
    for path in masks:
        np.testing.assert_array_equal(np.asarray(nib.load(work / path).dataobj) != 0, expected)
    assert len(list((work / "logs" / "template_mask").glob("*.log"))) == 1
    assert "the template on the dataset's grid" in (work / "logs/mask/lab_sub-02.log").read_text()

    again = snakemake(work, config, "-n", "--printshellcmds", *masks)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
    # The lab replaces one subject's image: that subject alone is imported again.
    data = 100 + rng.normal(size=SHAPE + (30,)).astype(np.float32)
    save_image(data, AFFINE, study / "sub-02_bold.nii.gz", tr=TR)
    changed = snakemake(work, config, "-n", "--quiet", "rules", "--printshellcmds", *masks)
    planned = changed.stdout + changed.stderr
    assert re.search(r"import_local\s+1\b", planned), planned[-2000:]
