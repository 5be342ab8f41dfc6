"""Code style: ruff for the Python, snakefmt for the Snakefile and the rule files."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def tool(name):
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else shutil.which(name)


def run(command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


@pytest.mark.skipif(
    tool("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')"
)
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    result = run([tool("ruff"), *command, "scripts", "tests", "benchmarks"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(tool("snakefmt") is None, reason="snakefmt is not installed")
def test_snakefmt():
    rules = sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))
    result = run([tool("snakefmt"), "--check", "Snakefile", *rules])
    assert result.returncode == 0, result.stdout + result.stderr
