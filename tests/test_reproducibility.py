"""Re-runs: determinism, incremental re-execution, faults, provenance.

The determinism test runs the tiny config (``tests/data/tiny.yaml``, which
has every rule of the workflow) twice from scratch, on 2 cores and on 1
core, and compares every produced file byte for byte. (The default config
ran twice took a third of the CI's time; its single run is checked against
the simulator's ground truth by the other test modules.)
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import (
    DEFAULT_CONFIG,
    REPO,
    TINY_CONFIG,
    produced_files,
    run_snakemake,
    run_workflow,
    snakemake_arguments,
)

pytestmark = pytest.mark.workflow


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_fresh_runs_are_identical_whatever_the_cores(tiny_run, tmp_path):
    """Arrays, tables, images and figures of every rule: the same bytes on 1 core as on 2."""
    single = run_workflow(tmp_path / "single", TINY_CONFIG, "--cores", "1")
    different = [
        name
        for name in produced_files(tiny_run)
        if digest(tiny_run / name) != digest(single / name)
    ]
    assert produced_files(single) == produced_files(tiny_run)
    assert different == []


def planned_jobs(output):
    """(rule, wildcards) of every job a dry run plans."""
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\n)", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.MULTILINE)
        if rule:
            wildcards = re.search(r"^\s*wildcards: (.*)$", block, flags=re.MULTILINE)
            jobs.append((rule.group(1), wildcards.group(1) if wildcards else ""))
    return sorted(jobs)


def test_nothing_to_do_after_a_run_whatever_the_execution_settings(default_run):
    for args in (
        ["--cores", "2"],
        ["--cores", "1"],
        ["--cores", "2", "--profile", "profiles/local"],
    ):
        if "--profile" in args and not (REPO / "profiles" / "local").exists():
            continue
        result = run_snakemake(default_run, "--dry-run", *args, configfile=DEFAULT_CONFIG)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Nothing to be done" in result.stdout + result.stderr, args


def test_changing_one_analysis_reruns_only_what_depends_on_it(default_run, tmp_path):
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    changed = next(a for a in config["decoding"] if a["name"] == "face_vs_cat")
    changed["classifier"] = "ridge"
    configfile = tmp_path / "changed.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = run_snakemake(default_run, "--dry-run", configfile=configfile)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result.stdout)
    subjects = [f"sub-{s}" for s in ("01", "02", "03")]
    expected = sorted(
        [("decode", f"dataset=simtask, subject={s[4:]}, analysis=face_vs_cat") for s in subjects]
        + [("decode_group", "dataset=simtask, analysis=face_vs_cat"), ("all", "")]
        # The provenance table reads every result's sidecar, so it follows.
        + [("provenance_table", "")]
    )
    assert jobs == expected


@pytest.mark.parametrize(
    "deleted",
    [
        # Read by no other job: only the target asks for it.
        "results/simtask/sub-01/decoding/face_vs_house/weights.png",
        # Left out of the target: only the provenance table asks for it.
        "results/simtask/sub-01/decoding/face_vs_house/decode.provenance.json",
    ],
)
def test_a_deleted_output_is_made_again(tiny_run, tmp_path, deleted):
    """Snakemake remakes a missing file only if some job or the target asks for it."""
    import shutil

    for tree in ("data", "results"):
        shutil.copytree(tiny_run / tree, tmp_path / tree)
    (tmp_path / deleted).unlink()
    result = run_snakemake(tmp_path, "--dry-run", configfile=TINY_CONFIG)
    assert result.returncode == 0, result.stderr[-2000:]
    decode = ("decode", "dataset=simtask, subject=01, analysis=face_vs_house")
    assert decode in planned_jobs(result.stdout)


def run_until_mid_write(workdir, configfile, timeout=300):
    """Start the workflow and SIGKILL it (and its jobs) while a job is writing an output."""
    process = subprocess.Popen(
        snakemake_arguments(workdir, configfile, "--cores", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            writing = (
                list((workdir / "results").rglob(".tmp-*"))
                if (workdir / "results").exists()
                else []
            )
            if writing:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return writing
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    pytest.fail("the workflow finished before any job was caught writing")


def readable(path):
    """Whether a file is complete enough for its reader (or raise)."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    if suffix == ".npy":
        np.load(path)
    elif suffix == ".nii.gz":
        nib.load(path).get_fdata()
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".tsv":
        pd.read_csv(path, sep="\t")
    return True


def test_a_job_killed_mid_write_leaves_nothing_mistaken_for_complete(tiny_run, tmp_path):
    workdir = tmp_path / "killed"
    workdir.mkdir()
    caught = run_until_mid_write(workdir, TINY_CONFIG)
    assert caught
    # Nothing under a final name is partial: every file there reads completely
    # (the hidden temporary files of the jobs killed mid-write are not final names).
    for name in produced_files(workdir):
        if not Path(name).name.startswith(".tmp-"):
            assert readable(workdir / name), name
    # The next run finishes (Snakemake asks to unlock after a killed run; the jobs it
    # had marked incomplete are re-run by the workflow's default profile, so the plain
    # command works) and gives the clean run's bytes.
    assert run_snakemake(workdir, "--unlock", configfile=TINY_CONFIG).returncode == 0
    result = run_snakemake(workdir, "--cores", "2", configfile=TINY_CONFIG)
    assert result.returncode == 0, result.stderr[-3000:]
    assert produced_files(workdir) == produced_files(tiny_run)
    assert not list(workdir.rglob(".tmp-*")), "stale temporary files were not cleaned up"
    different = [
        n for n in produced_files(tiny_run) if digest(workdir / n) != digest(tiny_run / n)
    ]
    assert different == []


def test_every_result_has_provenance(tiny_run):
    sidecars = list(tiny_run.rglob("*.provenance.json"))
    covered = {}
    for sidecar in sidecars:
        record = json.loads(sidecar.read_text())
        assert (
            record["workflow"]["git_commit"] is None or len(record["workflow"]["git_commit"]) == 40
        )
        assert {"numpy", "scikit-learn", "nilearn", "python"} <= set(record["versions"])
        for paths in record["inputs"].values():
            for path, sha in paths.items():
                if (tiny_run / path).is_file():
                    assert sha == digest(tiny_run / path), (sidecar, path)
        for paths in record["outputs"].values():
            for path, sha in paths.items():
                covered[path] = sha
    for name in produced_files(tiny_run):
        # Snakemake marks a finished directory output with an empty timestamp file.
        if not name.endswith((".provenance.json", ".snakemake_timestamp")):
            assert covered.get(name) == digest(tiny_run / name), name
    simulate = json.loads(
        (tiny_run / "data" / "simtask" / "sub-01" / "simulate_subject.provenance.json").read_text()
    )
    assert simulate["params"]["subject"] == "01"
    decode = json.loads(
        (
            tiny_run / "results" / "simtask" / "sub-01" / "decoding" / "face_vs_house"
            / "decode.provenance.json"
        ).read_text()
    )  # fmt: skip
    assert decode["seeds"] == {"analysis.seed": 0}


def test_conda_environment_pins_the_versions_of_pyproject():
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {}
    for requirement in pyproject["project"]["dependencies"]:
        name, version = requirement.split("==")
        pins[name.lower()] = version
    conda_names = {"matplotlib-base": "matplotlib"}
    environments = sorted((REPO / "envs").glob("*.yaml"))
    assert environments
    for path in environments:
        env = yaml.safe_load(path.read_text())
        for dependency in env["dependencies"]:
            name, _, version = dependency.partition("=")
            name = conda_names.get(name, name)
            if name == "python":
                assert pyproject["project"]["requires-python"].startswith(f">={version}"), path
            else:
                assert pins.get(name) == version, (path.name, name, version, pins.get(name))
    used = set()
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        used |= set(re.findall(r'"\.\./\.\./envs/(\w+)\.yaml"', rules.read_text()))
    assert used == {p.stem for p in environments}


def test_jobs_run_and_credit_the_workflows_own_library(tmp_path):
    """Another fmriflow earlier on the Python path (an editable install of another clone,
    a PYTHONPATH) is not the code that runs the jobs or that the provenance credits."""
    impostor = tmp_path / "other" / "fmriflow"
    impostor.mkdir(parents=True)
    (impostor / "__init__.py").write_text("raise ImportError('the other clone of fmriflow')\n")
    workdir = tmp_path / "work"
    target = "data/simtask/dataset.json"
    result = run_snakemake(
        workdir,
        "--cores",
        "1",
        target,
        configfile=TINY_CONFIG,
        env={"PYTHONPATH": str(impostor.parent)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(
        (workdir / "data" / "simtask" / "simulate_dataset.provenance.json").read_text()
    )
    assert record["workflow"]["library"] == str(REPO / "scripts" / "fmriflow")


def test_no_commit_is_credited_outside_the_workflows_own_checkout(tmp_path):
    """An unpacked archive inside some other git repository has no commit of its own."""
    from fmriflow.provenance import workflow_commit

    repository = tmp_path / "home"
    (repository / "fmriflow-1.0").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    (repository / "notes.txt").write_text("x")
    git = ["git", "-C", str(repository), "-c", "user.name=a", "-c", "user.email=a@b"]
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "notes"], check=True)
    assert workflow_commit(repository / "fmriflow-1.0") == {"git_commit": None, "git_dirty": None}
    top = workflow_commit(repository)
    assert len(top["git_commit"]) == 40 and top["git_dirty"] is False


def test_recorded_versions_are_those_of_the_installed_distributions(tmp_path):
    from importlib import metadata

    from fmriflow import provenance

    versions = provenance.package_versions()
    for name in provenance.PACKAGES:
        assert versions[name] == metadata.version(name), name
    # Folder names are normalised, and the first folder on the path wins.
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "Scikit_Learn-1.2.3.dist-info").mkdir(parents=True)
    (second / "scikit_learn-9.9.dist-info").mkdir(parents=True)
    (second / "not_a_dist.dist-info").mkdir()
    found = provenance.installed_versions([str(first), str(second), str(tmp_path / "missing")])
    assert found == {"scikit-learn": "1.2.3"}
