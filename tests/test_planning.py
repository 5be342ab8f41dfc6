"""Snakemake finds the same producing rules with the outputs indexed by file name.

``fmriflow.planning.FileNameOutputIndex`` must answer every look-up as
Snakemake's own ``OutputIndex`` does: checked on made-up outputs of every
shape (wildcards that span folders, suffixes without a folder, constant
paths, outputs ending in a wildcard or a folder) and on every look-up that
planning the tiny and the default configs makes.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from snakemake.io import IOFile
from snakemake.output_index import OutputIndex

from fmriflow import planning

from conftest import DEFAULT_CONFIG, REPO, SCRIPTS, SNAKEFILE, TINY_CONFIG

PATTERNS = {
    "decode": [
        "results/{dataset}/sub-{subject}/decoding/{analysis}/summary.json",
        "results/{dataset}/sub-{subject}/decoding/{analysis}/folds.tsv",
        "logs/decode/{dataset}_sub-{subject}_{analysis}.log",
    ],
    "decode_group": [
        "results/{dataset}/group/decoding/{analysis}/summary.json",
        "logs/benchmark/decode_group/{dataset}_{analysis}.tsv",
    ],
    "mask": ["results/{dataset}/sub-{subject}/mask.nii.gz", "results/{dataset}/masks/{name}"],
    "table": ["results/provenance.tsv", "results/{dataset}/summary.json"],
    "bare": ["{dataset}/summary.json", "{dataset}.tsv", "data/{dataset}/maps/"],
    "reduce": ["results/{dataset}/sub-{subject}/pca_{n}.npy", "results/{dataset}/{name}.tsv"],
}


class Rule:
    """What OutputIndex reads of a rule: its products."""

    def __init__(self, name, patterns):
        self.name = name
        self._products = [IOFile(pattern) for pattern in patterns]

    def products(self):
        return self._products

    def __repr__(self):
        return self.name


def probes(rng):
    """Paths made from every pattern (values with and without folders), and near misses."""
    values = ["a", "sub/dir", "x.tsv", "", "summary.json", "group"]
    paths = set()
    for patterns in PATTERNS.values():
        for pattern in patterns:
            for _ in range(20):
                filled = pattern
                while "{" in filled:
                    start, end = filled.index("{"), filled.index("}")
                    filled = filled[:start] + str(rng.choice(values)) + filled[end + 1 :]
                paths.update({filled, filled + "x", "x" + filled, filled.replace("/", "//", 1)})
                paths.add(filled.rsplit("/", 1)[0] + "/summary.json")
    return sorted(paths)


def test_the_same_rules_as_snakemakes_index_on_outputs_of_every_shape():
    rules = [Rule(name, patterns) for name, patterns in PATTERNS.items()]
    reference = OutputIndex(rules)
    indexed = planning.file_name_output_index_class()(rules)
    paths = probes(np.random.default_rng(0))
    answers = [(reference.match(path), indexed.match(path)) for path in paths]
    assert [path for path, (ref, ours) in zip(paths, answers, strict=True) if ref != ours] == []
    # Enough of the look-ups find one rule, and some find several.
    assert sum(bool(ref) for ref, _ in answers) > len(paths) // 3
    assert any(len(ref) > 1 for ref, _ in answers)


#: Runs snakemake in this process, every look-up of the plan answered by the
#: file-name index and compared with Snakemake's own answer.
CHECKING_DRIVER = """
import json, sys
sys.path.insert(0, {scripts!r})
from snakemake.output_index import OutputIndex
from fmriflow import planning

build = planning.file_name_output_index_class
report = {{"lookups": 0, "found": 0, "mismatches": []}}

def checking_class():
    class CheckingIndex(build()):
        def match(self, targetfile):
            ours = super().match(targetfile)
            report["lookups"] += 1
            report["found"] += bool(ours)
            if ours != OutputIndex.match(self, targetfile):
                report["mismatches"].append(targetfile)
            return ours
    return CheckingIndex

planning.file_name_output_index_class = checking_class
from snakemake.cli import main
sys.argv = ["snakemake", *{arguments!r}]
try:
    main()
finally:
    with open({report_path!r}, "w") as out:
        json.dump(report, out)
"""


@pytest.mark.parametrize("config", [TINY_CONFIG, DEFAULT_CONFIG], ids=["tiny", "default"])
def test_every_look_up_of_a_plan_is_snakemakes(tmp_path, config):
    report_path = tmp_path / "lookups.json"
    arguments = ["-n", "--quiet", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path)]
    arguments += ["--configfile", str(config)]
    driver = CHECKING_DRIVER.format(
        scripts=str(SCRIPTS), arguments=arguments, report_path=str(report_path)
    )
    done = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["mismatches"] == []
    # The plan was made with the index: hundreds of files looked up, most made by a rule.
    assert report["lookups"] > 100 and report["found"] > report["lookups"] // 2


def test_installed_once_and_undone_cleanly():
    import snakemake.api  # noqa: F401 (imports snakemake.dag without a cycle)
    from snakemake import dag

    original = dag.OutputIndex
    try:
        dag.OutputIndex = OutputIndex
        assert planning.index_outputs_by_file_name() is True
        installed = dag.OutputIndex
        assert issubclass(installed, OutputIndex) and installed is not OutputIndex
        assert planning.index_outputs_by_file_name() is True  # already there
        assert dag.OutputIndex is installed
    finally:
        dag.OutputIndex = original


URIS = [
    "../../scripts/decode.py",
    "/abs/path/scripts/clean.py",
    "file:///abs/path/x.py",
    "https://example.org/a/b.py",
    "docker://image:tag",
]


def test_parsed_uris_are_snakemakes_and_kept():
    import snakemake.api  # noqa: F401 (imports snakemake.common as Snakemake does)
    from snakemake import common

    original = common.parse_uri
    try:
        assert planning.memoize_uri_parsing() is True
        assert planning.memoize_uri_parsing() is False  # already there
        memoized = common.parse_uri
        for uri in URIS:
            assert memoized(uri) == original(uri)
            assert type(memoized(uri)).__name__ == type(original(uri)).__name__
            assert memoized(uri) is memoized(uri)  # kept, not parsed again
            assert common.is_local_file(uri) == (original(uri).scheme == "file")

        class Path(str):
            """A str subclass (anything but a plain str is parsed each time, as before)."""

        path = Path(REPO / "Snakefile")
        assert memoized(path) == original(path) and memoized(path) is not memoized(path)
        # A URI the original refuses (here s3 without its extra dependencies, or
        # an empty scheme) is refused the same way, every time: errors are not kept.
        for uri in ("s3://bucket/key.py", "://nothing"):
            try:
                original(uri)
            except Exception as error:
                for _ in range(2):
                    with pytest.raises(type(error)):
                        memoized(uri)
    finally:
        common.parse_uri = original


def test_function_parameters_are_snakemakes_and_kept():
    import functools
    import importlib
    import inspect

    import snakemake.api  # noqa: F401 (imports snakemake's modules as Snakemake does)
    from snakemake import common, jobs, rules

    # (the module, not the function of that name the package exports)
    subpath = importlib.import_module("snakemake.ioutils.subpath")

    original = common.get_function_params
    try:
        assert planning.memoize_function_parameters() is True
        assert planning.memoize_function_parameters() is False  # already there
        memoized = common.get_function_params
        for module in (rules, jobs, subpath):
            assert module.get_function_params is memoized

        def input_function(wildcards, input, output=None):
            return wildcards

        class Callable:
            def __call__(self, wildcards, threads):
                return threads

            def method(self, wildcards, attempt=1):
                return attempt

        def make_closure(key):
            def get(wildcards):
                return key

            return get

        callables = [
            input_function,
            lambda wildcards, **kwargs: kwargs,
            make_closure("a"),
            make_closure("b"),
            functools.partial(input_function, output=None),
            Callable(),
            Callable().method,
            len,
        ]
        for func in callables:
            expected = inspect.signature(func).parameters
            assert memoized(func) == expected == original(func)
            assert memoized(func) is memoized(func)  # kept, not read again
        # A callable that cannot be a dictionary key is read each time, as before.

        class Unhashable(Callable):
            __hash__ = None

        assert memoized(Unhashable()) == inspect.signature(Unhashable()).parameters
        # Parameters Snakemake forces on a function win, even once it was kept.
        common.overwrite_function_params(input_function, ["wildcards", "resources"])
        assert memoized(input_function) == ["wildcards", "resources"]
        assert "resources" in memoized(input_function)
    finally:
        for module in (common, rules, jobs, subpath):
            module.get_function_params = original


class FakeJob:
    """What the directory-output check reads of a job: its outputs; jobs sort by name."""

    def __init__(self, name, outputs):
        self.name = name
        self.output = outputs

    def __lt__(self, other):
        return self.name < other.name

    def __repr__(self):
        return self.name


class FakeDAG:
    def __init__(self, jobs):
        self.jobs = jobs


def random_outputs(rng):
    """Jobs with outputs drawn so that some lie inside others, written every way POSIX allows."""
    words = ["a", "b", "ab", "..", ".", ""]
    roots = ["", "", "/", "//", "///", "./"]
    jobs = []
    for index in range(int(rng.integers(1, 4))):
        outputs = []
        for _ in range(int(rng.integers(1, 4))):
            depth = int(rng.integers(1, 4))
            path = str(rng.choice(roots)) + "/".join(rng.choice(words, size=depth))
            outputs.append(path + ("/" if rng.random() < 0.2 else ""))
        jobs.append(FakeJob(f"job{index}", outputs))
    return jobs


def directory_check_outcome(check, jobs):
    """None, or the message of the ChildIOException the check raises."""
    from snakemake.exceptions import ChildIOException

    try:
        check(FakeDAG(jobs))
    except ChildIOException as error:
        return str(error)
    return None


def test_nested_outputs_are_found_as_snakemake_finds_them():
    import snakemake.api  # noqa: F401 (imports snakemake.dag without a cycle)
    from snakemake.dag import DAG

    snakemakes = planning.REPLACED.get("DAG.check_directory_outputs", DAG.check_directory_outputs)
    assert snakemakes is not planning.check_directory_outputs_by_parts
    assert planning.source_is_checked("DAG.check_directory_outputs", snakemakes)
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(3000):
        jobs = random_outputs(rng)
        outcomes.append(
            (
                directory_check_outcome(snakemakes, jobs),
                directory_check_outcome(planning.check_directory_outputs_by_parts, jobs),
            )
        )
    assert [pair for pair in outcomes if pair[0] != pair[1]] == []
    # Both outcomes are common: the draw can tell the checks apart.
    raised = sum(reference is not None for reference, _ in outcomes)
    assert 300 < raised < 2700


def test_replaced_only_where_snakemakes_source_is_the_one_checked():
    import snakemake.api  # noqa: F401 (imports snakemake.dag without a cycle)
    from snakemake.dag import DAG

    current = DAG.check_directory_outputs
    try:
        DAG.check_directory_outputs = planning.REPLACED.get("DAG.check_directory_outputs", current)
        assert planning.check_nested_outputs_by_parts() is True
        assert DAG.check_directory_outputs is planning.check_directory_outputs_by_parts
        assert planning.check_nested_outputs_by_parts() is False  # already there

        def check_directory_outputs(self):  # another Snakemake's check
            return None

        DAG.check_directory_outputs = check_directory_outputs
        assert planning.check_nested_outputs_by_parts() is False
        assert DAG.check_directory_outputs is check_directory_outputs
    finally:
        DAG.check_directory_outputs = current


#: A workflow whose jobs need their params for their environment or script, or not.
PARAMS_SNAKEFILE = """
import sys
sys.path.insert(0, {scripts!r})
from fmriflow.planning import skip_unused_params
skip_unused_params()

rule all:
    input: expand("out/{{name}}.txt", name=["a", "b"]), "fixed.txt", "chosen.txt"

rule fixed:
    output: "fixed.txt"
    params: value=lambda wildcards: 1
    conda: "env.yaml"
    script: "script.py"

rule script_by_params:
    output: "out/{{name}}.txt"
    params: kind=lambda wildcards: "kind_" + wildcards.name
    conda: "env.yaml"
    script: "scripts/{{params.kind}}.py"

rule environment_by_params:
    output: "chosen.txt"
    params: environment="other.yaml"
    conda: lambda wildcards, params: params.environment
    script: "script.py"
"""

#: Plans that workflow, then reports per job whether its params were computed,
#: and its environment and script path from the replaced and from Snakemake's functions.
PARAMS_DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, {scripts!r})
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings
from snakemake.settings.enums import Quietness
from fmriflow import planning

def path(source_file):
    return str(source_file.get_path_or_uri(secret_free=True))

with SnakemakeApi(OutputSettings(quiet={{Quietness.ALL}})) as api:
    workflow_api = api.workflow(
        resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(),
        snakefile=Path({snakefile!r}), workdir=Path({workdir!r}),
    )
    workflow_api.dag(DAGSettings())
    workflow = workflow_api._workflow
    workflow._prepare_dag(forceall=False, ignore_incomplete=False, lock_warn_only=False)
    workflow._build_dag()
    report = []
    for job in workflow.dag.jobs:
        if job.rule.name == "all":
            continue
        computed = job._params is not None
        ours = (path(job.conda_env_spec.file), path(job._path_to_source_file(job.rule.script)))
        job._conda_env_spec = None
        environment = planning.REPLACED["Job.conda_env_spec"].fget(job)
        source = planning.REPLACED["Job._path_to_source_file"](job, job.rule.script)
        theirs = (path(environment.file), path(source))
        entry = {{"rule": job.rule.name, "computed": computed, "ours": ours, "theirs": theirs}}
        report.append(entry)
with open({report_path!r}, "w") as out:
    json.dump(report, out)
"""


def test_params_computed_only_where_the_environment_or_script_uses_them(tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(PARAMS_SNAKEFILE.format(scripts=str(SCRIPTS)))
    report_path = tmp_path / "report.json"
    driver = PARAMS_DRIVER.format(
        scripts=str(SCRIPTS),
        snakefile=str(snakefile),
        workdir=str(tmp_path),
        report_path=str(report_path),
    )
    done = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert [job["ours"] for job in report] == [job["theirs"] for job in report]
    computed = sorted((job["rule"], job["computed"]) for job in report)
    assert computed == [
        ("environment_by_params", True),
        ("fixed", False),
        ("script_by_params", True),
        ("script_by_params", True),
    ]
    scripts = sorted(job["ours"][1].rsplit("/", 1)[1] for job in report)
    assert scripts == ["kind_a.py", "kind_b.py", "script.py", "script.py"]
    environments = sorted(job["ours"][0].rsplit("/", 1)[1] for job in report)
    assert environments == ["env.yaml", "env.yaml", "env.yaml", "other.yaml"]


#: Plans a config with Snakemake in this process, then lists the analysis
#: libraries the plan imported into it.
IMPORTS_DRIVER = """
import json, sys
from snakemake.cli import main
sys.argv = ["snakemake", *{arguments!r}]
try:
    main()
except SystemExit as done:
    if done.code:
        raise
heavy = ("scipy.sparse", "scipy.stats", "scipy.signal", "nibabel", "sklearn", "matplotlib",
         "nilearn", "fmriflow.searchlight.spheres", "fmriflow.searchlight.estimator")
with open({report_path!r}, "w") as out:
    json.dump(sorted(name for name in heavy if name in sys.modules), out)
"""


def test_planning_simulated_data_imports_no_analysis_library(tmp_path):
    """Snakemake's own process stays small: the config checks import numpy-only modules."""
    report_path = tmp_path / "imported.json"
    arguments = ["-n", "--quiet", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path)]
    arguments += ["--configfile", str(DEFAULT_CONFIG)]
    driver = IMPORTS_DRIVER.format(arguments=arguments, report_path=str(report_path))
    done = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(report_path.read_text()) == []
