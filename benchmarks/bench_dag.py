"""Benchmark: how long Snakemake takes to plan a cohort, and how many SLURM jobs it submits.

What is measured
    For N = 10, 100 and 1,000 subjects per dataset (``--quick``: 10 and 100;
    ``--subjects`` for others), ``config/config.yaml`` with its simulated task
    dataset (``simtask``) and rest dataset (``simrest``) at N subjects each,
    planned in a fresh temporary working directory (no file exists yet, so
    every job is planned) by Snakemake run as a subprocess:

    * ``snakemake -n --quiet`` -- the plan alone: parse the workflow, build
      the DAG of jobs, decide what has to run (``--quiet`` lists nothing).
      Wall time, CPU time and peak resident memory. The issue's target:
      under 30 s for 1,000 + 1,000 subjects.
    * ``snakemake -n --profile profiles/slurm`` -- the same plan with the
      SLURM profile, every job listed: the number of jobs planned (its job
      stats), the group jobs Snakemake forms from the profile's ``groups``
      and ``group-components`` (one "Group job" in the listing each), and
      the submissions: group jobs, plus the jobs outside any group except
      those of local rules (``localrules`` and the target rule ``all``),
      which run where Snakemake runs. A dry-run submits nothing and needs no
      cluster; the groups are formed as in a real run.

How it is measured
    Wall time with ``time.perf_counter`` around the subprocess; CPU time (user
    plus system) of the process from ``os.wait4``, the steadier number on a
    machine shared with other work; peak memory from ``/proc`` every 50 ms:
    the process's own high-water mark (``VmHWM``) plus the resident memory
    of any process it started (none in a dry-run).

Run ``.venv/bin/python benchmarks/bench_dag.py [--quick]``. It prints; it
asserts nothing (``tests/test_workflow.py`` checks the number of jobs
planned for a cohort).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from measuring import print_table, verdict

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CONFIG = REPO / "config" / "config.yaml"
SLURM_PROFILE = REPO / "profiles" / "slurm"
#: The datasets set to N subjects.
DATASETS = ("simtask", "simrest")
#: The issue's target for the plan of 1,000 + 1,000 subjects (seconds).
TARGET_SECONDS = 30.0
TARGET_SUBJECTS = 1000


def snakemake_command():
    """The snakemake executable next to the running Python."""
    candidate = Path(sys.executable).with_name("snakemake")
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "snakemake"]


def cohort_config(n_subjects, path):
    """config/config.yaml with the simulated task and rest datasets at ``n_subjects``."""
    config = yaml.safe_load(CONFIG.read_text())
    for name in DATASETS:
        config["datasets"][name]["simulate"]["n_subjects"] = n_subjects
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def status_kb(pid, key):
    """A ``/proc/<pid>/status`` value in kB (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid):
    """Process ids of every process started by ``pid``, recursively."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    kids = [int(k) for k in children.read().split()]
            except OSError:
                continue
            found += kids
            queue += kids
    return found


def run_measured(command, cwd, log):
    """Run ``command`` (output to the file ``log``); return its exit code, wall and CPU
    seconds and peak memory in bytes."""
    peak_kb = 0
    with open(log, "wb") as sink:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            tree = status_kb(process.pid, "VmHWM")
            tree += sum(status_kb(child, "VmRSS") for child in descendants(process.pid))
            peak_kb = max(peak_kb, tree)
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, seconds, usage.ru_utime + usage.ru_stime, peak_kb * 1024


def local_rules():
    """Rules whose jobs run where Snakemake runs, never submitted: those named in the
    rule files' ``localrules`` directives, and the target rule ``all``."""
    names = {"all"}
    for path in [SNAKEFILE, *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        for block in re.findall(r"^localrules:[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)+)", text, re.M):
            names.update(re.findall(r"\w+", re.sub(r"#.*", "", block)))
    return names


def read_listing(log):
    """From a dry-run's listing: jobs planned, group jobs by name, and the rules of the
    jobs outside any group (a count per rule)."""
    total, groups, ungrouped = None, Counter(), Counter()
    with open(log, errors="replace") as lines:
        for line in lines:
            group = re.search(r"Group job (\S+) \(", line)
            if group:
                groups[group[1]] += 1
                continue
            job = re.match(r"(?:local)?rule (\w+):$", line.rstrip())
            if job:
                ungrouped[job[1]] += 1
                continue
            stats = re.match(r"total\s+(\d+)\s*$", line)
            if stats and total is None:
                total = int(stats[1])
    return total, groups, ungrouped


def dry_run(arguments, config, folder, log):
    """A dry-run of the workflow on ``config`` in a fresh working directory ``folder``."""
    folder.mkdir()
    command = [*snakemake_command(), "-n", *arguments]
    command += ["--directory", str(folder), "--snakefile", str(SNAKEFILE)]
    command += ["--configfile", str(config)]
    code, seconds, cpu, peak = run_measured(command, folder, log)
    if code != 0:
        tail = Path(log).read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(command)} failed (exit {code}):\n{tail}")
    return seconds, cpu, peak


def measure(n_subjects, root, local):
    """The plan and the SLURM dry-run of N + N subjects: one row of the table."""
    folder = Path(root) / f"n{n_subjects}"
    folder.mkdir()
    config = cohort_config(n_subjects, folder / "config.yaml")
    seconds, cpu, peak = dry_run(["--quiet"], config, folder / "plan", folder / "plan.log")
    slurm_log = folder / "slurm.log"
    slurm = dry_run(["--profile", str(SLURM_PROFILE)], config, folder / "slurm", slurm_log)
    jobs, groups, ungrouped = read_listing(slurm_log)
    submitted = sum(n for rule, n in ungrouped.items() if rule not in local)
    submissions = sum(groups.values()) + submitted
    return {
        "subjects": n_subjects,
        "jobs": jobs,
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": peak / 1e6,
        "ms_per_job": 1000 * seconds / jobs,
        "slurm_seconds": slurm[0],
        "group_jobs": sum(groups.values()),
        "ungrouped": submitted,
        "submissions": submissions,
        "jobs_per_submission": jobs / submissions,
        "groups": groups,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 100 subjects only")
    parser.add_argument(
        "--subjects", type=int, nargs="+", help="subjects per dataset (default 10 100 1000)"
    )
    args = parser.parse_args()
    sizes = args.subjects or ([10, 100] if args.quick else [10, 100, 1000])
    local = local_rules()
    datasets = " and ".join(DATASETS)
    print(f"config/config.yaml with {datasets} at N subjects each; {os.cpu_count()} CPUs")
    profile = SLURM_PROFILE.relative_to(REPO)
    print(f"plan: snakemake -n --quiet; SLURM: snakemake -n --profile {profile}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as root:
        for n in sizes:
            rows.append(measure(n, root, local))
            row = rows[-1]
            print(
                f"  N={n}: {row['jobs']} jobs, plan {row['seconds']:.1f} s, "
                f"{row['submissions']} submissions",
                flush=True,
            )
    print()
    print_table(
        rows,
        [
            ("N + N subjects", "subjects", ","),
            ("jobs", "jobs", ","),
            ("plan s", "seconds", ".1f"),
            ("plan CPU s", "cpu", ".1f"),
            ("peak MB", "peak_mb", ",.0f"),
            ("ms/job", "ms_per_job", ".2f"),
            ("SLURM dry-run s", "slurm_seconds", ".1f"),
            ("group jobs", "group_jobs", ","),
            ("other submitted", "ungrouped", ","),
            ("submissions", "submissions", ","),
            ("jobs/submission", "jobs_per_submission", ".1f"),
        ],
    )
    print()
    for row in rows:
        groups = ", ".join(f"{name} {n:,}" for name, n in sorted(row["groups"].items()))
        print(f"group jobs at {row['subjects']:,} + {row['subjects']:,}: {groups}")
    for small, large in zip(rows, rows[1:], strict=False):
        print(
            f"{small['subjects']:,} -> {large['subjects']:,} subjects: jobs x"
            f"{large['jobs'] / small['jobs']:.1f}, plan time x"
            f"{large['seconds'] / small['seconds']:.1f}, peak memory x"
            f"{large['peak_mb'] / small['peak_mb']:.1f}"
        )
    target = [row for row in rows if row["subjects"] == TARGET_SUBJECTS]
    if target:
        row = target[0]
        print(
            f"target: plan of {TARGET_SUBJECTS:,} + {TARGET_SUBJECTS:,} subjects under "
            f"{TARGET_SECONDS:.0f} s: {row['seconds']:.1f} s ({row['cpu']:.1f} s CPU): "
            f"{verdict(row['seconds'] < TARGET_SECONDS)}"
        )
        print(
            f"SLURM: {row['jobs']:,} jobs in {row['submissions']:,} submissions "
            f"({row['jobs_per_submission']:.1f} jobs each)"
        )


if __name__ == "__main__":
    main()
