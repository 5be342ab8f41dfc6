"""Gaussian naive Bayes in every sphere at once: the data, folds and class statistics.

Naive Bayes treats voxels as independent given the class, so a sphere's
log-likelihoods are sums of per-voxel terms, and a voxel's class means and
variances are the same in every sphere that contains it: they are computed
once per fold for all voxels (:class:`GNBProblem`), and every sphere is then
scored from them (:mod:`fmriflow.searchlight.gnb_scoring`, which also says
why the predictions equal scikit-learn's). Predictions too close to call
are made by scikit-learn itself, here (:meth:`GNBProblem.repredict`,
:meth:`GNBProblem.refit`).
"""

from dataclasses import dataclass

import numpy as np

from fmriflow.searchlight import gnb_scoring
from fmriflow.searchlight.gnb_scoring import gather
from fmriflow.searchlight.scores import (
    SearchlightResult,
    blas_limit,
    check_data,
    fold_accuracies,
    make_splits,
    map_in_threads,
    worker_count,
)


@dataclass(frozen=True)
class Fold:
    """What the naive Bayes path needs of one fold, for all voxels at once."""

    train: np.ndarray
    test: np.ndarray
    classes: np.ndarray  # codes of the classes present in training, sorted
    counts: np.ndarray  # training volumes per present class
    log_prior: np.ndarray  # (n_classes,) float64
    eps_voxel: np.ndarray  # (n_voxels,) var_smoothing * training variance, float64
    eps_sphere: np.ndarray  # (n_centres,) scikit-learn's epsilon, data precision
    delta: np.ndarray  # (n_centres,) bound on eps_sphere - eps_voxel within the sphere
    x_test: np.ndarray  # (n_voxels + 1, n_test) centred float64 test data; last row 0
    reach: np.ndarray  # (n_voxels,) largest |centred test value|
    spread: np.ndarray  # (n_voxels,) largest |raw| + largest |centred| training value


class GNBProblem:
    """Data, spheres and folds shared by the observed and permuted labellings.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_voxels)
        Data matrix (may be memory-mapped).
    y, runs : numpy.ndarray
        Labels and runs of the samples.
    spheres : Spheres
        The searchlight spheres.
    splits : list of (train, test)
        The cross-validation folds.
    var_smoothing : float
        As in ``sklearn.naive_bayes.GaussianNB``.
    priors : array-like or None
        Class priors (None: the training frequencies).
    """

    def __init__(self, X, y, runs, spheres, splits, var_smoothing, priors):
        self.X = X
        self.dtype = np.dtype(X.dtype) if X.dtype.kind == "f" else np.dtype(np.float64)
        self.spheres = spheres
        self.classes, self.codes = np.unique(y, return_inverse=True)
        self.runs = runs
        self.splits = splits
        self.var_smoothing = float(var_smoothing)
        self.priors = None if priors is None else np.asarray(priors, dtype=float)
        self.index = spheres.padded_indices()
        self.sizes = spheres.sizes
        self.centre = np.zeros(spheres.n_voxels)
        for start in range(0, X.shape[0], 256):
            self.centre += np.asarray(X[start : start + 256], dtype=np.float64).sum(axis=0)
        self.centre /= X.shape[0]
        self.folds = [self._fold(train, test) for train, test in splits]

    def rows(self, rows):
        """Some rows of the data, C-ordered, in floating point."""
        x = np.ascontiguousarray(self.X[rows])
        return x if x.dtype.kind == "f" else x.astype(np.float64)

    def _fold(self, train, test):
        x_train = self.rows(train)
        # The variance whose maximum scikit-learn scales into epsilon, in its precision.
        variance = np.var(x_train, axis=0)
        eps_raw = self.var_smoothing * gather(variance, -np.inf, self.index).max(axis=1)
        eps_voxel = self.var_smoothing * variance.astype(np.float64)
        low = gather(eps_voxel, np.inf, self.index).min(axis=1)
        eps_sphere = eps_raw.astype(np.float64)
        classes, counts = np.unique(self.codes[train], return_counts=True)
        if self.priors is None:
            prior = counts.astype(self.dtype) / counts.astype(self.dtype).sum()
            log_prior = np.log(prior).astype(np.float64)
        else:
            log_prior = np.log(self.priors[classes])
        x_test = self.rows(test).astype(np.float64) - self.centre
        spread = np.abs(x_train).max(axis=0).astype(np.float64)
        spread += np.abs(x_train.astype(np.float64) - self.centre).max(axis=0)
        return Fold(
            train=train,
            test=test,
            classes=classes,
            counts=counts,
            log_prior=log_prior,
            eps_voxel=eps_voxel,
            eps_sphere=eps_raw,
            delta=eps_sphere - low + 1e-3 * eps_sphere,
            x_test=np.ascontiguousarray(np.vstack([x_test.T, np.zeros((1, len(test)))])),
            reach=np.abs(x_test).max(axis=0),
            spread=spread,
        )

    def observed_statistics(self, fold):
        """Class means and variances exactly as scikit-learn's GaussianNB computes them.

        Returns the centred float64 ``theta`` and ``var`` of shape
        ``(1, n_classes, n_voxels)`` used for scoring, and scikit-learn's own
        arrays (data precision, ``(n_classes, n_voxels)``) for re-predictions.
        """
        x_train = self.rows(fold.train)
        codes = self.codes[fold.train]
        shape = (len(fold.classes), x_train.shape[1])
        theta_raw, var_raw = np.empty(shape, x_train.dtype), np.empty(shape, x_train.dtype)
        for c, code in enumerate(fold.classes):
            # The same numpy reductions as GaussianNB._update_mean_variance, on
            # a C-ordered matrix: every column is summed in the same order as
            # in the sphere's own (volume x voxel) matrix.
            x_class = x_train[codes == code]
            var_raw[c] = np.var(x_class, axis=0)
            theta_raw[c] = np.mean(x_class, axis=0)
        theta = theta_raw.astype(np.float64)[None] - self.centre
        return theta, var_raw.astype(np.float64)[None], (theta_raw, var_raw)

    def columns(self, sphere):
        """The data columns of one sphere."""
        matrix = self.spheres.matrix
        return matrix.indices[matrix.indptr[sphere] : matrix.indptr[sphere + 1]]

    def refit(self, fold, sphere, labels, float64):
        """Correct predictions of scikit-learn's GaussianNB fitted on one sphere and fold."""
        from sklearn.naive_bayes import GaussianNB

        x = self.X[:, self.columns(sphere)]
        if float64 or x.dtype.kind != "f":
            x = x.astype(np.float64)
        model = GaussianNB(var_smoothing=self.var_smoothing, priors=self.priors)
        model.fit(x[fold.train], labels[fold.train])
        return int(np.sum(model.predict(x[fold.test]) == labels[fold.test]))

    def repredict(self, fold, sphere, raw_stats, x_test, labels):
        """Correct predictions of scikit-learn's GaussianNB given its fitted statistics.

        ``raw_stats`` are the class means and variances scikit-learn's fit
        computes (bit for bit, see :meth:`observed_statistics`), so setting
        them and calling ``predict`` gives its predictions without refitting.
        One-voxel spheres, whose statistics numpy sums in another order, are
        refitted.
        """
        from sklearn.naive_bayes import GaussianNB

        if self.sizes[sphere] == 1:
            return self.refit(fold, sphere, labels, float64=False)
        columns = self.columns(sphere)
        theta_raw, var_raw = raw_stats
        dtype = theta_raw.dtype
        counts = fold.counts.astype(dtype)
        model = GaussianNB(var_smoothing=self.var_smoothing, priors=self.priors)
        model.classes_ = self.classes[fold.classes]
        model.n_features_in_ = len(columns)
        model.epsilon_ = fold.eps_sphere[sphere]
        model.theta_ = np.ascontiguousarray(theta_raw[:, columns])
        model.var_ = np.ascontiguousarray(var_raw[:, columns])
        model.var_ += model.epsilon_
        model.class_count_ = counts
        if self.priors is None:
            model.class_prior_ = counts / counts.sum()
        else:
            model.class_prior_ = np.asarray(self.priors, dtype=dtype)
        predicted = model.predict(np.ascontiguousarray(x_test[:, columns]))
        return int(np.sum(predicted == labels[fold.test]))


def setup(X, y, runs, spheres, cv, var_smoothing, priors):
    """The checked problem, the splitter and the labels as an array."""
    y, runs = check_data(X, y, runs, spheres)
    cv, splits = make_splits(cv, X, y, runs)
    return GNBProblem(X, y, runs, spheres, splits, var_smoothing, priors), cv, y


def observed(problem, labels, n_jobs):
    """Accuracies on the true labels, every uncertain prediction made by scikit-learn."""

    def run(fold):
        theta, var, raw_stats = problem.observed_statistics(fold)
        codes = problem.codes[fold.test][None]
        correct, uncertain = gnb_scoring.score_in_place(problem, fold, theta, var, codes, True)
        x_test = problem.rows(fold.test)
        for sphere in np.flatnonzero(uncertain[0]):
            correct[0, sphere] = problem.repredict(fold, sphere, raw_stats, x_test, labels)
        return correct[0], int(uncertain.sum())

    results = map_in_threads(run, problem.folds, n_jobs)
    n_test = np.array([len(fold.test) for fold in problem.folds])
    scores, fold_scores = fold_accuracies(np.array([r[0] for r in results]), n_test)
    return SearchlightResult(scores, fold_scores, n_test, sum(r[1] for r in results))


def gnb_searchlight(X, y, runs, spheres, cv=None, var_smoothing=1e-9, priors=None, n_jobs=1):
    """Searchlight accuracies of Gaussian naive Bayes, computed for all spheres at once.

    The scores are identical to those of ``nilearn.decoding.SearchLight``
    with ``estimator=GaussianNB(var_smoothing=..., priors=...)``,
    ``scoring="accuracy"`` and the same cross-validation (see
    :mod:`fmriflow.searchlight.gnb_scoring` for why).

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_voxels)
        Data matrix (may be a memory-mapped ``.npy``); columns are the data
        mask's voxels in C order.
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample (the CV groups).
    spheres : Spheres
        From :func:`fmriflow.searchlight.make_spheres`.
    cv : splitter, optional
        From :func:`fmriflow.decoding.make_cv`; default leave-one-run-out.
    var_smoothing : float
        As in ``sklearn.naive_bayes.GaussianNB``.
    priors : array-like, optional
        Class priors (default: the training frequencies).
    n_jobs : int
        Threads (over folds); results do not depend on it.

    Returns
    -------
    SearchlightResult
    """
    n_jobs = worker_count(n_jobs)
    with blas_limit(n_jobs):
        problem, _, y = setup(X, y, runs, spheres, cv, var_smoothing, priors)
        return observed(problem, y, n_jobs)
