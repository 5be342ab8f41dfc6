"""Direct liblinear, libsvm and lbfgs fits: scikit-learn's results, and its warnings."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import SVC, LinearSVC

from fmriflow import fits


@pytest.mark.parametrize(
    "estimator",
    [LinearSVC(dual=True, max_iter=2, random_state=0), SVC(kernel="linear", max_iter=3)],
    ids=["liblinear", "libsvm"],
)
def test_a_fit_stopped_at_max_iter_warns_as_scikit_learn(estimator):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8))
    y = np.repeat(["a", "b"], 30)
    with pytest.warns(ConvergenceWarning) as expected:
        reference = clone(estimator).fit(X[:50], y[:50]).predict(X[50:])
    direct = fits.liblinear_fold_fit(estimator, y[:50]) or fits.libsvm_fold_fit(estimator, y[:50])
    assert direct is not None  # not scikit-learn's own fit
    fit_predict = fits.fold_fit_predict(estimator, y[:50])
    with pytest.warns(ConvergenceWarning) as ours:
        predicted = fit_predict(X[:50], X[50:])
    assert [str(w.message) for w in ours] == [str(w.message) for w in expected]
    np.testing.assert_array_equal(predicted, reference)


def _lbfgs_data(n_classes, dtype, seed=0):
    """Unbalanced classes with a weak linear signal, in ``dtype``."""
    rng = np.random.default_rng(seed)
    counts = [30, 18, 12][:n_classes]
    y = np.repeat(np.array(["face", "house", "cat"][:n_classes]), counts)
    X = rng.standard_normal((len(y), 12))
    X[:, :3] += 0.8 * np.searchsorted(np.unique(y), y)[:, None]
    order = rng.permutation(len(y))
    return X[order].astype(dtype), y[order]


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"class_weight": "balanced", "C": 0.05},
        {"fit_intercept": False, "C": 10.0, "tol": 1e-6},
    ],
    ids=["registry_default", "balanced_small_C", "no_intercept"],
)
def test_lbfgs_without_per_call_overhead_is_scikit_learns_fit(n_classes, dtype, settings):
    """The direct L-BFGS-B call gives the decisions of LogisticRegression fitted by
    scikit-learn, bit for bit, fold by fold; and so its predictions."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    X, y = _lbfgs_data(n_classes, dtype)
    estimator = LogisticRegression(max_iter=5000, **settings)
    for train, test in StratifiedKFold(4, shuffle=True, random_state=0).split(X, y):
        assert fits.lbfgs_fold_fit(estimator, y[train]) is not None
        reference = clone(estimator).fit(X[train], y[train])
        decisions = fits._lbfgs_problem(estimator.get_params(), reference.classes_, y[train])(
            X[train], X[test]
        )
        expected = reference.decision_function(X[test])
        np.testing.assert_array_equal(decisions, expected.reshape(len(test), -1))
        assert decisions.dtype == expected.dtype
        predicted = fits.fold_fit_predict(estimator, y[train])(X[train], X[test])
        np.testing.assert_array_equal(predicted, reference.predict(X[test]))


def test_lbfgs_stopped_at_max_iter_warns_as_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    X, y = _lbfgs_data(3, np.float64)
    estimator = LogisticRegression(max_iter=2)
    with pytest.warns(ConvergenceWarning) as expected:
        reference = clone(estimator).fit(X[:50], y[:50]).predict(X[50:])
    assert fits.lbfgs_fold_fit(estimator, y[:50]) is not None
    with pytest.warns(ConvergenceWarning) as ours:
        predicted = fits.fold_fit_predict(estimator, y[:50])(X[:50], X[50:])
    assert [str(w.message) for w in ours] == [str(w.message) for w in expected]
    np.testing.assert_array_equal(predicted, reference)


@pytest.mark.parametrize(
    "settings",
    [
        {"solver": "newton-cg"},
        {"solver": "saga", "l1_ratio": 0.5},
        {"C": np.inf},
        {"n_jobs": 1},
        {"dual": True, "solver": "liblinear"},
    ],
)
def test_other_logistic_regressions_are_fitted_by_scikit_learn(settings):
    from sklearn.linear_model import LogisticRegression

    _, y = _lbfgs_data(2, np.float64)
    assert fits.lbfgs_fold_fit(LogisticRegression(**settings), y) is None
    assert fits.lbfgs_fold_fit(LogisticRegression(), y[y == "face"]) is None  # one class


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_precomputed_kernel_svc_predicts_as_scikit_learn(n_classes, class_weight):
    """A permutation test's SVC on the Gram matrix: the direct libsvm call predicts
    what SVC(kernel="precomputed") fitted by scikit-learn predicts, fold by fold."""
    from sklearn.model_selection import StratifiedKFold

    X, y = _lbfgs_data(n_classes, np.float64, seed=1)
    gram = X @ X.T
    estimator = SVC(kernel="precomputed", C=0.1, class_weight=class_weight)
    for train, test in StratifiedKFold(4, shuffle=True, random_state=0).split(X, y):
        assert fits.libsvm_fold_fit(estimator, y[train]) is not None
        train_gram, test_gram = gram[train][:, train], gram[test][:, train]
        reference = clone(estimator).fit(train_gram, y[train]).predict(test_gram)
        predicted = fits.fold_fit_predict(estimator, y[train])(train_gram, test_gram)
        np.testing.assert_array_equal(predicted, reference)
