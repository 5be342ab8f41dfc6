"""Direct liblinear and libsvm fits: what scikit-learn's fit warns, they warn."""

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
