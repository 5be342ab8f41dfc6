"""What SLURM costs per job: the tiny config run locally and on the test cluster.

    sudo .venv/bin/python benchmarks/bench_slurm.py      (root: installs and starts SLURM)

Starts the single-node cluster of ``tests/cluster/slurm.sh`` (or uses one
already running), runs the tiny config once with ``profiles/local`` and once
with ``profiles/slurm`` filled in for the cluster, and prints the wall times,
the number of SLURM jobs, the mean wait in the queue and the time spent in a
SLURM job outside the rule's own script (from each job's benchmark file).
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster.harness import (  # noqa: E402
    benchmark_seconds,
    jobcomp_records,
    run_local_and_on_slurm,
    slurm_jobs,
    slurm_time,
    started_cluster,
)


def cluster_overhead(runs):
    """Queue waits and in-job overheads of the SLURM run, with the wall times."""
    records = {r["JobId"]: r for r in jobcomp_records(runs.cluster_info.jobcomp, runs.cluster)}
    waits, overheads = [], []
    jobs = slurm_jobs(runs)
    for job_id, job in jobs.items():
        record = records[job_id]
        start, end = slurm_time(record["StartTime"]), slurm_time(record["EndTime"])
        waits.append((start - slurm_time(record["SubmitTime"])).total_seconds())
        inside = sum(benchmark_seconds(runs.cluster, j["benchmark"]) for j in job.inner)
        overheads.append((end - start).total_seconds() - inside)
    return {
        "cluster_start_s": round(runs.cluster_info.start_seconds, 1),
        "local_run_s": round(runs.local_seconds, 1),
        "slurm_run_s": round(runs.cluster_seconds, 1),
        "slurm_jobs": len(overheads),
        "rule_jobs_in_slurm": sum(len(job.inner) for job in jobs.values()),
        "mean_queue_wait_s": round(float(np.mean(waits)), 1),
        "mean_in_job_overhead_s": round(float(np.mean(overheads)), 1),
        "extra_wall_per_slurm_job_s": round(
            (runs.cluster_seconds - runs.local_seconds) / len(overheads), 1
        ),
    }


def main():
    with started_cluster() as cluster, tempfile.TemporaryDirectory() as root:
        runs = run_local_and_on_slurm(cluster, root)
        print(json.dumps(cluster_overhead(runs), indent=1))


if __name__ == "__main__":
    main()
