"""Shared helpers for the test suite."""

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCRIPTS = REPO / "scripts"
TINY_CONFIG = REPO / "tests" / "data" / "tiny.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


def snakemake_command():
    """The snakemake executable next to the running Python."""
    candidate = Path(sys.executable).with_name("snakemake")
    return str(candidate) if candidate.exists() else "snakemake"


def snakemake_arguments(workdir, configfile, *args, snakefile=SNAKEFILE):
    """The command line of the workflow on ``configfile`` (None: the default) in ``workdir``."""
    command = [snakemake_command(), "--snakefile", str(snakefile), "--directory", str(workdir)]
    config = [] if configfile is None else ["--configfile", str(configfile)]
    return [*command, *config, *args]


def run_snakemake(
    workdir, *args, configfile=TINY_CONFIG, timeout=900, env=None, snakefile=SNAKEFILE
):
    """Run the workflow in ``workdir``; return the completed process (never raises)."""
    command = snakemake_arguments(workdir, configfile, *args, snakefile=snakefile)
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_node_script(script, *args, timeout=300):
    """Run a node script standalone with this Python; return the completed process."""
    command = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def write_image(path, data, affine=None, dtype=None, slope=None, inter=None):
    """Write an array as NIfTI, optionally with scaling in the header."""
    data = np.asarray(data if dtype is None else np.asarray(data).astype(dtype))
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    img.header.set_data_dtype(data.dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter or 0.0)
    nib.save(img, path)
    return Path(path)


def simulated_rest_cohort(n_subjects, n_volumes, tr, snr, resolution=6, n_networks=5):
    """Simulated rest subjects on the grey-matter grid, cleaned as the workflow cleans them.

    Detrend, confound regression and z-score per subject (the workflow's
    ``clean_runs``), without the band-pass, which costs seconds per subject
    and does not help recovery here. Returns the cleaned ``(time, voxel)``
    float32 matrices, the planted maps on the grey-matter voxels, the mask
    and the affine.
    """
    from fmriflow import simulate
    from fmriflow.cleaning import clean_runs

    brain, grey, affine = simulate.rest_grid(resolution)
    maps, _ = simulate.network_maps(grey, affine, n_networks, 14.0)
    subjects = []
    for index in range(n_subjects):
        sim = simulate.simulate_rest_subject(index, 1, maps, brain, n_volumes, tr, snr)
        raw = sim.bold[grey].T
        out = np.zeros(raw.shape, dtype=np.float32)
        runs = np.zeros(n_volumes, dtype=int)
        clean_runs(raw, runs, tr, out, confounds=sim.confounds.to_numpy())
        subjects.append(out)
    return {"subjects": subjects, "truth": maps[:, grey], "mask": grey, "affine": affine}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def anisotropic_affine():
    """Haxby's voxel size (3.5 x 3.75 x 3.75 mm) with an offset origin."""
    affine = np.diag([3.5, 3.75, 3.75, 1.0])
    affine[:3, 3] = [-30.0, -40.0, -20.0]
    return affine


def run_workflow(workdir, configfile, *args, env=None):
    """A complete run that must succeed; returns the working directory."""
    result = run_snakemake(workdir, "--cores", "2", *args, configfile=configfile, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def produced_files(workdir):
    """Every file under ``data/`` and ``results/``, relative to the working directory."""
    return sorted(
        str(p.relative_to(workdir))
        for top in ("data", "results")
        for p in (workdir / top).rglob("*")
        if p.is_file()
    )


#: The audit hook of tests/test_outputs.py (imported by every job's Python).
AUDIT = REPO / "tests" / "audit"


def audit_environment(workdir):
    """Environment variables that make every job record the files it touches."""
    path = os.pathsep.join(p for p in (str(AUDIT), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "FMRIFLOW_AUDIT_DIR": str(Path(workdir) / "audit")}


def audit_records(workdir):
    """The audit records of the jobs of a run (see tests/audit/sitecustomize.py)."""
    import json

    return [json.loads(p.read_text()) for p in sorted((Path(workdir) / "audit").glob("*.json"))]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run once for the whole session (read-only for tests), with every
    job's file accesses recorded by the audit hook."""
    workdir = tmp_path_factory.mktemp("tiny")
    # --verbose: the scheduler's resource accounting in .snakemake/log (test_scheduling.py).
    return run_workflow(workdir, TINY_CONFIG, "--verbose", env=audit_environment(workdir))


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The default config (what the README's first command runs), on 2 cores."""
    return run_workflow(tmp_path_factory.mktemp("default"), DEFAULT_CONFIG)
