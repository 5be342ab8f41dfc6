"""Write a copy of profiles/slurm filled in for the local test cluster.

    .venv/bin/python tests/cluster/profile.py OUTDIR [--partition debug] [--slurm-logdir DIR]

The project's profile leaves the site-specific values (partition, account)
as ``CHANGE-ME`` placeholders. The test cluster of ``tests/cluster/slurm.sh``
has one partition, no accounts and no accounting database (so no ``sacct``):
this fills in the partition, submits without an account, asks ``squeue`` for
job states, checks job states 2 s after submission instead of the profile's
20 s, and caps the cores of a group job at the node's (the profile's are a
compute node's; a wider group job would never start). Everything else
(resources, retries, groups, logs) is the project's profile as it is, so a run
with the copy tests the real profile.
"""

import argparse
import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
PLACEHOLDER = "CHANGE-ME"


def local_cluster_profile(outdir, partition="debug", slurm_logdir=None, source=PROFILE):
    """Write ``outdir/config.yaml``; return ``outdir``."""
    config = yaml.safe_load(Path(source).read_text())
    resources = config["default-resources"]
    resources["slurm_partition"] = partition
    # No accounting database, hence no accounts to give or validate.
    resources.pop("slurm_account", None)
    config["slurm-no-account"] = True
    # No slurmdbd, hence no sacct: squeue lists finished jobs for MinJobAge
    # (1 h on the test cluster, at least 3x the delay below as the plugin requires).
    config["slurm-status-command"] = "squeue"
    config["slurm-init-seconds-before-status-checks"] = 2
    # The single node has this machine's CPUs (tests/cluster/slurm.sh).
    if "cores" in config:
        config["cores"] = min(int(config["cores"]), os.cpu_count() or 1)
    if slurm_logdir is not None:
        config["slurm-logdir"] = str(slurm_logdir)
    text = yaml.safe_dump(config, sort_keys=False)
    if PLACEHOLDER in text:
        raise ValueError(f"{source} has a {PLACEHOLDER} value this script does not fill in")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    header = f"# Written by tests/cluster/profile.py from {source}: do not edit.\n"
    (outdir / "config.yaml").write_text(header + text)
    return outdir


def main():
    """Command line: write the profile and print its directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--slurm-logdir", default=None)
    args = parser.parse_args()
    print(local_cluster_profile(args.outdir, args.partition, args.slurm_logdir))


if __name__ == "__main__":
    main()
