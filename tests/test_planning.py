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
