"""Region signals and functional connectivity matrices.

The steps of nilearn's connectivity chapter, on the workflow's cached data:

* region signals from a subject's cleaned ``(time, voxel)`` matrix — the
  mean over each region of a labels image (as
  :class:`nilearn.maskers.NiftiLabelsMasker` computes it) or the
  least-squares fit of a set of maps (as
  :class:`nilearn.maskers.NiftiMapsMasker` does, on every voxel with a
  weight of either sign); the cleaning (detrending, filtering, confounds,
  all per run) already happened in the ``clean`` step, and these
  extractions are linear, so extracting after cleaning gives what cleaning
  after extracting gives (except for the voxel-wise standardisation, which
  weighs voxels equally);
* per-subject covariance (Ledoit–Wolf shrinkage), correlation and partial
  correlation exactly as :class:`nilearn.connectome.ConnectivityMeasure`
  computes them, and a sparse inverse covariance
  (:class:`sklearn.covariance.GraphicalLassoCV`);
* the tangent space of a group (Varoquaux et al. 2010): each covariance
  whitened by the group's geometric mean and mapped through the matrix
  logarithm, as a scikit-learn transformer so that the reference mean is
  fitted on training subjects only;
* edge-wise comparison of two groups with a multiple-comparison correction.

Written here rather than taken from nilearn: the tangent reference as a
transformer fitted on covariances (nilearn's fits on signals, so a group
job would have to read every subject's time series) and the geometric mean
behind it (nilearn's is private); both work on stacks of matrices at once
(one batched eigendecomposition per step), since prediction refits them
for every fold of every label permutation.
"""

import contextlib
import logging
import warnings

import numpy as np
from scipy import linalg

from fmriflow.errors import InputError

logger = logging.getLogger("fmriflow")

#: Per-subject measures (one matrix per subject, no group needed).
SUBJECT_MEASURES = ("covariance", "correlation", "partial_correlation")
#: The measures compared and used for prediction (Dadi et al. 2019).
PREDICTION_MEASURES = ("correlation", "partial_correlation", "tangent")
#: Region signal extractions.
SIGNAL_KINDS = ("labels", "maps")
#: Volumes converted to float64 at a time by the maps' least squares.
VOLUME_BLOCK = 64


# --- region signals ------------------------------------------------------------------


def labels_signals(data, labels, region_values):
    """Mean signal of each labelled region.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_volumes, n_voxels)
        Cleaned signals of the voxels of a mask.
    labels : numpy.ndarray of int, shape (n_voxels,)
        Region label of each of those voxels (0 outside every region), of
        any integer width.
    region_values : sequence of int
        The labels of the regions, in output order.

    Returns
    -------
    numpy.ndarray, shape (n_volumes, n_regions)
        Float64 means, whatever the type of ``data``.

    Raises
    ------
    InputError
        If ``labels`` does not give one label per column of ``data``, or a
        region has no voxel.
    """
    labels = np.asarray(labels)
    if labels.shape != (data.shape[1],):
        raise InputError(
            "region labels",
            f"give {labels.shape} labels for data with {data.shape[1]} voxels",
            "Give one label per voxel of the data's mask",
        )
    signals = np.empty((data.shape[0], len(region_values)), dtype=np.float64)
    for k, value in enumerate(region_values):
        inside = labels == value
        if not inside.any():
            raise InputError(
                f"region {value}",
                "has no voxel in the data's mask",
                "Rebuild the regions on the group's common mask",
            )
        signals[:, k] = data[:, inside].mean(axis=1, dtype=np.float64)
    return signals


def maps_signals(data, maps):
    """Least-squares fit of region maps to every volume.

    Every voxel counts, whatever the sign of its weights (nilearn 0.13.1's
    :class:`~nilearn.maskers.NiftiMapsMasker` kept only voxels where some map
    is positive; voxels where every map is zero do not change the fit).

    Parameters
    ----------
    data : numpy.ndarray, shape (n_volumes, n_voxels)
        Cleaned signals of the voxels of a mask.
    maps : numpy.ndarray, shape (n_voxels, n_regions)
        Region weights (signed) on the same voxels.

    Returns
    -------
    numpy.ndarray, shape (n_volumes, n_regions)
        ``argmin_S || data - S maps.T ||``, one row per volume.

    Raises
    ------
    InputError
        If the maps are not on the data's voxels, or a map has no weight.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 2 or maps.shape[0] != data.shape[1]:
        raise InputError(
            "region maps",
            f"have shape {maps.shape} for data with {data.shape[1]} voxels",
            "Give one row of weights per voxel of the data's mask",
        )
    empty = np.flatnonzero(~np.any(maps != 0, axis=0))
    if empty.size:
        raise InputError(
            f"region map(s) {(empty + 1).tolist()[:5]}",
            "have no weight in the data's mask",
            "Rebuild the regions on the group's common mask",
        )
    # The least-squares solution is the pseudo-inverse's projection (the same as
    # lstsq's minimum-norm solution); volumes are projected a block at a time, so
    # the data are never copied whole to float64.
    projection = linalg.pinv(maps)
    signals = np.empty((data.shape[0], maps.shape[1]), dtype=np.float64)
    for start in range(0, data.shape[0], VOLUME_BLOCK):
        block = np.asarray(data[start : start + VOLUME_BLOCK], dtype=np.float64)
        signals[start : start + VOLUME_BLOCK] = block @ projection.T
    return signals


def region_signals(data, kind, values, region_index=None):
    """Signals of every region: labels means or least-squares fits of maps.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_volumes, n_voxels)
        Cleaned signals of the voxels of a mask.
    kind : {"labels", "maps"}
        How the regions are defined.
    values : numpy.ndarray
        Labels of the voxels ``(n_voxels,)``, or maps ``(n_voxels, n_regions)``.
    region_index : sequence of int, optional
        For labels: the label of each region, in output order (required).

    Returns
    -------
    numpy.ndarray, shape (n_volumes, n_regions)
        See :func:`labels_signals` and :func:`maps_signals`.
    """
    if kind == "labels":
        if region_index is None:
            raise InputError(
                "labels regions", "no region labels given", "Pass the region table's index"
            )
        return labels_signals(data, values, region_index)
    if kind == "maps":
        return maps_signals(data, values)
    raise InputError("regions", f"unknown kind {kind!r}", f"Choose one of {SIGNAL_KINDS}")


# --- per-subject matrices ----------------------------------------------------------


def _zscore(signals):
    """Signals centred and divided by their sample standard deviation (n - 1).

    As nilearn's ``standardize="zscore_sample"``, the default of
    ``ConnectivityMeasure`` since nilearn 0.14; a constant signal is only
    centred.
    """
    centred = signals - signals.mean(axis=0)
    scale = centred.std(axis=0, ddof=1)
    scale[scale < np.finfo(np.float64).eps] = 1.0
    return centred / scale


def ledoit_wolf_covariance(signals):
    """Ledoit–Wolf shrunk covariance of region signals (nilearn's default estimator).

    The sample covariance ``S`` (of the centred signals, divided by the
    number of volumes) pulled towards ``mu I``, ``mu`` the mean variance, by
    the weight of Ledoit and Wolf (2004, J. Multivariate Anal. 88:365) that
    minimises the expected squared error: the spread of the volumes'
    outer products around ``S`` over the distance of ``S`` from ``mu I``,
    capped at 1. Computed here so that a subject's connectome job does not
    import scikit-learn (a second of its two); the same as
    ``sklearn.covariance.LedoitWolf().fit(signals).covariance_`` (tested).

    Parameters
    ----------
    signals : numpy.ndarray, shape (n_volumes, n_regions)

    Returns
    -------
    numpy.ndarray, shape (n_regions, n_regions)
    """
    centred = signals - signals.mean(axis=0)
    n_volumes, n_regions = centred.shape
    sample = centred.T @ centred / n_volumes
    mu = np.trace(sample) / n_regions
    squared_norm = np.sum(sample**2)
    # ||S - mu I||^2 / p, and the mean squared distance of x x^T from S, / p.
    distance = (squared_norm - n_regions * mu**2) / n_regions
    spread = (np.sum(np.sum(centred**2, axis=1) ** 2) / n_volumes - squared_norm) / (
        n_regions * n_volumes
    )
    shrinkage = 0.0 if distance == 0 else min(spread, distance) / distance
    shrunk = (1.0 - shrinkage) * sample
    shrunk.flat[:: n_regions + 1] += shrinkage * mu
    return shrunk


def check_signals(signals, where="region signals"):
    """Check that region signals can give a connectome.

    Parameters
    ----------
    signals : numpy.ndarray, shape (n_volumes, n_regions)
        Region signals of one subject.
    where : str
        What the signals are (a file, a subject), for the message.

    Raises
    ------
    InputError
        If the signals are not a finite 2D array, have fewer than 3 volumes
        or 2 regions, or a region's signal is constant.
    """
    signals = np.asarray(signals)
    if signals.ndim != 2:
        raise InputError(
            where, f"is {signals.ndim}D", "Give a (volumes x regions) matrix of signals"
        )
    n_volumes, n_regions = signals.shape
    if n_volumes < 3:
        raise InputError(
            where,
            f"only {n_volumes} volumes",
            "Connectivity needs a time series of at least 3 volumes per region",
        )
    if n_regions < 2:
        raise InputError(
            where, f"only {n_regions} region", "A connectome needs at least 2 regions"
        )
    if not np.isfinite(signals).all():
        raise InputError(where, "has NaN or infinite values", "Check the cleaning")
    flat = np.flatnonzero(np.ptp(signals, axis=0) == 0)
    if flat.size:
        raise InputError(
            where,
            f"region(s) {flat.tolist()[:5]} have a constant signal",
            "Drop regions outside the data, or check the cleaning",
        )


def covariance_to_correlation(covariance):
    """Correlation matrix of a covariance matrix, as nilearn's ``cov_to_corr``.

    The same operations in the same order (each entry times the inverse
    square roots of its two variances, the diagonal set to exactly 1), so
    the values are nilearn's to the bit; written here so that a subject's
    job does not import ``nilearn.connectome`` (half a second) for it.

    Parameters
    ----------
    covariance : numpy.ndarray, shape (n, n)

    Returns
    -------
    numpy.ndarray, shape (n, n)
    """
    scale = np.atleast_2d(1.0 / np.sqrt(np.diag(covariance)))
    correlation = covariance * scale * scale.T
    np.fill_diagonal(correlation, 1.0)
    return correlation


def precision_to_partial(precision):
    """Partial correlation matrix of a precision matrix, as nilearn's ``prec_to_partial``.

    Parameters
    ----------
    precision : numpy.ndarray, shape (n, n)

    Returns
    -------
    numpy.ndarray, shape (n, n)
        Minus the correlation of the precision, with a unit diagonal.
    """
    partial = -covariance_to_correlation(precision)
    np.fill_diagonal(partial, 1.0)
    return partial


def subject_matrices(signals):
    """Covariance, correlation and partial correlation of one subject.

    As :class:`nilearn.connectome.ConnectivityMeasure` with its default
    Ledoit–Wolf estimator computes them: the covariance (and the partial
    correlation, from its inverse) of the signals as they are, the
    correlation from the covariance of the signals standardised per region.

    Parameters
    ----------
    signals : numpy.ndarray, shape (n_volumes, n_regions)
        Region signals of one subject (checked by :func:`check_signals`).

    Returns
    -------
    dict
        ``covariance``, ``correlation``, ``partial_correlation``: arrays of
        shape ``(n_regions, n_regions)``.
    """
    check_signals(signals)
    signals = np.asarray(signals, dtype=np.float64)
    covariance = ledoit_wolf_covariance(signals)
    return {
        "covariance": covariance,
        "correlation": covariance_to_correlation(ledoit_wolf_covariance(_zscore(signals))),
        "partial_correlation": precision_to_partial(linalg.inv(covariance)),
    }


@contextlib.contextmanager
def _warnings_to_log(what):
    """Log the warnings of a solver (convergence, ill-conditioning) instead of raising them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in {str(w.message) for w in caught}:
        logger.warning("%s: %s", what, message)


def sparse_inverse_covariance(signals, n_folds=3, seed=0):
    """Sparse inverse covariance of one subject by cross-validated graphical lasso.

    Parameters
    ----------
    signals : numpy.ndarray, shape (n_volumes, n_regions)
        Standardised per region (population standard deviation) before the
        fit, as nilearn's example fits the signals of a standardising masker.
    n_folds : int
        Folds of the (contiguous, unshuffled) cross-validation choosing alpha.
    seed : int
        Unused by the solver (deterministic); kept for a uniform signature.

    Returns
    -------
    partial : numpy.ndarray, shape (n_regions, n_regions)
        Partial correlations of the sparse precision (zeros off its support).
    alpha : float
        The penalty chosen.
    """
    from sklearn.covariance import GraphicalLassoCV

    check_signals(signals)
    estimator = GraphicalLassoCV(cv=n_folds, max_iter=500)
    with _warnings_to_log("GraphicalLassoCV"):
        estimator.fit(_zscore(np.asarray(signals, dtype=np.float64)))
    return precision_to_partial(estimator.precision_), float(estimator.alpha_)


# --- tangent space -----------------------------------------------------------------


def eigen_function(function, matrices):
    """``function`` applied to the eigenvalues of symmetric matrices.

    Parameters
    ----------
    function : callable
        Applied to the array of eigenvalues (e.g. ``numpy.log``).
    matrices : numpy.ndarray, shape (..., n, n)
        Symmetric matrices.

    Returns
    -------
    numpy.ndarray, shape (..., n, n)
        ``V f(L) V^T`` for each eigendecomposition ``V L V^T``.
    """
    values, vectors = np.linalg.eigh(matrices)
    return (vectors * function(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def _check_spd(matrices, what):
    """Stop unless ``matrices`` is a stack of symmetric positive definite matrices."""
    if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2]:
        raise InputError(what, f"have shape {matrices.shape}", "Give a stack of square matrices")
    asymmetry = np.abs(matrices - np.swapaxes(matrices, 1, 2)).max(axis=(1, 2))
    if np.any(asymmetry > 1e-7 * np.abs(matrices).max(axis=(1, 2))):
        raise InputError(what, "are not symmetric", "Give covariance matrices")
    smallest = np.linalg.eigvalsh(matrices)[:, 0]
    if not np.all(smallest > 0):
        bad = np.flatnonzero(~(smallest > 0))
        raise InputError(
            f"{what} {bad.tolist()[:5]}",
            "are not positive definite",
            "Give covariance matrices (Ledoit-Wolf estimates are positive definite)",
        )


def geometric_mean(matrices, max_iter=30, tol=1e-7):
    """Riemannian (affine-invariant) mean of symmetric positive definite matrices.

    The minimiser of the summed squared distances ``|| log(G^-1/2 M G^-1/2) ||``
    to the matrices, by gradient descent from the arithmetic mean along
    geodesics, halving the step when the gradient grows (Fletcher & Joshi
    2007, algorithm 3; the iteration of nilearn's private ``_geometric_mean``
    with the settings of ``ConnectivityMeasure``).

    Parameters
    ----------
    matrices : numpy.ndarray, shape (n_matrices, n, n)
        Symmetric positive definite matrices.
    max_iter : int
        Largest number of gradient steps.
    tol : float
        Stop when the gradient's norm per entry falls below it.

    Returns
    -------
    numpy.ndarray, shape (n, n)

    Raises
    ------
    InputError
        If the matrices are not symmetric positive definite.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    _check_spd(matrices, "matrices")
    mean = matrices.mean(axis=0)
    step, best = 1.0, np.inf
    for _ in range(max_iter):
        values, vectors = np.linalg.eigh(mean)
        inverse_root = (vectors / np.sqrt(values)) @ vectors.T
        root = (vectors * np.sqrt(values)) @ vectors.T
        gradient = eigen_function(np.log, inverse_root @ matrices @ inverse_root).mean(axis=0)
        norm = np.linalg.norm(gradient)
        mean = root @ eigen_function(np.exp, step * gradient) @ root
        if norm < best:
            best = norm
        elif norm > best:
            step /= 2.0
            norm = best
        if norm / mean.size < tol:
            break
    else:
        logger.warning(
            "geometric mean: %d iterations without reaching the tolerance %g", max_iter, tol
        )
    return mean


def vectorize(matrices, discard_diagonal=False):
    """Symmetric matrices as vectors, as nilearn's ``sym_matrix_to_vec`` makes them.

    The lower triangle row by row; with the diagonal, its entries are
    divided by sqrt(2) (so the vector's norm is the matrix norm over
    sqrt(2), and the vector is proportional to the off-diagonal entries
    times sqrt(2) with the diagonal kept).

    Parameters
    ----------
    matrices : numpy.ndarray, shape (..., n, n)
        Symmetric matrices.
    discard_diagonal : bool
        Leave the diagonal out (and the other entries unscaled).

    Returns
    -------
    numpy.ndarray, shape (..., n * (n + 1) / 2) or (..., n * (n - 1) / 2)
    """
    matrices = np.asarray(matrices)
    n = matrices.shape[-1]
    rows, columns = np.tril_indices(n, k=-1 if discard_diagonal else 0)
    vectors = matrices[..., rows, columns]
    if discard_diagonal:
        return vectors
    # Every entry divided, the off-diagonal ones by 1: nilearn's arithmetic.
    return vectors / np.where(rows == columns, np.sqrt(2.0), 1.0)


def tangent_matrices(covariances, reference=None):
    """Tangent-space matrices of every subject, for description (not for prediction).

    Parameters
    ----------
    covariances : numpy.ndarray, shape (n_subjects, n_regions, n_regions)
        The subjects' covariance matrices.
    reference : numpy.ndarray, shape (n_regions, n_regions), optional
        The point of tangency; the group's geometric mean by default.

    Returns
    -------
    tangent : numpy.ndarray, shape (n_subjects, n_regions, n_regions)
        ``log(reference^-1/2 C reference^-1/2)`` of each covariance ``C``.
    reference : numpy.ndarray, shape (n_regions, n_regions)
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    reference = geometric_mean(covariances) if reference is None else np.asarray(reference)
    whitening = eigen_function(lambda v: 1.0 / np.sqrt(v), reference)
    return eigen_function(np.log, whitening @ covariances @ whitening), reference


# --- group sparse ----------------------------------------------------------------------


def group_sparse_partial_correlations(signals, n_folds=3, seed=0):
    """Group-sparse precision matrices (Varoquaux et al. 2010) as partial correlations.

    Parameters
    ----------
    signals : list of numpy.ndarray, each (n_volumes, n_regions)
        One subject each, standardised per region (as for
        :func:`sparse_inverse_covariance`) before the fit.
    n_folds : int
        Folds of the cross-validation choosing alpha.
    seed : int
        Unused (the estimator is deterministic); kept for a uniform signature.

    Returns
    -------
    partials : numpy.ndarray, shape (n_subjects, n_regions, n_regions)
    alpha : float
        The penalty chosen by :class:`nilearn.connectome.GroupSparseCovarianceCV`.
    """
    from nilearn.connectome import GroupSparseCovarianceCV

    for k, subject in enumerate(signals):
        check_signals(subject, f"region signals of subject {k + 1}")
    estimator = GroupSparseCovarianceCV(cv=n_folds, verbose=0)
    with _warnings_to_log("GroupSparseCovarianceCV"):
        estimator.fit([_zscore(np.asarray(s, dtype=np.float64)) for s in signals])
    precisions = np.moveaxis(estimator.precisions_, -1, 0)
    return np.array([precision_to_partial(p) for p in precisions]), float(estimator.alpha_)


# --- group comparison --------------------------------------------------------------------

#: Multiple-comparison corrections of the edge-wise tests.
CORRECTIONS = ("fdr_bh", "bonferroni")


def fisher_z(matrices):
    """Fisher's z transform of correlations.

    Parameters
    ----------
    matrices : numpy.ndarray
        Correlations, clipped to ±0.999999 (so the unit diagonal stays finite).

    Returns
    -------
    numpy.ndarray
        ``arctanh`` of the clipped values.
    """
    return np.arctanh(np.clip(matrices, -0.999999, 0.999999))


def compare_groups(matrices, groups, correction="fdr_bh", alpha=0.05):
    """Edge-wise Welch t-test between two groups, corrected for the number of edges.

    Parameters
    ----------
    matrices : numpy.ndarray, shape (n_subjects, n_regions, n_regions)
        One symmetric matrix per subject (Fisher-z for correlations).
    groups : sequence of str
        Group of each subject; exactly two distinct values, each with at
        least 2 subjects.
    correction : {"fdr_bh", "bonferroni"}
        Benjamini–Hochberg false discovery rate, or Bonferroni family-wise.
    alpha : float
        Level of the corrected test.

    Returns
    -------
    dict
        ``names`` (the two groups, sorted), ``i``, ``j`` (edge indices,
        upper triangle), ``means`` (2 x n_edges), ``t`` (second group minus
        first; 0 where both groups are constant), ``p`` (two-sided; 1 where
        undefined), ``p_corrected``, ``significant``.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    groups = np.asarray(groups).astype(str)
    if matrices.ndim != 3 or len(matrices) != len(groups):
        raise InputError(
            "group comparison",
            f"{len(groups)} group labels for matrices of shape {matrices.shape}",
            "Give one square matrix and one group per subject",
        )
    names, counts = np.unique(groups, return_counts=True)
    names = names.tolist()
    if len(names) != 2:
        raise InputError(
            "group comparison",
            f"needs exactly two groups, found {len(names)}: {names}",
            "Compare a column with two values",
        )
    if counts.min() < 2:
        raise InputError(
            "group comparison",
            f"group sizes {dict(zip(names, counts.tolist(), strict=True))}",
            "A t-test needs at least 2 subjects in each group",
        )
    i, j = np.triu_indices(matrices.shape[1], k=1)
    edges = matrices[:, i, j]
    first, second = edges[groups == names[0]], edges[groups == names[1]]
    from scipy import stats

    t, p = stats.ttest_ind(second, first, axis=0, equal_var=False)
    p = np.where(np.isfinite(p), p, 1.0)
    p_corrected = correct_pvalues(p, correction)
    return {
        "names": names,
        "i": i,
        "j": j,
        "means": np.vstack([first.mean(axis=0), second.mean(axis=0)]),
        "t": np.nan_to_num(t),
        "p": p,
        "p_corrected": p_corrected,
        "significant": p_corrected < alpha,
    }


def correct_pvalues(p, correction):
    """Adjusted p-values for a family of tests.

    Parameters
    ----------
    p : numpy.ndarray, shape (n_tests,)
        Uncorrected p-values.
    correction : {"fdr_bh", "bonferroni"}
        Benjamini–Hochberg (step-up) or Bonferroni.

    Returns
    -------
    numpy.ndarray, shape (n_tests,)
        Adjusted p-values (at most 1): a test is significant at level
        ``alpha`` when its adjusted p-value is below ``alpha``.
    """
    from scipy import stats

    p = np.asarray(p, dtype=np.float64)
    if correction == "fdr_bh":
        return stats.false_discovery_control(p, method="bh")
    if correction == "bonferroni":
        return np.minimum(p * p.size, 1.0)
    raise InputError(
        "correction", f"unknown correction {correction!r}", f"Choose one of {CORRECTIONS}"
    )
