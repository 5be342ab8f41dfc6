"""Voxel-wise encoding models (Abraham et al., 2014, section 5; Miyawaki et al., 2008).

Each voxel's cleaned BOLD signal is predicted from stimulus features (e.g.
the 100 binary pixels of a 10 x 10 image) by ridge regression,
cross-validated by run, with the penalty chosen per voxel by an inner
cross-validation by run on the training runs only.

* Ridge is the model of ``sklearn.linear_model.Ridge(alpha)`` (intercept
  fitted: X and Y centred on the training means), solved for every voxel and
  every penalty at once from one SVD of the centred training stimuli per
  fold: with ``Xc = U diag(s) V^T``, ``coef = V diag(s / (s^2 + alpha)) U^T
  Yc``. The projections ``U^T Yc`` are computed once per fold and reused for
  every penalty; no scikit-learn estimator is fitted per voxel.
* The penalty of each voxel is the one of best mean R^2 over the inner
  folds, ties going to the first penalty of the grid, as
  ``GridSearchCV(Ridge(), {"alpha": alphas}, scoring="r2")`` chooses for
  that voxel alone.
* The null distribution circularly shifts each run's stimuli by a random
  offset (:func:`shifted_stimuli`): it keeps the autocorrelation of stimulus
  and BOLD and breaks only their alignment, where shuffling volumes would
  break the autocorrelation and give a too narrow null.
* Population receptive fields (Dumoulin & Wandell, 2008) are fitted by a grid
  search over Gaussian candidates (:func:`fit_prf`); a sparse receptive
  field by ``LassoLarsCV`` (:func:`lasso_receptive_field`).

Features are pixels in row-major order: feature ``j`` is pixel
``(j // n_cols, j % n_cols)``.
"""

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from fmriflow.errors import InputError

logger = logging.getLogger("fmriflow.encoding")

#: Standard deviations (pixels) of the candidate population receptive fields.
PRF_SIZES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: Singular values at or below this count as zero (as scikit-learn's ``svd`` solver).
SINGULAR_TOLERANCE = 1e-15
#: Voxels correlated with the pRF candidates at once in :func:`fit_prf`.
PRF_BLOCK = 1024


# --- checks ------------------------------------------------------------------


def _as_matrix(values, name):
    """``values`` as a finite 2D float64 array (a 1D array becomes one column)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise InputError(
            name,
            f"has shape {array.shape}, expected (n_samples, n_columns)",
            "Pass a 2D array with one row per volume",
        )
    if not np.all(np.isfinite(array)):
        raise InputError(
            name, "contains NaN or infinite values", "Clean or mask the data before encoding"
        )
    return array


def _check_samples(X, Y, groups=None):
    """Stimuli, signals (float64, 2D) and runs; the same number of volumes in each."""
    X = _as_matrix(X, "encoding stimuli X")
    Y = _as_matrix(Y, "encoding signals Y")
    if X.shape[0] != Y.shape[0]:
        raise InputError(
            "encoding signals Y",
            f"has {Y.shape[0]} volumes but the stimuli have {X.shape[0]}",
            "Give one stimulus row per BOLD volume",
        )
    if groups is None:
        return X, Y, None
    groups = np.asarray(groups)
    if groups.shape != (X.shape[0],):
        raise InputError(
            "encoding runs (groups)",
            f"has shape {groups.shape}, expected ({X.shape[0]},)",
            "Give the run of every volume",
        )
    return X, Y, groups


def _check_alphas(alphas):
    """The penalty grid as a 1D float64 array of positive values."""
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)):
        raise InputError(
            f"ridge penalties {alphas.tolist()}",
            "must be a non-empty list of finite numbers",
            "Give e.g. numpy.logspace(-1, 4, 10)",
        )
    if np.any(alphas <= 0):
        raise InputError(
            f"ridge penalties {alphas.tolist()}",
            "must all be positive",
            "Drop zero and negative penalties (ridge needs alpha > 0)",
        )
    return alphas


def _check_test_fold(test, where):
    if len(test) < 2:
        raise InputError(
            where,
            f"a test fold has {len(test)} volume(s); R^2 needs at least two",
            "Use a cross-validation by run whose runs have at least two volumes",
        )


# --- scores --------------------------------------------------------------------


def _squared_norms(values):
    """Sum of squares of every column."""
    return np.einsum("ij,ij->j", values, values)


def _r2_from_sums(numerator, denominator):
    """``1 - numerator / denominator`` with scikit-learn's ``force_finite`` conventions."""
    scores = np.ones(numerator.shape)
    valid = (numerator != 0) & (denominator != 0)
    scores[valid] = 1 - numerator[valid] / denominator[valid]
    scores[(numerator != 0) & (denominator == 0)] = 0.0
    return scores


def r2_columns(y_true, y_pred):
    """R^2 of every column, as ``sklearn.metrics.r2_score(multioutput="raw_values")``.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray, shape (n_samples, n_columns)
        Observed and predicted signals.

    Returns
    -------
    numpy.ndarray, shape (n_columns,)
        ``1 - SS_res / SS_tot``; 1.0 for a perfect prediction (even of a
        constant column) and 0.0 for an imperfect prediction of a constant
        column, as scikit-learn's ``force_finite=True``.
    """
    numerator = _squared_norms(y_true - y_pred)
    return _r2_from_sums(numerator, _squared_norms(y_true - y_true.mean(axis=0)))


def correlation_columns(a, b):
    """Pearson correlation of matching columns of ``a`` and ``b``; 0 where a variance is 0."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    numerator = np.einsum("ij,ij->j", a, b)
    denominator = np.sqrt(_squared_norms(a) * _squared_norms(b))
    r = np.zeros(numerator.shape)
    ok = denominator > 0
    r[ok] = numerator[ok] / denominator[ok]
    return r


# --- ridge, every voxel and every penalty at once ------------------------------------


@dataclass(frozen=True)
class _RidgeFold:
    """One SVD of the centred training stimuli and the projected centred signals."""

    x_mean: np.ndarray
    y_mean: np.ndarray
    s: np.ndarray
    vt: np.ndarray
    uty: np.ndarray

    @classmethod
    def fit(cls, X, Y, svd_cache=None):
        """The fold of training stimuli ``X`` and signals ``Y``.

        ``svd_cache`` (a dict, optional) keeps the SVD of each distinct ``X``
        (keyed by its bytes): the same bytes give the same SVD, so a cached
        one changes no result.
        """
        from scipy.linalg import svd

        key = None
        if svd_cache is not None:
            key = (X.shape, X.dtype.str, hashlib.blake2b(X.tobytes(), digest_size=16).digest())
        if key in (svd_cache or {}):
            x_mean, u, s, vt = svd_cache[key]
        else:
            x_mean = X.mean(axis=0)
            u, s, vt = svd(X - x_mean, full_matrices=False)
            if svd_cache is not None:
                svd_cache[key] = (x_mean, u, s, vt)
        y_mean = Y.mean(axis=0)
        return cls(x_mean, y_mean, s, vt, u.T @ (Y - y_mean))

    def shrinkage(self, alpha):
        """``s / (s^2 + alpha)``, zero for null singular values."""
        d = np.zeros_like(self.s)
        keep = self.s > SINGULAR_TOLERANCE
        d[keep] = self.s[keep] / (self.s[keep] ** 2 + alpha)
        return d

    def project(self, X_test):
        """Centred test stimuli in the right singular basis, ``(X_test - mean) V``."""
        return (X_test - self.x_mean) @ self.vt.T

    def centred_predictions(self, projected, alpha):
        """Predictions minus the training mean, for one penalty."""
        return (projected * self.shrinkage(alpha)) @ self.uty


def ridge_predictions(X_train, Y_train, X_test, alphas):
    """Held-out predictions of ridge for every penalty at once.

    The model of ``sklearn.linear_model.Ridge(alpha, fit_intercept=True)``:
    X and Y are centred on the training means and, with the SVD of the
    centred training stimuli ``Xc = U diag(s) V^T``, ``coef = V diag(s / (s^2
    + alpha)) U^T Yc``. One SVD serves every penalty and every voxel.

    Parameters
    ----------
    X_train : numpy.ndarray, shape (n_train, n_features)
        Training stimuli.
    Y_train : numpy.ndarray, shape (n_train, n_voxels)
        Training signals.
    X_test : numpy.ndarray, shape (n_test, n_features)
        Stimuli to predict from.
    alphas : array-like of float, shape (n_alphas,)
        Ridge penalties (positive).

    Returns
    -------
    numpy.ndarray, shape (n_alphas, n_test, n_voxels)
        The predictions for each penalty.
    """
    X_train, Y_train, _ = _check_samples(X_train, Y_train)
    X_test = _as_matrix(X_test, "encoding test stimuli")
    if X_test.shape[1] != X_train.shape[1]:
        raise InputError(
            "encoding test stimuli",
            f"have {X_test.shape[1]} features but the training stimuli {X_train.shape[1]}",
            "Give test stimuli with the training stimuli's features",
        )
    alphas = _check_alphas(alphas)
    fold = _RidgeFold.fit(X_train, Y_train)
    projected = fold.project(X_test)
    out = np.empty((alphas.size, X_test.shape[0], Y_train.shape[1]))
    for i, alpha in enumerate(alphas):
        out[i] = fold.centred_predictions(projected, alpha)
        out[i] += fold.y_mean
    return out


def ridge_coefficients(X, Y, alphas_per_voxel, svd_cache=None):
    """Coefficients and intercepts of ridge with one penalty per voxel.

    One SVD of the centred stimuli; voxels that share a penalty are solved
    together.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
        Stimuli.
    Y : numpy.ndarray, shape (n_samples, n_voxels)
        Signals.
    alphas_per_voxel : float or array-like, shape (n_voxels,)
        The penalty of each voxel (a single value applies to all).
    svd_cache : dict, optional
        SVDs of stimuli already decomposed (see :func:`null_scores`).

    Returns
    -------
    coef : numpy.ndarray, shape (n_features, n_voxels)
        ``Ridge(alpha).fit(X, Y[:, v]).coef_`` in column ``v``.
    intercept : numpy.ndarray, shape (n_voxels,)
        The intercepts.
    """
    X, Y, _ = _check_samples(X, Y)
    penalties = np.asarray(alphas_per_voxel, dtype=np.float64)
    if penalties.ndim == 0:
        penalties = np.full(Y.shape[1], penalties)
    if penalties.shape != (Y.shape[1],):
        raise InputError(
            "ridge penalties per voxel",
            f"have shape {penalties.shape}, expected ({Y.shape[1]},)",
            "Give one penalty per voxel (column of Y), or a single value",
        )
    penalties = _check_alphas(penalties)
    fold = _RidgeFold.fit(X, Y, svd_cache)
    coef = np.empty((X.shape[1], Y.shape[1]))
    for alpha in np.unique(penalties):
        columns = np.flatnonzero(penalties == alpha)
        coef[:, columns] = fold.vt.T @ (fold.shrinkage(alpha)[:, None] * fold.uty[:, columns])
    intercept = fold.y_mean - fold.x_mean @ coef
    return coef, intercept


def select_alphas(X, Y, groups, alphas, inner_cv, svd_cache=None):
    """Index of the best ridge penalty of every voxel, by an inner cross-validation by run.

    The score of a penalty is the mean over the inner folds of the fold's
    R^2 (``sklearn.metrics.r2_score`` of the voxel); the best score wins,
    ties going to the first (smallest index) penalty: the choice of
    ``GridSearchCV(Ridge(), {"alpha": alphas}, cv=inner_cv, scoring="r2")``
    fitted on that voxel alone. One SVD per inner fold.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
        Stimuli (of the training runs of an outer fold).
    Y : numpy.ndarray, shape (n_samples, n_voxels)
        Signals.
    groups : numpy.ndarray, shape (n_samples,)
        Run of each volume.
    alphas : array-like of float, shape (n_alphas,)
        The penalty grid.
    inner_cv : splitter
        An object with ``split(X, Y, groups)``, e.g. ``LeaveOneGroupOut()``.
    svd_cache : dict, optional
        SVDs of stimuli already decomposed (see :func:`null_scores`).

    Returns
    -------
    numpy.ndarray of int, shape (n_voxels,)
        Index into ``alphas`` for every voxel.
    """
    X, Y, groups = _check_samples(X, Y, groups)
    alphas = _check_alphas(alphas)
    fold_scores = []
    for train, test in inner_cv.split(X, Y, groups):
        _check_test_fold(test, "inner cross-validation")
        fold = _RidgeFold.fit(X[train], Y[train], svd_cache)
        projected = fold.project(X[test])
        observed = Y[test] - fold.y_mean
        total = _squared_norms(observed - observed.mean(axis=0))
        scores = np.empty((alphas.size, Y.shape[1]))
        for i, alpha in enumerate(alphas):
            residuals = fold.centred_predictions(projected, alpha)
            np.subtract(observed, residuals, out=residuals)
            scores[i] = _r2_from_sums(_squared_norms(residuals), total)
        fold_scores.append(scores)
    if not fold_scores:
        raise InputError(
            "inner cross-validation", "gave no folds", "Use a splitter over at least two runs"
        )
    # Folds last and contiguous, so that the mean sums in GridSearchCV's order.
    mean = np.ascontiguousarray(np.stack(fold_scores, axis=-1)).mean(axis=-1)
    return np.argmax(mean, axis=0)


# --- cross-validated encoding -----------------------------------------------------


@dataclass
class EncodingResult:
    """The outcome of :func:`cross_validated_encoding`.

    Attributes
    ----------
    predictions : numpy.ndarray, shape (n_samples, n_voxels)
        Out-of-fold predictions (each volume predicted by the model of the
        fold that held its run out).
    alpha_index : numpy.ndarray of int, shape (n_folds, n_voxels)
        Index into ``alphas`` of the penalty chosen for each voxel in each
        outer fold.
    alphas : numpy.ndarray, shape (n_alphas,)
        The penalty grid.
    r2 : numpy.ndarray, shape (n_voxels,)
        R^2 of the pooled out-of-fold predictions
        (``r2_score(Y, predictions, multioutput="raw_values")``).
    correlation : numpy.ndarray, shape (n_voxels,)
        Pearson correlation of Y and the pooled predictions (0 where a
        variance is 0).
    fold_r2 : numpy.ndarray, shape (n_folds, n_voxels)
        R^2 on each outer test fold.
    folds : list of (numpy.ndarray, numpy.ndarray)
        The outer ``(train, test)`` indices.
    """

    predictions: np.ndarray
    alpha_index: np.ndarray
    alphas: np.ndarray
    r2: np.ndarray
    correlation: np.ndarray
    fold_r2: np.ndarray
    folds: list

    @property
    def chosen_alphas(self):
        """The penalty values chosen, shape (n_folds, n_voxels)."""
        return self.alphas[self.alpha_index]


def _check_partition(folds, n_samples):
    tested = np.zeros(n_samples, dtype=int)
    for _, test in folds:
        _check_test_fold(test, "outer cross-validation")
        tested[test] += 1
    if not np.all(tested == 1):
        raise InputError(
            "outer cross-validation",
            f"tests {int(np.sum(tested == 0))} volume(s) never and "
            f"{int(np.sum(tested > 1))} more than once",
            "Use a splitter whose test folds partition the volumes, e.g. LeaveOneGroupOut "
            "or GroupKFold",
        )


def cross_validated_encoding(X, Y, groups, alphas, outer_cv, inner_cv, svd_cache=None):
    """Ridge encoding model of every voxel, cross-validated by run, penalty chosen per voxel.

    In each outer training fold the penalties are selected per voxel by
    :func:`select_alphas` (``inner_cv`` over the training runs only), the
    model is refitted on the whole training fold with each voxel's penalty
    and predicts the test runs. For one voxel this is
    ``cross_val_predict(GridSearchCV(Ridge(), {"alpha": alphas},
    cv=inner_cv, scoring="r2"), ...)`` with the runs passed to both
    cross-validations.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
        Stimuli.
    Y : numpy.ndarray, shape (n_samples, n_voxels)
        Signals (cleaned BOLD).
    groups : numpy.ndarray, shape (n_samples,)
        Run of each volume.
    alphas : array-like of float, shape (n_alphas,)
        The penalty grid. With a single value no inner cross-validation is
        run (its choice is forced).
    outer_cv, inner_cv : splitter
        Objects with ``split(X, Y, groups)``; the outer test folds must
        partition the volumes.
    svd_cache : dict, optional
        SVDs of stimuli already decomposed (see :func:`null_scores`).

    Returns
    -------
    EncodingResult
    """
    X, Y, groups = _check_samples(X, Y, groups)
    if groups is None:
        raise InputError(
            "encoding runs (groups)", "missing", "Give the run of every volume (groups)"
        )
    alphas = _check_alphas(alphas)
    folds = [(np.asarray(train), np.asarray(test)) for train, test in outer_cv.split(X, Y, groups)]
    _check_partition(folds, X.shape[0])
    predictions = np.empty_like(Y)
    alpha_index = np.zeros((len(folds), Y.shape[1]), dtype=np.intp)
    fold_r2 = np.empty((len(folds), Y.shape[1]))
    for k, (train, test) in enumerate(folds):
        X_train, Y_train = X[train], Y[train]
        if alphas.size > 1:
            alpha_index[k] = select_alphas(
                X_train, Y_train, groups[train], alphas, inner_cv, svd_cache
            )
        coef, intercept = ridge_coefficients(X_train, Y_train, alphas[alpha_index[k]], svd_cache)
        del Y_train
        predictions[test] = X[test] @ coef + intercept
        fold_r2[k] = r2_columns(Y[test], predictions[test])
    return EncodingResult(
        predictions=predictions,
        alpha_index=alpha_index,
        alphas=alphas,
        r2=r2_columns(Y, predictions),
        correlation=correlation_columns(Y, predictions),
        fold_r2=fold_r2,
        folds=folds,
    )


# --- the null: stimuli shifted within runs ------------------------------------------


def shifted_stimuli(X, groups, rng, min_shift):
    """Each run's stimuli circularly shifted by an independent random offset.

    The offset of a run of ``n`` volumes is drawn uniformly in ``[min_shift,
    n - min_shift]``, so stimulus and signal are at least ``min_shift``
    volumes out of alignment either way. Shifting keeps the autocorrelation
    of both stimulus and BOLD and breaks only their alignment: a valid null
    for autocorrelated fMRI, where shuffling volumes is not.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
        Stimuli.
    groups : numpy.ndarray, shape (n_samples,)
        Run of each volume (a run's volumes in time order).
    rng : numpy.random.Generator or int
        The random generator (or its seed).
    min_shift : int
        The smallest shift, in volumes (at least 1); choose it longer than
        the autocorrelation of the signal.

    Returns
    -------
    numpy.ndarray, shape (n_samples, n_features)
        Row ``i`` of run ``r`` is the stimulus of the run's row ``(i - offset_r) mod n_r``.
    """
    X = np.asarray(X)
    groups = np.asarray(groups)
    if groups.shape != (X.shape[0],):
        raise InputError(
            "encoding runs (groups)",
            f"has shape {groups.shape}, expected ({X.shape[0]},)",
            "Give the run of every volume",
        )
    return X[shift_order(groups, rng, min_shift)]


def shift_order(groups, rng, min_shift):
    """The rows of :func:`shifted_stimuli`: its row ``i`` is row ``order[i]`` of the stimuli.

    Parameters
    ----------
    groups : numpy.ndarray, shape (n_samples,)
        Run of each volume (a run's volumes in time order).
    rng : numpy.random.Generator or int
        The random generator (or its seed); one offset is drawn per run.
    min_shift : int
        The smallest shift, in volumes (at least 1).

    Returns
    -------
    numpy.ndarray of int, shape (n_samples,)
    """
    groups = np.asarray(groups)
    if int(min_shift) != min_shift or min_shift < 1:
        raise InputError(
            f"min_shift {min_shift}",
            "must be a whole number of volumes, at least 1",
            "Choose a shift longer than the signal's autocorrelation, e.g. 10 volumes",
        )
    min_shift = int(min_shift)
    rng = np.random.default_rng(rng)
    order = np.arange(groups.size)
    for run in np.unique(groups):
        rows = np.flatnonzero(groups == run)
        if rows.size < 2 * min_shift + 1:
            raise InputError(
                f"run {run}",
                f"has {rows.size} volumes, too few for shifts of at least {min_shift} "
                f"volumes (needs {2 * min_shift + 1})",
                "Lower min_shift or leave the run out",
            )
        offset = rng.integers(min_shift, rows.size - min_shift, endpoint=True)
        order[rows] = np.roll(rows, offset)
    return order


def null_scores(X, Y, groups, alphas, outer_cv, inner_cv, n_permutations, seed, min_shift):
    """Cross-validated R^2 of every voxel for stimuli shifted within runs.

    Parameters
    ----------
    X, Y, groups, alphas, outer_cv, inner_cv
        As for :func:`cross_validated_encoding`.
    n_permutations : int
        Number of shifted stimuli.
    seed : int
        Seed of the shifts.
    min_shift : int
        See :func:`shifted_stimuli`.

    Returns
    -------
    numpy.ndarray, shape (n_permutations, n_voxels)
        ``cross_validated_encoding(shifted, Y, ...).r2`` for each shift.
    """
    if int(n_permutations) != n_permutations or n_permutations < 1:
        raise InputError(
            f"n_permutations {n_permutations}", "must be a whole number, at least 1", "e.g. 100"
        )
    rng = np.random.default_rng(seed)
    X, Y, groups = _check_samples(X, Y, groups)
    null = np.empty((int(n_permutations), Y.shape[1]))
    # Shifted stimuli pair stimulus row order[i] with signal row i; the same
    # pairs are the stimuli in place and the signals moved the other way
    # (row order[i] of the moved signals is row i). The folds are the same
    # (shifts stay within runs), and so are the stimuli of every training
    # fold: each fold's SVD is computed once for all the shifts.
    svd_cache = {}
    moved = np.empty_like(Y)
    for i in range(int(n_permutations)):
        moved[shift_order(groups, rng, min_shift)] = Y
        null[i] = cross_validated_encoding(
            X, moved, groups, alphas, outer_cv, inner_cv, svd_cache
        ).r2
        logger.debug("shifted stimuli %d/%d", i + 1, n_permutations)
    return null


def permutation_pvalues(observed, null, level=0.95):
    """Per-voxel p-values and the family-wise (max-statistic) threshold.

    Parameters
    ----------
    observed : numpy.ndarray, shape (n_voxels,)
        The observed scores.
    null : numpy.ndarray, shape (n_permutations, n_voxels)
        The scores under the null.
    level : float
        The percentile (as a fraction) of the maximum over voxels taken as
        threshold (0.95: family-wise error rate 5%).

    Returns
    -------
    pvalues : numpy.ndarray, shape (n_voxels,)
        ``(1 + #{null >= observed}) / (1 + n_permutations)``.
    fwe_threshold : float
        The ``level`` percentile over permutations of the maximum over
        voxels: scores above it are significant, family-wise corrected.
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.atleast_2d(np.asarray(null, dtype=np.float64))
    if null.shape[1:] != observed.shape:
        raise InputError(
            "permutation scores",
            f"have shape {null.shape}, expected (n_permutations, {observed.size})",
            "Give one row of scores per permutation, one column per voxel",
        )
    pvalues = (1.0 + np.sum(null >= observed, axis=0)) / (1.0 + null.shape[0])
    fwe_threshold = float(np.percentile(null.max(axis=1), 100 * level))
    return pvalues, fwe_threshold


# --- population receptive fields ---------------------------------------------------


def _grid_centres(n, step):
    """Coordinates ``0, step, 2 step, ...`` up to ``n - 1`` (inclusive)."""
    count = int(np.floor((n - 1) / step + 1e-9)) + 1
    return np.arange(count) * step


def gaussian_prf_bank(shape, step=0.5, sizes=PRF_SIZES):
    """Candidate Gaussian population receptive fields on an image grid.

    Parameters
    ----------
    shape : tuple of int
        The image grid, ``(n_rows, n_cols)``; pixel ``(r, c)`` has centre
        ``(r, c)``.
    step : float
        Spacing of the candidate centres, in pixels, over ``[0, n_rows - 1]``
        x ``[0, n_cols - 1]``.
    sizes : sequence of float
        Standard deviations of the candidates, in pixels.

    Returns
    -------
    weights : numpy.ndarray, shape (n_pixels, n_candidates)
        ``exp(-((r - row)^2 + (c - col)^2) / (2 size^2))`` of every pixel
        (row-major) for every candidate.
    parameters : pandas.DataFrame
        ``row``, ``col``, ``size`` of every candidate (size slowest, then
        row, then column).
    """
    import pandas as pd

    n_rows, n_cols = (int(n) for n in shape)
    sizes = np.asarray(sizes, dtype=np.float64).ravel()
    if n_rows < 1 or n_cols < 1 or not step > 0 or sizes.size == 0 or np.any(sizes <= 0):
        raise InputError(
            f"pRF grid {tuple(shape)}, step {step}, sizes {sizes.tolist()}",
            "needs a non-empty grid, a positive step and positive sizes",
            "Give e.g. shape (10, 10), step 0.5, sizes (0.5, 1, 2)",
        )
    size, row, col = np.meshgrid(
        sizes, _grid_centres(n_rows, step), _grid_centres(n_cols, step), indexing="ij"
    )
    size, row, col = size.ravel(), row.ravel(), col.ravel()
    pixel_row, pixel_col = np.divmod(np.arange(n_rows * n_cols), n_cols)
    distance2 = (pixel_row[:, None] - row) ** 2 + (pixel_col[:, None] - col) ** 2
    weights = np.exp(-distance2 / (2 * size**2))
    return weights, pd.DataFrame({"row": row, "col": col, "size": size})


def _standardised_columns(values):
    """Columns centred and scaled to unit norm; (numerically) constant columns set to 0."""
    centred = values - values.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    scale = np.sqrt((values**2).sum(axis=0))
    constant = norm <= 1e-10 * scale
    norm[constant] = 1.0
    centred /= norm
    centred[:, constant] = 0.0
    return centred, constant


def fit_prf(X, Y, shape, step=0.5, sizes=PRF_SIZES, block=PRF_BLOCK):
    """Grid-search fit of a Gaussian population receptive field per voxel.

    As Dumoulin & Wandell (2008), without the HRF (``Y`` is taken to be
    aligned with the stimuli): for every voxel the candidate of
    :func:`gaussian_prf_bank` whose predicted time course ``X @ weights``
    correlates best (largest Pearson r) with the voxel's signal. One matrix
    product of the standardised candidates with the standardised voxels, in
    blocks of ``block`` voxels.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_pixels)
        Stimuli, pixels row-major.
    Y : numpy.ndarray, shape (n_samples, n_voxels)
        Signals.
    shape : tuple of int
        ``(n_rows, n_cols)`` of the image, ``n_rows * n_cols == n_pixels``.
    step, sizes
        See :func:`gaussian_prf_bank`.
    block : int
        Voxels per block (memory: ``n_candidates x block`` floats).

    Returns
    -------
    pandas.DataFrame
        One row per voxel: ``row``, ``col``, ``size`` of the best candidate
        (first one on ties) and its ``correlation``; for a constant voxel
        the parameters are NaN and the correlation 0.
    """
    X, Y, _ = _check_samples(X, Y)
    if X.shape[1] != int(np.prod(shape)):
        raise InputError(
            "encoding stimuli X",
            f"have {X.shape[1]} features, not the {int(np.prod(shape))} pixels of {tuple(shape)}",
            "Give the image shape of the stimuli (pixels row-major)",
        )
    weights, parameters = gaussian_prf_bank(shape, step, sizes)
    candidates, _ = _standardised_columns(X @ weights)
    candidates = np.ascontiguousarray(candidates.T)
    best = np.zeros(Y.shape[1], dtype=np.intp)
    correlation = np.zeros(Y.shape[1])
    constant = np.zeros(Y.shape[1], dtype=bool)
    for start in range(0, Y.shape[1], max(int(block), 1)):
        columns = slice(start, start + max(int(block), 1))
        voxels, constant[columns] = _standardised_columns(Y[:, columns])
        r = candidates @ voxels
        best[columns] = np.argmax(r, axis=0)
        correlation[columns] = r[best[columns], np.arange(r.shape[1])]
    fitted = parameters.iloc[best].reset_index(drop=True)
    fitted.loc[constant, ["row", "col", "size"]] = np.nan
    fitted["correlation"] = np.where(constant, 0.0, correlation)
    return fitted


def lasso_receptive_field(X, y, groups, n_splits=5):
    """A sparse receptive field: ``LassoLarsCV`` with folds by run.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
        Stimuli.
    y : numpy.ndarray, shape (n_samples,)
        One voxel's signal.
    groups : numpy.ndarray, shape (n_samples,)
        Run of each volume.
    n_splits : int
        Folds of the ``GroupKFold`` over runs that chooses the penalty.

    Returns
    -------
    numpy.ndarray, shape (n_features,)
        ``LassoLarsCV(cv=GroupKFold(n_splits) splits).fit(X, y).coef_``.
    """
    from sklearn.linear_model import LassoLarsCV
    from sklearn.model_selection import GroupKFold

    n_runs = len(np.unique(groups))
    if n_runs < n_splits:
        raise InputError(
            f"lasso receptive field, n_splits {n_splits}",
            f"needs at least {n_splits} runs, the data have {n_runs}",
            "Lower n_splits or give more runs",
        )
    splits = list(GroupKFold(n_splits).split(X, y, groups))
    return LassoLarsCV(cv=splits).fit(X, y).coef_
