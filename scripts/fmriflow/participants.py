"""The participants table: one row per subject, phenotypes as columns.

The canonical ``data/{dataset}/participants.tsv`` follows BIDS: a
``participant_id`` column (``sub-<label>``) and any number of phenotype
columns (a diagnosis, an age group, a site). Whatever the source — the
simulator's planted groups, ADHD-200's phenotypic file, a lab's own
``participants.tsv`` — analyses that predict or compare phenotypes read it
through these functions, which check it against the subjects analysed.
"""

import numpy as np
import pandas as pd

from fmriflow.errors import InputError
from fmriflow.io import atomic_output, read_table

#: The column naming the subjects (BIDS).
ID_COLUMN = "participant_id"


def subject_label(participant_id):
    """``sub-01`` → ``01`` (a label without the prefix is kept as it is)."""
    text = str(participant_id).strip()
    return text[4:] if text.startswith("sub-") else text


def read_participants(path, subjects):
    """The rows of the given subjects, in their order, indexed by subject label.

    Parameters
    ----------
    path : str or pathlib.Path
        A participants table (tab-separated, with ``participant_id``).
    subjects : sequence of str
        Subject labels (without ``sub-``), in the order wanted.

    Returns
    -------
    pandas.DataFrame
        Index: the subject labels; columns: the phenotypes.
    """
    frame = read_table(path, "participants table", required=(ID_COLUMN,))
    labels = [subject_label(value) for value in frame[ID_COLUMN]]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InputError(
            path,
            f"subject(s) {repeated} have more than one row",
            "Keep one row per participant",
        )
    frame = frame.drop(columns=ID_COLUMN).set_axis(labels, axis=0)
    missing = [s for s in subjects if str(s) not in frame.index]
    if missing:
        raise InputError(
            path,
            f"no row for subject(s) {missing[:10]}{' …' if len(missing) > 10 else ''}",
            f"Add a row with {ID_COLUMN} sub-<label> for every subject analysed",
        )
    return frame.loc[[str(s) for s in subjects]]


def check_target(participants, column, path, min_per_class=2):
    """The classes of one phenotype column, checked for use as a prediction target.

    Parameters
    ----------
    participants : pandas.DataFrame
        From :func:`read_participants`.
    column : str
        The phenotype.
    path : str or pathlib.Path
        The table's path, for messages.
    min_per_class : int
        Fewest subjects a class may have.

    Returns
    -------
    numpy.ndarray of str
        One class per subject, in the table's order.
    """
    if column not in participants.columns:
        raise InputError(
            path,
            f"has no column {column!r} (it has {sorted(map(str, participants.columns))})",
            "Name one of its columns in the analysis (compare.column or predict.targets)",
        )
    values = participants[column]
    empty = [str(s) for s in participants.index[values.isna().to_numpy()]]
    if empty:
        raise InputError(
            path,
            f"column {column!r} is empty (n/a) for subject(s) {empty[:10]}",
            "Fill it in, or leave those subjects out of the dataset",
        )
    classes = np.array([_as_class(v) for v in values])
    names, counts = np.unique(classes, return_counts=True)
    if len(names) < 2:
        raise InputError(
            path,
            f"column {column!r} has one value ({names.tolist()}) for the subjects analysed",
            "A target needs at least two classes",
        )
    small = [f"{n} ({c})" for n, c in zip(names, counts, strict=True) if c < min_per_class]
    if small:
        raise InputError(
            path,
            f"column {column!r}: class(es) {small} have fewer than {min_per_class} subjects",
            "Cross-validation by subject needs more subjects per class, or merge classes",
        )
    return classes


def _as_class(value):
    """A class label as text, integers without a trailing ``.0`` (0/1 diagnoses)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def participants_frame(subjects, columns):
    """A participants table for ``subjects`` with phenotype ``columns`` (a mapping)."""
    frame = pd.DataFrame({ID_COLUMN: [f"sub-{s}" for s in subjects]})
    for name, values in columns.items():
        frame[name] = list(values)
    return frame


#: How a missing value is written (BIDS).
MISSING = "n/a"


def write_participants(frame, path):
    """Write a participants table (tab-separated, missing values as ``n/a``), atomically.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``participant_id`` first (see :func:`participants_frame`), then the
        phenotypes.
    path : str or pathlib.Path
        The canonical ``participants.tsv``.
    """
    if list(frame.columns[:1]) != [ID_COLUMN]:
        raise ValueError(
            f"a participants table starts with {ID_COLUMN}, not {list(frame.columns)}"
        )
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n", na_rep=MISSING)
    return path


def read_text_table(path, role, sep):
    """A table with every value as text (``n/a`` and empty cells missing), as written.

    Importing a table keeps its values as they are spelled (``40`` stays
    ``40``, a label ``NA`` stays ``NA``) rather than as pandas would
    re-type them.
    """
    from fmriflow.errors import check_file_exists

    path = check_file_exists(path, role)
    try:
        return pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, na_values=["", MISSING]
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        kind = "tab" if sep == "\t" else "comma"
        raise InputError(
            path,
            f"{role} is not a readable {kind}-separated table ({exc})",
            "Fix the file: one header row, then one row per participant",
        ) from exc


def import_participants(path, subjects):
    """A lab's BIDS ``participants.tsv`` restricted to ``subjects``, in their order.

    Every subject must have exactly one row (:func:`read_participants`
    stops otherwise, naming the file and the subjects); rows of other
    participants are left out, and every phenotype column is kept with its
    values as written.

    Parameters
    ----------
    path : str or pathlib.Path
        The lab's table (``local.participants``).
    subjects : sequence of str
        The dataset's subject labels.

    Returns
    -------
    pandas.DataFrame
        The canonical table: ``participant_id`` (``sub-<label>``), then the
        phenotypes.
    """
    subjects = [str(s) for s in subjects]
    read_participants(path, subjects)
    frame = read_text_table(path, "participants table", "\t")
    frame.index = [subject_label(value) for value in frame[ID_COLUMN]]
    rows = frame.loc[subjects].drop(columns=ID_COLUMN)
    return participants_frame(subjects, {c: rows[c].to_numpy() for c in rows.columns})


#: The column of ADHD-200's phenotypic table naming the subject.
ADHD_SUBJECT_COLUMN = "Subject"
_REDOWNLOAD = "Re-download the dataset (delete the file; the download rule fetches it again)"


def adhd_participants(path, subjects):
    """ADHD-200's phenotypic table as the participants table of ``subjects``.

    nilearn's ADHD sample comes with
    ``ADHD200_40subs_motion_parameters_and_phenotypics.csv``:
    comma-separated, one row per subject, a numeric ``Subject`` column
    (``10042``: the IDs without their leading zeros) and phenotypes such as
    ``site``, ``sex``, ``age`` and ``adhd`` (the diagnosis, 0 or 1). Rows
    are matched to the subject labels by number, so that
    ``participant_id`` is ``sub-`` and the label as
    ``nilearn.datasets.func.adhd_ids`` spells it (``sub-0010042``), as the
    subject folders are named; every other column is kept as written.

    Parameters
    ----------
    path : str or pathlib.Path
        The phenotypic table.
    subjects : sequence of str
        The dataset's subject labels (ADHD IDs).

    Returns
    -------
    pandas.DataFrame
        The canonical table, rows in the order of ``subjects``.
    """
    subjects = [str(s) for s in subjects]
    frame = read_text_table(path, "ADHD phenotypic table", ",")
    if ADHD_SUBJECT_COLUMN not in frame.columns:
        raise InputError(
            path,
            f"ADHD phenotypic table has no {ADHD_SUBJECT_COLUMN!r} column "
            f"(it has {list(frame.columns)[:10]})",
            _REDOWNLOAD,
        )
    numbers = [_subject_number(value, path) for value in frame[ADHD_SUBJECT_COLUMN]]
    wanted = [_subject_number(s, path) for s in subjects]
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    missing = [s for s, n in zip(subjects, wanted, strict=True) if n not in numbers]
    if repeated or missing:
        problem = (
            f"subject(s) {repeated} have more than one row"
            if repeated
            else f"no row for subject(s) {missing[:10]}"
        )
        raise InputError(path, problem, _REDOWNLOAD)
    rows = frame.iloc[[numbers.index(n) for n in wanted]].drop(columns=ADHD_SUBJECT_COLUMN)
    return participants_frame(subjects, {c: rows[c].to_numpy() for c in rows.columns})


def _subject_number(value, path):
    """An ADHD ID as a number (``0010042`` and ``10042`` are the same subject)."""
    text = "" if pd.isna(value) else str(value).strip()
    if not text.isdigit():
        raise InputError(
            path,
            f"{text!r} is not an ADHD subject ID (digits only)",
            "Give the IDs as nilearn.datasets.func.adhd_ids lists them; " + _REDOWNLOAD,
        )
    return int(text)
