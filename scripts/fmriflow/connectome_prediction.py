"""Prediction of a phenotype from connectomes, cross-validated by subject.

Each subject is one sample: its connectome in one of three measures
(correlation, partial correlation, tangent space; Dadi et al. 2019), as a
vector of edges. A registry classifier predicts the subjects' class (a
diagnosis, an age group) under repeated stratified K-fold over subjects.

No leakage by construction: what is fitted on the group — the tangent
space's reference mean, and anything a classifier's pipeline fits (scaling,
selection) — is fitted inside each fold on its training subjects only: the
transformer is cloned and fitted on the fold's training subjects, the
classifier pipeline cloned and fitted on their features.

The permutation test is scikit-learn's ``permutation_test_score`` applied
to that whole procedure: each permutation shuffles the subjects' labels,
draws the stratified folds again *for the shuffled labels* and refits the
transformer and the classifier in every fold. Re-using the true folds'
features instead (only the classifier refitted) is not a valid test: the
true folds are stratified on the true labels, so under shuffled labels
their training sets are unbalanced against their test sets, which pulls
the null accuracies below chance and the p-values down (a classifier that
ignores the data then gets p = 1 / (n_permutations + 1)). So the tangent
space is fitted on the training set of every fold of every permutation; a
training set drawn again by another permutation reuses its features, which
are the same since the transformer sees no labels (:class:`FoldFeatureCache`).
The classifier is refitted in every fold: the test costs about
``n_permutations`` times the cross-validation.
"""

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils import check_random_state

from fmriflow import classifiers, connectivity
from fmriflow.decoding import chance_accuracy
from fmriflow.errors import InputError
from fmriflow.fits import fold_fit_predict

logger = logging.getLogger("fmriflow")

#: The matrix each measure is computed from (per subject).
MEASURE_INPUT = {
    "correlation": "correlation",
    "partial_correlation": "partial_correlation",
    "tangent": "covariance",
}


def _square(X, n_regions, what):
    """Rows of flattened ``n_regions`` x ``n_regions`` matrices back as matrices."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_regions * n_regions:
        raise InputError(
            what,
            f"has shape {X.shape}, not (n_subjects, {n_regions * n_regions})",
            f"Give one flattened {n_regions} x {n_regions} matrix per row",
        )
    return X.reshape(len(X), n_regions, n_regions)


class TangentSpace(TransformerMixin, BaseEstimator):
    """Tangent-space connectomes, the reference mean fitted on the subjects seen by ``fit``.

    Takes the subjects' covariance matrices (flattened, ``n_regions**2``
    values per row, so that scikit-learn's cross-validation can slice
    them) and returns the vectorised (:func:`fmriflow.connectivity.vectorize`, diagonal kept)
    matrix logarithm of each covariance whitened by the geometric mean of
    the *training* covariances: on the same covariances, what
    ``ConnectivityMeasure(kind="tangent", vectorize=True)`` fitted on the
    training subjects' signals gives.

    Parameters
    ----------
    n_regions : int
        Side of the matrices.

    Attributes
    ----------
    mean_ : numpy.ndarray, shape (n_regions, n_regions)
        Geometric mean of the training covariances.
    whitening_ : numpy.ndarray, shape (n_regions, n_regions)
        Its inverse square root.
    n_fitted_ : int
        Number of training subjects.
    """

    def __init__(self, n_regions):
        self.n_regions = n_regions

    def fit(self, X, y=None):
        """Fit the reference mean on the training subjects.

        Parameters
        ----------
        X : numpy.ndarray, shape (n_subjects, n_regions ** 2)
            Flattened covariance matrices.
        y : None
            Ignored (the tangent space does not see the labels).

        Returns
        -------
        TangentSpace
            The fitted transformer.
        """
        self.mean_ = connectivity.geometric_mean(_square(X, self.n_regions, "covariances"))
        self.whitening_ = connectivity.eigen_function(lambda v: 1.0 / np.sqrt(v), self.mean_)
        self.n_fitted_ = len(X)
        return self

    def transform(self, X):
        """Tangent vectors of subjects around the fitted reference.

        Parameters
        ----------
        X : numpy.ndarray, shape (n_subjects, n_regions ** 2)
            Flattened covariance matrices.

        Returns
        -------
        numpy.ndarray, shape (n_subjects, n_regions * (n_regions + 1) / 2)
        """
        matrices = _square(X, self.n_regions, "covariances")
        return connectivity.vectorize(
            connectivity.eigen_function(np.log, self.whitening_ @ matrices @ self.whitening_)
        )


class EdgeVectors(TransformerMixin, BaseEstimator):
    """Lower-triangle edges (no diagonal) of flattened symmetric matrices; no fitted state.

    Parameters
    ----------
    n_regions : int
        Side of the matrices.
    """

    def __init__(self, n_regions):
        self.n_regions = n_regions

    def fit(self, X, y=None):
        """Nothing to fit.

        Parameters
        ----------
        X : numpy.ndarray, shape (n_subjects, n_regions ** 2)
            Flattened matrices (checked only).
        y : None
            Ignored.

        Returns
        -------
        EdgeVectors
        """
        _square(X, self.n_regions, "matrices")
        return self

    def transform(self, X):
        """The edges of each matrix (:func:`fmriflow.connectivity.vectorize`, no diagonal).

        Parameters
        ----------
        X : numpy.ndarray, shape (n_subjects, n_regions ** 2)
            Flattened symmetric matrices.

        Returns
        -------
        numpy.ndarray, shape (n_subjects, n_regions * (n_regions - 1) / 2)
        """
        return connectivity.vectorize(
            _square(X, self.n_regions, "matrices"), discard_diagonal=True
        )


def n_edges(measure, n_regions):
    """Length of a measure's connectome vector.

    Parameters
    ----------
    measure : {"correlation", "partial_correlation", "tangent"}
        The connectivity measure.
    n_regions : int
        Side of the matrices.

    Returns
    -------
    int
        ``n (n + 1) / 2`` for the tangent space (diagonal kept, as nilearn
        vectorises it), ``n (n - 1) / 2`` for the per-edge measures.
    """
    return (
        n_regions * (n_regions + 1) // 2
        if measure == "tangent"
        else n_regions * (n_regions - 1) // 2
    )


def connectome_transformer(measure, n_regions):
    """The first step of a measure's pipeline: edges, or the tangent space.

    Parameters
    ----------
    measure : {"correlation", "partial_correlation", "tangent"}
        The connectivity measure.
    n_regions : int
        Side of the subjects' matrices.

    Returns
    -------
    EdgeVectors or TangentSpace
        Unfitted; it takes flattened matrices, one subject per row.
    """
    if measure == "tangent":
        return TangentSpace(n_regions)
    if measure in MEASURE_INPUT:
        return EdgeVectors(n_regions)
    raise InputError(
        "connectome measure",
        f"unknown measure {measure!r}",
        f"Choose one of {list(MEASURE_INPUT)}",
    )


def make_cv(n_splits, n_repeats, seed, y):
    """Repeated stratified K-fold over subjects, with K capped at the smallest class.

    Parameters
    ----------
    n_splits : int
        Folds asked for.
    n_repeats : int
        Repeats with reshuffled subjects.
    seed : int
        Random state of the shuffles.
    y : numpy.ndarray
        Class of each subject.

    Returns
    -------
    splitter : sklearn.model_selection.RepeatedStratifiedKFold
    n_splits : int
        The K used.

    Raises
    ------
    InputError
        If there are fewer than 2 classes, or a class has fewer than 2 subjects.
    """
    from sklearn.model_selection import RepeatedStratifiedKFold

    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise InputError(
            "prediction target",
            f"has a single class {classes.tolist()}",
            "Predict a column with at least two values",
        )
    smallest = int(counts.min())
    if smallest < 2:
        few = classes[counts < 2].tolist()
        raise InputError(
            "prediction target",
            f"class(es) {few} have fewer than 2 subjects",
            "Cross-validation by subject needs at least 2 subjects per class",
        )
    if smallest < n_splits:
        logger.warning(
            "the smallest class has %d subjects: %d folds instead of %d",
            smallest,
            smallest,
            n_splits,
        )
        n_splits = smallest
    return (
        RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed),
        n_splits,
    )


@dataclass
class FoldFeatures:
    """The features of one fold, the transformer fitted on its training subjects.

    Attributes
    ----------
    train, test : numpy.ndarray of int
        The subjects of the fold.
    X_train, X_test : numpy.ndarray
        Their features.
    """

    train: np.ndarray
    test: np.ndarray
    X_train: np.ndarray
    X_test: np.ndarray


class FoldFeatureCache:
    """The features of each training set already transformed, up to a memory budget.

    Stratified folds redrawn for every label permutation repeat training sets:
    the 1,515 folds of 100 permutations of 12 subjects in 3 folds x 5 repeats
    have about 300 distinct training sets. A transformer sees no labels, so
    the features of a training set (and of its test subjects) are the same
    whichever permutation drew it; this keeps them, keyed by the training
    subjects in their order, until ``max_bytes`` are held.

    Parameters
    ----------
    max_bytes : int
        Memory for the kept features (40 subjects x 80,000 tangent edges of a
        400-region atlas are 26 MB per training set).
    """

    def __init__(self, max_bytes=256 * 2**20):
        self.max_bytes = max_bytes
        self.n_bytes = 0
        self._features = {}

    def __len__(self):
        return len(self._features)

    def features(self, matrices, transformer, train, test):
        """``(X_train, X_test)`` of a clone of ``transformer`` fitted on ``train``."""
        key = (np.asarray(train).tobytes(), np.asarray(test).tobytes())
        if key in self._features:
            return self._features[key]
        fitted = clone(transformer).fit(matrices[train])
        pair = (fitted.transform(matrices[train]), fitted.transform(matrices[test]))
        size = pair[0].nbytes + pair[1].nbytes
        if self.n_bytes + size <= self.max_bytes:
            self._features[key] = pair
            self.n_bytes += size
        return pair


def fold_features(matrices, transformer, splits, cache=None):
    """Transform every fold with a clone of ``transformer`` fitted on its training rows.

    A generator: one fold's features exist at a time (beyond those ``cache``
    keeps), so memory does not grow with the number of folds (40 subjects x
    80,000 tangent edges of a 400-region atlas are 26 MB per fold, over a GB
    for 50 folds at once).

    Parameters
    ----------
    matrices : numpy.ndarray, shape (n_subjects, n_regions * n_regions)
        Flattened per-subject matrices.
    transformer : estimator
        Unfitted; cloned per fold. It must not see labels.
    splits : iterable of (train, test)
        Subject indices of each fold.
    cache : FoldFeatureCache, optional
        Features of training sets seen before, for the folds of permutations.

    Yields
    ------
    FoldFeatures
    """
    cache = FoldFeatureCache(max_bytes=0) if cache is None else cache
    for train, test in splits:
        X_train, X_test = cache.features(matrices, transformer, train, test)
        yield FoldFeatures(train, test, X_train, X_test)


def fold_accuracies(folds, y, classifier):
    """Held-out accuracy of every fold, the classifier refitted on each training set.

    Parameters
    ----------
    folds : iterable of FoldFeatures
        The features of each fold (a list, or :func:`fold_features`).
    y : numpy.ndarray
        Class of each subject.
    classifier : estimator
        Unfitted; fitted afresh on each fold (:func:`fmriflow.fits.fold_fit_predict`).

    Returns
    -------
    numpy.ndarray, shape (n_folds,)
    """
    classifier = classifiers.bare_estimator(classifier)
    scores = []
    for fold in folds:
        with classifiers.repeated_fits(fold.X_train, fold.X_test, what="connectome features"):
            predicted = fold_fit_predict(classifier, y[fold.train])(fold.X_train, fold.X_test)
            scores.append(np.mean(predicted == y[fold.test]))
    return np.array(scores, dtype=np.float64)


def chance_level(y):
    """Accuracy of always predicting the most frequent class.

    Parameters
    ----------
    y : sequence
        Class of each subject.

    Returns
    -------
    float
    """
    return float(np.unique(y, return_counts=True)[1].max() / len(y))


def permutation_p_value(observed, null):
    """One-sided permutation p-value, ``(1 + #{null >= observed}) / (1 + n)``.

    Parameters
    ----------
    observed : float
        The accuracy with the true labels.
    null : numpy.ndarray
        The accuracies with shuffled labels.

    Returns
    -------
    float
    """
    null = np.asarray(null)
    return float((1 + np.sum(null >= observed)) / (1 + null.size))


def _check_inputs(matrices, y):
    """Stop unless ``matrices`` is a stack of square matrices, one per label."""
    if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2]:
        raise InputError(
            "connectomes",
            f"have shape {matrices.shape}",
            "Give one square matrix per subject, (n_subjects, n_regions, n_regions)",
        )
    if len(matrices) != len(y):
        raise InputError(
            "prediction target",
            f"{len(y)} labels for {len(matrices)} subjects",
            "Give one label per subject",
        )


def predict_from_connectomes(
    matrices,
    y,
    measure,
    classifier="logreg_l2",
    n_splits=5,
    n_repeats=10,
    n_permutations=100,
    seed=0,
    balance=False,
):
    """Cross-validated accuracy of one measure, with chance and a permutation p-value.

    Parameters
    ----------
    matrices : numpy.ndarray, shape (n_subjects, n_regions, n_regions)
        The measure's input matrix per subject (:data:`MEASURE_INPUT`).
    y : sequence of str
        Class of each subject.
    measure : {"correlation", "partial_correlation", "tangent"}
        The connectivity measure.
    classifier : str
        Registry name.
    n_splits, n_repeats : int
        Repeated stratified K-fold over subjects.
    n_permutations : int
        Label permutations (over subjects) for the p-value; 0 for none.
    seed : int
        Folds, permutations and randomized estimators.
    balance : bool
        Weight classes inversely to their frequency.

    Returns
    -------
    dict
        ``accuracies`` (one per fold), ``accuracy`` (their mean), ``std``,
        ``chance`` (the mean over folds of the accuracy of predicting each
        training set's most frequent class, as the decoding stage reports
        it), ``chance_majority`` (the most frequent class's share of all
        subjects), ``folds`` (per fold: ``n_train``, ``n_test``,
        ``chance``), ``n_splits``, ``n_repeats``, ``p_value`` (None without
        permutations), ``null`` (the mean accuracy of each permutation).
        With the same seed, ``accuracy``, ``null`` and ``p_value`` are what
        ``sklearn.model_selection.permutation_test_score`` gives for the
        pipeline (transformer, classifier) and the same splitter.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    y = np.asarray(y).astype(str)
    _check_inputs(matrices, y)
    n_subjects, n_regions = matrices.shape[0], matrices.shape[1]
    cv, used_splits = make_cv(n_splits, n_repeats, seed, y)
    flat = matrices.reshape(n_subjects, -1)
    transformer = connectome_transformer(measure, n_regions)
    model = classifiers.make_classifier(
        classifier,
        seed=seed,
        balance=balance,
        n_classes=len(set(y)),
        n_features=n_edges(measure, n_regions),
    )

    cache = FoldFeatureCache()

    def cross_validate(labels):
        splits = list(cv.split(np.zeros(n_subjects), labels))
        return fold_accuracies(fold_features(flat, transformer, splits, cache), labels, model)

    splits = list(cv.split(np.zeros(n_subjects), y))
    accuracies = fold_accuracies(fold_features(flat, transformer, splits, cache), y, model)
    observed = float(accuracies.mean())
    fold_chance = np.array([chance_accuracy(y[train], y[test]) for train, test in splits])
    # As permutation_test_score: shuffled labels, folds drawn again for them.
    random_state = check_random_state(seed)
    null = np.array(
        [
            cross_validate(y[random_state.permutation(n_subjects)]).mean()
            for _ in range(n_permutations)
        ]
    )
    return {
        "accuracies": accuracies,
        "accuracy": observed,
        "std": float(accuracies.std()),
        "chance": float(fold_chance.mean()),
        "chance_majority": chance_level(y),
        "folds": {
            "n_train": np.array([len(train) for train, _ in splits]),
            "n_test": np.array([len(test) for _, test in splits]),
            "chance": fold_chance,
        },
        "n_splits": used_splits,
        "n_repeats": n_repeats,
        "p_value": permutation_p_value(observed, null) if n_permutations else None,
        "null": null,
    }
