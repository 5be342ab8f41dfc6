"""Provenance sidecars: what produced each result, recorded next to it.

After a node has written its outputs, :func:`write_sidecar` records in the
job's provenance sidecar (an output every rule declares, usually
``<folder of the first output>/<node>.provenance.json``):

* the sha256 of every input and output file,
* the parameters (which include every seed),
* the versions of Python and of the scientific packages,
* the workflow's git commit (and whether the checkout had local changes).

Nothing time-dependent is recorded (no dates, hosts or durations: those are
in the job's log and benchmark files), so two runs of the same config and
code give byte-identical sidecars, and a changed sidecar means a changed
result.
"""

import json
import os
import platform
import re
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

from fmriflow.io import write_json

PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "nilearn",
    "nibabel",
    "pandas",
    "matplotlib",
    "joblib",
    "snakemake",
)

#: The repository this library lives in (``scripts/fmriflow`` -> top).
REPOSITORY = Path(__file__).resolve().parents[2]


def sidecar_path(node_name, outputs):
    """The sidecar of a job run by hand: ``<node>.provenance.json`` beside its first output."""
    first = Path(next(iter(outputs.values())))
    return first.parent / f"{node_name}.provenance.json"


def installed_versions(paths=None):
    """``{normalised name: version}`` read from the names of installed metadata folders.

    An installed distribution has a folder ``<name>-<version>.dist-info``
    in a folder of ``sys.path``; listing those folders is much cheaper than
    reading each distribution's metadata (every job records the versions).
    The first folder on the path that has a distribution wins, as for imports.

    Parameters
    ----------
    paths : sequence of str, optional
        Folders to look in; ``sys.path`` by default.

    Returns
    -------
    dict
    """
    found = {}
    for folder in sys.path if paths is None else paths:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in names:
            stem = entry.removesuffix(".dist-info")
            if stem != entry and "-" in stem:
                name, version = stem.rsplit("-", 1)
                found.setdefault(normalised_name(name), version)
    return found


def normalised_name(name):
    """A distribution name as packaging compares them (``scikit_learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def package_versions():
    """Versions of Python and the scientific packages, by name."""
    versions = {"python": platform.python_version()}
    installed = installed_versions()
    for name in PACKAGES:
        version = installed.get(normalised_name(name))
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        versions[name] = version
    from fmriflow import __version__

    versions["fmriflow"] = __version__
    return versions


@cache
def workflow_commit(repository=REPOSITORY):
    """The git commit of the workflow's checkout, and whether it has local changes.

    Returns
    -------
    dict
        ``{"git_commit": str or None, "git_dirty": bool or None}``; None when
        the workflow is not the top of a git checkout (e.g. an unpacked
        archive, even one inside another repository).
    """

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(repository), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()

    try:
        top, commit = git("rev-parse", "--show-toplevel", "HEAD").splitlines()
        if Path(top).resolve() != Path(repository).resolve():
            # An unpacked archive inside some other repository: not its commit.
            return {"git_commit": None, "git_dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def file_record(paths):
    """``{path: sha256}`` for a path or a list of paths.

    A directory stands for every file under it (in sorted order); a missing
    path maps to None.
    """
    from fmriflow.io import sha256sum

    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    record = {}
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            record |= {str(p): sha256sum(p) for p in files}
        else:
            record[str(path)] = sha256sum(path) if path.is_file() else None
    return record


def seeds_in(params):
    """Every value stored under a key named ``seed`` in the parameters."""
    found = {}

    def walk(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                if key == "seed":
                    found[path] = item
                walk(item, path)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    walk(params, "")
    return found


def _plain(value):
    """JSON-compatible copy of parameter values (Snakemake's containers, numpy scalars)."""
    return json.loads(
        json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    )


def write_sidecar(node_name, inputs, outputs, params, path):
    """Write the provenance sidecar of one job (see the module docstring).

    Parameters
    ----------
    node_name : str
        The node name.
    inputs, outputs : dict
        Names to paths (or lists of paths).
    params : dict
        The node's parameter values.
    path : str or pathlib.Path
        The sidecar to write.

    Returns
    -------
    pathlib.Path
        The sidecar written.
    """
    record = {
        "node": node_name,
        "inputs": {name: file_record(paths) for name, paths in inputs.items()},
        "outputs": {name: file_record(files) for name, files in outputs.items()},
        "params": _plain(dict(params)),
        "seeds": _plain(seeds_in(dict(params))),
        "versions": package_versions(),
        "workflow": workflow_commit() | {"library": str(REPOSITORY / "scripts" / "fmriflow")},
    }
    return write_json(record, path)
