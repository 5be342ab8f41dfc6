"""Any scikit-learn classifier in every sphere: the general searchlight path.

Every sphere and fold is fitted with a fresh clone of the estimator on the
sphere's columns, as nilearn's ``SearchLight`` does through
``cross_val_score``, in worker processes that share a memory-mapped data
matrix (never copied), so the scores are nilearn's.
"""

import numpy as np

from fmriflow.classifiers import bare_estimator, repeated_fits
from fmriflow.searchlight.scores import (
    SearchlightResult,
    check_data,
    fold_accuracies,
    make_splits,
    map_in_threads,
    worker_count,
)


def searchlight(
    X,
    y,
    runs,
    spheres,
    estimator,
    cv=None,
    n_jobs=1,
    chunk_size=None,
    backend="processes",
    progress=None,
):
    """Cross-validated accuracy of any classifier in every sphere.

    Every sphere and fold is fitted with a fresh clone of ``estimator`` on
    the sphere's columns, as nilearn's ``SearchLight`` does through
    ``cross_val_score``, so the scores are the same as nilearn's for the
    same estimator, CV and ``scoring="accuracy"``.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_voxels)
        Data matrix. A memory-mapped ``.npy`` (``np.load(path,
        mmap_mode="r")``) is shared by the workers through its file, never
        copied; an in-memory array is written once to a shared temporary
        memory map by joblib when it is large.
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample (the CV groups).
    spheres : Spheres
        From :func:`fmriflow.searchlight.make_spheres`.
    estimator : sklearn classifier
        E.g. ``fmriflow.classifiers.make_classifier("svc")``. A pipeline whose
        only step is the classifier is fitted as that classifier (the same
        fit, without the pipeline's overhead).
    cv : splitter, optional
        From :func:`fmriflow.decoding.make_cv`; default leave-one-run-out.
    n_jobs : int
        Workers, each fitting its own chunks of spheres.
    chunk_size : int, optional
        Spheres per task (default: about 16 tasks per worker).
    backend : {"processes", "threads"}
        joblib's ``loky`` processes (fitting is mostly Python, which threads
        would run one at a time) or threads.
    progress : callable, optional
        Called with the number of centres of every task done.

    Returns
    -------
    SearchlightResult
    """
    y, runs = check_data(X, y, runs, spheres)
    _, splits = make_splits(cv, X, y, runs)
    n_centres = spheres.n_centres
    n_jobs = worker_count(n_jobs)
    if chunk_size is None:
        chunk_size = max(1, min(256, -(-n_centres // (16 * n_jobs))))
    estimator = bare_estimator(estimator)
    matrix = spheres.matrix
    tasks = [
        (matrix.indptr[start : start + chunk_size + 1], start)
        for start in range(0, n_centres, chunk_size)
    ]
    if n_jobs > 1 and len(tasks) > 1 and backend == "processes":
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
            delayed(fit_spheres)(X, y, splits, matrix.indices, indptr, estimator)
            for indptr, _ in tasks
        )
        parts = []
        for part in results:  # in task order
            parts.append(part)
            if progress is not None:
                progress(part.shape[1])
    else:

        def fit(task):
            part = fit_spheres(X, y, splits, matrix.indices, task[0], estimator)
            if progress is not None:
                progress(part.shape[1])
            return part

        parts = map_in_threads(fit, tasks, n_jobs)
    n_test = np.array([len(test) for _, test in splits])
    scores, fold_scores = fold_accuracies(np.concatenate(parts, axis=1), n_test)
    return SearchlightResult(scores, fold_scores, n_test)


def fit_spheres(X, y, splits, indices, indptr, estimator):
    """Correct test predictions (fold, sphere) of consecutive spheres (CSR row pointers)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    fit_predict = liblinear_fit_predict(estimator) or sklearn_fit_predict(estimator)
    correct = np.zeros((len(splits), len(indptr) - 1), dtype=np.int64)
    with warnings.catch_warnings():
        # As nilearn: a classifier may not converge on some sphere.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(len(indptr) - 1):
            x = np.asarray(X[:, indices[indptr[i] : indptr[i + 1]]])
            with repeated_fits(x, what="searchlight sphere"):
                for f, (train, test) in enumerate(splits):
                    predicted = fit_predict(x[train], y[train], x[test])
                    correct[f, i] = int(np.sum(predicted == y[test]))
    return correct


def sklearn_fit_predict(estimator):
    """``(x_train, y_train, x_test) -> predictions`` of a fresh clone of ``estimator``."""
    from sklearn.base import clone

    def fit_predict(x_train, y_train, x_test):
        return clone(estimator).fit(x_train, y_train).predict(x_test)

    return fit_predict


def liblinear_fit_predict(estimator):
    """``LinearSVC``'s fit and predict without its per-call overhead, or None.

    ``LinearSVC.fit`` validates its input, then calls scikit-learn's
    ``_fit_liblinear`` with its parameters; ``predict`` takes the sign (or
    the largest) of ``x @ coef_.T + intercept_``. On a searchlight sphere
    (a few hundred volumes, tens of voxels) the validation and cloning cost
    as much as liblinear itself. Here the same ``_fit_liblinear`` call gets
    the data as ``fit`` would pass it (float64, C order) and the decision
    is the same product: the predictions are scikit-learn's (tested sphere
    by sphere). None for anything but a plain ``LinearSVC`` (one-vs-rest),
    or when scikit-learn's private helpers are not there (another version).
    """
    from sklearn.svm import LinearSVC

    if type(estimator) is not LinearSVC or estimator.multi_class != "ovr":
        return None
    try:
        from sklearn.svm._base import _fit_liblinear
        from sklearn.svm._classes import _validate_dual_parameter
    except ImportError:
        return None
    p = estimator.get_params()

    def fit_predict(x_train, y_train, x_test):
        x_train = np.ascontiguousarray(x_train, dtype=np.float64)
        dual = _validate_dual_parameter(p["dual"], p["loss"], p["penalty"], "ovr", x_train)
        coef, intercept, _ = _fit_liblinear(
            x_train,
            y_train,
            p["C"],
            p["fit_intercept"],
            p["intercept_scaling"],
            p["class_weight"],
            p["penalty"],
            dual,
            p["verbose"],
            p["max_iter"],
            p["tol"],
            p["random_state"],
            "ovr",
            p["loss"],
        )
        classes = np.unique(y_train)
        scores = np.ascontiguousarray(x_test, dtype=np.float64) @ coef.T + intercept
        if scores.shape[1] == 1:
            return classes[(scores[:, 0] > 0).astype(int)]
        return classes[scores.argmax(axis=1)]

    return fit_predict
