"""Running the workflow on the test cluster of ``slurm.sh``, and reading what happened.

Shared by ``tests/test_slurm.py`` (the checks) and
``benchmarks/bench_slurm.py`` (what SLURM costs per job): start the
cluster, run the tiny config locally and through ``profiles/slurm``, and read
Snakemake's logs, the SLURM job logs and the cluster's job completion record.
"""

import importlib.util
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
TINY_CONFIG = REPO / "tests" / "data" / "tiny.yaml"
HELPER = REPO / "tests" / "cluster" / "slurm.sh"
PROFILE_WRITER = REPO / "tests" / "cluster" / "profile.py"
LOCAL_PROFILE = REPO / "profiles" / "local" / "config.yaml"


def snakemake_command():
    """The snakemake executable next to the running Python."""
    import sys

    candidate = Path(sys.executable).with_name("snakemake")
    return str(candidate) if candidate.exists() else "snakemake"


JOB_HEADER = re.compile(r"^\s*(local)?(?:rule|checkpoint) (\w+):\s*$")
JOB_FIELD = re.compile(r"^\s+(wildcards|benchmark): (.*)$")


def run(command, timeout, cwd=None, env=None):
    """Run a command in its own process group; on timeout kill that group.

    Returns (completed process, seconds). Output is captured as text.
    """
    start = time.monotonic()
    process = subprocess.Popen(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        raise TimeoutError(f"timed out after {timeout} s: {command}\n{stderr[-3000:]}") from None
    completed = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return completed, time.monotonic() - start


def helper(*args, env=None, timeout=600):
    completed, _ = run(["bash", HELPER, *args], timeout=timeout, env=env)
    return completed


def snakemake(workdir, *args, env, timeout):
    """Snakemake on the tiny config, started from ``workdir``."""
    command = [snakemake_command(), "--snakefile", SNAKEFILE, "--directory", workdir]
    command += ["--configfile", TINY_CONFIG, *args]
    return run(command, timeout=timeout, cwd=workdir, env=env)


def job_blocks(text):
    """The jobs a Snakemake log describes: dicts of rule, local, wildcards, benchmark."""
    jobs, current = [], None
    for line in text.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            current = {"local": bool(header[1]), "rule": header[2], "wildcards": ""}
            current["benchmark"] = None
            jobs.append(current)
            continue
        field = JOB_FIELD.match(line)
        if field and current is not None:
            current[field[1]] = field[2].strip()
        elif not line.startswith(" "):
            current = None
    return jobs


def job_keys(jobs):
    return Counter((job["rule"], job["wildcards"]) for job in jobs)


def jobcomp_records(path, workdir):
    """Finished jobs of the job completion log whose working directory is ``workdir``."""
    records, workdir = [], os.path.realpath(workdir)
    for line in Path(path).read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == workdir:
            records.append(fields)
    return records


def megabytes(text, default_unit="K"):
    """SLURM's memory notation (e.g. ``208356K``, ``2000M``, ``1.5G``) in MB."""
    unit = text[-1] if text[-1] in "KMGT" else default_unit
    number = float(text.rstrip("KMGT") or 0)
    return number * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit]


class MemoryPoller(threading.Thread):
    """Peak memory (MB) of every step of the running jobs, by ``sstat``, once a second."""

    def __init__(self, env):
        super().__init__(daemon=True)
        self.env, self.done, self.peaks = env, threading.Event(), {}

    def query(self, *command):
        completed = subprocess.run(command, capture_output=True, text=True, env=self.env)
        return completed.stdout.split()

    def run(self):
        while not self.done.wait(1):
            for job_id in self.query("squeue", "-h", "-t", "R", "-o", "%i"):
                format_ = "--format=JobID,MaxRSS"
                for row in self.query("sstat", "-a", "-n", "-P", "-j", job_id, format_):
                    step, _, rss = row.partition("|")
                    job, _, name = step.partition(".")
                    if rss and name:
                        steps = self.peaks.setdefault(job, {})
                        steps[name] = max(steps.get(name, 0), megabytes(rss))

    def stop(self):
        self.done.set()
        self.join()
        return self.peaks


def slurm_time(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")


def benchmark_seconds(workdir, path):
    if not path:
        return 0.0
    rows = (Path(workdir) / path).read_text().splitlines()
    return float(rows[-1].split("\t")[0])


def local_cluster_profile(*args, **kwargs):
    """tests/cluster/profile.py: profiles/slurm filled in for the test cluster."""
    spec = importlib.util.spec_from_file_location("fmriflow_cluster_profile", PROFILE_WRITER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.local_cluster_profile(*args, **kwargs)


def cluster_environment():
    """os.environ plus what SLURM clients need to find the test cluster."""
    exports = helper("env").stdout
    completed = subprocess.run(
        ["bash", "-c", f"{exports}\nexec env -0"], capture_output=True, check=True
    )
    pairs = (item.split(b"=", 1) for item in completed.stdout.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode() for key, value in pairs}


def checkout_state():
    """The commit and the tracked changes of the checkout the rules run from."""

    def git(*args):
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True).stdout

    return git("rev-parse", "HEAD") + git("diff", "HEAD")


def slurm_jobs(runs):
    """Per SLURM job id: its log file and the jobs Snakemake ran inside it."""
    jobs = {}
    for path in sorted(Path(runs.slurm_logdir).rglob("*.log")):
        inner = [job for job in job_blocks(path.read_text()) if job["local"]]
        jobs[path.stem] = SimpleNamespace(path=path, inner=inner)
    return jobs


@contextmanager
def started_cluster():
    """The test cluster, started (and afterwards stopped) unless it was already running.

    Yields
    ------
    types.SimpleNamespace
        ``env`` (the environment SLURM clients need), ``jobcomp`` (the job
        completion log), ``partition`` and ``start_seconds``.
    """
    env = cluster_environment()
    # Someone's running cluster is used as it is, and left running.
    started_here = helper("status", env=env).returncode != 0
    started = time.monotonic()
    result = helper("start", env=env, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"could not start SLURM:\n{result.stderr[-5000:]}")
    start_seconds = time.monotonic() - started
    try:
        config = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, env=env, check=True
        ).stdout
        jobcomp = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, flags=re.M)[1]
        partitions = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, env=env, check=True
        ).stdout.split()
        default = [p.rstrip("*") for p in partitions if p.endswith("*")] or partitions
        yield SimpleNamespace(
            env=env, jobcomp=jobcomp, partition=default[0], start_seconds=start_seconds
        )
    finally:
        if started_here:
            stopped = helper("stop", env=env)
            if stopped.returncode != 0:
                raise RuntimeError(stopped.stderr)


def run_local_and_on_slurm(cluster_info, root, reference=None):
    """A dry run, a local reference run and a SLURM run of the tiny config, in ``root``.

    ``reference``: the working directory of a local run of the tiny config made
    already (the test session's), used instead of running it again.
    """
    env = cluster_info.env
    local, cluster = Path(root) / "local", Path(root) / "cluster"
    cluster.mkdir(parents=True)
    profile = local_cluster_profile(
        Path(root) / "profile", cluster_info.partition, cluster / "logs" / "slurm"
    )
    checkout = checkout_state()
    dry, _ = snakemake(cluster, "--profile", profile, "--dry-run", env=env, timeout=300)
    if dry.returncode != 0:
        raise RuntimeError(dry.stderr[-3000:])
    if reference is None:
        local.mkdir(parents=True)
        completed, local_seconds = snakemake(
            local, "--profile", LOCAL_PROFILE.parent, "--cores", "2", env=env, timeout=900
        )
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr[-3000:])
    else:
        local, local_seconds = Path(reference), None
    poller = MemoryPoller(env)
    poller.start()
    try:
        result, cluster_seconds = snakemake(cluster, "--profile", profile, env=env, timeout=1800)
    finally:
        memory = poller.stop()
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(log[-5000:])
    return SimpleNamespace(
        dry=dry.stdout + dry.stderr,
        log=log,
        local=local,
        cluster=cluster,
        slurm_logdir=cluster / "logs" / "slurm",
        local_seconds=local_seconds,
        cluster_seconds=cluster_seconds,
        memory=memory,
        same_checkout=checkout_state() == checkout,
        cluster_info=cluster_info,
    )
