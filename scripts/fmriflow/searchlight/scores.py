"""What every searchlight engine shares: checked inputs, folds, results, parallel maps."""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fmriflow.errors import InputError


def check_data(X, y, runs, spheres):
    if X.ndim != 2 or X.shape[1] != spheres.n_voxels:
        raise InputError(
            "data matrix",
            f"has shape {X.shape} but the searchlight mask has {spheres.n_voxels} voxels "
            "(columns)",
            "Use the mask saved with the matrix (mask.nii.gz next to clean.npy)",
        )
    y, runs = np.asarray(y), np.asarray(runs)
    if len(y) != X.shape[0] or len(runs) != X.shape[0]:
        raise InputError(
            "searchlight target",
            f"{len(y)} labels and {len(runs)} runs for {X.shape[0]} volumes",
            "Select the rows of the matrix with the labels (decoding.select_target)",
        )
    return y, runs


def make_splits(cv, X, y, runs):
    from fmriflow.decoding import make_cv

    cv = make_cv("leave_one_run_out") if cv is None else cv
    dummy = np.zeros((len(y), 1))
    return cv, [(np.asarray(train), np.asarray(test)) for train, test in cv.split(dummy, y, runs)]


@dataclass
class SearchlightResult:
    """Cross-validated searchlight accuracies.

    Attributes
    ----------
    scores : numpy.ndarray of float64, shape (n_centres,)
        Mean over folds of each fold's accuracy (nilearn's ``masked_scores_``).
    fold_scores : numpy.ndarray of float64, shape (n_folds, n_centres)
        Accuracy of every fold.
    n_test : numpy.ndarray of int, shape (n_folds,)
        Test volumes per fold.
    n_rechecked : int
        (Sphere, fold) pairs re-predicted by scikit-learn because a margin
        was within rounding (exact fast paths only).
    """

    scores: np.ndarray
    fold_scores: np.ndarray
    n_test: np.ndarray
    n_rechecked: int = 0


@dataclass
class PermutationResult:
    """Searchlight accuracies with permutation p-values.

    Attributes
    ----------
    scores : numpy.ndarray of float64, shape (n_centres,)
        Accuracies on the true labels.
    null : numpy.ndarray of float64, shape (n_permutations, n_centres)
        Accuracies on labels permuted within runs.
    p_values : numpy.ndarray of float64, shape (n_centres,)
        ``(1 + #{null >= score}) / (1 + n_permutations)`` per centre.
    max_null : numpy.ndarray of float64, shape (n_permutations,)
        Largest null accuracy over centres, per permutation.
    fwe_threshold : float
        The ``1 - alpha`` quantile of ``max_null`` (``numpy.quantile``,
        linear interpolation): accuracies above it are significant with a
        family-wise error rate of ``alpha``.
    fwe_p_values : numpy.ndarray of float64, shape (n_centres,)
        ``(1 + #{max_null >= score}) / (1 + n_permutations)``.
    alpha : float
        Family-wise error rate of ``fwe_threshold``.
    n_rechecked : int
        (Sphere, fold, labelling) triples re-predicted by scikit-learn.
    """

    scores: np.ndarray
    null: np.ndarray
    p_values: np.ndarray
    max_null: np.ndarray
    fwe_threshold: float
    fwe_p_values: np.ndarray
    alpha: float
    n_rechecked: int = 0


def worker_count(n_jobs):
    if n_jobs in (-1, None):
        return os.cpu_count() or 1
    return max(1, int(n_jobs))


def map_in_threads(function, items, n_jobs):
    """``list(map(function, items))``, in ``n_jobs`` threads."""
    if n_jobs > 1 and len(items) > 1:
        with ThreadPoolExecutor(min(n_jobs, len(items))) as executor:
            return list(executor.map(function, items))
    return [function(item) for item in items]


def blas_limit(n_jobs):
    """One BLAS thread per worker when we run several workers."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1 if n_jobs > 1 else None, user_api="blas")


def fold_accuracies(correct, n_test):
    """Fold accuracies and their mean, computed as scikit-learn and nilearn do."""
    fold_scores = correct / n_test[:, None]
    # np.mean over the last, contiguous axis: the sum np.mean(cross_val_score(...)) makes.
    return np.ascontiguousarray(fold_scores.T).mean(axis=1), fold_scores
