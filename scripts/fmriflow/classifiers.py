"""The registry of classifiers: one entry per name the config may use.

A classifier is chosen by name, never by evaluating text from the config.
Each :class:`Classifier` entry knows everything the workflow needs of it:

* how to build the scikit-learn estimator (the ``clf`` step of a
  ``Pipeline``; ANOVA feature selection, when the entry asks for it, is a
  step before it, so it is fitted inside each training fold);
* which parameter a nested search tunes, and where it sits in the pipeline;
* how to read per-voxel weights from a fitted model, for display;
* which searchlight engine serves it (the exact naive Bayes path, the
  exact closed-form path of ridge and nearest centroid, the general
  sphere-by-sphere path, or none), and whether that engine gives
  permutation maps.

:func:`make_classifier`, :func:`with_search`, :func:`display_weights`, the
searchlight and the config schema's enums all read :data:`REGISTRY` (a test
checks the schema against it). Adding a classifier is one entry here plus
its test.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fmriflow.errors import InputError

#: Searchlight engines: the exact all-spheres-at-once naive Bayes path, the
#: exact closed-form path (ridge, nearest centroid), and scikit-learn fitted
#: sphere by sphere.
SEARCHLIGHT_ENGINES = ("gnb", "closed_form", "sklearn")


@dataclass(frozen=True)
class Classifier:
    """One registry entry.

    Attributes
    ----------
    name : str
        The name used in the config.
    description : str
        One line, for documentation and messages.
    build : callable
        ``build(seed, class_weight, n_classes, balance)`` returns the
        unfitted scikit-learn classifier.
    search_path : str
        The parameter a nested search tunes, as a parameter of the pipeline
        (``clf__C``, ``clf__alpha``, ``clf__var_smoothing``).
    weights : callable
        ``weights(fitted_classifier, classes)`` returns the per-feature
        weights, shape ``(n_maps, n_features)``: one map for a binary
        contrast (positive for ``classes[1]``), one per class otherwise.
    one_vs_rest_display : bool
        Multiclass display maps need one binary refit per class (the
        classifier itself is one-vs-one).
    anova : bool
        ANOVA F-test feature selection precedes the classifier.
    searchlight : str or None
        The searchlight engine that serves it (see
        :data:`SEARCHLIGHT_ENGINES`), or None if searchlights do not offer it.
    permutation_maps : bool
        Its searchlight engine also computes permutation maps.
    """

    name: str
    description: str
    build: Callable
    search_path: str
    weights: Callable
    one_vs_rest_display: bool = False
    anova: bool = False
    searchlight: str | None = "sklearn"
    permutation_maps: bool = False


#: Fixed settings of the entries whose searchlight engine is not scikit-learn
#: (:func:`engine_settings` reads them without building the estimator).
RIDGE_ALPHA = 1.0
LDA_SHRINKAGE = 0.1
GNB_VAR_SMOOTHING = 1e-9


def _uniform_priors(n_classes, balance):
    """Uniform class priors when balancing a classifier without class weights, else None."""
    return np.full(n_classes, 1.0 / n_classes) if balance else None


def _linear_svc_libsvm(seed, class_weight, n_classes, balance):
    from sklearn.svm import SVC

    return SVC(kernel="linear", C=1.0, class_weight=class_weight)


def _linear_svc_liblinear(seed, class_weight, n_classes, balance):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=1.0, class_weight=class_weight, random_state=seed, max_iter=10000)


def _linear_svc_l1(seed, class_weight, n_classes, balance):
    from sklearn.svm import LinearSVC

    # The L1 penalty is solved in the primal (liblinear has no dual for it).
    return LinearSVC(
        penalty="l1",
        dual=False,
        C=1.0,
        class_weight=class_weight,
        random_state=seed,
        max_iter=10000,
    )


def _logistic_l1(seed, class_weight, n_classes, balance):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = LogisticRegression(
        l1_ratio=1.0, solver="liblinear", C=1.0, class_weight=class_weight, random_state=seed
    )
    # liblinear is binary: one L1 model per class (one-vs-rest).
    return OneVsRestClassifier(model)


def _logistic_l2(seed, class_weight, n_classes, balance):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, class_weight=class_weight, max_iter=5000)


def _ridge(seed, class_weight, n_classes, balance):
    from sklearn.linear_model import RidgeClassifier

    return RidgeClassifier(alpha=RIDGE_ALPHA, class_weight=class_weight)


def _lda_shrinkage(seed, class_weight, n_classes, balance):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    # LDA has no class weights: balance means uniform priors.
    priors = _uniform_priors(n_classes, balance)
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage=LDA_SHRINKAGE, priors=priors)


def _lda_auto(seed, class_weight, n_classes, balance):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    priors = _uniform_priors(n_classes, balance)
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=priors)


def _nearest_centroid(seed, class_weight, n_classes, balance):
    from sklearn.neighbors import NearestCentroid

    # Uniform priors: the nearest class mean, balanced or not.
    return NearestCentroid()


def _naive_bayes(seed, class_weight, n_classes, balance):
    from sklearn.naive_bayes import GaussianNB

    # Naive Bayes has no class weights: balance means uniform priors.
    return GaussianNB(var_smoothing=GNB_VAR_SMOOTHING, priors=_uniform_priors(n_classes, balance))


def coefficient_weights(clf, classes):
    """``coef_`` of a linear model, one row per map."""
    return np.atleast_2d(clf.coef_)


def one_vs_rest_weights(clf, classes):
    """``coef_`` of each binary model of a ``OneVsRestClassifier``."""
    return np.vstack([estimator.coef_ for estimator in clf.estimators_])


def naive_bayes_weights(clf, classes):
    """Differences of class means over the pooled standard deviation.

    Binary: the second class's mean minus the first's; multiclass: each
    class's mean minus the mean of the class means.
    """
    pooled = np.sqrt(clf.var_.mean(axis=0))
    if len(classes) == 2:
        return ((clf.theta_[1] - clf.theta_[0]) / pooled)[None]
    return (clf.theta_ - clf.theta_.mean(axis=0)) / pooled


def centroid_weights(clf, classes):
    """Differences of class means (centroids).

    Binary: the second class's centroid minus the first's; multiclass: each
    centroid minus the mean of the centroids.
    """
    if len(classes) == 2:
        return (clf.centroids_[1] - clf.centroids_[0])[None]
    return clf.centroids_ - clf.centroids_.mean(axis=0)


REGISTRY = {
    entry.name: entry
    for entry in (
        Classifier(
            "svc",
            "linear-kernel SVC (libsvm), as in the nilearn tutorial",
            _linear_svc_libsvm,
            "clf__C",
            coefficient_weights,
            one_vs_rest_display=True,
        ),
        Classifier(
            "linear_svc",
            "linear SVM (liblinear, squared hinge)",
            _linear_svc_liblinear,
            "clf__C",
            coefficient_weights,
        ),
        Classifier(
            "linear_svc_l1",
            "L1-penalized linear SVM (liblinear), as in Abraham et al. (2014), Table 1",
            _linear_svc_l1,
            "clf__C",
            coefficient_weights,
        ),
        Classifier(
            "logreg_l1",
            "L1-penalized logistic regression (liblinear, one-vs-rest)",
            _logistic_l1,
            "clf__estimator__C",
            one_vs_rest_weights,
        ),
        Classifier(
            "logreg_l2",
            "L2-penalized logistic regression (lbfgs)",
            _logistic_l2,
            "clf__C",
            coefficient_weights,
        ),
        Classifier(
            "ridge",
            "ridge classifier (penalised least squares on ±1 targets)",
            _ridge,
            "clf__alpha",
            coefficient_weights,
            searchlight="closed_form",
            permutation_maps=True,
        ),
        Classifier(
            "lda_shrinkage",
            "linear discriminant analysis with a shrunk pooled covariance (shrinkage 0.1)",
            _lda_shrinkage,
            "clf__shrinkage",
            coefficient_weights,
            searchlight="closed_form",
            permutation_maps=True,
        ),
        Classifier(
            "lda_auto",
            "linear discriminant analysis, each class's covariance shrunk by Ledoit-Wolf's "
            "rule (shrinkage='auto')",
            _lda_auto,
            "clf__shrinkage",
            coefficient_weights,
            searchlight="closed_form",
            permutation_maps=True,
        ),
        Classifier(
            "nearest_centroid",
            "nearest class mean (Euclidean), Haxby et al. (2001)'s minimum-distance rule",
            _nearest_centroid,
            "clf__shrink_threshold",
            centroid_weights,
            searchlight="closed_form",
            permutation_maps=True,
        ),
        Classifier(
            "gnb",
            "Gaussian naive Bayes",
            _naive_bayes,
            "clf__var_smoothing",
            naive_bayes_weights,
            searchlight="gnb",
            permutation_maps=True,
        ),
        Classifier(
            "anova_svc",
            "ANOVA F-test feature selection then linear-kernel SVC, as in Abraham et al. (2014)",
            _linear_svc_libsvm,
            "clf__C",
            coefficient_weights,
            one_vs_rest_display=True,
            anova=True,
            searchlight=None,
        ),
    )
}


@contextlib.contextmanager
def repeated_fits(*arrays, what="features"):
    """scikit-learn settings for many fits of registry estimators on checked data.

    A permutation test or a model per pixel fits the same estimator
    thousands of times on small slices of the same arrays. scikit-learn
    checks, in every fit, that the constructor's parameters are valid and
    that the data hold no NaN or infinity; both checks are done once here
    instead (the parameters are the registry's, tested with validation on;
    the arrays are checked below). scikit-learn's own switches for this
    (``skip_parameter_validation``, ``assume_finite``) change no result, only
    the time: a fifth of that of a connectome permutation test.

    Parameters
    ----------
    *arrays : numpy.ndarray
        Every array the fits inside the block read.
    what : str
        What the arrays are, for the message.

    Raises
    ------
    InputError
        If an array holds a NaN or an infinity.
    """
    import sklearn

    for array in arrays:
        values = np.asarray(array)
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise InputError(
                what,
                f"holds {int(np.sum(~np.isfinite(values)))} NaN or infinite value(s)",
                "Check the upstream step that wrote them (clean, connectome_subject)",
            )
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        yield


def bare_estimator(estimator):
    """The estimator itself when ``estimator`` is a pipeline of that one step.

    Fitting and predicting with a one-step ``Pipeline`` is fitting and
    predicting with its step; cloning and calling the step alone skips the
    pipeline's own cloning and validation, a tenth of the time of a small
    fit repeated for every fold of every permutation.

    Parameters
    ----------
    estimator : sklearn estimator
        A pipeline or any estimator.

    Returns
    -------
    sklearn estimator
        The pipeline's only step, or ``estimator`` unchanged.
    """
    steps = getattr(estimator, "steps", None)
    if steps is not None and len(steps) == 1:
        return steps[0][1]
    return estimator


#: Samples above which a permutation test keeps libsvm's own linear kernel:
#: the Gram matrix holds n^2 float64 (128 MB at 4,000) and takes n^2 / 2 BLAS
#: calls from Python to fill (about 5 s at 4,000).
GRAM_MAX_SAMPLES = 4000


def precomputed_kernel_equivalent(estimator):
    """An SVC on a precomputed Gram matrix that fits as ``estimator`` does, or None.

    A linear-kernel ``SVC`` spends most of a small fit computing dot
    products between training samples, again in every fold of every label
    permutation. libsvm computes each as BLAS ``ddot`` of the two rows
    (scikit-learn passes it SciPy's BLAS); given those same numbers as a
    precomputed kernel (:func:`linear_kernel_gram`), libsvm does the same
    arithmetic and reaches the same dual coefficients, intercept and
    predictions, bit for bit (tested on binary, multiclass, weighted and
    float32 problems).

    Parameters
    ----------
    estimator : sklearn estimator
        A bare classifier (:func:`bare_estimator`).

    Returns
    -------
    sklearn.svm.SVC or None
        With ``kernel="precomputed"`` and every other parameter of
        ``estimator``, when it is an ``SVC`` with a linear kernel; None
        otherwise.
    """
    from sklearn.svm import SVC

    if type(estimator) is not SVC or estimator.kernel != "linear":
        return None
    return SVC(**{**estimator.get_params(), "kernel": "precomputed"})


def linear_kernel_gram(X):
    """Every dot product of two rows of ``X``, computed as libsvm's linear kernel does.

    Each entry is SciPy's BLAS ``ddot`` of the two rows in float64, the
    routine and the operands of libsvm's linear kernel in scikit-learn (a
    matrix product would sum in another order and differ in the last bits).

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
        The samples.

    Returns
    -------
    numpy.ndarray, shape (n_samples, n_samples)
        Symmetric, float64.
    """
    from scipy.linalg.blas import ddot

    rows = np.ascontiguousarray(X, dtype=np.float64)
    n_samples = len(rows)
    gram = np.empty((n_samples, n_samples))
    for i in range(n_samples):
        row = rows[i]
        gram[i, i:] = [ddot(row, rows[j]) for j in range(i, n_samples)]
        gram[i:, i] = gram[i, i:]
    return gram


def thread_safe(estimator):
    """Whether fits of ``estimator`` may run in concurrent threads of one process.

    scikit-learn's liblinear (``LinearSVC``, ``LinearSVR``, and
    ``LogisticRegression(solver="liblinear")``) seeds and draws from one
    random generator shared by the whole process, so two liblinear fits in
    concurrent threads interleave their draws and the results change from
    run to run. Such estimators, alone or inside a pipeline, a search or a
    one-vs-rest wrapper, must be fitted in separate processes.

    Parameters
    ----------
    estimator : sklearn estimator
        A classifier, pipeline or search, fitted or not.

    Returns
    -------
    bool
    """
    from sklearn.base import BaseEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC, LinearSVR

    parts = [estimator]
    if isinstance(estimator, BaseEstimator):
        parts += [
            v for v in estimator.get_params(deep=True).values() if isinstance(v, BaseEstimator)
        ]
    for part in parts:
        if isinstance(part, LinearSVC | LinearSVR):
            return False
        if isinstance(part, LogisticRegression) and part.solver == "liblinear":
            return False
    return True


def get(name):
    """The registry entry of ``name``, or an :class:`InputError` listing the names."""
    if name not in REGISTRY:
        raise InputError(
            f"classifier {name!r}", "unknown classifier", f"Choose one of {sorted(REGISTRY)}"
        )
    return REGISTRY[name]


def names(searchlight=False, permutation_maps=False):
    """Registry names, optionally only those a searchlight (with permutations) offers."""
    return sorted(
        name
        for name, entry in REGISTRY.items()
        if (not searchlight or entry.searchlight is not None)
        and (not permutation_maps or entry.permutation_maps)
    )


def anova_selector(method="k", value=500, n_features=None):
    """The ANOVA F-test selection step.

    Parameters
    ----------
    method : {"k", "percentile"}
        Keep a number of voxels, or a percentage of them.
    value : float
        The number (capped at ``n_features``) or the percentage (at most 100).
    n_features : int, optional
        Number of voxels available.

    Returns
    -------
    sklearn.feature_selection.SelectKBest or SelectPercentile
    """
    from sklearn.feature_selection import SelectKBest, SelectPercentile, f_classif

    if method == "percentile":
        return SelectPercentile(f_classif, percentile=min(float(value), 100))
    k = int(value)
    return SelectKBest(f_classif, k=k if n_features is None else min(k, n_features))


def engine_settings(name, balance=False, n_classes=2):
    """The settings a closed-form or naive Bayes searchlight engine takes from an entry.

    What :func:`make_classifier` would set on the estimator, read without
    building it (so that a searchlight job on these engines never imports
    scikit-learn).

    Parameters
    ----------
    name : str
        A registry name.
    balance : bool
        As in :func:`make_classifier`.
    n_classes : int
        Number of classes.

    Returns
    -------
    dict
        ``alpha`` (ridge), ``shrinkage`` (LDA: a float, or ``"auto"``),
        ``var_smoothing`` and ``priors`` (naive Bayes; None or uniform).
    """
    get(name)
    return {
        "alpha": RIDGE_ALPHA,
        "shrinkage": "auto" if name == "lda_auto" else LDA_SHRINKAGE,
        "var_smoothing": GNB_VAR_SMOOTHING,
        "priors": _uniform_priors(n_classes, balance),
    }


def make_classifier(
    name,
    seed=0,
    balance=False,
    n_classes=2,
    n_features=None,
    selection_method="k",
    selection_value=500,
):
    """Build a registry classifier as a Pipeline whose last step is ``clf``.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY`.
    seed : int
        Random state of estimators that use one.
    balance : bool
        Weight classes inversely to their frequency (``class_weight``), or
        uniform priors for Gaussian naive Bayes.
    n_classes : int
        Number of classes (for naive Bayes priors).
    n_features : int, optional
        Number of voxels; ANOVA's ``k`` is capped at it.
    selection_method, selection_value
        ANOVA selection of entries that use it (see :func:`anova_selector`).

    Returns
    -------
    sklearn.pipeline.Pipeline
    """
    from sklearn.pipeline import Pipeline

    entry = get(name)
    clf = entry.build(seed, "balanced" if balance else None, n_classes, balance)
    steps = [("clf", clf)]
    if entry.anova:
        steps.insert(0, ("anova", anova_selector(selection_method, selection_value, n_features)))
    return Pipeline(steps)


def with_search(pipeline, name, grid):
    """Wrap a pipeline in a grid search with an inner leave-one-run-out.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        From :func:`make_classifier`.
    name : str
        Registry name (gives the parameter searched).
    grid : list of float
        Values of that parameter.

    Returns
    -------
    fmriflow.nested_search.NestedSearch
        ``GridSearchCV(pipeline, {path: grid}, cv=LeaveOneGroupOut(),
        scoring="accuracy")`` with each inner fold's feature selection
        fitted once for all values (the same scores, choice and model);
        to be fitted with ``groups`` (the training runs).
    """
    from fmriflow.nested_search import NestedSearch

    return NestedSearch(pipeline, get(name).search_path, list(grid))


def weight_units(name):
    """What the weight map of a registry classifier measures, for its colour bar."""
    weights = get(name).weights
    if weights is naive_bayes_weights:
        return "difference of class means / pooled SD"
    if weights is centroid_weights:
        return "difference of class centroids (data units)"
    return "classifier weight (arbitrary units)"


def display_weights(pipeline, X, y, name):
    """Per-voxel weights of a model refitted on all data, for display only.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        From :func:`make_classifier` (without search).
    X, y : numpy.ndarray
        All samples of the analysis.
    name : str
        Registry name.

    Returns
    -------
    maps : numpy.ndarray, shape (n_maps, n_features)
        Binary: one map, positive for the second class (``classes[1]``).
        Multiclass: one map per class (one-vs-rest). Zero outside the
        voxels selected by ANOVA.
    names : list of str
        A title per map: ``"house (positive) vs face (negative)"``, or
        ``"cat vs the other classes"``.
    """
    from sklearn.base import clone

    entry = get(name)
    classes = np.unique(y)
    if len(classes) == 2:
        maps = _fitted_weights(clone(pipeline).fit(X, y), entry, X.shape[1], classes)[:1]
        return maps, [f"{classes[1]} (positive) vs {classes[0]} (negative)"]
    if entry.one_vs_rest_display:
        binary = np.array([0, 1])
        maps = np.vstack(
            [
                _fitted_weights(
                    clone(pipeline).fit(X, (y == c).astype(int)), entry, X.shape[1], binary
                )
                for c in classes
            ]
        )
    else:
        maps = _fitted_weights(clone(pipeline).fit(X, y), entry, X.shape[1], classes)
    # "Other classes", not "rest": rest is also the name of the fixation condition.
    return maps, [f"{c} vs the other classes" for c in classes]


def _fitted_weights(model, entry, n_features, classes):
    """Weights of a fitted pipeline on all ``n_features`` (zero where ANOVA dropped)."""
    coef = entry.weights(model.named_steps["clf"], classes)
    full = np.zeros((coef.shape[0], n_features))
    if "anova" in model.named_steps:
        full[:, model.named_steps["anova"].get_support()] = coef
    else:
        full[:] = coef
    return full
