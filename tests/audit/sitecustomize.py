"""Record the files every workflow job opens (for tests/test_declared_files.py).

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``. With this
folder there and ``FMRIFLOW_AUDIT_DIR`` set, every Python process records
(``sys.addaudithook``) the paths it opens, renames and removes. At exit, a
process that ran a Snakemake ``script:`` (its ``__main__`` holds the
``snakemake`` object) writes one JSON record to that folder: the rule, its
wildcards, its declared inputs, outputs and log, and what it touched. Other
processes (Snakemake itself) write nothing. The workflow's own code knows
nothing of this.
"""

import atexit
import json
import os
import sys

AUDIT_DIR = os.environ.get("FMRIFLOW_AUDIT_DIR")


def _path(value):
    if isinstance(value, str | bytes | os.PathLike):
        return os.path.abspath(os.fsdecode(value))
    return None


def _install():
    touched = []

    def hook(event, args):
        if event == "open":
            path = _path(args[0])
            if path is not None:
                mode = args[1] if isinstance(args[1], str) else ""
                flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
                writes = any(c in mode for c in "wax+") or bool(flags & (os.O_WRONLY | os.O_RDWR))
                touched.append(("write" if writes else "read", path))
        elif event in ("os.rename", "os.link", "shutil.copyfile"):
            touched.append(("read", _path(args[0])))
            touched.append(("write", _path(args[1])))
        elif event in ("os.remove", "shutil.rmtree"):
            touched.append(("remove", _path(args[0])))

    def write_record():
        main = sys.modules.get("__main__")
        smk = getattr(main, "snakemake", None)
        if smk is None or not hasattr(smk, "rule") or not hasattr(smk, "output"):
            return

        def files(container):
            out = []
            for item in container:
                out += [str(i) for i in item] if isinstance(item, list) else [str(item)]
            return out

        record = {
            "rule": smk.rule,
            "wildcards": dict(smk.wildcards.items()),
            "input": files(smk.input),
            "output": files(smk.output),
            "log": files(smk.log),
            "cwd": os.getcwd(),
            "touched": [item for item in touched if item[1] is not None],
        }
        os.makedirs(AUDIT_DIR, exist_ok=True)
        with open(os.path.join(AUDIT_DIR, f"{os.getpid()}.json"), "w") as handle:
            json.dump(record, handle)

    sys.addaudithook(hook)
    atexit.register(write_record)


if AUDIT_DIR:
    _install()
