"""Nodes run standalone: outputs equal a reference pipeline; bad input gets one message."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.maskers import NiftiMasker
from nilearn.signal import clean

from fmriflow import simulate
from fmriflow.dataset import write_description, write_subject

from conftest import SCRIPTS, run_node_script


def run_node(name, *args, log=None):
    return run_node_script(SCRIPTS / f"{name}.py", *args, *(["--log", log] if log else []))


@pytest.fixture
def dataset(tmp_path):
    """A one-subject simulated task dataset in the canonical layout."""
    folder = tmp_path / "data" / "sim"
    shape = (10, 12, 10)
    subject = simulate.simulate_task_subject(0, 0, shape, 3, 2.5, (2, 2), block_volumes=5)
    brain, _ = simulate.task_masks(shape)
    affine = simulate.grid_affine(shape, (3.5, 3.75, 3.75))
    write_subject(
        folder, "01", subject.events, bold=subject.bold, affine=affine, tr=2.5, roi=subject.roi
    )
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), folder / "brainmask.nii.gz")
    write_description(
        folder / "dataset.json",
        name="sim",
        source="simulate",
        kind="task",
        tr=2.5,
        space="native",
        subjects=["01"],
    )
    return folder


def mask_and_clean(dataset, results, mask="dataset", extra=()):
    sub = dataset / "sub-01"
    masked = run_node(
        "mask",
        "--bold", sub / "bold.nii.gz",
        "--description", dataset / "dataset.json",
        "--mask", results / "mask.nii.gz",
        "--matrix", results / "masked.npy",
        "--mean", results / "mean.nii.gz",
        "--mask-choice", mask,
        *extra,
    )  # fmt: skip
    return masked


def test_help_lists_inputs_outputs_and_parameters():
    result = run_node("mask", "--help")
    assert result.returncode == 0
    for word in ("--bold", "--matrix", "--mask-choice", "--bad-voxels", "inputs", "outputs"):
        assert word in result.stdout


def test_mask_then_clean_equal_nilearn_reference(dataset, tmp_path):
    results = tmp_path / "results"
    sub = dataset / "sub-01"
    args = [
        "--bold", sub / "bold.nii.gz",
        "--description", dataset / "dataset.json",
        "--mask", results / "mask.nii.gz",
        "--matrix", results / "masked.npy",
        "--mean", results / "mean.nii.gz",
    ]  # fmt: skip
    result = run_node("mask", *args, "--mask-choice", "dataset")
    assert result.returncode == 0, result.stderr
    result = run_node(
        "clean",
        "--matrix", results / "masked.npy",
        "--events", sub / "events.tsv",
        "--description", dataset / "dataset.json",
        "--clean", results / "clean.npy",
        "--high-pass", "0.01",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    mask_img = nib.load(results / "mask.nii.gz")
    reference_brain = nib.load(dataset / "brainmask.nii.gz").get_fdata() > 0
    roi = nib.load(sub / "mask.nii.gz").get_fdata() > 0
    np.testing.assert_array_equal(mask_img.get_fdata() > 0, reference_brain | roi)
    masked = NiftiMasker(mask_img).fit().transform(sub / "bold.nii.gz")
    np.testing.assert_allclose(np.load(results / "masked.npy"), masked, rtol=1e-6)
    runs = pd.read_csv(sub / "events.tsv", sep="\t")["run"].to_numpy()
    reference = np.vstack(
        [
            clean(
                masked[runs == r],
                t_r=2.5,
                detrend=True,
                standardize="zscore_sample",
                filter="butterworth",
                high_pass=0.01,
            )  # fmt: skip
            for r in np.unique(runs)
        ]
    )
    np.testing.assert_allclose(np.load(results / "clean.npy"), reference, rtol=1e-4, atol=1e-4)


def assert_one_clear_message(result, node, *fragments):
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fmriflow {node}: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_events_of_wrong_length_stop_clean_with_one_message(dataset, tmp_path):
    results = tmp_path / "results"
    assert mask_and_clean(dataset, results).returncode == 0
    events = dataset / "sub-01" / "events.tsv"
    frame = pd.read_csv(events, sep="\t")
    frame.iloc[:-4].to_csv(events, sep="\t", index=False)
    result = run_node(
        "clean",
        "--matrix", results / "masked.npy",
        "--events", events,
        "--description", dataset / "dataset.json",
        "--clean", results / "clean.npy",
    )  # fmt: skip
    assert_one_clear_message(
        result, "clean", str(events), f"{len(frame) - 4} rows", f"{len(frame)} volumes"
    )
    assert not (results / "clean.npy").exists()


def corrupt_voxel(dataset, value):
    path = dataset / "sub-01" / "bold.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj).astype(np.float32)
    brain = nib.load(dataset / "brainmask.nii.gz").get_fdata() > 0
    i, j, k = np.argwhere(brain)[0]
    data[i, j, k] = value if np.isnan(value) else data[i, j, k, 0]
    nib.save(nib.Nifti1Image(data, img.affine), path)
    return (int(i), int(j), int(k))


@pytest.mark.parametrize("value", [np.nan, 0.0])
def test_nan_or_constant_voxels_stop_mask_with_one_message(dataset, tmp_path, value):
    voxel = corrupt_voxel(dataset, value)
    results = tmp_path / "results"
    result = mask_and_clean(dataset, results)
    kind = "NaN or infinite" if np.isnan(value) else "constant over time"
    assert_one_clear_message(result, "mask", "bold.nii.gz", kind, str(voxel), "bad_voxels: drop")
    assert not any(results.glob("*")) if results.exists() else True


def test_bad_voxels_can_be_dropped(dataset, tmp_path):
    voxel = corrupt_voxel(dataset, np.nan)
    results = tmp_path / "results"
    result = mask_and_clean(dataset, results, extra=("--bad-voxels", "drop"))
    assert result.returncode == 0, result.stderr
    mask = nib.load(results / "mask.nii.gz").get_fdata() > 0
    assert not mask[voxel]
    matrix = np.load(results / "masked.npy")
    assert matrix.shape[1] == mask.sum() and np.isfinite(matrix).all()


def test_missing_input_is_named(dataset, tmp_path):
    (dataset / "sub-01" / "bold.nii.gz").unlink()
    result = mask_and_clean(dataset, tmp_path / "results")
    assert_one_clear_message(result, "mask", "bold.nii.gz", "BOLD image not found")


def test_log_receives_details(dataset, tmp_path):
    log = tmp_path / "mask.log"
    results = tmp_path / "results"
    sub = dataset / "sub-01"
    result = run_node(
        "mask",
        "--bold", sub / "bold.nii.gz",
        "--description", dataset / "dataset.json",
        "--matrix", results / "masked.npy",
        "--mean", results / "mean.nii.gz",
        "--mask", results / "mask.nii.gz",
        "--mask-choice", "roi",
        log=log,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == ""
    text = log.read_text()
    assert (
        "node mask: params" in text
        and "'mask_choice': 'roi'" in text
        and "node mask: done" in text
    )


def test_decode_run_with_one_class_stops_with_one_message(dataset, tmp_path):
    import json

    results = tmp_path / "results"
    sub = dataset / "sub-01"
    assert mask_and_clean(dataset, results).returncode == 0
    assert (
        run_node(
            "clean",
            "--matrix",
            results / "masked.npy",
            "--events",
            sub / "events.tsv",
            "--description",
            dataset / "dataset.json",
            "--clean",
            results / "clean.npy",
        ).returncode  # fmt: skip
        == 0
    )
    events = pd.read_csv(sub / "events.tsv", sep="\t")
    events.loc[(events["run"] == 1) & (events["label"] == "house"), "label"] = "rest"
    events.to_csv(sub / "events.tsv", sep="\t", index=False)
    outputs = {
        name: tmp_path / "decoding" / file
        for name, file in [
            ("folds", "folds.tsv"),
            ("predictions", "predictions.tsv"),
            ("confusion", "confusion.tsv"),
            ("confusion-png", "confusion.png"),
            ("summary", "summary.json"),
            ("weights", "weights.nii.gz"),
            ("weights-png", "weights.png"),
        ]
    }
    analysis = {
        "name": "fh",
        "labels": ["face", "house"],
        "mask": "roi",
        "classifier": "svc",
        "feature_selection": {},
        "cv": {"scheme": "leave_one_run_out", "n_splits": 5, "n_repeats": 1, "allow_leaky": False},
        "search": None,
        "permutations": 0,
        "balance": False,
        "drop_incomplete_runs": False,
        "seed": 0,
    }
    arguments = ["--clean", results / "clean.npy", "--mask", results / "mask.nii.gz"]
    arguments += ["--mean", results / "mean.nii.gz", "--events", sub / "events.tsv"]
    for name, path in outputs.items():
        arguments += [f"--{name}", path]
    result = run_node("decode", *arguments, "--analysis", json.dumps(analysis))
    assert_one_clear_message(
        result, "decode", "events.tsv", "run 1 has only ['face']", "drop_incomplete_runs"
    )
    assert not any(path.exists() for path in outputs.values())

    analysis["drop_incomplete_runs"] = True
    result = run_node("decode", *arguments, "--analysis", json.dumps(analysis))
    assert result.returncode == 0, result.stderr
    summary = json.loads(outputs["summary"].read_text())
    assert summary["dropped_runs"] == [1] and summary["n_folds"] == 2
