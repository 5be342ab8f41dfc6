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


def snakemake_command():
    """The snakemake executable next to the running Python."""
    candidate = Path(sys.executable).with_name("snakemake")
    return str(candidate) if candidate.exists() else "snakemake"


def run_snakemake(workdir, *args, configfile=TINY_CONFIG, timeout=900, env=None):
    """Run the workflow in ``workdir``; return the completed process (never raises)."""
    command = [
        snakemake_command(),
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def write_image(path, data, affine=None, dtype=None, slope=None, inter=None):
    """Write an array as NIfTI, optionally with scaling in the header."""
    data = np.asarray(data if dtype is None else np.asarray(data).astype(dtype))
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    img.header.set_data_dtype(data.dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter or 0.0)
    nib.save(img, path)
    return Path(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def anisotropic_affine():
    """Haxby's voxel size (3.5 x 3.75 x 3.75 mm) with an offset origin."""
    affine = np.diag([3.5, 3.75, 3.75, 1.0])
    affine[:3, 3] = [-30.0, -40.0, -20.0]
    return affine
