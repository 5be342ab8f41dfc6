"""Faster planning of large cohorts: two of Snakemake's per-file steps, same answers.

To plan a job, Snakemake asks, for every input file, which rules can produce
it (``OutputIndex.match``): the rules whose outputs have a constant prefix
(up to the first wildcard) that begins the file's path and a constant suffix
(after the last wildcard) that ends it. The prefixes are indexed, the
suffixes are not; and every output of this workflow begins with
``results/{dataset}/`` or ``data/{dataset}/``, so each look-up walks the
hundred-odd outputs under ``results/`` and compares their suffixes: a tenth
of the time of planning 1,000 + 1,000 subjects (``benchmarks/bench_dag.py``).

:class:`FileNameOutputIndex` gives the same answer from a second index:
an output whose constant suffix holds a ``/`` ends in a fixed file name
(``/summary.json``), and only a file with that name can end with it; those
outputs are looked up by the file's name, the others (a suffix such as
``.log``) as Snakemake does. :func:`index_outputs_by_file_name`, called by
the Snakefile, makes Snakemake use it.

Planning also asks, for every job, whether its script is a local file:
``snakemake.common.parse_uri`` of the same few paths, each call building a
new named-tuple class (smart_open's ``parse_uri``); :func:`memoize_uri_parsing`
keeps the answer for each string. And for every job, it reads the signature
of each of the rule's input and parameter functions
(``snakemake.common.get_function_params``, an ``inspect.signature`` each
time); :func:`memoize_function_parameters` keeps it per function.

Two whole-plan steps are done another way, with the same outcome, where
Snakemake's own code is the one they were checked against (the hash of its
source, :data:`CHECKED_SOURCES`): :func:`check_nested_outputs_by_parts`
(the check that no output lies inside another job's output sorted every
output as a ``pathlib.Path``: a tenth of the plan) and
:func:`skip_unused_params` (every job's parameters were computed to
find a software environment and a script path that depend on none of them).
"""

import functools
import hashlib
import inspect
import os
from collections import defaultdict
from pathlib import Path

#: Strings whose parsed URI is kept (a workflow has a few dozen scripts).
URI_CACHE_SIZE = 4096
#: Functions whose parameters are kept (a workflow has a few hundred).
FUNCTION_CACHE_SIZE = 4096
#: The modules of Snakemake that call ``get_function_params`` by that name.
FUNCTION_PARAMS_USERS = ("common", "rules", "jobs", "ioutils.subpath")
#: SHA-256 of the source of the Snakemake functions replaced here, as checked
#: (Snakemake 9.15.0); another source leaves Snakemake's own in place.
CHECKED_SOURCES = {
    "DAG.check_directory_outputs": (
        "d5a17c047b46b717ffe29a3c4f4b2bed2b1105ee6ee05da39da2816c1f13d033"
    ),
    "Job.conda_env_spec": "4a98328beadaf1b9407bc162ac57a5921fb0fb9fc9159f0a5961ef14d4db6c21",
    "Rule.expand_conda_env": ("ca6b0b6e11a47804416cd9a20d2cdfc0d55976e0f960c2ad57a28660d61c6fbb"),
    "Job._path_to_source_file": (
        "422d9b26938d3f2d62bfbcd8cb44935f4bd4d8d588dcb0bc1e9c550a293e6643"
    ),
}
#: Snakemake's own functions, by the names above, once replaced here.
REPLACED = {}


def file_name_output_index_class():
    """The :class:`FileNameOutputIndex` class, built on this Snakemake's ``OutputIndex``."""
    from snakemake.common.prefix_lookup import PrefixLookup
    from snakemake.output_index import OutputIndex

    class FileNameOutputIndex(OutputIndex):
        """``OutputIndex`` with the outputs that end in a fixed file name indexed by it.

        ``match(targetfile)`` is the set of rules ``OutputIndex.match`` gives
        (tested on every file of the workflow's plans).
        """

        def __init__(self, rules):
            super().__init__(rules)
            self._by_file_name = defaultdict(list)
            by_suffix = defaultdict(list)
            for rule in rules:
                for product in rule.products():
                    prefix = str(product.constant_prefix())
                    suffix = str(product.constant_suffix())
                    if "/" in suffix:
                        name = suffix.rsplit("/", 1)[1]
                        self._by_file_name[name].append((prefix, suffix, rule))
                    else:
                        by_suffix[suffix].append((prefix, rule))
            # The other outputs, by suffix (a few distinct ones: ".npy", ".json", ...),
            # each suffix with a prefix look-up of its own.
            self._by_suffix = [
                (suffix, PrefixLookup(entries=entries)) for suffix, entries in by_suffix.items()
            ]

        def match(self, targetfile):
            rules = {
                rule
                for suffix, lookup in self._by_suffix
                if targetfile.endswith(suffix)
                for _, rule in lookup.match_iter(targetfile)
            }
            name = targetfile.rsplit("/", 1)[-1]
            for prefix, suffix, rule in self._by_file_name.get(name, ()):
                if targetfile.startswith(prefix) and targetfile.endswith(suffix):
                    rules.add(rule)
            return rules

    return FileNameOutputIndex


def index_outputs_by_file_name():
    """Make Snakemake's DAG look up the rules of a file with :class:`FileNameOutputIndex`.

    Returns
    -------
    bool
        Whether it was installed: not where paths are not separated by
        ``/``, nor on a Snakemake whose DAG does not build an ``OutputIndex``
        from ``snakemake.output_index`` with the prefix look-up it extends.
    """
    try:
        import snakemake.api  # noqa: F401 (imports snakemake.dag without a cycle)
        from snakemake import dag
        from snakemake.common.prefix_lookup import PrefixLookup
        from snakemake.output_index import OutputIndex
    except ImportError:
        return False
    if os.sep != "/" or not hasattr(PrefixLookup, "match_iter"):
        return False
    current = getattr(dag, "OutputIndex", None)
    if current is not OutputIndex:
        return current is not None and getattr(current, "indexes_file_names", False)
    index_class = file_name_output_index_class()
    index_class.indexes_file_names = True
    dag.OutputIndex = index_class
    return True


def _not_yet_memoized(name):
    """The function ``name`` of ``snakemake.common``, if it is there and not ours yet."""
    try:
        from snakemake import common
    except ImportError:
        return None
    function = getattr(common, name, None)
    if function is None or getattr(function, "memoized", False):
        return None
    return function


def memoize_uri_parsing(maxsize=URI_CACHE_SIZE):
    """Keep ``snakemake.common.parse_uri``'s answer for each string it is given.

    The answer (a named tuple of the URI's parts) depends only on the
    string; ``is_local_file`` and ``smart_join`` in ``snakemake.common``,
    called for every job's script, then parse each path once.

    Parameters
    ----------
    maxsize : int
        Strings kept (least recently used first out).

    Returns
    -------
    bool
        Whether it was installed now (False: already there, or no such function).
    """
    parse = _not_yet_memoized("parse_uri")
    if parse is None:
        return False
    from snakemake import common

    parse_string = functools.lru_cache(maxsize=maxsize)(parse)

    @functools.wraps(parse)
    def parse_uri(path_or_uri):
        if type(path_or_uri) is str:
            return parse_string(path_or_uri)
        return parse(path_or_uri)

    parse_uri.memoized = True
    common.parse_uri = parse_uri
    return True


def memoize_function_parameters(maxsize=FUNCTION_CACHE_SIZE):
    """Keep the parameters Snakemake reads from each function's signature.

    ``snakemake.common.get_function_params(func)`` returns the parameters
    forced on ``func`` (an attribute Snakemake sets on some functions, read
    at every call as before) or ``inspect.signature(func).parameters``,
    which depends only on the function: that mapping is kept per function
    (functions compare by identity). Installed in every module of
    Snakemake that imported the name.

    Parameters
    ----------
    maxsize : int
        Functions kept (least recently used first out).

    Returns
    -------
    bool
        Whether it was installed now (False: installed before, or this
        Snakemake reads signatures otherwise).
    """
    import importlib
    import inspect

    original = _not_yet_memoized("get_function_params")
    if original is None:
        return False
    from snakemake import common

    forced = getattr(common, "FUNC_OVERWRITE_PARAMS_ATTR", None)
    if forced is None:
        return False
    signature_parameters = functools.lru_cache(maxsize=maxsize)(
        lambda func: inspect.signature(func).parameters
    )

    @functools.wraps(original)
    def get_function_params(func):
        if hasattr(func, forced):
            return getattr(func, forced)
        try:
            return signature_parameters(func)
        except TypeError:  # a callable that cannot be a dictionary key
            return original(func)

    get_function_params.memoized = True
    for name in FUNCTION_PARAMS_USERS:
        try:
            module = importlib.import_module(f"snakemake.{name}")
        except ImportError:
            continue
        if getattr(module, "get_function_params", None) is original:
            module.get_function_params = get_function_params
    return True


def source_is_checked(name, function):
    """Whether ``function``'s source is the one :data:`CHECKED_SOURCES` holds for ``name``."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return hashlib.sha256(source.encode()).hexdigest() == CHECKED_SOURCES[name]


def absolute_path_parts(path, cwd_parts):
    """``pathlib.Path(path).absolute().parts`` from string operations.

    Parameters
    ----------
    path : str
        A POSIX path (relative ones are taken from the working directory).
    cwd_parts : tuple of str
        ``pathlib.Path.cwd().parts``.

    Returns
    -------
    tuple of str
        The root (``"/"``, or ``"//"`` for a path beginning with exactly two
        slashes, as POSIX allows), then the components, without empty ones
        and ``"."``.
    """
    components = tuple(part for part in path.split("/") if part and part != ".")
    if not path.startswith("/"):
        return cwd_parts + components
    root = "//" if path.startswith("//") and not path.startswith("///") else "/"
    return (root, *components)


def find_nested_output(outputs, cwd_parts):
    """The first pair of outputs of two jobs where one lies inside the other.

    The same pairs, in the same order, as Snakemake's
    ``DAG.check_directory_outputs``: the distinct (path, job) pairs sorted
    (paths compare as ``pathlib.Path`` does, by their parts; equal paths by
    their jobs), and each entry compared with the next: a different path,
    of a different job, whose components begin with all of its own
    (``os.path.commonpath``, which does not tell the roots ``/`` and ``//``
    apart).

    Parameters
    ----------
    outputs : iterable of (str, object)
        Each output path and the job that writes it.
    cwd_parts : tuple of str
        ``pathlib.Path.cwd().parts``, for relative paths.

    Returns
    -------
    tuple or None
        ``((parent_parts, parent_job), (child_parts, child_job))``, or None.
    """
    entries = sorted({(absolute_path_parts(path, cwd_parts), job) for path, job in outputs})
    for (parent, parent_job), (child, child_job) in zip(entries[:-1], entries[1:], strict=True):
        inside = len(parent) <= len(child) and parent[1:] == child[1 : len(parent)]
        if inside and parent != child and parent_job != child_job:
            return (parent, parent_job), (child, child_job)
    return None


def check_directory_outputs_by_parts(dag):
    """Snakemake's ``DAG.check_directory_outputs`` with :func:`find_nested_output`.

    Raises the ``ChildIOException`` Snakemake raises, for the same pair.

    Parameters
    ----------
    dag : snakemake.dag.DAG
        The plan: its ``jobs`` and their ``output``.
    """
    from snakemake.exceptions import ChildIOException

    outputs = ((os.fspath(path), job) for job in dag.jobs for path in job.output)
    nested = find_nested_output(outputs, Path.cwd().parts)
    if nested is not None:
        (parent, parent_job), (child, child_job) = nested
        raise ChildIOException(parent=(Path(*parent), parent_job), child=(Path(*child), child_job))


def check_nested_outputs_by_parts():
    """Make Snakemake check for outputs inside other jobs' outputs with :func:`find_nested_output`.

    Snakemake's check builds a ``pathlib.Path`` of every output and sorts
    them with its comparisons (2.5 s of the 33 s plan of 1,000 + 1,000
    subjects); tuples of strings sort the same way in a fraction of it.

    Returns
    -------
    bool
        Whether it was installed now (False: already, or a Snakemake whose
        check is not the one this was compared with).
    """
    import snakemake.api  # noqa: F401 (imports snakemake.dag without a cycle)
    from snakemake.dag import DAG

    original = DAG.check_directory_outputs
    if original is check_directory_outputs_by_parts or os.sep != "/":
        return False
    if not source_is_checked("DAG.check_directory_outputs", original):
        return False
    REPLACED["DAG.check_directory_outputs"] = original
    DAG.check_directory_outputs = check_directory_outputs_by_parts
    return True


def skip_unused_params():
    """Leave a job's parameters uncomputed where Snakemake does not use them.

    Planning asks every job for its software environment
    (``Job.conda_env_spec``) and for the path of its script
    (``Job._path_to_source_file``); both computed the job's parameters
    (every params function of its rule) first, though the environment reads
    them only when the rule's ``conda:`` is a function and the path only
    when it holds ``{...}`` fields. On a fresh plan of 1,000 + 1,000
    subjects that was 14,000 jobs' parameters for nothing (about 1.4 s).
    Here they are computed only in those cases; the environment and path
    found are the same. Snakemake still computes them wherever it uses them
    (a run, the params rerun trigger).

    Returns
    -------
    bool
        Whether it was installed now (False: already, or a Snakemake whose
        functions are not the ones this was compared with).
    """
    import snakemake.api  # noqa: F401 (imports snakemake.dag without a cycle)
    from snakemake.jobs import Job
    from snakemake.rules import Rule
    from snakemake.sourcecache import LocalSourceFile, infer_source_file

    environment = Job.conda_env_spec
    source_file = Job._path_to_source_file
    if not isinstance(environment, property) or getattr(source_file, "lazy_params", False):
        return False
    checked = (
        source_is_checked("Job.conda_env_spec", environment.fget)
        and source_is_checked("Rule.expand_conda_env", Rule.expand_conda_env)
        and source_is_checked("Job._path_to_source_file", source_file)
    )
    if not checked:
        return False

    @functools.wraps(environment.fget)
    def conda_env_spec(self):
        if self._conda_env_spec is None:
            if callable(self.rule.conda_env):
                return environment.fget(self)
            self._conda_env_spec = self.rule.expand_conda_env(self.wildcards_dict)
        return self._conda_env_spec

    @functools.wraps(source_file)
    def _path_to_source_file(self, path):
        text = str(path) if isinstance(path, Path) else path
        if type(text) is not str or "{" in text or "}" in text:
            return source_file(self, path)
        # Without fields, formatting gives the path back unchanged.
        source = infer_source_file(text)
        if isinstance(source, LocalSourceFile) and self.rule.basedir:
            source = self.rule.basedir.join(source)
        return source

    _path_to_source_file.lazy_params = True
    REPLACED["Job.conda_env_spec"] = environment
    REPLACED["Job._path_to_source_file"] = source_file
    Job.conda_env_spec = property(conda_env_spec)
    Job._path_to_source_file = _path_to_source_file
    return True
