"""Run a workflow node under Snakemake's ``script:`` or from the command line.

A node is a small script, ``scripts/<node>.py``, that declares its inputs,
outputs and parameters in a :class:`Node` and has one function that turns
the inputs into the outputs. :func:`run` gives every node the same
behaviour:

* under Snakemake, inputs, outputs, parameters, threads and the log file
  come from the ``snakemake`` object; from the command line they are
  options built from the declaration (``python scripts/mask.py --help``);
* a rule that hands the node an input, output or parameter it does not
  declare, or omits one it requires, stops with a message naming it (a
  typo never silently becomes ``None``);
* a parameter that is a config section (``Param(schema="decoding")``) is
  validated against the config schema and gets its defaults, so a node run
  by hand behaves as in the workflow;
* standard error and Python warnings go to the log file;
* numerical libraries use one thread unless the node asks for its threads,
  so results do not depend on ``--cores``;
* bad input (:class:`~fmriflow.errors.InputError`) prints one line, without
  a traceback, to the terminal and the log; any failure removes the
  outputs the node had already written, so nothing half-done is left;
* every successful job writes its provenance sidecar: the output named
  ``provenance`` (every rule declares it), or, from the command line by
  default, ``<node>.provenance.json`` beside the first output.
"""

import argparse
import json
import logging
import os
import shlex
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

#: Where :func:`notify` writes besides the log: the terminal of the running node.
_TERMINAL = {"stream": None, "node": None}


def snakemake_ancestor(pid=None):
    """The nearest ancestor process that runs Snakemake (Linux ``/proc``), or None.

    A job's script runs under a shell that Snakemake started; when
    Snakemake is killed, the shell and the job are not.
    """
    pid = os.getppid() if pid is None else pid
    for _ in range(16):
        if pid <= 1:
            return None
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        names = [Path(w.decode(errors="replace")).name for w in words]
        if "snakemake" in names:
            return pid
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return None


def process_start(pid):
    """Start time of a process (clock ticks since boot), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def die_with(pid, on_death, interval=2.0):
    """End this process when process ``pid`` is gone, after calling ``on_death()``.

    A daemon thread checks every ``interval`` seconds; a pid reused by
    another process counts as gone (its start time differs).
    """
    import threading
    import time

    start = process_start(pid)
    if start is None:
        return

    def watch():
        while True:
            time.sleep(interval)
            if process_start(pid) != start:
                logger.error("snakemake (process %d) is gone: stopping this job", pid)
                on_death()
                os._exit(1)

    threading.Thread(target=watch, name="die-with-snakemake", daemon=True).start()


def notify(message):
    """A warning the user must see: in the job's log and on the terminal (Snakemake's output).

    Parameters
    ----------
    message : str
        One sentence or two: what happened and its consequence.
    """
    logger.warning("%s", message)
    stream = _TERMINAL["stream"]
    if stream is not None and stream is not sys.stderr:
        print(f"fmriflow {_TERMINAL['node']}: warning: {message}", file=stream, flush=True)


#: Environment variables that set the thread count of numerical libraries.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

#: The output every node has: its job's provenance sidecar.
PROVENANCE = "provenance"


@dataclass
class Param:
    """A node parameter: its default, what it means, and how to read it.

    On the command line a value is parsed as YAML (``4``, ``0.5``, ``null``,
    ``[a, b]``, ``{labels: [face, house]}``) unless ``type`` is given, e.g.
    ``str`` for labels such as ``01`` that YAML would read as numbers. A
    parameter with ``schema`` is a config section following that
    definition of the config schema (``$defs``): it is validated, and its
    defaults filled in, wherever the node runs.
    """

    default: object
    help: str
    type: object = None
    schema: str | None = None


@dataclass
class Node:
    """Declaration of a node: what it reads, writes and is tuned by.

    Parameters
    ----------
    name : str
        The node's name (also the stem of its provenance sidecar).
    description : str
        One sentence, shown by ``--help``.
    function : callable
        ``function(inputs, outputs, params, threads)`` where the first three
        are :class:`Bundle` objects of paths and values.
    inputs, outputs : dict of str to str
        Names (as in the rule) and what each file is. The ``provenance``
        output is implicit.
    params : dict of str to Param
        Parameter names, defaults and meanings.
    lists : tuple of str
        Inputs that are lists of files (several paths on the command line).
    optional_inputs : tuple of str
        Inputs a rule gives only when the config needs them (e.g. the subject
        ROI); absent ones are missing from ``inputs``.
    optional_outputs : tuple of str
        Outputs that only some rules using the node declare (e.g. p-values
        when permutations are asked for).
    """

    name: str
    description: str
    function: object
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    lists: tuple = ()
    optional_inputs: tuple = ()
    optional_outputs: tuple = ()

    def __post_init__(self):
        names = [*self.inputs, *self.outputs, *self.params, PROVENANCE]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"node {self.name}: names used twice: {clashes}")
        hidden = sorted(n for n in names if hasattr(Bundle, n))
        if hidden:
            raise ValueError(
                f"node {self.name}: names {hidden} are attributes of a dict "
                "(inputs.<name> would not reach them); rename them"
            )
        unknown = sorted(
            set(self.optional_inputs) - set(self.inputs)
            | set(self.optional_outputs) - set(self.outputs)
            | set(self.lists) - set(self.inputs)
        )
        if unknown:
            raise ValueError(f"node {self.name}: optional or list names not declared: {unknown}")


class Bundle(dict):
    """A dict whose keys are also attributes (``inputs.bold``).

    A missing key read as an attribute is a usage error naming the
    command-line option that gives it (an optional input or output that
    this run needs), rather than an ``AttributeError``.
    """

    #: What the keys are ("input", "output", "parameter"), for messages.
    _what = "value"

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise InputError(
                f"{self._what} {name}",
                "is not given, and this run needs it",
                f"Give --{name.replace('_', '-')} PATH (see the node's --help), or the "
                f"rule's {self._what} {name}",
            ) from None


class Inputs(Bundle):
    """A node's input files."""

    _what = "input"


class Outputs(Bundle):
    """A node's output files."""

    _what = "output"


def check_names(node, kind, given, declared, optional=()):
    """Stop if a rule (or command line) gives undeclared names or lacks required ones."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InputError(
            f"node {node.name}",
            f"{kind} {unknown} not declared by the node (it declares {sorted(declared)})",
            f"Fix the rule's {kind} or the node's declaration (scripts/{node.name}.py)",
        )
    missing = sorted(set(declared) - set(given) - set(optional))
    if missing:
        raise InputError(
            f"node {node.name}",
            f"required {kind} {missing} not given",
            f"Give them in the rule, or on the command line (see python scripts/{node.name}.py "
            "--help)",
        )


def _from_snakemake(node, smk):
    """Collect inputs, outputs, params, threads and log from Snakemake, checking names."""
    inputs = {k: smk.input[k] for k in smk.input.keys()}
    outputs = {k: smk.output[k] for k in smk.output.keys()}
    params = {k: smk.params[k] for k in smk.params.keys()}
    check_names(node, "inputs", inputs, node.inputs, node.optional_inputs)
    check_names(
        node, "outputs", outputs, [*node.outputs, PROVENANCE], [*node.optional_outputs, PROVENANCE]
    )
    check_names(node, "params", params, node.params, node.params)
    defaults = {k: p.default for k, p in node.params.items()}
    log = smk.log[0] if len(smk.log) else None
    return Inputs(inputs), Outputs(outputs), Bundle(defaults | params), int(smk.threads), log


def _parser(node):
    parser = argparse.ArgumentParser(
        prog=f"python scripts/{node.name}.py",
        description=node.description,
        epilog="Parameter values are read as YAML: 4, 0.5, null, true, [a, b], {key: value}.",
    )
    group = parser.add_argument_group("inputs")
    for name, help_text in node.inputs.items():
        optional = name in node.optional_inputs
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"in_{name}",
            metavar="PATH",
            nargs="+" if name in node.lists else None,
            required=not optional,
            help=help_text + (" (optional)" if optional else ""),
        )
    group = parser.add_argument_group("outputs")
    for name, help_text in [*node.outputs.items(), (PROVENANCE, "provenance sidecar to write")]:
        optional = name in node.optional_outputs or name == PROVENANCE
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
            help=f"{param.help} (default: {json.dumps(param.default)})",
        )
    parser.add_argument("--threads", type=int, default=1, help="threads to use")
    parser.add_argument("--log", metavar="PATH", help="log file (default: stderr)")
    return parser


def _from_command_line(node, argv):
    args = vars(_parser(node).parse_args(argv))

    def given(prefix, names, bundle):
        return bundle({k: args[f"{prefix}{k}"] for k in names if args[f"{prefix}{k}"] is not None})

    inputs = given("in_", node.inputs, Inputs)
    outputs = given("out_", [*node.outputs, PROVENANCE], Outputs)
    params = Bundle({k: args[f"param_{k}"] for k in node.params})
    return inputs, outputs, params, args["threads"], args["log"]


def params_as_options(params):
    """The parameters as command-line options that paste back (``--tr 2.0 --runs null``).

    Values are written as JSON, which the node's parser reads as YAML:
    ``None`` becomes ``null``, ``True`` ``true``, a mapping ``{"a": 1}``.
    """
    return " ".join(
        f"--{name.replace('_', '-')} {shlex.quote(option_value(value))}"
        for name, value in params.items()
    )


def option_value(value):
    """A parameter value as the text its option takes: plain when YAML reads it back, else JSON."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, default=str)


def _section_params(node, given):
    """The parameters, config sections validated against the schema, with its defaults."""
    from fmriflow.schema import validate

    params = Bundle(given)
    for name, param in node.params.items():
        if param.schema is not None:
            value = {} if params[name] is None else params[name]
            if not isinstance(value, dict):
                raise InputError(
                    f"parameter {name} of node {node.name}",
                    f"expected a mapping (a {param.schema} config entry), got {value!r}",
                    f"Give it as YAML, e.g. --{name.replace('_', '-')} "
                    "'{labels: [face, house]}'",
                )
            params[name] = validate(dict(value), param.schema, where=f"{param.schema} entry")
    return params


def _redirect_stderr(log):
    """Send file descriptor 2 to the log; return a stream to the old stderr."""
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stderr.flush()
    os.dup2(log_file.fileno(), 2)
    sys.stderr = log_file
    return terminal


def _remove_outputs(outputs):
    """Remove a failed job's outputs and provenance, so nothing half-done remains."""
    for path in map(Path, outputs.values()):
        if path.is_file() or path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def _remove_stale_temporaries(outputs):
    """Delete temporary files left by an earlier job killed while writing these outputs."""
    for path in map(Path, outputs.values()):
        if path.parent.is_dir():
            for stale in path.parent.glob(f".tmp-*-{path.name}"):
                stale.unlink()


def _collect(node, smk, argv):
    """Inputs, outputs, params, threads and log of this run, checked."""
    if smk is not None:
        inputs, outputs, params, threads, log = _from_snakemake(node, smk)
    else:
        inputs, outputs, params, threads, log = _from_command_line(node, argv)
    if PROVENANCE not in outputs:
        outputs[PROVENANCE] = str(sidecar_path(node.name, outputs))
    return inputs, outputs, _section_params(node, params), threads, log


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
    try:
        inputs, outputs, params, threads, log = _collect(node, smk, argv)
    except InputError as exc:
        message = f"fmriflow {node.name}: error: {exc}"
        print(message, file=sys.stderr)
        if smk is not None and len(smk.log):
            Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
            with open(smk.log[0], "a") as log_file:
                print(message, file=log_file)
        sys.exit(1)
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
    logger.info("node %s: params %s", node.name, params_as_options(params))
    _TERMINAL.update(stream=terminal, node=node.name)
    parent = snakemake_ancestor() if smk is not None else None
    if parent is not None:
        # Killed with Snakemake rather than left running as an orphan.
        die_with(parent, lambda: _remove_outputs(outputs))
    try:
        _call(node, inputs, outputs, params, threads, log, terminal)
    finally:
        _TERMINAL.update(stream=None, node=None)
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
            node.function(inputs, outputs, params, threads)
        results = {k: v for k, v in outputs.items() if k != PROVENANCE}
        missing = [p for p in results.values() if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"outputs not written: {missing}")
        write_sidecar(node.name, inputs, results, params, outputs[PROVENANCE])
    except InputError as exc:
        _remove_outputs(outputs)
        if log:
            logger.error("%s", exc)
        print(f"fmriflow {node.name}: error: {exc}", file=terminal)
        sys.exit(1)
    except Exception as exc:
        _remove_outputs(outputs)
        logger.error("unexpected failure:\n%s", traceback.format_exc())
        where = f" (details in {log})" if log else ""
        print(
            f"fmriflow {node.name}: failed: {type(exc).__name__}: {exc}{where}",
            file=terminal,
        )
        sys.exit(1)
    logger.info("node %s: done", node.name)
