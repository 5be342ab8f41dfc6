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
"""

import functools
import os
from collections import defaultdict

#: Strings whose parsed URI is kept (a workflow has a few dozen scripts).
URI_CACHE_SIZE = 4096
#: Functions whose parameters are kept (a workflow has a few hundred).
FUNCTION_CACHE_SIZE = 4096
#: The modules of Snakemake that call ``get_function_params`` by that name.
FUNCTION_PARAMS_USERS = ("common", "rules", "jobs", "ioutils.subpath")


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
