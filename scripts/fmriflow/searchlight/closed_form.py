"""Searchlights of classifiers whose fit is a closed form in sums: ridge, LDA, nearest centroid.

Each classifier predicts the class of largest score, and every score of a
test volume is a function of the training fold's sums, so every sphere of a
fold is scored from small per-sphere matrices instead of one scikit-learn
fit per sphere:

* **ridge** (``RidgeClassifier``, penalised least squares with an
  intercept on ±1 targets): the fold's centred Gram matrix is the sphere's
  full Gram matrix minus its test block, corrected for the training mean;
  one solve per sphere and fold gives the solution for every target column
  at once, so the classes (one-vs-rest) and every label permutation share
  it.
* **shrinkage LDA** (``LinearDiscriminantAnalysis(solver="lsqr",
  shrinkage=s)`` with a fixed ``s``): the class means are per-voxel sums,
  and the shrunk pooled covariance is the training Gram matrix minus the
  class means' outer products, shrunk towards its mean variance; one solve
  per sphere, fold and labelling.
* **nearest centroid** (``NearestCentroid``, Euclidean, uniform priors —
  Haxby et al. 2001's minimum distance to the class mean pattern): the
  score of class ``c`` is ``2 x.mu_c - |mu_c|^2`` summed over the sphere's
  voxels, from per-voxel class means shared by every sphere.

Spheres are processed in chunks of equal size (no padding), each chunk a
``(volume, sphere, voxel)`` gather of the data in float64, centred by the
voxels' means over all volumes (no classifier's predictions depend on
that shift in exact arithmetic, and it keeps the sums well conditioned).

Why the predictions are scikit-learn's. Every score difference carries a
computable bound on its rounding error, ours and the reference's:

* ridge and LDA are referred to scikit-learn on the data in float64 (their float32
  solvers round at 1e-7 relative, times the condition number: a bound on
  that would send most predictions back to scikit-learn, and float64 is the
  more accurate answer); the bound is the perturbation bound of a symmetric
  positive definite solve (the condition number, at most ``(trace +
  alpha) / alpha``; Gram and right-hand side sums of ``n`` terms; the
  intercept).
* nearest centroid is referred to scikit-learn on the data as given: the
  true labels' class means are computed with the numpy reduction
  scikit-learn uses (``X[y == c].mean(axis=0)`` on the C-ordered training
  matrix, the same bits as on the sphere's own columns, except for
  one-voxel spheres, which always go to scikit-learn), and the distances
  are float64 on both sides; permuted labels' means are float64 sums,
  referred to float64 data.

A prediction whose winning margin exceeds twice the bound is the one
scikit-learn makes; every (sphere, fold, labelling) with a test volume
inside the bound is refitted by scikit-learn on that sphere, so the scores
are scikit-learn's sphere by sphere, ties included.
"""

from dataclasses import dataclass

import numpy as np

from fmriflow.errors import InputError
from fmriflow.searchlight.permutations import (
    check_folds_survive_permutation,
    permutation_labels,
    summarize_permutations,
)
from fmriflow.searchlight.scores import (
    SearchlightResult,
    blas_limit,
    check_data,
    fold_accuracies,
    make_splits,
    map_in_threads,
    worker_count,
)

#: Working memory (bytes) aimed at for one chunk of spheres and labellings.
CHUNK_BYTES = 32e6
#: Safety factor on the rounding-error bounds.
SAFETY = 8.0
U64 = float(np.finfo(np.float64).eps) / 2

#: Engines of this module, by registry searchlight name.
ENGINES = ("ridge", "nearest_centroid", "lda_shrinkage", "lda_auto")


@dataclass(frozen=True)
class Problem:
    """Data, labels, folds and spheres shared by every labelling.

    Attributes
    ----------
    X : numpy.ndarray
        The data as given (for scikit-learn refits).
    centred : numpy.ndarray of float64, shape (n_samples, n_voxels)
        The data minus each voxel's mean over all volumes.
    scale : numpy.ndarray of float64, shape (n_voxels,)
        Largest absolute raw value per voxel (bounds the rounding of means).
    classes : numpy.ndarray
        Sorted labels.
    codes : numpy.ndarray of int
        Class code of every sample.
    splits : list of (train, test)
    present : list of numpy.ndarray
        Per fold, the codes of the classes present in training.
    observed_means : list of numpy.ndarray
        Per fold, scikit-learn's class means of the true labels (float64,
        shape (n_present, n_voxels)) minus the voxels' means.
    spheres : Spheres
    """

    X: np.ndarray
    runs: np.ndarray
    centred: np.ndarray
    scale: np.ndarray
    classes: np.ndarray
    codes: np.ndarray
    splits: list
    present: list
    observed_means: list
    spheres: object


def make_problem(X, y, runs, spheres, cv):
    """The checked inputs of a closed-form searchlight."""
    y, runs = check_data(X, y, runs, spheres)
    cv, splits = make_splits(cv, X, y, runs)
    classes, codes = np.unique(y, return_inverse=True)
    centred = np.empty(X.shape)
    for start in range(0, X.shape[0], 256):
        centred[start : start + 256] = X[start : start + 256]
    scale = np.abs(centred).max(axis=0)
    centre = centred.mean(axis=0)
    centred -= centre
    present = [np.unique(codes[train]) for train, _ in splits]
    observed_means = [
        class_means(X, codes, train, classes, centre)
        for (train, _), classes in zip(splits, present, strict=True)
    ]
    problem = Problem(
        X=X,
        runs=runs,
        centred=centred,
        scale=scale,
        classes=classes,
        codes=codes,
        splits=splits,
        present=present,
        observed_means=observed_means,
        spheres=spheres,
    )
    return problem, cv, y, runs


def class_means(X, codes, train, classes, centre):
    """``NearestCentroid``'s centroids of the training rows, minus ``centre`` (float64)."""
    x_train = np.ascontiguousarray(X[train])
    if x_train.dtype.kind != "f":
        x_train = x_train.astype(np.float64)
    labels = codes[train]
    return np.stack([x_train[labels == c].mean(axis=0) for c in classes]).astype(float) - centre


def size_chunks(spheres, n_samples, n_columns, class_grams=False):
    """Spheres grouped by size, in chunks that fit :data:`CHUNK_BYTES`.

    ``class_grams``: every sphere also holds one Gram matrix per labelling
    and class (Ledoit-Wolf LDA).

    Returns
    -------
    list of numpy.ndarray of int
        Sphere rows of each chunk; all spheres of a chunk have the same size.
    """
    sizes = spheres.sizes
    order = np.argsort(sizes, kind="stable")
    chunks = []
    for size in np.unique(sizes):
        rows = order[sizes[order] == size]
        per_sphere = 8.0 * (n_samples * size + size * size * 3 + (size + n_samples) * n_columns)
        if class_grams:
            per_sphere += 8.0 * (3 * n_columns + n_samples) * size * size
        step = int(max(1, CHUNK_BYTES // per_sphere))
        chunks += [rows[start : start + step] for start in range(0, len(rows), step)]
    return chunks


def sphere_columns(spheres, rows):
    """Data columns of equal-size spheres, shape (n_spheres, size)."""
    matrix = spheres.matrix
    size = int(matrix.indptr[rows[0] + 1] - matrix.indptr[rows[0]])
    starts = matrix.indptr[rows]
    return matrix.indices[starts[:, None] + np.arange(size)[None]]


# --- scores of the two classifiers ------------------------------------------------


def ridge_targets(codes, present):
    """scikit-learn's ±1 targets, (n_labellings, n_targets, n_samples).

    One column for two classes, one per class otherwise.
    """
    if len(present) == 2:
        return np.where(codes == present[1], 1.0, -1.0)[:, None, :]
    return np.where(codes[:, None, :] == present[None, :, None], 1.0, -1.0)


class Chunk:
    """Sums over all volumes of a chunk of equal-size spheres, shared by the folds.

    A fold's training sums are these minus its test volumes' (few), so the
    chunk's data is multiplied out once rather than once per fold.

    Parameters
    ----------
    problem : Problem
    rows : numpy.ndarray of int
        Sphere rows of the chunk (all of one size).
    labels : numpy.ndarray of int, shape (n_labellings, n_samples)
        Class codes of every labelling; the first is the true one.
    """

    def __init__(self, problem, rows, labels):
        self.problem, self.rows, self.labels = problem, rows, labels
        self.columns = sphere_columns(problem.spheres, rows)
        # (n_spheres, n_samples, size): each sphere's (volume x voxel) matrix.
        self.data = np.ascontiguousarray(np.moveaxis(problem.centred[:, self.columns], 1, 0))
        self.size = self.columns.shape[1]
        self.gram = np.matmul(np.swapaxes(self.data, 1, 2), self.data)
        self.sums = self.data.sum(axis=1)
        self._products = {}

    def class_grams(self, one_hot):
        """Per sphere, labelling and class, the class's Gram matrix over all volumes (cached).

        ``one_hot`` is (n_labellings * n_classes, n_samples); the result is
        (n_spheres, n_labellings * n_classes, size, size).
        """
        key = ("grams", one_hot.tobytes())
        if key not in self._products:
            # Every volume's outer product, then one matrix product with the
            # classes' indicators: (k, n) @ (n, spheres * size * size).
            grams = one_hot @ self.outer_products().reshape(self.data.shape[1], -1)
            grams = grams.reshape(len(one_hot), len(self.rows), self.size, self.size)
            self._products[key] = np.ascontiguousarray(np.moveaxis(grams, 0, 1))
        return self._products[key]

    def squares_and_data(self):
        """The chunk's data squared element by element, then the data (cached).

        (n_spheres, n_samples, 2 * size): one matrix product with stacked
        weights gives a weighted sum of squares minus a weighted sum.
        """
        if "squares_and_data" not in self._products:
            self._products["squares_and_data"] = np.concatenate([self.data**2, self.data], axis=2)
        return self._products["squares_and_data"]

    def outer_products(self):
        """``x x'`` of every volume and sphere, (n_samples, n_spheres, size, size) (cached)."""
        if "outer" not in self._products:
            data = np.moveaxis(self.data, 1, 0)  # (n, s, size)
            self._products["outer"] = data[:, :, :, None] * data[:, :, None, :]
        return self._products["outer"]

    def products(self, weights):
        """``data.T @ weights.T`` per sphere, for (n_columns, n_samples) weights (cached)."""
        key = weights.tobytes()
        if key not in self._products:
            self._products[key] = np.matmul(np.swapaxes(self.data, 1, 2), weights.T)
        return self._products[key]


def ridge_scores(chunk, fold, alpha):
    """Class scores of ridge for a chunk of spheres and every labelling.

    Parameters
    ----------
    chunk : Chunk
    fold : int
    alpha : float
        The ridge penalty.

    Returns
    -------
    scores : numpy.ndarray, shape (n_spheres, n_test, n_labellings, n_present)
        Decision values; two classes give ``[0, d]`` (scikit-learn predicts
        the second class when ``d > 0``).
    bound : numpy.ndarray, shape (n_spheres, n_test, n_labellings)
        Bound on the rounding error of every score difference.
    """
    problem = chunk.problem
    train, test = problem.splits[fold]
    n_train, size = len(train), chunk.size
    targets = ridge_targets(chunk.labels, problem.present[fold])  # (n_lab, n_t, n_samples)
    n_lab, n_targets = targets.shape[:2]
    flat = targets.reshape(-1, targets.shape[2])
    x_test = chunk.data[:, test]  # (n_spheres, n_test, size)
    test_t = np.swapaxes(x_test, 1, 2)
    mean = (chunk.sums - x_test.sum(axis=1)) / n_train
    gram = chunk.gram - np.matmul(test_t, x_test)
    gram -= n_train * mean[:, :, None] * mean[:, None, :]
    target_sums = flat[:, train].sum(axis=1)  # (n_cols,)
    rhs = chunk.products(flat) - np.matmul(test_t, flat[:, test].T)
    rhs -= mean[:, :, None] * target_sums[None, None, :]
    trace = np.maximum(np.trace(gram, axis1=1, axis2=2), 0.0)
    gram[:, np.arange(size), np.arange(size)] += alpha
    coef = np.linalg.solve(gram, rhs)  # (n_spheres, size, n_cols)
    centred_test = x_test - mean[:, None, :]
    decision = np.matmul(centred_test, coef) + target_sums / n_train
    decision = decision.reshape(decision.shape[:2] + (n_lab, n_targets))
    if n_targets == 1:
        scores = np.concatenate([np.zeros_like(decision), decision], axis=3)
    else:
        scores = decision
    # Error bound of the decisions (see the module docstring): the condition
    # number is at most (trace + alpha) / alpha.
    condition = (trace + alpha) / alpha
    coef_norm = np.linalg.norm(coef, axis=1).reshape(-1, n_lab, n_targets).max(axis=2)
    scale = problem.scale[chunk.columns]  # (n_spheres, size)
    rhs_error = (n_train + 2) * np.sqrt(trace * n_train) / alpha
    relative = (n_train + size + 2) * min(size, n_train) * condition
    test_norm = np.linalg.norm(centred_test, axis=2)  # (n_spheres, n_test)
    mean_error = (n_train + 2) * np.linalg.norm(scale, axis=1)
    u = 2.0 * U64  # the reference's rounding and ours
    coef_error = u * (relative[:, None] * coef_norm + rhs_error[:, None])
    bound = (
        test_norm[:, :, None] * coef_error[:, None, :]
        + (u * mean_error[:, None] * coef_norm)[:, None, :]
        + u * (n_train + 2)
        + u * (size + 2) * test_norm[:, :, None] * coef_norm[:, None, :]
    )
    return scores, SAFETY * bound


def centroid_scores(chunk, fold):
    """Class scores of nearest centroid: ``2 x.mu_c - |mu_c|^2`` (larger is nearer).

    Parameters and returns as :func:`ridge_scores`, with one score per
    present class; the first labelling is the true one (its class means are
    scikit-learn's).
    """
    problem = chunk.problem
    train, test = problem.splits[fold]
    present = problem.present[fold]
    n_lab, size = len(chunk.labels), chunk.size
    one_hot = (chunk.labels[:, None, :] == present[None, :, None]).reshape(
        -1, chunk.labels.shape[1]
    )
    one_hot = one_hot.astype(float)  # (n_lab * n_cls, n_samples)
    counts = one_hot[:, train].sum(axis=1)
    x_test = chunk.data[:, test]  # (n_spheres, n_test, size)
    sums = chunk.products(one_hot) - np.matmul(np.swapaxes(x_test, 1, 2), one_hot[:, test].T)
    means = sums / counts  # (n_spheres, size, n_lab * n_cls)
    means[:, :, : len(present)] = np.moveaxis(problem.observed_means[fold][:, chunk.columns], 0, 2)
    scores = 2.0 * np.matmul(x_test, means) - np.sum(means**2, axis=1)[:, None, :]
    scores = scores.reshape(len(chunk.rows), len(test), n_lab, len(present))
    # The reference expands |x - mu|^2 in float64 too; both roundings, and the
    # permuted means' (float64 sums of n terms), are bounded by these magnitudes.
    raw_scale = np.linalg.norm(problem.scale[chunk.columns], axis=1)  # bounds |x| and |mu|
    magnitude = 4.0 * raw_scale**2
    bound = (size + 4 + 2 * len(train)) * 2.0 * U64 * magnitude
    bound = np.broadcast_to(bound[:, None, None], scores.shape[:3]).copy()
    if size == 1:
        # numpy sums a one-column matrix in another order: scikit-learn decides.
        bound[:, :, 0] = np.inf
    return scores, SAFETY * bound


def lda_class_means(chunk, fold):
    """Class indicators, training counts and training class means of every labelling.

    Returns
    -------
    one_hot : numpy.ndarray, shape (n_labellings * n_classes, n_samples)
    counts : numpy.ndarray, shape (n_labellings * n_classes,)
    means : numpy.ndarray, shape (n_spheres, n_labellings, size, n_classes)
    """
    train, test = chunk.problem.splits[fold]
    present = chunk.problem.present[fold]
    n_lab, n_cls = len(chunk.labels), len(present)
    one_hot = chunk.labels[:, None, :] == present[None, :, None]
    one_hot = one_hot.reshape(-1, chunk.labels.shape[1]).astype(float)
    counts = one_hot[:, train].sum(axis=1)
    x_test = chunk.data[:, test]
    sums = chunk.products(one_hot) - np.matmul(np.swapaxes(x_test, 1, 2), one_hot[:, test].T)
    means = (sums / counts).reshape(len(chunk.rows), chunk.size, n_lab, n_cls)
    return one_hot, counts, np.ascontiguousarray(np.moveaxis(means, 2, 1))


def lda_scores(chunk, fold, shrinkage):
    """Class scores of shrinkage LDA (``solver="lsqr"``, fixed ``shrinkage`` or ``"auto"``).

    scikit-learn's covariance is the prior-weighted sum of the classes'
    shrunk covariances. With a fixed ``s`` that is ``(1 - s) W + s tr(W) / k
    I`` with ``W`` the pooled within-class covariance (``1 / n`` times the
    within-class scatter); with ``"auto"`` see :func:`ledoit_wolf_covariance`.
    The score of class ``c`` is ``x' Z_c - m_c' Z_c / 2 + log p_c`` with
    ``Z = Sigma^-1 M`` for the class means ``M``. Parameters and returns as
    :func:`ridge_scores`.
    """
    if shrinkage == "auto":
        return lda_auto_scores(chunk, fold)
    problem = chunk.problem
    train, test = problem.splits[fold]
    n_lab, n_cls, size, n_train = (
        len(chunk.labels),
        len(problem.present[fold]),
        chunk.size,
        len(train),
    )
    one_hot, counts, means = lda_class_means(chunk, fold)
    x_test = chunk.data[:, test]  # (n_spheres, n_test, size)
    test_t = np.swapaxes(x_test, 1, 2)
    gram = chunk.gram - np.matmul(test_t, x_test)  # training volumes, (n_spheres, size, size)
    weighted = means * counts.reshape(n_lab, n_cls)[None, :, None, :]
    within = (gram[:, None] - np.matmul(weighted, np.swapaxes(means, 2, 3))) / n_train
    level = np.trace(within, axis1=2, axis2=3) / size  # (n_spheres, n_lab)
    covariance = (1.0 - shrinkage) * within
    covariance[:, :, np.arange(size), np.arange(size)] += (shrinkage * level)[:, :, None]
    solved = np.linalg.solve(covariance, means)  # (n_spheres, n_lab, size, n_cls)
    log_prior = np.log(counts.reshape(n_lab, n_cls) / n_train)
    offset = -0.5 * np.sum(means * solved, axis=2) + log_prior  # (n_spheres, n_lab, n_cls)
    flat = np.moveaxis(solved, 1, 2).reshape(len(chunk.rows), size, n_lab * n_cls)
    scores = np.matmul(x_test, flat).reshape(len(chunk.rows), len(test), n_lab, n_cls)
    scores += offset[:, None]
    # Error bound (see the module docstring): the condition number of the shrunk
    # covariance is at most ((1 - s) k + s) / s.
    condition = ((1.0 - shrinkage) * size + shrinkage) / shrinkage
    solved_norm = np.linalg.norm(solved, axis=2).max(axis=2)  # (n_spheres, n_lab)
    means_norm = np.linalg.norm(means, axis=2).max(axis=2)
    test_norm = np.linalg.norm(x_test, axis=2)  # (n_spheres, n_test)
    scale = np.linalg.norm(problem.scale[chunk.columns], axis=1)[:, None]  # (n_spheres, 1)
    magnitude = (test_norm[:, :, None] + means_norm[:, None, :]) * solved_norm[:, None, :]
    relative = (n_train + size + 2) * size * condition
    mean_error = (n_train + 2) * scale * solved_norm * (1.0 + condition)
    bound = (
        2.0
        * U64
        * ((relative + size + 2) * magnitude + mean_error[:, None, :] + np.abs(log_prior).max())
    )
    return scores, SAFETY * bound


def ledoit_wolf_covariance(chunk, fold, one_hot, counts, means):
    """LDA's ``shrinkage="auto"`` covariance of every sphere and labelling, with error terms.

    For each training class ``c`` scikit-learn standardises the class's
    volumes (``StandardScaler``: the class mean ``m_c`` and variances
    ``v_c``), takes Ledoit and Wolf's shrinkage ``d_c`` of the standardised
    data's covariance ``C_c`` and rescales: ``S_c = (1 - d_c) W_c + d_c mu_c
    diag(v_c)`` with ``W_c`` the class covariance (``1 / n_c``) and ``mu_c``
    the mean of ``diag(C_c)`` (1 up to rounding). Ledoit-Wolf's ``d_c`` is
    ``min(b, a) / a`` for ``a = (|C_c|_F^2 - tr(C_c)^2 / k) / k`` and ``b =
    (sum_i |z_i|^4 / n_c - |C_c|_F^2) / (k n_c)`` over the standardised
    volumes ``z_i``; ``|z_i|^2 = sum_j (x_ij - m_cj)^2 / v_cj`` is a product
    of the sphere's data with per-voxel weights, so every class and
    labelling is a batch of matrix products. The covariance is ``sum_c p_c
    S_c`` with the training proportions ``p_c``.

    Parameters
    ----------
    chunk : Chunk
    fold : int
    one_hot : numpy.ndarray, shape (n_labellings * n_classes, n_samples)
    counts : numpy.ndarray, shape (n_labellings * n_classes,)
        Training volumes of each class.
    means : numpy.ndarray, shape (n_spheres, n_labellings, size, n_classes)

    Returns
    -------
    covariance : numpy.ndarray, shape (n_spheres, n_labellings, size, size)
    lowest : numpy.ndarray, shape (n_spheres, n_labellings)
        A lower bound on the covariance's smallest eigenvalue, ``sum_c p_c
        d_c mu_c min_j v_cj`` (0 when no class is shrunk).
    perturbation : numpy.ndarray, shape (n_spheres, n_labellings)
        A bound on the covariance's change from the rounding of the
        ``d_c`` (see :func:`lda_auto_scores`).
    doubtful : numpy.ndarray of bool, shape (n_spheres, n_labellings)
        A class variance near zero (scikit-learn's scaler then treats the
        voxel as constant): left to scikit-learn.
    """
    problem = chunk.problem
    train, test = problem.splits[fold]
    n_spheres, size = len(chunk.rows), chunk.size
    n_lab, n_cls = means.shape[1], means.shape[3]
    outer = chunk.outer_products()[test].reshape(len(test), -1)
    test_grams = (one_hot[:, test] @ outer).reshape(len(one_hot), n_spheres, size, size)
    grams = chunk.class_grams(one_hot) - np.moveaxis(test_grams, 0, 1)
    grams = grams.reshape(n_spheres, n_lab, n_cls, size, size)
    class_means = np.moveaxis(means, 3, 2)  # (s, lab, cls, size)
    n_c = counts.reshape(n_lab, n_cls)[None, :, :, None, None]
    within = grams
    within /= n_c
    within -= class_means[..., :, None] * class_means[..., None, :]
    variances = np.diagonal(within, axis1=3, axis2=4).copy()  # (s, lab, cls, size)
    raw = problem.scale[chunk.columns][:, None, None, :]
    doubtful = np.any(variances <= 1e3 * U64 * raw**2, axis=(2, 3))
    safe = np.where(variances > 0, variances, 1.0)
    inverse_var = 1.0 / safe
    # The standardised covariance C_ij = W_ij / sqrt(v_i v_j), through its
    # trace and squared Frobenius norm only (no array of its size).
    trace = np.sum(variances * inverse_var, axis=3)  # (s, lab, cls)
    squared = within**2
    frobenius = np.einsum("slcij,slci,slcj->slc", squared, inverse_var, inverse_var)
    within_norm = np.sqrt(np.sum(squared, axis=(3, 4)))
    del squared
    # |z_i|^2 of every volume for every class: sum_j x_ij^2 / v_j - 2 x_ij m_j / v_j + m_j^2 / v_j.
    flat_inverse = inverse_var.reshape(n_spheres, n_lab * n_cls, size)
    scaled_means = (class_means * inverse_var).reshape(n_spheres, n_lab * n_cls, size)
    constants = np.sum(class_means * scaled_means.reshape(class_means.shape), axis=3)
    # Training volumes only (the test volumes belong to no class here).
    weights = np.concatenate([flat_inverse, -2.0 * scaled_means], axis=2)
    squares = np.matmul(chunk.squares_and_data()[:, train], np.swapaxes(weights, 1, 2))
    squares += constants.reshape(n_spheres, 1, n_lab * n_cls)
    squares **= 2  # (s, n_train, k)
    fourth = np.einsum("snk,kn->sk", squares, one_hot[:, train])
    fourth = fourth.reshape(n_spheres, n_lab, n_cls)
    n_class = counts.reshape(n_lab, n_cls)[None]
    beta = (fourth / n_class - frobenius) / (size * n_class)
    alpha = (frobenius - trace**2 / size) / size
    beta = np.minimum(beta, alpha)
    shrinkage = np.where(beta == 0, 0.0, beta / np.where(alpha != 0, alpha, 1.0))
    if size == 1:
        shrinkage = np.zeros_like(shrinkage)
    level = trace / size  # mu_c
    prior = (counts / len(train)).reshape(n_lab, n_cls)[None]  # (1, lab, cls)
    # sum_c p_c ((1 - d_c) W_c + d_c mu_c diag(v_c)), without a per-class copy.
    covariance = np.einsum("slc,slcij->slij", prior * (1.0 - shrinkage), within)
    diagonal = np.sum((prior * shrinkage * level)[..., None] * variances, axis=2)
    covariance[..., np.arange(size), np.arange(size)] += diagonal
    lowest = np.sum(prior * shrinkage * level * variances.min(axis=3), axis=2)
    # Rounding of d_c: the sums behind b and a have about n_c + k^2 terms each.
    terms = (n_class + size * size + 8) * 2.0 * U64
    beta_error = terms * (fourth / n_class + frobenius) / (size * n_class)
    alpha_error = terms * (frobenius + trace**2 / size) / size
    safe_alpha = np.where(alpha > 0, alpha, np.inf)
    shrinkage_error = (beta_error + np.abs(shrinkage) * alpha_error) / safe_alpha
    shrinkage_error = np.where(alpha > 0, shrinkage_error, np.inf)
    if size == 1:
        shrinkage_error = np.zeros_like(shrinkage_error)
    spread = within_norm + level * variances.max(axis=3)
    perturbation = np.sum(prior * shrinkage_error * spread, axis=2)
    return covariance, lowest, perturbation, doubtful


def lda_auto_scores(chunk, fold):
    """Class scores of LDA with ``shrinkage="auto"`` (see :func:`ledoit_wolf_covariance`).

    Parameters and returns as :func:`ridge_scores`. The error bound is that
    of the fixed-shrinkage solve with the condition number bounded by the
    covariance's trace over ``lowest``, plus the change of the solution
    from the rounding of the shrinkages (``perturbation`` times the inverse's
    norm, at most ``1 / lowest``); spheres whose shrinkages are all zero
    have no such bound and are refitted by scikit-learn.
    """
    problem = chunk.problem
    train, test = problem.splits[fold]
    n_lab, n_cls, size, n_train = (
        len(chunk.labels),
        len(problem.present[fold]),
        chunk.size,
        len(train),
    )
    one_hot, counts, means = lda_class_means(chunk, fold)
    x_test = chunk.data[:, test]  # (n_spheres, n_test, size)
    covariance, lowest, perturbation, doubtful = ledoit_wolf_covariance(
        chunk, fold, one_hot, counts, means
    )
    solved = np.linalg.solve(covariance, means)  # (n_spheres, n_lab, size, n_cls)
    log_prior = np.log(counts.reshape(n_lab, n_cls) / n_train)
    offset = -0.5 * np.sum(means * solved, axis=2) + log_prior
    flat = np.moveaxis(solved, 1, 2).reshape(len(chunk.rows), size, n_lab * n_cls)
    scores = np.matmul(x_test, flat).reshape(len(chunk.rows), len(test), n_lab, n_cls)
    scores += offset[:, None]
    trace = np.trace(covariance, axis1=2, axis2=3)
    safe_lowest = np.where(lowest > 0, lowest, np.inf)
    condition = np.where(lowest > 0, trace / safe_lowest, np.inf)  # (n_spheres, n_lab)
    solved_norm = np.linalg.norm(solved, axis=2).max(axis=2)
    means_norm = np.linalg.norm(means, axis=2).max(axis=2)
    test_norm = np.linalg.norm(x_test, axis=2)
    scale = np.linalg.norm(problem.scale[chunk.columns], axis=1)[:, None]
    magnitude = (test_norm[:, :, None] + means_norm[:, None, :]) * solved_norm[:, None, :]
    relative = (n_train + size + 2) * size * condition
    mean_error = (n_train + 2) * scale * solved_norm * (1.0 + condition)
    shift = np.where(lowest > 0, perturbation / safe_lowest, np.inf)  # |dZ| / |Z|
    bound = (
        2.0
        * U64
        * (
            (relative[:, None] + size + 2) * magnitude
            + mean_error[:, None, :]
            + np.abs(log_prior).max()
        )
        + shift[:, None] * magnitude
    )
    bound = np.where(doubtful[:, None], np.inf, bound)
    return scores, SAFETY * bound


# --- scoring, certification and refits --------------------------------------------


def classify(scores, bound):
    """Predicted class positions (first on ties) and where the margin is within the bound."""
    if scores.shape[3] == 1:
        return np.zeros(scores.shape[:3], dtype=np.intp), np.zeros(scores.shape[:3], dtype=bool)
    if scores.shape[3] == 2:
        margin = scores[..., 1] - scores[..., 0]
        return (margin > 0).astype(np.intp), ~(np.abs(margin) > 2.0 * bound)
    predicted = np.argmax(scores, axis=3)
    top = -np.partition(-scores, 1, axis=3)
    uncertain = ~(top[..., 0] - top[..., 1] > 2.0 * bound)
    return predicted, uncertain


def make_estimator(name, penalty):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import RidgeClassifier
    from sklearn.neighbors import NearestCentroid

    if name == "ridge":
        return RidgeClassifier(alpha=penalty)
    if name in ("lda_shrinkage", "lda_auto"):
        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage=penalty)
    return NearestCentroid()


def refit(problem, estimator, sphere, fold, labels, float64):
    """Correct test predictions of scikit-learn fitted on one sphere, fold and labelling."""
    from sklearn.base import clone

    train, test = problem.splits[fold]
    matrix = problem.spheres.matrix
    columns = matrix.indices[matrix.indptr[sphere] : matrix.indptr[sphere + 1]]
    x = np.asarray(problem.X[:, columns])
    if float64 or x.dtype.kind != "f":
        x = x.astype(np.float64)
    y = problem.classes[labels]
    model = clone(estimator).fit(x[train], y[train])
    return int(np.sum(model.predict(x[test]) == y[test]))


def score_chunk(problem, engine, rows, labels):
    """Correct predictions (n_folds, n_labellings, n_spheres) of a chunk, and the refits.

    The first labelling is the true one.
    """
    name, alpha = engine
    chunk = Chunk(problem, rows, labels)
    estimator = None  # built at the first refit: scikit-learn is imported only if needed
    correct = np.zeros((len(problem.splits), len(labels), len(rows)), dtype=np.int32)
    n_refits = 0
    for fold, (_, test) in enumerate(problem.splits):
        if name == "ridge":
            scores, bound = ridge_scores(chunk, fold, alpha)
        elif name in ("lda_shrinkage", "lda_auto"):
            scores, bound = lda_scores(chunk, fold, alpha)
        else:
            scores, bound = centroid_scores(chunk, fold)
        predicted, uncertain = classify(scores, bound)
        present = problem.present[fold]
        truth = np.searchsorted(present, labels[:, test])
        truth[~np.isin(labels[:, test], present)] = -1
        correct[fold] = np.sum(predicted == truth.T[None], axis=1).T
        for s, lab in zip(*np.nonzero(uncertain.any(axis=1)), strict=True):
            float64 = name != "nearest_centroid" or lab > 0
            if estimator is None:
                estimator = make_estimator(name, alpha)
            correct[fold, lab, s] = refit(problem, estimator, rows[s], fold, labels[lab], float64)
            n_refits += 1
    return correct, n_refits


def all_correct(problem, engine, labels, n_jobs, progress=None):
    """Correct predictions (n_folds, n_labellings, n_centres) of every sphere, and refits."""
    n_columns = len(labels) * max(2, len(problem.classes))
    chunks = size_chunks(
        problem.spheres, problem.centred.shape[0], n_columns, class_grams=engine[0] == "lda_auto"
    )

    def score(rows):
        result = score_chunk(problem, engine, rows, labels)
        if progress is not None:
            progress(len(rows))
        return result

    parts = map_in_threads(score, chunks, n_jobs)
    correct = np.zeros((len(problem.splits), len(labels), problem.spheres.n_centres), np.int32)
    for rows, (part, _) in zip(chunks, parts, strict=True):
        correct[:, :, rows] = part
    return correct, sum(n for _, n in parts)


def closed_form_searchlight(
    X,
    y,
    runs,
    spheres,
    classifier="ridge",
    cv=None,
    alpha=1.0,
    n_permutations=0,
    seed=0,
    fwe_alpha=0.05,
    n_jobs=1,
    progress=None,
    shrinkage=0.1,
    blocks=None,
):
    """Searchlight accuracies of ridge, shrinkage LDA or nearest centroid, from per-fold sums.

    The scores are those of ``nilearn.decoding.SearchLight`` with
    ``RidgeClassifier(alpha=alpha)``, ``LinearDiscriminantAnalysis(
    solver="lsqr", shrinkage=shrinkage)`` or ``NearestCentroid()``,
    ``scoring="accuracy"`` and the same cross-validation (see the module
    docstring for why).

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_voxels)
        Data matrix (may be a memory-mapped ``.npy``).
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample (the CV groups).
    spheres : Spheres
        From :func:`fmriflow.searchlight.make_spheres`.
    classifier : {"ridge", "nearest_centroid", "lda_shrinkage", "lda_auto"}
        The classifier.
    cv : splitter, optional
        From :func:`fmriflow.decoding.make_cv`; default leave-one-run-out.
    alpha : float
        Ridge penalty (``RidgeClassifier``'s ``alpha``).
    n_permutations : int
        Labels permuted within runs, in the order of
        ``permutation_test_score(groups=runs, random_state=seed)``; 0 for
        none. The cross-validation must then split by run.
    seed : int
        Seed of the permutations.
    fwe_alpha : float
        Family-wise error rate of the max-statistic threshold.
    n_jobs : int
        Threads (over chunks of spheres); results do not depend on it.
    progress : callable, optional
        Called with the number of centres of every chunk scored.
    shrinkage : float
        Shrinkage of ``lda_shrinkage``'s covariance, in (0, 1].
        ``classifier="lda_auto"`` is ``shrinkage="auto"`` (Ledoit-Wolf per
        class, from each class's second and fourth moments).
    blocks : array-like of int, optional
        Block of each sample: blocks exchange labels within runs (see
        :func:`~fmriflow.searchlight.permutations.permute_within_runs`).

    Returns
    -------
    SearchlightResult, or PermutationResult with permutations
        Null accuracies are those of scikit-learn on float64 data.
    """
    if classifier not in ENGINES:
        raise InputError(
            f"closed-form searchlight classifier {classifier!r}",
            "has no closed-form path",
            f"Choose one of {list(ENGINES)}",
        )
    if classifier == "ridge" and not alpha > 0:
        raise InputError(f"ridge alpha {alpha}", "must be positive", "Use e.g. alpha: 1.0")
    if classifier == "lda_auto":
        shrinkage = "auto"
    elif classifier == "lda_shrinkage" and not (
        isinstance(shrinkage, float | int) and 0 < shrinkage <= 1
    ):
        raise InputError(
            f"LDA shrinkage {shrinkage!r}",
            "must be a number in (0, 1] for the closed-form path",
            "Use e.g. shrinkage 0.1",
        )
    n_jobs = worker_count(n_jobs)
    with blas_limit(n_jobs):
        problem, cv, y, runs = make_problem(X, y, runs, spheres, cv)
        if classifier == "lda_auto":
            engine = (classifier, "auto")
        else:
            engine = (classifier, float(shrinkage if classifier == "lda_shrinkage" else alpha))
        labels = problem.codes[None]
        if n_permutations:
            permuted = permutation_labels(y, runs, int(n_permutations), seed, blocks)
            check_folds_survive_permutation(problem, cv, permuted)
            codes = np.searchsorted(problem.classes, permuted)
            labels = np.vstack([labels, codes])
        correct, n_refits = all_correct(problem, engine, labels, n_jobs, progress)
    n_test = np.array([len(test) for _, test in problem.splits])
    scores, fold_scores = fold_accuracies(correct[:, 0], n_test)
    if not n_permutations:
        return SearchlightResult(scores, fold_scores, n_test, n_refits)
    null = np.empty((int(n_permutations), spheres.n_centres))
    for p in range(int(n_permutations)):
        null[p], _ = fold_accuracies(correct[:, p + 1], n_test)
    return summarize_permutations(scores, null, fwe_alpha, n_refits)
