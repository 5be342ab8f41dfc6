"""The ``fmriflow`` command: ``snakemake`` with its config files read first.

``fmriflow ARGS`` runs ``snakemake ARGS`` (the same arguments, the same
workflow) after reading every file given with ``--configfile`` the way the
workflow reads its default config: a mistyped path or a YAML mistake is
one line naming the file (and line) and the fix, where Snakemake, which
reads these files before the workflow starts, prints a traceback.
"""

import os
import sys

from fmriflow.config_files import load_config_file
from fmriflow.errors import InputError

CONFIGFILE_OPTIONS = ("--configfile", "--configfiles")


def configfiles(arguments):
    """The paths given with ``--configfile`` (several may follow one option)."""
    paths, taking = [], False
    for argument in arguments:
        option, equals, value = argument.partition("=")
        if option in CONFIGFILE_OPTIONS:
            taking = not equals
            if equals:
                paths.append(value)
        elif argument.startswith("-"):
            taking = False
        elif taking:
            paths.append(argument)
    return paths


def main(arguments=None):
    """Check the config files, then hand every argument to Snakemake."""
    arguments = sys.argv[1:] if arguments is None else list(arguments)
    for path in configfiles(arguments):
        try:
            load_config_file(path)
        except InputError as exc:
            print(f"fmriflow: {exc}", file=sys.stderr)
            return 2
    os.execv(sys.executable, [sys.executable, "-m", "snakemake", *arguments])


if __name__ == "__main__":
    sys.exit(main())
