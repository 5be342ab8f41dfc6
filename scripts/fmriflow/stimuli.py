"""The canonical per-volume stimulus table, ``stimuli.tsv``, of stimulus datasets.

Encoding and reconstruction analyses (Abraham et al. 2014, section 5;
Miyawaki et al. 2008) need to know, for every volume, what was on the
screen. Whatever the source (the Miyawaki archive, the simulator, a lab's
files), a subject of a ``stimulus`` dataset has, beside ``bold.nii.gz`` and
``events.tsv``, a tab-separated ``stimuli.tsv`` with one row per volume, in
volume order:

``run``
    The run, as in ``events.tsv``.
``split``
    ``train`` or ``test``, the same for every volume of a run: models are
    fitted on training runs (Miyawaki's random patterns) and reconstruction
    is scored on test runs (the geometric figures and letters).
``rest``
    1 for volumes with no stimulus, 0 otherwise.
feature columns
    Every other column: one stimulus feature per column. For images on a
    grid (``dataset.json`` ``stimulus.shape``, e.g. ``[10, 10]``), the pixels
    are named ``px_{row}_{col}`` in row-major order (row 0 at the top); rest
    volumes have every feature 0.

The stimulus is recorded as presented. The haemodynamic lag is applied by
the analyses (:func:`lagged_pairs`), as a configurable number of volumes,
so that no constant is hidden in the data.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmriflow.errors import InputError
from fmriflow.io import read_table, run_column

#: The columns of ``stimuli.tsv`` that are not stimulus features.
DESIGN_COLUMNS = ("run", "split", "rest")
#: The values of the ``split`` column.
SPLITS = ("train", "test")


def grid_columns(shape):
    """Feature column names of an image grid, row-major: ``px_{row}_{col}``."""
    rows, cols = shape
    return [f"px_{r}_{c}" for r in range(rows) for c in range(cols)]


def stimulus_table(features, runs, splits, rest, names):
    """Assemble a canonical stimulus table.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_volumes, n_features)
        Stimulus features per volume (0 on rest volumes).
    runs : array-like of int, shape (n_volumes,)
        Run of each volume.
    splits : array-like of str, shape (n_volumes,)
        ``train`` or ``test`` per volume.
    rest : array-like of bool, shape (n_volumes,)
        Volumes without a stimulus.
    names : list of str
        Feature column names (see :func:`grid_columns`).

    Returns
    -------
    pandas.DataFrame
    """
    design = pd.DataFrame(
        {
            "run": np.asarray(runs, dtype=int),
            "split": np.asarray(splits, dtype=str),
            "rest": np.asarray(rest, dtype=bool).astype(int),
        }
    )
    values = pd.DataFrame(np.asarray(features), columns=list(names))
    return pd.concat([design, values], axis=1)


@dataclass
class Stimuli:
    """A subject's stimulus table, read and checked.

    Attributes
    ----------
    features : numpy.ndarray, shape (n_volumes, n_features)
        Feature values (float64).
    names : list of str
        Feature names.
    runs : numpy.ndarray of int
        Run of each volume.
    split : numpy.ndarray of str
        ``train`` or ``test`` per volume.
    rest : numpy.ndarray of bool
        Volumes without a stimulus.
    shape : tuple of int or None
        Image grid of the features, if they are pixels.
    """

    features: np.ndarray
    names: list
    runs: np.ndarray
    split: np.ndarray
    rest: np.ndarray
    shape: tuple | None

    def images(self, rows):
        """The features of ``rows`` as images ``(n, n_rows, n_cols)``."""
        return self.features[rows].reshape(len(rows), *self.shape)


def read_stimuli(path, n_volumes=None, shape=None, runs=None):
    """Read and check a canonical ``stimuli.tsv``.

    Parameters
    ----------
    path : str or pathlib.Path
        The table.
    n_volumes : int, optional
        Volumes of the subject's BOLD image (rows required).
    shape : sequence of int, optional
        Image grid of the features (``dataset.json`` ``stimulus.shape``):
        the feature columns must be exactly :func:`grid_columns` of it.
    runs : array-like of int, optional
        The runs of ``events.tsv``, which the table's ``run`` column must equal.

    Returns
    -------
    Stimuli
    """
    frame = read_table(path, "stimulus table", required=DESIGN_COLUMNS)
    names = [c for c in frame.columns if c not in DESIGN_COLUMNS]
    if n_volumes is not None and len(frame) != n_volumes:
        raise InputError(
            path,
            f"stimulus table has {len(frame)} rows but the BOLD image has {n_volumes} volumes",
            "stimuli.tsv needs exactly one row per volume; check that it belongs to this "
            "subject's images",
        )
    table_runs = run_column(frame, path)
    if runs is not None and not np.array_equal(table_runs, np.asarray(runs)):
        raise InputError(
            path,
            "the 'run' column differs from the runs of events.tsv",
            "Write both tables from the same acquisition, one row per volume",
        )
    split = check_split(frame["split"].astype(str).to_numpy(), table_runs, path)
    if shape is not None:
        check_grid(names, shape, path)
    features = _numeric_features(frame, names, path)
    rest = frame["rest"].to_numpy()
    if not np.isin(rest, (0, 1)).all():
        raise InputError(path, "column 'rest' must be 0 or 1", "Mark rest volumes with 1")
    return Stimuli(
        features,
        names,
        table_runs,
        split,
        rest.astype(bool),
        None if shape is None else tuple(int(s) for s in shape),
    )


def check_split(split, runs, path):
    """``split`` is ``train`` or ``test``, one value per run, and both occur."""
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise InputError(
            path, f"column 'split' has the value(s) {unknown}", f"Use only {list(SPLITS)}"
        )
    mixed = [int(r) for r in np.unique(runs) if len(set(split[runs == r])) > 1]
    if mixed:
        raise InputError(
            path,
            f"run(s) {mixed} have both training and test volumes",
            "The split is by run: give every volume of a run the same split",
        )
    missing = [s for s in SPLITS if s not in set(split)]
    if missing:
        raise InputError(
            path,
            f"no {missing[0]} run: models are fitted on training runs and scored on test runs",
            "Mark at least one run 'train' and one 'test' in the 'split' column",
        )
    return split


def check_grid(names, shape, path):
    """The feature columns are exactly the pixels of ``shape``, in order."""
    expected = grid_columns(shape)
    if names != expected:
        raise InputError(
            path,
            f"feature columns do not form the {shape[0]}x{shape[1]} stimulus grid: "
            f"expected {len(expected)} columns {expected[0]} … {expected[-1]}, found "
            f"{len(names)}" + (f" ({names[0]} … {names[-1]})" if names else ""),
            "Write one px_{row}_{col} column per pixel, row-major, or fix stimulus.shape",
        )


def _numeric_features(frame, names, path):
    if not names:
        raise InputError(path, "stimulus table has no feature column", "Add feature columns")
    values = frame[names].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        column = values.columns[values.isna().any()][0]
        raise InputError(
            path,
            f"feature column {column!r} has empty or non-numeric values",
            "Give every volume a number per feature (0 on rest volumes)",
        )
    return values.to_numpy(dtype=np.float64)


def lagged_pairs(runs, lag):
    """Pair each volume with the stimulus shown ``lag`` volumes before it, within runs.

    The BOLD response peaks a few seconds after a stimulus: volume ``t`` of a
    run is paired with stimulus row ``t - lag`` of the same run, and the
    first ``lag`` volumes of every run, whose stimulus was not recorded, are
    left out (nilearn's Miyawaki examples do the same with ``lag = 2``).

    Parameters
    ----------
    runs : array-like of int, shape (n_volumes,)
        Run of each volume, in volume order (runs contiguous).
    lag : int
        Haemodynamic lag in volumes (0 for none).

    Returns
    -------
    bold_rows, stimulus_rows : numpy.ndarray of int
        Indices of the paired volumes and stimulus rows.
    """
    runs = np.asarray(runs)
    bold_rows, stimulus_rows = [], []
    for run in pd.unique(runs):
        rows = np.flatnonzero(runs == run)
        if len(rows) <= lag:
            raise InputError(
                f"run {run}",
                f"has {len(rows)} volumes, not more than the haemodynamic lag ({lag})",
                "Lower lag_volumes or leave the run out",
            )
        bold_rows.append(rows[lag:])
        stimulus_rows.append(rows[: len(rows) - lag])
    return np.concatenate(bold_rows), np.concatenate(stimulus_rows)


@dataclass
class StimulusPairs:
    """BOLD volumes paired with their (lagged) stimuli, for one split.

    Attributes
    ----------
    bold_rows, stimulus_rows : numpy.ndarray of int
        Paired indices into the subject's volumes and stimulus rows.
    runs : numpy.ndarray of int
        Run of each pair.
    """

    bold_rows: np.ndarray
    stimulus_rows: np.ndarray
    runs: np.ndarray


def split_pairs(stimuli, lag, split, include_rest, path="stimuli.tsv"):
    """The lagged pairs of one split, with or without rest stimuli.

    Parameters
    ----------
    stimuli : Stimuli
        The subject's stimulus table.
    lag : int
        Haemodynamic lag in volumes (see :func:`lagged_pairs`).
    split : {"train", "test"}
        Which runs.
    include_rest : bool
        Keep pairs whose stimulus is rest (a blank screen: every feature 0).
    path : str
        The table's file, for messages.

    Returns
    -------
    StimulusPairs
    """
    bold_rows, stimulus_rows = lagged_pairs(stimuli.runs, lag)
    keep = stimuli.split[stimulus_rows] == split
    if not include_rest:
        keep &= ~stimuli.rest[stimulus_rows]
    if not keep.any():
        raise InputError(
            path,
            f"no {split} volume with a stimulus after a lag of {lag} volumes",
            f"Check the 'split' and 'rest' columns: the {split} runs must show stimuli",
        )
    runs = stimuli.runs[stimulus_rows[keep]]
    check_stimulus_runs(stimuli, split, runs, path)
    return StimulusPairs(bold_rows[keep], stimulus_rows[keep], runs)


def check_stimulus_runs(stimuli, split, kept_runs, path):
    """Every run of ``split`` keeps at least one stimulus volume."""
    empty = sorted(int(r) for r in set(stimuli.runs[stimuli.split == split]) - set(kept_runs))
    if empty:
        raise InputError(
            path,
            f"{split} run(s) {empty} have no stimulus volume (every row is rest)",
            "Mark the stimulus volumes of these runs, or leave the runs out of the dataset",
        )


@dataclass
class StimulusAnalysis:
    """One subject's data for an encoding or reconstruction analysis.

    Attributes
    ----------
    matrix : numpy.memmap, shape (n_volumes, n_voxels)
        The cleaned matrix, all volumes, memory-mapped.
    stimuli : Stimuli
        The stimulus table.
    mask : numpy.ndarray of bool
        The preprocessing mask (the matrix's columns).
    affine : numpy.ndarray
        Its affine.
    columns : numpy.ndarray of bool, shape (n_voxels,)
        The subject ROI's columns, or every column without an ROI.
    """

    matrix: object
    stimuli: Stimuli
    mask: np.ndarray
    affine: np.ndarray
    columns: np.ndarray

    def voxels(self, rows):
        """The analysis' voxels at ``rows`` of the matrix, as float64."""
        return np.asarray(self.matrix[rows][:, self.columns], dtype=np.float64)


def load_stimulus_analysis(clean_path, events_path, stimuli_path, mask_path, shape, roi_path=None):
    """Read what an encoding or reconstruction node needs.

    Parameters
    ----------
    clean_path, events_path, stimuli_path, mask_path : str or pathlib.Path
        The subject's ``clean.npy``, ``events.tsv``, ``stimuli.tsv`` and
        preprocessing mask.
    shape : sequence of int or None
        The stimulus grid (``dataset.json`` ``stimulus.shape``).
    roi_path : str or pathlib.Path, optional
        The subject ROI: the analysis' voxels are then its voxels.

    Returns
    -------
    StimulusAnalysis
    """
    from fmriflow.io import load_mask, load_matrix, read_events
    from fmriflow.masking import roi_columns

    matrix = load_matrix(clean_path, "cleaned data matrix")
    events = read_events(events_path, n_volumes=matrix.shape[0])
    stimuli = read_stimuli(stimuli_path, matrix.shape[0], shape, runs=events["run"].to_numpy())
    mask, mask_img = load_mask(mask_path, "preprocessing mask")
    columns = np.ones(int(mask.sum()), dtype=bool)
    if roi_path is not None:
        columns, _ = roi_columns(mask, mask_img.affine, roi_path)
    return StimulusAnalysis(matrix, stimuli, mask, mask_img.affine, columns)


def stimulus_grid(description):
    """The image grid of a dataset's stimuli from its ``dataset.json``, or None."""
    stimulus = description.get("stimulus") or {}
    shape = stimulus.get("shape")
    return None if shape is None else tuple(int(s) for s in shape)
