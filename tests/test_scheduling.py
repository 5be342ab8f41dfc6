"""Snakemake runs at most --cores jobs at once: a lone ready job's cores are taken.

A chain of one-job steps (each the only ready job) then a layer of four
parallel jobs, run with ``--cores 2 --verbose``: the scheduler logs the cores
it believes available before every selection. Without the fix (on an
affected Snakemake) they climb above 2 and the four jobs of the last layer
would run at once; with it they stay within 0..2. The workflow's own
Snakefile applies the fix (its dry-run's selections too).
"""

import re
import subprocess

import pytest

from fmriflow import scheduling

from conftest import REPO, snakemake_command

CHAIN = """
{fix}
rule all:
    input: expand("wide_{{i}}.txt", i=range(4))
rule first:
    output: "step_0.txt"
    shell: "touch {{output}}"
rule step:
    input: lambda w: f"step_{{int(w.i) - 1}}.txt"
    output: "step_{{i,[1-8]}}.txt"
    shell: "touch {{output}}"
rule wide:
    input: "step_8.txt"
    output: "wide_{{i}}.txt"
    shell: "touch {{output}}"
"""

FIX = f"""
import sys
sys.path.insert(0, {str(REPO / "scripts")!r})
from fmriflow.scheduling import count_lone_ready_jobs
count_lone_ready_jobs()
"""


def available_cores(log):
    """The cores the scheduler believed available before each of its selections."""
    return [int(n) for n in re.findall(r"before job selection: \{'_cores': (-?\d+)", log)]


def run_chain(tmp_path, fix):
    tmp_path.mkdir(parents=True)
    (tmp_path / "Snakefile").write_text(CHAIN.format(fix=FIX if fix else ""))
    command = [snakemake_command(), "--cores", "2", "--verbose", "--directory", str(tmp_path)]
    command += ["--snakefile", str(tmp_path / "Snakefile")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return available_cores(result.stderr + result.stdout)


def test_a_chain_of_lone_jobs_leaves_no_phantom_cores(tmp_path):
    from snakemake.scheduling.job_scheduler import JobScheduler

    cores = run_chain(tmp_path / "fixed", fix=True)
    assert cores and max(cores) <= 2 and min(cores) >= 0
    if not scheduling.has_lone_job_leak(JobScheduler):
        pytest.skip("this Snakemake counts lone jobs itself: nothing to compare with")
    unfixed = run_chain(tmp_path / "unfixed", fix=False)
    assert max(unfixed) > 2  # the leak the fix removes


def test_the_workflow_applies_the_fix(tiny_run):
    """The tiny config's run (--cores 2 --verbose): never more than 2 cores available."""
    logs = sorted((tiny_run / ".snakemake" / "log").glob("*.snakemake.log"))
    cores = available_cores(logs[-1].read_text())
    assert cores and max(cores) <= 2 and min(cores) >= 0


def test_applying_it_twice_changes_nothing():
    from snakemake.scheduling.job_scheduler import JobScheduler

    before = JobScheduler.job_selector
    try:
        scheduling.count_lone_ready_jobs()
        applied = JobScheduler.job_selector
        assert scheduling.count_lone_ready_jobs() is False
        assert JobScheduler.job_selector is applied
        assert not scheduling.has_lone_job_leak(JobScheduler)
    finally:
        JobScheduler.job_selector = before  # this test process's scheduler as it was
