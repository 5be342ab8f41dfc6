"""The nested search of a classifier's parameter, with one feature selection per inner fold.

``GridSearchCV(pipeline, {path: values}, cv=LeaveOneGroupOut(),
scoring="accuracy")`` refits the whole pipeline for every value and every
inner fold, so an ANOVA selection before the classifier (the paper's
whole-brain pipeline) is fitted once per value on the same training runs:
with three values of C, two thirds of the selections repeat work. Here the
selection of each inner fold is fitted once and the classifier is fitted on
its output for every value. The selection does not depend on the
classifier's parameter, and a pipeline's fit is its steps' fits in turn, so
every inner score, the chosen value and the refitted model are
``GridSearchCV``'s (tested against it).
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone


class NestedSearch(ClassifierMixin, BaseEstimator):
    """Choose one parameter of a pipeline's last step by an inner leave-one-run-out.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Unfitted; its last step is the classifier, its earlier steps (e.g.
        an ANOVA selection) do not depend on the searched parameter.
    path : str
        The searched parameter as a parameter of ``pipeline``, on its last
        step (``clf__C``, or ``clf__estimator__C`` for a wrapped classifier).
    values : list
        The values tried, in order (the first of equally good values wins).

    Attributes
    ----------
    best_params_ : dict
        ``{path: chosen value}``.
    best_score_ : float
        Mean inner accuracy of the chosen value.
    best_index_ : int
        Its position in ``values``.
    cv_results_ : dict
        ``params``, ``mean_test_score``, ``rank_test_score`` and
        ``split{k}_test_score``, as ``GridSearchCV`` names them.
    best_estimator_ : sklearn.pipeline.Pipeline
        The pipeline with the chosen value, refitted on all of ``X``.
    """

    def __init__(self, pipeline, path, values):
        self.pipeline = pipeline
        self.path = path
        self.values = values

    def fit(self, X, y, groups=None):
        """Score every value in every inner fold, then refit the best on all samples.

        Parameters
        ----------
        X : numpy.ndarray, shape (n_samples, n_features)
        y : numpy.ndarray, shape (n_samples,)
        groups : numpy.ndarray, shape (n_samples,)
            Run of each sample: each run is an inner test fold in turn.

        Returns
        -------
        NestedSearch
        """
        from fmriflow.decoding import LeaveOneRunOut

        step, parameter = self._last_step()
        values = list(self.values)
        X, y = np.asarray(X), np.asarray(y)
        splits = list(LeaveOneRunOut().split(X, y, groups))
        scores = np.empty((len(values), len(splits)))
        for k, (train, test) in enumerate(splits):
            X_train, X_test = X[train], X[test]
            for _, transformer in self.pipeline.steps[:-1]:
                fitted = clone(transformer).fit(X_train, y[train])
                X_train, X_test = fitted.transform(X_train), fitted.transform(X_test)
            for v, value in enumerate(values):
                model = clone(step).set_params(**{parameter: value})
                predicted = model.fit(X_train, y[train]).predict(X_test)
                scores[v, k] = np.mean(predicted == y[test])
        # As GridSearchCV: the plain mean over folds, ranked with ties at their
        # lowest rank, the first best value chosen.
        mean = np.average(scores, axis=1)
        ranks = np.array([1 + np.sum(mean > m) for m in mean], dtype=np.int32)
        self.best_index_ = int(np.argmin(ranks))
        self.best_score_ = float(mean[self.best_index_])
        self.best_params_ = {self.path: values[self.best_index_]}
        self.cv_results_ = {
            "params": [{self.path: value} for value in values],
            "mean_test_score": mean,
            "rank_test_score": ranks,
        } | {f"split{k}_test_score": scores[:, k] for k in range(len(splits))}
        self.best_estimator_ = clone(self.pipeline).set_params(**self.best_params_).fit(X, y)
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, X):
        """Predictions of the refitted best pipeline.

        Parameters
        ----------
        X : numpy.ndarray, shape (n_samples, n_features)

        Returns
        -------
        numpy.ndarray
        """
        return self.best_estimator_.predict(X)

    def _last_step(self):
        """The pipeline's last step and the searched parameter's name on it."""
        last_name, last_step = self.pipeline.steps[-1]
        prefix, _, parameter = self.path.partition("__")
        if prefix != last_name:
            raise ValueError(
                f"NestedSearch searches a parameter of the last step {last_name!r}, "
                f"not {self.path!r}"
            )
        return last_step, parameter
