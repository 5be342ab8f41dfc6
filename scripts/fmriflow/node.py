"""Run a workflow node under Snakemake's ``script:`` or from the command line.

A node is a small script, ``scripts/<node>.py``, that declares its inputs,
outputs and parameters in a :class:`Node` and has one function that turns
the inputs into the outputs. :func:`run` gives every node the same
behaviour:

* under Snakemake, inputs, outputs, parameters, threads and the log file
  come from the ``snakemake`` object; from the command line they are
  options built from the declaration (``python scripts/mask.py --help``);
* standard error and Python warnings go to the log file;
* numerical libraries use one thread unless the node asks for its threads,
  so results do not depend on ``--cores``;
* bad input (:class:`~fmriflow.errors.InputError`) prints one line, without
  a traceback, to the terminal and the log; any failure removes the
  outputs the node had already written, so nothing half-done is left.
"""

import argparse
import logging
import os
import shutil
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fmriflow.errors import InputError
from fmriflow.provenance import sidecar_path, write_sidecar

logger = logging.getLogger("fmriflow")

#: Environment variables that set the thread count of numerical libraries.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class Param:
    """A node parameter: its default, what it means, and how to read it.

    On the command line a value is parsed as YAML (``4``, ``0.5``, ``null``,
    ``[a, b]``) unless ``type`` is given, e.g. ``str`` for labels such as
    ``01`` that YAML would read as numbers.
    """

    default: object
    help: str
    type: object = None


@dataclass
class Node:
    """Declaration of a node: what it reads, writes and is tuned by.

    Parameters
    ----------
    name : str
        The node's (and rule's) name.
    description : str
        One sentence, shown by ``--help``.
    function : callable
        ``function(inputs, outputs, params, threads)`` where the first three
        are :class:`Bundle` objects of paths and values. It may return the
        paths of optional files it wrote besides its outputs (recorded in the
        provenance sidecar).
    inputs, outputs : dict of str to str
        Names (as in the rule) and what each file is.
    params : dict of str to Param
        Parameter names, defaults and meanings.
    lists : tuple of str
        Inputs that are lists of files (several paths on the command line).
    optional_outputs : tuple of str
        Outputs that only some rules using the node declare (e.g. p-values
        when permutations are asked for).
    sidecar_per_output : bool
        Several jobs of the node write into one folder: name each provenance
        sidecar after the job's first output too.
    """

    name: str
    description: str
    function: object
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    lists: tuple = ()
    optional_outputs: tuple = ()
    sidecar_per_output: bool = False

    def __post_init__(self):
        names = [*self.inputs, *self.outputs, *self.params]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"node {self.name}: names used twice: {clashes}")


class Bundle(dict):
    """A dict whose keys are also attributes (``inputs.bold``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def _from_snakemake(node, smk):
    """Collect inputs, outputs, params, threads and log from Snakemake."""
    # Every named input (declared by the node or only by the rule, such as a
    # local dataset's source files), so that provenance records them all.
    inputs = Bundle({k: smk.input[k] for k in smk.input.keys()})
    outputs = Bundle({k: smk.output[k] for k in node.outputs if k in smk.output.keys()})
    params = Bundle({k: p.default for k, p in node.params.items()})
    params.update({k: smk.params[k] for k in node.params if k in smk.params.keys()})
    log = smk.log[0] if len(smk.log) else None
    return inputs, outputs, params, int(smk.threads), log


def _parser(node):
    parser = argparse.ArgumentParser(
        prog=f"python scripts/{node.name}.py",
        description=node.description,
        epilog="Parameter values are read as YAML: 4, 0.5, null, true, [a, b].",
    )
    group = parser.add_argument_group("inputs")
    for name, help_text in node.inputs.items():
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"in_{name}",
            metavar="PATH",
            nargs="+" if name in node.lists else None,
            help=help_text,
        )
    group = parser.add_argument_group("outputs")
    for name, help_text in node.outputs.items():
        optional = name in node.optional_outputs
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"out_{name}",
            metavar="PATH",
            required=not optional,
            help=help_text + ("" if optional else " (required)"),
        )
    group = parser.add_argument_group("parameters")
    for name, param in node.params.items():
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"param_{name}",
            metavar="VALUE",
            type=param.type or yaml.safe_load,
            default=param.default,
            help=f"{param.help} (default: {param.default!r})",
        )
    parser.add_argument("--threads", type=int, default=1, help="threads to use")
    parser.add_argument("--log", metavar="PATH", help="log file (default: stderr)")
    return parser


def _from_command_line(node, argv):
    args = _parser(node).parse_args(argv)
    inputs = Bundle(
        {k: getattr(args, f"in_{k}") for k in node.inputs if getattr(args, f"in_{k}") is not None}
    )
    outputs = Bundle(
        {
            k: getattr(args, f"out_{k}")
            for k in node.outputs
            if getattr(args, f"out_{k}") is not None
        }
    )
    params = Bundle({k: getattr(args, f"param_{k}") for k in node.params})
    return inputs, outputs, params, args.threads, args.log


def _redirect_stderr(log):
    """Send file descriptor 2 to the log; return a stream to the old stderr."""
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stderr.flush()
    os.dup2(log_file.fileno(), 2)
    sys.stderr = log_file
    return terminal


def _remove_outputs(node, outputs):
    """Remove a failed job's outputs and provenance, so nothing half-done remains."""
    for path in [*outputs.values(), sidecar_path(node.name, outputs, node.sidecar_per_output)]:
        path = Path(path)
        if path.is_file() or path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def _remove_stale_temporaries(outputs):
    """Delete temporary files left by an earlier job killed while writing these outputs."""
    for path in outputs.values():
        path = Path(path)
        if path.parent.is_dir():
            for stale in path.parent.glob(f".tmp-*-{path.name}"):
                stale.unlink()


def run(node, smk=None, argv=None):
    """Run ``node`` with arguments from Snakemake (``smk``) or the command line.

    Parameters
    ----------
    node : Node
        The node's declaration.
    smk : snakemake.script.Snakemake, optional
        The object Snakemake defines in scripts run by ``script:``.
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``) when ``smk`` is None.
    """
    if smk is not None:
        inputs, outputs, params, threads, log = _from_snakemake(node, smk)
    else:
        inputs, outputs, params, threads, log = _from_command_line(node, argv)
    terminal = _redirect_stderr(log) if log else sys.stderr
    logging.basicConfig(
        stream=sys.stderr,
        # Without a log file, stderr is the terminal: keep it to warnings.
        level=logging.INFO if log else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logger.info("node %s: inputs %s", node.name, dict(inputs))
    logger.info("node %s: params %s", node.name, dict(params))
    try:
        _call(node, inputs, outputs, params, threads, log, terminal)
    finally:
        if terminal is not sys.__stderr__ and terminal is not sys.stderr:
            terminal.close()


def _call(node, inputs, outputs, params, threads, log, terminal):
    """Run the node's function, turning failures into one message and exit 1."""
    try:
        from threadpoolctl import threadpool_limits

        _remove_stale_temporaries(outputs)
        # threadpool_limits reaches the libraries loaded so far; the variables
        # reach those loaded later (e.g. scipy's own BLAS on first use).
        for variable in THREAD_VARIABLES:
            os.environ[variable] = "1"
        with threadpool_limits(limits=1):
            extra = node.function(inputs, outputs, params, threads) or []
        missing = [p for p in outputs.values() if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"outputs not written: {missing}")
        write_sidecar(node.name, inputs, outputs, params, extra, node.sidecar_per_output)
    except InputError as exc:
        _remove_outputs(node, outputs)
        if log:
            logger.error("%s", exc)
        print(f"fmriflow {node.name}: error: {exc}", file=terminal)
        sys.exit(1)
    except Exception as exc:
        _remove_outputs(node, outputs)
        logger.error("unexpected failure:\n%s", traceback.format_exc())
        where = f" (details in {log})" if log else ""
        print(
            f"fmriflow {node.name}: failed: {type(exc).__name__}: {exc}{where}",
            file=terminal,
        )
        sys.exit(1)
    logger.info("node %s: done", node.name)
