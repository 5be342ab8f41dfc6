"""The workflow on a real single-node SLURM cluster, through profiles/slurm.

The module fixture starts munged, slurmctld and slurmd with
``tests/cluster/slurm.sh`` (installing them with apt when running as root),
runs the tiny config once with ``--profile profiles/local`` as the reference
and once with a copy of ``profiles/slurm`` whose placeholders are filled in for
the local cluster, then stops the daemons it started.

The checks do not name the workflow's rules: the jobs expected are those of a
dry run, and which of them Snakemake ran locally (``localrule``) is read from
its log. Every other job must have been run inside a SLURM job, which is
proven three ways: Snakemake's own submission messages, the SLURM log file of
each job (written by slurmstepd), and the cluster's job completion record.

Without SLURM and no way to install it (not root, or no apt-get), the cluster
tests are skipped, unless ``FMRIFLOW_REQUIRE_SLURM`` is set (as on CI): then
they fail.
"""

import importlib.util
import json
import math
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from cluster.harness import (
    TINY_CONFIG,
    helper,
    job_blocks,
    job_keys,
    jobcomp_records,
    local_cluster_profile,
    megabytes,
    run,
    run_local_and_on_slurm,
    slurm_jobs,
    snakemake,
    snakemake_command,
    started_cluster,
)
from conftest import REPO, SNAKEFILE, produced_files

SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
PLACEHOLDER = "CHANGE-ME"
# Rules that must run where Snakemake runs: downloads (compute nodes often have
# no internet) and reports (small, and they read every result): by name, or by
# being defined in workflow/rules/report.smk.
MUST_BE_LOCAL = re.compile(r"^(download|fetch|report)")


# --- the rules and the profiles, read from the sources -------------------------


def rule_sources():
    return [SNAKEFILE, *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


def declared_rules():
    """Rules by name (with the file defining each) and the rules declared local."""
    rules, local = {}, set()
    for path in rule_sources():
        text = path.read_text()
        blocks = re.split(r"^(?=(?:rule|checkpoint|localrules|use rule)\b)", text, flags=re.M)
        for block in blocks:
            head = re.match(r"(?:rule|checkpoint)\s+(\w+)\s*:|use rule \w+ as (\w+) with:", block)
            if head:
                head = [None, head[1] or head[2]]
                rules[head[1]] = path
                if re.search(r"^\s+localrule:\s*True\b", block, flags=re.M):
                    local.add(head[1])
            elif block.startswith("localrules"):
                body = block.split(":", 1)[1]
                # The directive's own line and the indented lines under it.
                lines = body.splitlines()
                kept = [lines[0]] + [
                    line for line in lines[1:] if line.startswith((" ", "\t")) or not line
                ]
                names = re.sub(r"#.*", "", "\n".join(kept))
                local.update(re.findall(r"\w+", names))
    return rules, local


def slurm_profile():
    return yaml.safe_load(SLURM_PROFILE.read_text())


# --- the cluster ---------------------------------------------------------------


def why_slurm_cannot_run():
    """None if the cluster test can run (possibly after installing), else the reason."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return (
            "Snakemake's slurm executor is not installed "
            "(pip install snakemake-executor-plugin-slurm==2.8.0)"
        )
    check = helper("check")
    if check.returncode == 0:
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return None  # `slurm.sh start` installs it
    missing = re.search(r"missing: (.*)", check.stderr)
    return (
        f"SLURM is not installed (missing: {missing[1] if missing else '?'}) and cannot "
        "be installed here (that needs root and apt-get); install it with "
        "`tests/cluster/slurm.sh install` as root"
    )


@pytest.fixture(scope="module")
def slurm_cluster():
    problem = why_slurm_cannot_run()
    if problem:
        if os.environ.get("FMRIFLOW_REQUIRE_SLURM"):
            pytest.fail(f"FMRIFLOW_REQUIRE_SLURM is set, but {problem}")
        pytest.skip(f"{problem} (set FMRIFLOW_REQUIRE_SLURM=1 to fail instead)")
    with started_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def runs(slurm_cluster, tiny_run, tmp_path_factory):
    """A dry run and a SLURM run of the tiny config, and the session's local run of it
    (``tiny_run``) as the reference."""
    return run_local_and_on_slurm(
        slurm_cluster, tmp_path_factory.mktemp("slurm"), reference=tiny_run
    )


# --- tests on the SLURM run -------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.slurm
def test_every_job_ran_once_in_slurm_or_as_a_local_rule(runs):
    expected = job_blocks(runs.dry)
    total = re.search(r"^total\s+(\d+)\s*$", runs.dry, flags=re.M)
    assert total and int(total[1]) == len(expected), "dry-run job list and stats disagree"

    ran_locally = job_keys(job for job in job_blocks(runs.log) if job["local"])
    in_slurm = Counter()
    for job_id, job in slurm_jobs(runs).items():
        assert job.inner, f"SLURM job {job_id} ran no rule: {job.path}"
        in_slurm += job_keys(job.inner)
    assert in_slurm, "no job ran in SLURM"
    assert in_slurm + ran_locally == job_keys(expected), (
        "jobs of the dry run, jobs run in SLURM and local jobs differ"
    )
    _, declared_local = declared_rules()
    assert not {rule for rule, _ in in_slurm} & declared_local


@pytest.mark.workflow
@pytest.mark.slurm
def test_slurm_records_every_submission_as_completed(runs):
    submitted = dict(
        re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?$", runs.log, re.M)
    )
    logs = slurm_jobs(runs)
    records = jobcomp_records(runs.cluster_info.jobcomp, runs.cluster)
    completed = {r["JobId"] for r in records if r["JobState"] == "COMPLETED"}
    failed = [(r["JobId"], r["JobState"]) for r in records if r["JobState"] != "COMPLETED"]

    assert submitted, "Snakemake submitted nothing"
    assert not failed, f"SLURM jobs that did not complete (retries hide them): {failed}"
    assert set(submitted) == set(logs) == completed
    assert {Path(path) for path in submitted.values()} == {job.path for job in logs.values()}
    assert {r["NodeList"] for r in records} == {"localhost"}
    assert {r["Partition"] for r in records} == {runs.cluster_info.partition}


@pytest.mark.workflow
@pytest.mark.slurm
def test_grouped_rules_share_a_slurm_job(runs):
    groups = slurm_profile().get("groups") or {}
    for job_id, job in slurm_jobs(runs).items():
        kind = job.path.relative_to(runs.slurm_logdir).parts[0]
        rules = {inner["rule"] for inner in job.inner}
        if kind.startswith("group_"):
            assert rules <= set(groups), (job_id, rules)
            assert len({groups[rule] for rule in rules}) == 1, (job_id, rules)
        else:
            assert kind.startswith("rule_") and len(job.inner) == 1, (job_id, kind)
            assert job.inner[0]["rule"] not in groups, (job_id, kind)


@pytest.mark.workflow
@pytest.mark.slurm
def test_no_job_used_more_memory_than_it_requested(runs):
    """What a cluster that holds each job in a memory cgroup would kill.

    A SLURM job of the workflow is two steps: the batch step runs one
    Snakemake process, an srun step a second one and the rule's script (one
    srun step after the other in a group job). The test cluster only kills a
    step above the job's --mem; a cgroup counts the whole job. So the peak of
    the batch step plus the largest other step, polled with sstat during the
    run, must fit in the request.
    """
    records = {r["JobId"]: r for r in jobcomp_records(runs.cluster_info.jobcomp, runs.cluster)}
    over, measured = [], 0
    for job_id, job in slurm_jobs(runs).items():
        requested = megabytes(re.search(r"mem=([\d.]+[KMGT]?)", records[job_id]["Tres"])[1], "M")
        steps = runs.memory.get(job_id, {})
        if "batch" not in steps:
            continue
        measured += 1
        used = steps["batch"] + max((v for k, v in steps.items() if k != "batch"), default=0)
        if used > requested:
            rules = sorted({inner["rule"] for inner in job.inner})
            over.append(f"SLURM job {job_id} {rules}: {used:.0f} MB used > {requested:.0f} MB")
    assert measured >= len(records) / 2, f"sstat measured only {measured} of {len(records)} jobs"
    assert not over, "raise these rules' mem_mb:\n" + "\n".join(over)


@pytest.mark.workflow
@pytest.mark.slurm
def test_results_equal_those_of_a_local_run(runs):
    import nibabel as nib

    if not runs.same_checkout:
        pytest.skip("the checkout changed between the local and the SLURM run")
    files = produced_files(runs.local)
    assert files == produced_files(runs.cluster)
    kinds = Counter()
    for name in files:
        ours, theirs = runs.cluster / name, runs.local / name
        if name.endswith(".npy"):
            a, b = np.load(ours), np.load(theirs)
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert a.tobytes() == b.tobytes(), f"{name} differs"
            kinds["npy"] += 1
        elif name.endswith((".nii", ".nii.gz")):
            a, b = nib.load(ours), nib.load(theirs)
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj), name)
            assert a.get_data_dtype() == b.get_data_dtype(), name
            np.testing.assert_array_equal(a.affine, b.affine, name)
            kinds["nifti"] += 1
        elif name.endswith(".json"):
            assert json.loads(ours.read_text()) == json.loads(theirs.read_text()), name
            kinds["json"] += 1
        elif name.endswith((".tsv", ".csv", ".txt")):
            assert ours.read_text() == theirs.read_text(), f"{name} differs"
            kinds["table"] += 1
        else:
            assert ours.read_bytes() == theirs.read_bytes(), f"{name} differs"
            kinds["other"] += 1
    assert kinds["npy"] and kinds["nifti"] and kinds["table"], kinds


@pytest.mark.workflow
@pytest.mark.slurm
def test_a_searchlight_split_by_run_time_runs_its_plan_and_parts_on_slurm(
    slurm_cluster, tiny_run, tmp_path
):
    """chunk_minutes on the cluster: the plan (a checkpoint) is a SLURM job, Snakemake
    re-plans after it and submits the parts it chose in bundles of their own; the
    gathered maps are the tiny run's (chunks: 3), as the local test of chunk_minutes
    checks as well.

    Upstream data and preprocessing are the tiny run's, copied with their times, so
    that only the searchlight's own jobs run (checked on the SLURM logs).
    """
    import nibabel as nib

    folder = "results/simtask/sub-01/searchlight/fh_gnb"
    workdir = tmp_path / "work"
    for tree in ("data", "results"):
        shutil.copytree(tiny_run / tree, workdir / tree)
    shutil.rmtree(workdir / folder)
    config = yaml.safe_load(TINY_CONFIG.read_text())
    entry = next(e for e in config["searchlight"] if e["name"] == "fh_gnb")
    del entry["chunks"]
    entry["chunk_minutes"] = 0.0002  # 0.012 s per part: more parts than one bundle holds
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    logdir = tmp_path / "slurm-logs"
    profile = local_cluster_profile(tmp_path / "profile", slurm_cluster.partition, logdir)
    maps = ("accuracy.nii.gz", "pvalues.nii.gz", "null.nii.gz")
    command = [snakemake_command(), "--snakefile", SNAKEFILE, "--directory", workdir]
    command += ["--configfile", tmp_path / "config.yaml", "--profile", profile]
    command += [f"{folder}/{name}" for name in maps]
    result, _ = run(command, timeout=900, cwd=workdir, env=slurm_cluster.env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]

    plan = json.loads((workdir / folder / "plan.json").read_text())
    assert plan["n_parts"] > 1
    assert len(list((workdir / folder / "parts").glob("part-*.npz"))) == plan["n_parts"]
    # Each SLURM job's log lists the rules Snakemake ran inside it: the plan in a job of
    # its own, the parts in bundles of their own (so that they spread over the nodes).
    inside = {
        path: job_keys(job for job in job_blocks(path.read_text()) if job["local"])
        for path in logdir.rglob("*.log")
    }
    ran = Counter()
    for keys in inside.values():
        ran.update(rule for rule, _ in keys.elements())
    assert ran == {
        "searchlight_plan": 1,
        "searchlight_part": plan["n_parts"],
        "searchlight_permutations": 1,
    }
    rules_of = [{rule for rule, _ in keys} for keys in inside.values()]
    assert rules_of.count({"searchlight_plan"}) == 1
    bundles = [rules for rules in rules_of if "searchlight_part" in rules]
    assert all(rules == {"searchlight_part"} for rules in bundles)
    profile_groups = slurm_profile()
    size = profile_groups["group-components"][profile_groups["groups"]["searchlight_part"]]
    assert len(bundles) == math.ceil(plan["n_parts"] / size) > 1
    records = jobcomp_records(slurm_cluster.jobcomp, workdir)
    assert len(records) == len(inside) == len(bundles) + 2
    assert {r["JobState"] for r in records} == {"COMPLETED"}
    for name in maps:
        np.testing.assert_array_equal(
            nib.load(workdir / folder / name).get_fdata(),
            nib.load(tiny_run / folder / name).get_fdata(),
        )


# --- tests of the profiles and rules, without a cluster ------------------------------


def test_slurm_profile_marks_every_site_specific_value():
    config = slurm_profile()
    assert config["executor"] == "slurm"
    resources = config["default-resources"]
    marked = {key for key, value in resources.items() if PLACEHOLDER in str(value)}
    assert marked == {"slurm_partition", "slurm_account"}
    assert PLACEHOLDER not in yaml.safe_dump(
        {k: v for k, v in config.items() if k != "default-resources"}
    )
    for key in ("jobs", "retries", "latency-wait", "slurm-logdir"):
        assert key in config, key
    # A retry must ask for more memory than the failed attempt.
    assert "attempt" in str(resources["mem_mb"])


def test_grouped_rules_exist_and_are_not_local():
    """A grouped rule is always submitted, even if listed in localrules."""
    rules, local = declared_rules()
    groups = slurm_profile().get("groups") or {}
    unknown = set(groups) - set(rules)
    assert not unknown, f"profile groups name unknown rules: {unknown}"
    assert not set(groups) & local, "a localrule in a group would be submitted to SLURM"


def test_every_acquisition_of_a_subject_is_in_the_acquire_group():
    """A subject's acquisition jobs are bundled (one submission for several subjects)."""
    text = (REPO / "workflow" / "rules" / "acquire.smk").read_text()
    blocks = re.split(r"^(?=(?:rule|checkpoint|localrules|use rule)\b)", text, flags=re.M)
    per_subject = set()
    for block in blocks:
        head = re.match(r"rule\s+(\w+)\s*:|use rule \w+ as (\w+) with:", block)
        if head and "sub-{subject}" in block:
            per_subject.add(head[1] or head[2])
    assert {"import_local", "import_local_with_confounds", "simulate_subject"} <= per_subject
    groups = slurm_profile().get("groups") or {}
    assert {rule: groups.get(rule) for rule in per_subject} == dict.fromkeys(
        per_subject, "acquire"
    )


def test_download_and_report_rules_are_local():
    rules, local = declared_rules()
    assert "download" in rules
    must = {
        rule for rule, path in rules.items() if MUST_BE_LOCAL.match(rule) or path.stem == "report"
    }
    assert must <= local, f"not in localrules: {sorted(must - local)}"


def test_rules_request_more_memory_on_a_retry():
    """Submitted rules' mem_mb grows with the attempt: a retry after an OOM kill can succeed."""
    _, local = declared_rules()
    fixed = []
    for path in rule_sources():
        for block in re.split(r"^(?=rule\s)", path.read_text(), flags=re.M):
            head = re.match(r"rule\s+(\w+)\s*:", block)
            memory = re.search(r"^\s+mem_mb\s*=\s*(\d+)\s*,?\s*$", block, flags=re.M)
            if head and memory and head[1] not in local:
                fixed.append(f"{head[1]} (mem_mb={memory[1]})")
    assert not fixed, f"constant mem_mb, not scaled by attempt: {fixed}"


@pytest.mark.workflow
@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profiles_plan_the_workflow(tmp_path, profile):
    if profile == "slurm" and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")
    result, _ = snakemake(
        tmp_path, "--profile", REPO / "profiles" / profile, "--dry-run", env=None, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Job stats" in result.stdout + result.stderr
