"""Reading the workflow's YAML config files, with one message per mistake.

Used by the workflow for its default config, and by the ``fmriflow``
command for the files given with ``--configfile`` (which Snakemake itself
reads before the workflow starts, with a traceback for a mistyped path and
no line number for a YAML mistake).
"""

from pathlib import Path

from fmriflow.errors import InputError


def load_config_file(path):
    """A YAML config file as a mapping.

    Parameters
    ----------
    path : str or pathlib.Path
        The config file.

    Returns
    -------
    dict
        Its keys (empty for an empty file).

    Raises
    ------
    InputError
        Naming the file (and the line and column of a YAML mistake) and the fix.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        shipped = sorted(p.name for p in Path(__file__).resolve().parents[2].glob("config/*.yaml"))
        problem = "is a directory, not a config file" if path.is_dir() else "not found"
        raise InputError(
            f"Config file {path}",
            problem,
            "Check the path"
            + (f"; the configs shipped in config/ are {', '.join(shipped)}" if shipped else ""),
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"Config file {path}", f"cannot be read ({exc})", "Check the file"
        ) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(
            f"Config file {where}",
            f"not valid YAML ({problem})",
            "Fix the syntax there: indent with spaces, close brackets and quotes, quote "
            "values that hold ': ' or ' #'",
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputError(
            f"Config file {path}",
            f"holds a {type(loaded).__name__}, not a mapping of keys",
            "Start from config/config.yaml",
        )
    return loaded
