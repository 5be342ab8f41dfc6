"""The files a run writes are exactly what the rules declare and the README lists.

Nothing here is a hand-kept list of files:

* every job writes a provenance sidecar listing its outputs, and the
  provenance table (``results/provenance.tsv``) reads the sidecar of every
  job the config asks for (``rule_jobs`` in ``workflow/rules/common.smk``):
  so the files on disk must be exactly the files of the table, plus the
  sidecars themselves;
* every file a job opens, renames or removes under ``data/`` or
  ``results/`` is one of its declared inputs or outputs (an audit hook,
  ``tests/audit/sitecustomize.py``, records them in every job of the tiny
  run), and the audit catches a rule that stops declaring a file its node
  still reads;
* the README's outputs section lists exactly the output patterns of the
  rules.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, audit_environment, audit_records, produced_files, run_snakemake

pytestmark = pytest.mark.workflow

#: Snakemake's own marker of a finished directory output.
TIMESTAMP = ".snakemake_timestamp"
TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{12}-")


def promised_files(workdir):
    """The files of the provenance table, the sidecars and the table itself."""
    table = pd.read_csv(workdir / "results" / "provenance.tsv", sep="\t")
    sidecars = {str(p.relative_to(workdir)) for p in workdir.rglob("*.provenance.json")}
    return sorted(set(table["file"]) | sidecars | {"results/provenance.tsv"})


def check_written_equals_promised(workdir):
    written = [name for name in produced_files(workdir) if not name.endswith(TIMESTAMP)]
    assert written == promised_files(workdir)


def test_the_tiny_run_writes_exactly_what_its_jobs_promise(tiny_run):
    check_written_equals_promised(tiny_run)


def test_the_default_run_writes_exactly_what_its_jobs_promise(default_run):
    check_written_equals_promised(default_run)


def test_the_provenance_table_reads_the_sidecar_of_every_job(tiny_run):
    table = json.loads((tiny_run / "results" / "provenance_table.provenance.json").read_text())
    read = set(table["inputs"]["sidecars"])
    on_disk = {str(p.relative_to(tiny_run)) for p in tiny_run.rglob("*.provenance.json")}
    assert read == on_disk - {"results/provenance_table.provenance.json"}


# --- the audit of every job's file accesses ----------------------------------------


def undeclared_accesses(record):
    """(kind, path) of the accesses under data/ or results/ that a job did not declare."""
    cwd = Path(record["cwd"])
    declared = {(cwd / path).resolve() for path in record["input"] + record["output"]}
    folders = [(cwd / path).resolve() for path in record["output"] if (cwd / path).is_dir()]
    undeclared = set()
    for kind, path in record["touched"]:
        path = Path(path)
        if not path.is_relative_to(cwd) or path.relative_to(cwd).parts[0] not in (
            "data",
            "results",
        ):
            continue
        # An atomic writer's temporary file stands for the output it becomes.
        meant = path.parent.resolve() / TEMPORARY.sub("", path.name)
        if meant in declared or any(meant.is_relative_to(folder) for folder in folders):
            continue
        undeclared.add((kind, str(path.relative_to(cwd))))
    return sorted(undeclared)


def test_every_file_a_job_touches_is_declared(tiny_run):
    records = audit_records(tiny_run)
    # One record per job of the run (the target rule 'all' runs no script).
    jobs = json.loads((tiny_run / "results" / "provenance_table.provenance.json").read_text())
    assert len(records) == len(jobs["inputs"]["sidecars"]) + 1
    touched = sum(len(r["touched"]) for r in records)
    assert touched > 10 * len(records), "the audit hook recorded (almost) nothing"
    problems = {
        f"{r['rule']} {r['wildcards']}": undeclared_accesses(r)
        for r in records
        if undeclared_accesses(r)
    }
    assert problems == {}


MUTATED_CONFIG = """\
datasets:
  simrest:
    source: simulate
    simulate: {kind: rest, seed: 1, n_subjects: 1, rest: {resolution: 8, n_volumes: 20}}
    preprocess: {mask: mni_gm}
"""


def test_the_audit_catches_a_rule_that_stops_declaring_what_its_node_reads(tmp_path):
    """Remove the clean rule's confounds input, and have the node find the file as the
    old code did (next to the events): the audit names that file and that job."""
    copy = tmp_path / "workflow"
    tracked = subprocess.run(
        ["git", "-C", REPO, "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in tracked:
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    common = copy / "workflow" / "rules" / "common.smk"
    declared = '        files["confounds_table"] = subject_path(wildcards, "confounds.tsv")\n'
    assert declared in common.read_text()
    common.write_text(common.read_text().replace(declared, "        pass\n"))
    node = copy / "scripts" / "clean.py"
    read = 'inputs.get("confounds_table")'
    assert read in node.read_text()
    node.write_text(
        node.read_text().replace(read, 'str(Path(inputs.events).parent / "confounds.tsv")')
    )
    node.write_text("from pathlib import Path\n" + node.read_text())
    config = tmp_path / "config.yaml"
    config.write_text(MUTATED_CONFIG)
    workdir = tmp_path / "run"
    result = run_snakemake(
        workdir,
        "--cores",
        "2",
        "results/simrest/sub-01/clean.npy",
        configfile=config,
        snakefile=copy / "Snakefile",
        env=audit_environment(workdir),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    clean = [r for r in audit_records(workdir) if r["rule"] == "clean"]
    assert [undeclared_accesses(r) for r in clean] == [
        [("read", "data/simrest/sub-01/confounds.tsv")]
    ]


# --- the README ----------------------------------------------------------------------


def readme_outputs():
    """The paths of the README's outputs section (a nested listing of folders and files)."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Outputs", 1)[1].split("```", 2)[1]
    paths, folders = set(), []
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent >= 24:  # the continuation of a description
            continue
        entry = re.split(r"\s{2,}", line.strip())[0]
        folders = [(i, f) for i, f in folders if i < indent]
        prefix = "".join(f for _, f in folders)
        if entry.endswith("/"):
            folders.append((indent, entry))
            continue
        for name in entry.split(", "):
            paths.add(prefix + name)
    return {p for p in paths if p.startswith(("data/", "results/"))}


def rule_outputs():
    """The output patterns of every rule (from the rule files' ``output:`` sections)."""
    patterns = set()
    section = re.compile(r"^    output:\n((?:        .*\n)+)", re.M)
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for outputs in section.findall(path.read_text()):
            patterns |= set(re.findall(r'"((?:data|results)/[^"]+)"', outputs))
    return patterns


def test_the_readme_lists_exactly_the_outputs_of_the_rules():
    sidecars = {p for p in rule_outputs() if p.endswith(".provenance.json")}
    assert sidecars, "every rule declares its provenance sidecar"
    assert rule_outputs() - sidecars == readme_outputs()
