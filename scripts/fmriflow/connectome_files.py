"""The files of the connectome stage: region tables, per-subject matrices and signals.

Every per-subject file carries its region names (matrix rows and columns,
signal columns); the group nodes read them through these functions, which
check that every subject has the regions of the analysis' table, in the
same order, so that no edge is ever matched to the wrong pair of regions.
"""

import numpy as np

from fmriflow.errors import InputError
from fmriflow.io import read_matrix, read_table

#: Columns of a region table (``regions.tsv``).
REGION_TABLE_COLUMNS = ("index", "name", "network", "x", "y", "z")


def read_region_table(path):
    """A region table, its names as text and its centres as floats.

    Parameters
    ----------
    path : str or pathlib.Path
        ``regions.tsv`` written by the ``connectome_regions`` node (or an
        atlas' ``regions.tsv``).

    Returns
    -------
    pandas.DataFrame
    """
    table = read_table(path, "region table", required=REGION_TABLE_COLUMNS)
    table["name"] = table["name"].astype(str)
    table["network"] = table["network"].fillna("").astype(str)
    repeated = sorted({n for n in table["name"] if (table["name"] == n).sum() > 1})
    if repeated:
        raise InputError(path, f"region names {repeated[:5]} are used twice", "Name regions once")
    return table


def read_subject_matrices(paths_by_measure, measures, names):
    """Every subject's matrices of several measures, checked against the region names.

    Parameters
    ----------
    paths_by_measure : mapping
        Measure name to the list of the subjects' files (in subject order).
    measures : sequence of str
        The measures to read.
    names : list of str
        The regions of the analysis, in order.

    Returns
    -------
    dict of str to numpy.ndarray
        Measure to an array of shape ``(n_subjects, n_regions, n_regions)``.
    """
    return {
        measure: np.array([read_matrix(path, names)[0] for path in paths_by_measure[measure]])
        for measure in measures
    }


def read_subject_signals(paths, names):
    """Every subject's region signals, checked against the region names.

    Returns
    -------
    list of numpy.ndarray
        One ``(n_volumes, n_regions)`` array per subject.
    """
    signals = []
    for path in paths:
        frame = read_table(path, "region signals")
        if [str(c) for c in frame.columns] != list(names):
            raise InputError(
                path,
                "its regions are not those of the analysis' region table",
                "Re-run the workflow so that every subject uses the same regions",
            )
        signals.append(frame.to_numpy(dtype=np.float64))
    return signals
