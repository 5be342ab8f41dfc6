"""Any scikit-learn classifier in every sphere: the general searchlight path.

Every sphere and fold is fitted with a fresh clone of the estimator on the
sphere's columns, as nilearn's ``SearchLight`` does through
``cross_val_score``, in worker processes that share a memory-mapped data
matrix (never copied), so the scores are nilearn's.
"""

import time

import numpy as np

from fmriflow.classifiers import bare_estimator, repeated_fits
from fmriflow.fits import fold_fit_predict
from fmriflow.searchlight.scores import (
    SearchlightResult,
    check_data,
    fold_accuracies,
    make_splits,
    map_in_threads,
    worker_count,
)

#: Seconds to start joblib's worker processes and import scikit-learn in
#: them (measured: about 1.2 s for two on 2 cores). A searchlight whose work
#: after its first task would take less than that times ``n_jobs / (n_jobs -
#: 1)`` in this process finishes sooner here than on workers.
WORKER_START_SECONDS = 1.5


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
        would run one at a time) or threads. With processes, the first task
        is fitted here and timed: when the rest would take less time than
        starting the workers saves (:data:`WORKER_START_SECONDS`), it is
        fitted here too. Every sphere is fitted alike either way: the
        scores do not depend on where.
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

    def fit(task):
        part = fit_spheres(X, y, splits, matrix.indices, task[0], estimator)
        if progress is not None:
            progress(part.shape[1])
        return part

    if n_jobs > 1 and len(tasks) > 1 and backend == "processes":
        # The first task, timed here, says whether the rest is worth workers.
        start = time.perf_counter()
        parts = [fit(tasks[0])]
        rest = (time.perf_counter() - start) * (len(tasks) - 1)
        if rest > WORKER_START_SECONDS * n_jobs / (n_jobs - 1):
            parts += fit_in_processes(
                X, y, splits, matrix.indices, tasks[1:], estimator, n_jobs, progress
            )
        else:
            parts += [fit(task) for task in tasks[1:]]
    else:
        parts = map_in_threads(fit, tasks, n_jobs)
    n_test = np.array([len(test) for _, test in splits])
    scores, fold_scores = fold_accuracies(np.concatenate(parts, axis=1), n_test)
    return SearchlightResult(scores, fold_scores, n_test)


def fit_in_processes(X, y, splits, indices, tasks, estimator, n_jobs, progress):
    """:func:`fit_spheres` of every task in joblib's worker processes, in task order."""
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
        delayed(fit_spheres)(X, y, splits, indices, indptr, estimator) for indptr, _ in tasks
    )
    parts = []
    for part in results:  # in task order
        parts.append(part)
        if progress is not None:
            progress(part.shape[1])
    return parts


def fit_spheres(X, y, splits, indices, indptr, estimator):
    """Correct test predictions (fold, sphere) of consecutive spheres (CSR row pointers)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    fold_fits = [fold_fit_predict(estimator, y[train]) for train, _ in splits]
    correct = np.zeros((len(splits), len(indptr) - 1), dtype=np.int64)
    with warnings.catch_warnings():
        # As nilearn: a classifier may not converge on some sphere.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(len(indptr) - 1):
            x = np.asarray(X[:, indices[indptr[i] : indptr[i + 1]]])
            with repeated_fits(x, what="searchlight sphere"):
                for f, (train, test) in enumerate(splits):
                    predicted = fold_fits[f](x[train], x[test])
                    correct[f, i] = int(np.sum(predicted == y[test]))
    return correct
