"""Nodes run standalone: outputs equal a reference pipeline; bad input gets one message."""

import shlex

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from nilearn.maskers import NiftiMasker
from nilearn.signal import clean

from fmriflow import simulate
from fmriflow.dataset import save_bold, save_roi, write_description, write_events

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
    sub = folder / "sub-01"
    sub.mkdir(parents=True)
    save_bold(subject.bold, affine, 2.5, sub / "bold.nii.gz")
    write_events(subject.events, sub / "events.tsv")
    save_roi(subject.roi, sub / "roi.nii.gz", affine)
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
        "--roi", sub / "roi.nii.gz",
        "--brain-mask", dataset / "brainmask.nii.gz",
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
        "--roi", sub / "roi.nii.gz",
        "--brain-mask", dataset / "brainmask.nii.gz",
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
    roi = nib.load(sub / "roi.nii.gz").get_fdata() > 0
    np.testing.assert_array_equal(mask_img.get_fdata() > 0, reference_brain | roi)
    masked = NiftiMasker(mask_img, standardize=None).fit().transform(sub / "bold.nii.gz")
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


def test_a_resampled_roi_is_a_warning_on_the_terminal_not_only_in_the_log(dataset, tmp_path):
    sub = dataset / "sub-01"
    roi = nib.load(sub / "roi.nii.gz")
    shifted = roi.affine.copy()
    shifted[1, 3] += 3.75  # one voxel along j
    nib.save(nib.Nifti1Image(np.asanyarray(roi.dataobj), shifted), sub / "roi.nii.gz")
    refused = mask_and_clean(dataset, tmp_path / "refused", mask="roi")
    assert_one_clear_message(refused, "mask", "roi.nii.gz", "affines differ by up to 3.75")
    log = tmp_path / "mask.log"
    extra = ["--resample-masks", "true", "--log", log]
    result = mask_and_clean(dataset, tmp_path / "resampled", mask="roi", extra=extra)
    assert result.returncode == 0, result.stderr
    assert "fmriflow mask: warning:" in result.stderr
    assert "resampled it with nearest-neighbour" in result.stderr
    assert "resampled it with nearest-neighbour" in log.read_text()


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
        "--roi", sub / "roi.nii.gz",
        "--matrix", results / "masked.npy",
        "--mean", results / "mean.nii.gz",
        "--mask", results / "mask.nii.gz",
        "--mask-choice", "roi",
        log=log,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == ""
    text = log.read_text()
    assert "node mask: done" in text
    # The parameters as options that paste back onto the command line.
    logged = text.split("node mask: params ", 1)[1].splitlines()[0]
    words = shlex.split(logged)
    options = dict(zip(words[::2], map(yaml.safe_load, words[1::2]), strict=True))
    assert options["--mask-choice"] == "roi"
    assert options["--bad-voxels"] == "error" and "--smoothing-fwhm" in options
    assert "None" not in logged


def test_a_missing_optional_input_this_run_needs_is_a_usage_error(tmp_path):
    table = tmp_path / "stimuli.tsv"
    table.write_text("split\tpx_0_0\ntrain\t1\n")
    result = run_node(
        "import_local_file",
        "--source-stimuli", table,
        "--file", tmp_path / "out.tsv",
        "--role", "stimuli",
    )  # fmt: skip
    assert result.returncode == 1
    assert "input source_bold: is not given, and this run needs it" in result.stderr
    assert "--source-bold" in result.stderr
    assert "AttributeError" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.tsv").exists()


@pytest.mark.parametrize("name", ["items", "get", "copy"])
def test_a_declared_name_a_dict_attribute_would_hide_is_refused(name):
    from fmriflow.node import Node, Param

    with pytest.raises(ValueError, match=f"names \\['{name}'\\] are attributes of a dict"):
        Node("n", "d", print, params={name: Param(1, "x")})
    # A name that once was a class attribute of the bundles reaches its value.
    node = Node("n", "d", print, params={"kind": Param("mni_gm", "x")})
    from fmriflow.node import Bundle

    assert Bundle({"kind": "mni_gm"}).kind == "mni_gm" and "kind" in node.params


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
    # Only what the schema requires: the rest are the schema's defaults.
    analysis = {"name": "fh", "dataset": "sim", "labels": ["face", "house"]}
    arguments = ["--clean", results / "clean.npy", "--mask", results / "mask.nii.gz"]
    arguments += ["--roi", sub / "roi.nii.gz", "--background", results / "mean.nii.gz"]
    arguments += ["--events", sub / "events.tsv"]
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
    # The defaults are the schema's, and the sidecar records them.
    assert summary["classifier"] == "svc" and summary["voxels"] == "roi"
    sidecar = json.loads((outputs["summary"].parent / "decode.provenance.json").read_text())
    assert sidecar["params"]["analysis"]["cv"]["scheme"] == "leave_one_run_out"

    # An old key of the config gets its new name, before anything runs.
    old = analysis | {"mask": "brain"}
    result = run_node("decode", *arguments, "--analysis", json.dumps(old))
    assert_one_clear_message(result, "decode", "'mask' was renamed to 'voxels'")


class FakeSnakemake:
    """What a rule hands a node: named inputs, outputs, params, a log."""

    class Named(dict):
        def __getattr__(self, name):
            return self[name]

    def __init__(self, input, output, params, log):
        self.input, self.output = self.Named(input), self.Named(output)
        self.params, self.log, self.threads = self.Named(params), [log], 1


@pytest.mark.parametrize(
    ("where", "name"),
    [("params", "mask_choise"), ("output", "maks"), ("input", "brainmask")],
)
def test_a_rule_giving_an_undeclared_name_stops_the_node(dataset, tmp_path, capsys, where, name):
    """A typo in a rule is named, never silently ignored (or turned into a default)."""
    import importlib.util

    from fmriflow.node import run

    spec = importlib.util.spec_from_file_location("mask_node", SCRIPTS / "mask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sub, results = dataset / "sub-01", tmp_path / "results"
    files = {
        "input": {"bold": sub / "bold.nii.gz", "description": dataset / "dataset.json"},
        "output": {
            "mask": results / "mask.nii.gz",
            "matrix": results / "masked.npy",
            "mean": results / "mean.nii.gz",
        },
        "params": {"mask_choice": "epi"},
    }
    files[where] = files[where] | {name: "x"}
    smk = FakeSnakemake(files["input"], files["output"], files["params"], tmp_path / "log")
    with pytest.raises(SystemExit):
        run(module.NODE, smk)
    message = capsys.readouterr().err
    assert f"['{name}'] not declared by the node" in message and "fmriflow mask: error" in message
    assert not results.exists()


def test_a_job_finds_snakemake_through_the_shell_and_dies_with_it(tmp_path):
    """Snakemake runs a job's script under a shell; killed, Snakemake takes the job with it
    (the job's watchdog sees it gone) instead of leaving it running as an orphan."""
    import os
    import signal
    import subprocess
    import sys
    import time

    child = tmp_path / "job.py"
    child.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(SCRIPTS)!r})\n"
        "from fmriflow.node import die_with, snakemake_ancestor\n"
        "pid = snakemake_ancestor()\n"
        f"open({str(tmp_path / 'ancestor')!r}, 'w').write(str(pid))\n"
        f"die_with(pid, lambda: open({str(tmp_path / 'cleaned')!r}, 'w').close(), 0.1)\n"
        "time.sleep(60)\n"
    )
    # A stand-in for Snakemake: a program named snakemake that runs the job in a shell.
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text(
        "import subprocess, sys, time\n"
        f"subprocess.Popen(['/bin/bash', '-c', {sys.executable!r} + ' ' + {str(child)!r}])\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, str(fake)], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ancestor").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert int((tmp_path / "ancestor").read_text()) == parent.pid
        job = [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit() and str(child).encode() in _cmdline(p) and b"bash" not in _cmdline(p)
        ]
        assert len(job) == 1
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{job[0]}") and time.monotonic() < deadline:
            if b"Z" in _state(job[0]):
                break
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{job[0]}") or b"Z" in _state(job[0])
        assert (tmp_path / "cleaned").exists()
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return b"Z"
