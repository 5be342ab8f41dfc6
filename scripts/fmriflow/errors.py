"""The error raised for bad input, and small checks that raise it.

Every check names the file (or config key), says what is wrong and how to
fix it, in one message. Nodes catch :class:`InputError` and print only the
message, without a traceback, because the problem is in the data, not in
the code.
"""

from pathlib import Path


class InputError(ValueError):
    """Bad input: a missing or malformed file, or an invalid setting.

    Parameters
    ----------
    what : str
        The file or setting at fault, e.g. a path or ``config key 'x.y'``.
    problem : str
        What is wrong with it.
    fix : str
        What the user can do about it.
    """

    def __init__(self, what, problem, fix):
        self.what = str(what)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.what}: {problem}. {fix}")


def check_file_exists(path, role):
    """Raise :class:`InputError` if ``path`` is not an existing file.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to look for.
    role : str
        What the file is for, used in the message (e.g. ``"BOLD image"``).

    Returns
    -------
    pathlib.Path
        ``path`` as a :class:`pathlib.Path`.
    """
    path = Path(path)
    if not path.is_file():
        problem = f"{role} is a directory, not a file" if path.is_dir() else f"{role} not found"
        raise InputError(
            path,
            problem,
            "Check the path (and the config templates that produce it) and "
            "that the file was not moved or deleted",
        )
    return path
