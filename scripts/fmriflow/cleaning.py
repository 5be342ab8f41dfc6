"""Signal cleaning, run by run: detrending, band-pass, confounds, standardization.

This is ``nilearn.signal.clean`` with ``runs=``: every operation (linear
detrending, Butterworth high/low-pass in Hz given the TR, regression of
confounds, z-scoring) is done within each run, so nothing from one run
leaks into another, which matters when runs are the cross-validation folds.
Two things differ, neither in the values: voxels are cleaned in column
blocks written straight into the output matrix, so a whole-brain matrix is
never held in float64 in full (every voxel is cleaned independently, so
the result does not depend on the block size), and each run is cleaned by
nilearn's steps with its band-pass filter applied to the whole block at
once rather than column by column (identical values, about 25 times
faster; see :func:`clean_run`).
"""

import re
import warnings

import numpy as np

from fmriflow.errors import InputError
from fmriflow.io import check_columns

#: Number of voxels cleaned at once.
CLEAN_BLOCK_VOXELS = 4096


def check_filter_settings(tr, high_pass, low_pass):
    """Check band-pass cut-offs against the sampling rate.

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    high_pass, low_pass : float or None
        Cut-off frequencies in Hz.

    Raises
    ------
    InputError
        If a cut-off is not positive, is above the Nyquist frequency, or the
        high-pass is not below the low-pass.
    """
    nyquist = 0.5 / tr
    for key, value in (("high_pass", high_pass), ("low_pass", low_pass)):
        if value is not None and not 0 < value < nyquist:
            raise InputError(
                f"config key preprocess.clean.{key}",
                f"{value} Hz is outside (0, {nyquist:.4g}) Hz, the range a TR "
                f"of {tr} s can represent",
                "Use a cut-off between 0 and the Nyquist frequency 1/(2 TR), "
                "or null for no filter",
            )
    if high_pass is not None and low_pass is not None and high_pass >= low_pass:
        raise InputError(
            "config keys preprocess.clean.high_pass/low_pass",
            f"high_pass ({high_pass} Hz) must be below low_pass ({low_pass} Hz)",
            "Swap or correct the two cut-offs",
        )


def check_runs(runs, where):
    """Check that every run is long enough to be cleaned on its own.

    Parameters
    ----------
    runs : numpy.ndarray of int
        Run index of each volume.
    where : str
        The file the runs come from, for messages.
    """
    values, counts = np.unique(runs, return_counts=True)
    short = values[counts < 3]
    if short.size:
        raise InputError(
            where,
            f"run(s) {short.tolist()} have fewer than 3 volumes, too few to "
            "detrend and standardize",
            "Check the 'run' column; each run needs several volumes",
        )


def clean_runs(
    matrix,
    runs,
    tr,
    out,
    detrend=True,
    standardize="zscore_sample",
    high_pass=None,
    low_pass=None,
    confounds=None,
):
    """Clean a ``(time, voxel)`` matrix run by run into ``out``.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_volumes, n_voxels)
        Masked BOLD data (may be memory-mapped).
    runs : numpy.ndarray of int, shape (n_volumes,)
        Run of each volume; each run is cleaned separately.
    tr : float
        Repetition time in seconds.
    out : numpy.ndarray, shape (n_volumes, n_voxels)
        Destination, float32 (may be a memory-mapped ``.npy``).
    detrend : bool, default=True
        Remove a linear trend per run.
    standardize : {"zscore_sample", "psc"}, False or None
        Per-run standardization of each voxel (see ``nilearn.signal.clean``);
        False or None for none.
    high_pass, low_pass : float, optional
        Butterworth cut-offs in Hz.
    confounds : numpy.ndarray, shape (n_volumes, n_confounds), optional
        Regressed out per run (after being standardized).

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    runs = np.asarray(runs)
    check_filter_settings(tr, high_pass, low_pass)
    run_rows = {run: np.flatnonzero(runs == run) for run in np.unique(runs)}
    for start in range(0, matrix.shape[1], CLEAN_BLOCK_VOXELS):
        block = np.asarray(matrix[:, start : start + CLEAN_BLOCK_VOXELS], dtype=np.float64)
        for run, rows in run_rows.items():
            try:
                out[rows, start : start + block.shape[1]] = clean_run(
                    block[rows],
                    tr,
                    detrend,
                    standardize,
                    high_pass,
                    low_pass,
                    None if confounds is None else confounds[rows],
                )
            except ValueError as exc:
                raise too_short_to_filter(exc, run, rows.size) from None
    return out


def too_short_to_filter(exc, run, n_volumes):
    """The error for a run shorter than the Butterworth filter's padding, else ``exc``."""
    found = re.search(r"greater than padlen, which is (\d+)", str(exc))
    if found is None:
        return exc
    return InputError(
        f"run {run}",
        f"it has {n_volumes} volumes and the band-pass filter (preprocess.clean.high_pass/"
        f"low_pass) pads each run with {found.group(1)}, so it needs more than "
        f"{found.group(1)} volumes",
        "Leave the short run out, or set high_pass and low_pass to null (detrending "
        "still removes the linear drift)",
    )


def clean_run(signals, tr, detrend, standardize, high_pass, low_pass, confounds):
    """``nilearn.signal.clean`` of one run, its filter applied to all columns at once.

    ``clean(..., runs=...)`` cleans each run with this same call, but its
    Butterworth filter then runs one column at a time (``copy=False``,
    which saves memory): the same values, about 25 times slower.

    With z-scoring or no standardization, the run is cleaned by
    :func:`clean_run_steps`: nilearn's steps with the same operations in
    the same order, the filter on the whole block at once, so the same
    values (tested to the bit), without importing ``nilearn.signal``, whose
    imports (scikit-learn, pandas, ``scipy.signal`` and ``scipy.interpolate``)
    took more of a job than the cleaning itself. Percent signal change goes
    through nilearn, told to copy (``butterworth__copy=True``) so that it
    filters the whole block in one call too.
    """
    if standardize in (None, False, "zscore_sample"):
        return clean_run_steps(
            signals, tr, detrend, standardize or None, high_pass, low_pass, confounds
        )
    from nilearn.signal import clean

    with warnings.catch_warnings():
        # nilearn warns once per run when a filter is skipped; the
        # settings were checked above.
        warnings.filterwarnings("ignore", message=".*sample_mask.*")
        # nilearn announces that confounds will be scaled by the sample
        # rather than population std: a rescaling of regressors, which
        # leaves the residuals unchanged.
        warnings.filterwarnings(
            "ignore",
            message=".*confounds will be standardized.*",
            category=DeprecationWarning,
        )
        filtered = bool(high_pass or low_pass)
        return clean(
            signals,
            detrend=detrend,
            standardize=standardize,
            confounds=confounds,
            standardize_confounds=True,
            filter="butterworth" if filtered else False,
            high_pass=high_pass,
            low_pass=low_pass,
            t_r=tr,
            ensure_finite=False,
            **({"butterworth__copy": True} if filtered else {}),
        )


def band_pass(signals, tr, high_pass, low_pass):
    """Zero-phase Butterworth filter of each column, as ``nilearn.signal.butterworth``.

    An order-5 filter (high-, low- or band-pass in Hz at the sampling rate
    ``1 / tr``) run forwards and backwards over each column
    (``scipy.signal.sosfiltfilt``, odd padding of scipy's default length);
    the cut-offs must lie in (0, Nyquist) (:func:`check_filter_settings`).

    Parameters
    ----------
    signals : numpy.ndarray, shape (n_volumes, n_columns)
    tr : float
        Repetition time in seconds.
    high_pass, low_pass : float or None
        Cut-offs in Hz; at least one.

    Returns
    -------
    numpy.ndarray
        A new array, in C order.
    """
    from scipy.signal import butter, sosfiltfilt

    cutoffs = [f for f in (high_pass, low_pass) if f is not None]
    kind = "band" if len(cutoffs) == 2 else ("high" if high_pass is not None else "low")
    sos = butter(
        N=5,
        Wn=cutoffs if kind == "band" else cutoffs[0],
        btype=kind,
        output="sos",
        fs=1.0 / tr,
    )
    filtered = sosfiltfilt(sos, x=signals, axis=0, padtype="odd", padlen=None)
    # C order, as nilearn's next step copies it: column means summed over
    # another memory layout differ in the last bit.
    return np.ascontiguousarray(filtered)


#: Below this many columns nilearn detrends in one batch, otherwise in 10.
NILEARN_BATCH_COLUMNS = 500


def even_slices(n, n_slices):
    """``n`` items cut into ``n_slices`` consecutive slices whose sizes differ by at most 1.

    The first ``n % n_slices`` slices have one more item (empty slices are
    skipped): how nilearn batches its detrending.
    """
    start = 0
    for index in range(n_slices):
        size = n // n_slices + (1 if index < n % n_slices else 0)
        if size > 0:
            yield slice(start, start + size)
            start += size


def detrend_linear(signals):
    """A copy of ``signals`` (float64) without each column's mean and linear trend.

    nilearn's ``signal._detrend`` (``type="linear"``): the centred, unit-norm
    time ramp projected out of every column, in batches of columns.
    """
    signals = np.array(signals, dtype=np.float64)
    signals -= np.mean(signals, axis=0)
    ramp = np.arange(signals.shape[0], dtype=np.float64)
    ramp -= ramp.mean()
    norm = np.sqrt((ramp**2).sum())
    if not norm < np.finfo(np.float64).eps:
        ramp /= norm
    n_batches = 1 if signals.shape[1] < NILEARN_BATCH_COLUMNS else 10
    for batch in even_slices(signals.shape[1], n_batches):
        signals[:, batch] -= np.dot(ramp, signals[:, batch]) * ramp[:, np.newaxis]
    return signals


def zscore_sample(signals):
    """Centre each column and divide it by its sample standard deviation (ddof=1).

    Columns whose deviation is below float64's epsilon are only centred.
    """
    signals = signals - signals.mean(axis=0)
    std = signals.std(axis=0, ddof=1)
    std[std < np.finfo(np.float64).eps] = 1.0
    signals /= std
    return signals


def clean_run_steps(signals, tr, detrend, standardize, high_pass, low_pass, confounds):
    """One run cleaned as ``nilearn.signal.clean`` does it, step by step.

    Linear detrending of the signals and the confounds, the band-pass of
    both (:func:`band_pass`), z-scoring of the confounds, projection of the
    signals off the confounds' column space (pivoted QR, columns whose
    ``|R_ii|`` is below 100 epsilon dropped), then z-scoring of the signals.

    Parameters
    ----------
    signals : numpy.ndarray, shape (n_volumes, n_voxels)
        The run's signals (float64; not modified).
    tr : float
        Repetition time in seconds.
    detrend : bool
        Remove each column's linear trend (and mean).
    standardize : {"zscore_sample", None}
        Z-score each column at the end, or not.
    high_pass, low_pass : float or None
        Butterworth cut-offs in Hz (checked by :func:`check_filter_settings`);
        both None for no filter.
    confounds : numpy.ndarray, shape (n_volumes, n_confounds), optional
        Regressed out.

    Returns
    -------
    numpy.ndarray, float64
    """
    filtered = high_pass is not None or low_pass is not None
    signals = detrend_linear(signals) if detrend else np.array(signals, dtype=np.float64)
    if filtered:
        signals = band_pass(signals, tr, high_pass, low_pass)
    if confounds is not None:
        from scipy import linalg

        confounds = np.array(confounds, dtype=np.float64)
        if confounds.ndim == 1:
            confounds = confounds[:, np.newaxis]
        if detrend:
            confounds = detrend_linear(confounds)
        if filtered:
            confounds = band_pass(confounds, tr, high_pass, low_pass)
        confounds = zscore_sample(confounds)
        q, r, _ = linalg.qr(confounds, mode="economic", pivoting=True)
        q = q[:, np.abs(np.diag(r)) > np.finfo(np.float64).eps * 100.0]
        signals -= q.dot(q.T).dot(signals)
    if standardize is None:
        return signals
    return zscore_sample(signals)


def select_confounds(frame, columns, path):
    """Pick confound columns from a table and check them.

    Parameters
    ----------
    frame : pandas.DataFrame
        The subject's ``confounds.tsv``.
    columns : list of str or None
        Columns to use; None uses all of them.
    path : str
        The table's file, for messages.

    Returns
    -------
    numpy.ndarray, shape (n_volumes, n_columns)
    """
    if columns is None:
        columns = list(frame.columns)
    check_columns(
        frame, columns, path, "confounds table", "Fix preprocess.clean.confounds in the config"
    )
    values = frame[columns].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(
            path,
            "confounds contain NaN or n/a values",
            "Fill them (fMRIPrep's first-volume n/a are set to 0 on import) "
            "or choose other columns",
        )
    return values
