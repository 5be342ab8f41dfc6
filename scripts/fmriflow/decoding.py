"""Decoding with honest cross-validation (Varoquaux et al., 2017).

* Classifiers come from the registry (:mod:`fmriflow.classifiers`) by name,
  never by evaluating text from the config. Each is a scikit-learn
  ``Pipeline`` whose last step is named ``clf``; ANOVA feature selection,
  when used, is a step of that pipeline, so it is fitted inside each
  training fold.
* Cross-validation splits by run (leave-one-run-out by default): volumes of
  one run are temporally autocorrelated, so splitting volumes leaks.
* A nested hyper-parameter search is a ``GridSearchCV`` with an inner
  leave-one-run-out on the training runs only.
* Permutation tests permute labels within runs, whole blocks of a block
  design rather than single volumes (:mod:`fmriflow.permutations`),
  keeping each run's class balance and the temporal structure that the CV
  respects.
* Every accuracy comes with its chance level: the accuracy of predicting the
  training set's most frequent class on the test fold.
* Weight maps come from a model refitted on all data *for display only*;
  cross-validated scores never use it.
"""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmriflow.errors import InputError
from fmriflow.permutations import at_floor, p_value_floor
from fmriflow.progress import Progress

logger = logging.getLogger("fmriflow.decoding")


CV_SCHEMES = ("leave_one_run_out", "kfold_runs", "repeated_stratified_runs", "kfold_volumes")


def make_cv(scheme="leave_one_run_out", n_splits=5, n_repeats=10, seed=0, allow_leaky=False):
    """A cross-validation splitter over runs.

    Parameters
    ----------
    scheme : str
        ``leave_one_run_out``; ``kfold_runs`` (``GroupKFold``);
        ``repeated_stratified_runs`` (``n_repeats`` shuffled
        ``StratifiedGroupKFold``); ``kfold_volumes`` (plain ``KFold`` over
        volumes: neighbouring volumes leak, refused unless ``allow_leaky``).
    n_splits, n_repeats : int
        Folds and repeats where they apply.
    seed : int
        Shuffling seed.
    allow_leaky : bool
        Accept ``kfold_volumes`` (e.g. to reproduce older analyses).

    Returns
    -------
    splitter
        An object with ``split(X, y, groups)``.
    """
    if scheme == "leave_one_run_out":
        return LeaveOneRunOut()
    from sklearn.model_selection import GroupKFold, KFold

    if scheme == "kfold_runs":
        return GroupKFold(n_splits=n_splits)
    if scheme == "repeated_stratified_runs":
        return RepeatedStratifiedGroupKFold(n_splits, n_repeats, seed)
    if scheme == "kfold_volumes":
        if not allow_leaky:
            raise InputError(
                "config key cv.scheme: kfold_volumes",
                "a k-fold over volumes puts neighbouring, autocorrelated volumes of "
                "the same run in training and test sets, which inflates accuracy",
                "Use leave_one_run_out, kfold_runs or repeated_stratified_runs; set "
                "cv.allow_leaky: true only to reproduce an analysis that did this",
            )
        return KFold(n_splits=n_splits)
    raise InputError(
        f"config key cv.scheme: {scheme}", "unknown scheme", f"Choose one of {CV_SCHEMES}"
    )


class LeaveOneRunOut:
    """Leave-one-run-out folds, the runs in sorted order.

    The folds of ``sklearn.model_selection.LeaveOneGroupOut`` with the runs
    as groups (tested equal), without importing scikit-learn: a searchlight
    part that scores by a closed form needs nothing else from it, and its
    import was a second of such a job's three.
    """

    def split(self, X, y=None, groups=None):
        """Yield the train and test indices of each run's fold.

        Parameters
        ----------
        X : array-like, shape (n_samples, ...)
            Only its length is used.
        y : array-like, optional
            Ignored.
        groups : array-like, shape (n_samples,)
            Run of each sample.

        Yields
        ------
        train, test : numpy.ndarray of int
        """
        runs = self._runs(X, groups)
        indices = np.arange(len(runs))
        for run in np.unique(runs):
            in_run = runs == run
            yield indices[~in_run], indices[in_run]

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of runs."""
        return len(np.unique(self._runs(X, groups)))

    @staticmethod
    def _runs(X, groups):
        if groups is None:
            raise ValueError("leave-one-run-out needs the run of each sample (groups)")
        runs = np.asarray(groups)
        if X is not None and len(runs) != len(X):
            raise ValueError(f"{len(runs)} runs given for {len(X)} samples")
        if len(np.unique(runs)) < 2:
            raise ValueError(
                f"leave-one-run-out needs at least 2 runs, found {len(np.unique(runs))}"
            )
        return runs


class RepeatedStratifiedGroupKFold:
    """Repeated, shuffled ``StratifiedGroupKFold``: random splits of runs.

    Parameters
    ----------
    n_splits : int
        Folds per repeat.
    n_repeats : int
        Number of repeats, each with its own shuffling.
    seed : int
        Seed of the first repeat; repeat ``r`` uses ``seed + r``.
    """

    def __init__(self, n_splits=5, n_repeats=10, seed=0):
        self.n_splits = n_splits
        self.n_repeats = n_repeats
        self.seed = seed

    def split(self, X, y=None, groups=None):
        """Yield train and test indices for every fold of every repeat."""
        from sklearn.model_selection import StratifiedGroupKFold

        for repeat in range(self.n_repeats):
            splitter = StratifiedGroupKFold(
                self.n_splits, shuffle=True, random_state=self.seed + repeat
            )
            yield from splitter.split(X, y, groups)

    def get_n_splits(self, X=None, y=None, groups=None):
        """Total number of folds."""
        return self.n_splits * self.n_repeats


def select_target(events, labels, path, rest_label="rest", drop_incomplete_runs=False):
    """Rows, labels and runs of the volumes a decoding analysis uses.

    Parameters
    ----------
    events : pandas.DataFrame
        Canonical events (``label``, ``run``), one row per volume.
    labels : list of str or "all"
        The classes; ``"all"`` means every label except ``rest_label``.
    path : str
        The events file, for messages.
    rest_label : str
        Label of rest volumes.
    drop_incomplete_runs : bool
        Leave out runs that lack one of the classes instead of stopping.

    Returns
    -------
    rows : numpy.ndarray of int
        Volume indices used.
    y : numpy.ndarray of str
    runs : numpy.ndarray of int
    dropped : list
        Runs left out (with ``drop_incomplete_runs``).
    """
    available = sorted(set(events["label"]) - {rest_label})
    classes = available if labels == "all" else [str(c) for c in labels]
    unknown = [c for c in classes if c not in set(events["label"])]
    if unknown:
        raise InputError(
            path,
            f"label(s) {unknown} not found; labels present: {available}",
            "Fix the analysis' target in the config",
        )
    if len(set(classes)) < 2:
        raise InputError(
            path, f"target {classes} has fewer than two classes", "Name at least two labels"
        )
    rows = np.flatnonzero(events["label"].isin(classes).to_numpy())
    y = events["label"].to_numpy()[rows].astype(str)
    runs = events["run"].to_numpy()[rows]
    incomplete = [
        int(run) for run in np.unique(runs) if len(np.unique(y[runs == run])) < len(classes)
    ]
    if incomplete and not drop_incomplete_runs:
        run = incomplete[0]
        present = sorted(str(c) for c in set(y[runs == run]))
        raise InputError(
            path,
            f"run {run} has only {present} among the classes {classes} "
            f"({len(incomplete)} run(s) are incomplete: {incomplete})",
            "Every test run needs every class for an unbiased score; set "
            "drop_incomplete_runs: true for this analysis to leave such runs out",
        )
    keep = ~np.isin(runs, incomplete)
    if len(np.unique(runs[keep])) < 2:
        raise InputError(
            path,
            "fewer than two runs contain every class",
            "Cross-validation by run needs at least two complete runs",
        )
    return rows[keep], y[keep], runs[keep], incomplete


def chance_accuracy(y_train, y_test):
    """Accuracy of always predicting the training set's most frequent class."""
    values, counts = np.unique(y_train, return_counts=True)
    majority = values[np.argmax(counts)]
    return float(np.mean(np.asarray(y_test) == majority))


def _fit_fold(estimator, X, y, runs, train, test, search):
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    model = clone(estimator)
    tied = {}
    if search:
        model.fit(X[train], y[train], groups=runs[train])
        best = {k.rsplit("__", 1)[1]: v for k, v in model.best_params_.items()}
        # How many grid values scored as well as the best in the inner folds: with
        # several (a separable problem), the "best" value is no preference at all.
        inner = np.asarray(model.cv_results_["mean_test_score"], dtype=float)
        tied = {"search_tied": int(np.sum(inner >= model.best_score_ - 1e-12))}
    else:
        model.fit(X[train], y[train])
        best = {}
    predicted = model.predict(X[test])
    return {
        "n_train": int(train.size),
        "n_test": int(test.size),
        "test_runs": " ".join(str(r) for r in np.unique(runs[test])),
        "accuracy": float(accuracy_score(y[test], predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y[test], predicted)),
        "chance": chance_accuracy(y[train], y[test]),
        "chance_balanced": 1.0 / len(np.unique(y)),
        "best_params": best,
        "predicted": predicted,
    } | tied


def cross_validate(X, y, runs, estimator, cv, search=False, n_jobs=1):
    """Cross-validated predictions and per-fold scores.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
    y : numpy.ndarray
    runs : numpy.ndarray
        Run of each sample (the CV groups).
    estimator : sklearn estimator
        From :func:`make_classifier` or :func:`with_search`.
    cv : splitter
        From :func:`make_cv`.
    search : bool
        Whether ``estimator`` is a grid search (fitted with the training runs).
    n_jobs : int
        Folds fitted in parallel.

    Returns
    -------
    folds : pandas.DataFrame
        One row per fold: ``fold``, ``test_runs``, ``n_train``, ``n_test``,
        ``accuracy``, ``balanced_accuracy``, ``chance``, ``chance_balanced``
        and, for a search, the chosen parameters.
    predictions : pandas.DataFrame
        One row per test sample and fold: ``fold``, ``sample``, ``run``,
        ``true``, ``predicted``.
    """
    from joblib import Parallel, delayed

    from fmriflow.classifiers import thread_safe

    splits = list(cv.split(X, y, runs))
    # Threads share the data (libsvm releases the GIL); liblinear's process-wide
    # random generator needs processes for results that do not vary.
    prefer = "threads" if thread_safe(estimator) else "processes"
    results = Parallel(n_jobs=n_jobs, prefer=prefer)(
        delayed(_fit_fold)(estimator, X, y, runs, train, test, search) for train, test in splits
    )
    fold_rows, prediction_rows = [], []
    for fold, ((_, test), result) in enumerate(zip(splits, results, strict=True)):
        row = {"fold": fold} | {
            k: v for k, v in result.items() if k not in ("best_params", "predicted")
        }
        row |= {f"best_{k}": v for k, v in result["best_params"].items()}
        fold_rows.append(row)
        prediction_rows.append(
            pd.DataFrame(
                {
                    "fold": fold,
                    "sample": test,
                    "run": runs[test],
                    "true": y[test],
                    "predicted": result["predicted"],
                }
            )
        )
    return pd.DataFrame(fold_rows), pd.concat(prediction_rows, ignore_index=True)


def permutation_test(
    X, y, runs, estimator, cv, n_permutations, seed, search=False, n_jobs=1, blocks=None
):
    """P-value of the mean CV accuracy, permuting labels within runs.

    Each permuted labelling is cross-validated as the true labels are (a
    fresh clone of the estimator, folds drawn for the labelling, the nested
    search inside each training fold), as scikit-learn's
    ``permutation_test_score`` does.

    Parameters
    ----------
    X, y, runs, estimator, cv, search, n_jobs
        As in :func:`cross_validate`.
    n_permutations : int
        Number of permuted labellings.
    seed : int
        Seed of the permutations.
    blocks : array-like of int, optional
        Block of each sample (:func:`fmriflow.permutations.label_blocks`):
        the blocks of a run exchange their labels. Without, single volumes
        do, and the result is that of ``permutation_test_score(groups=runs,
        random_state=seed)``.

    Returns
    -------
    score : float
        Mean fold accuracy on the true labels.
    null : numpy.ndarray
        Mean fold accuracies on permuted labels.
    p_value : float
        ``(1 + #{null >= score}) / (1 + n_permutations)``.
    """
    from joblib import Parallel, delayed, parallel_config

    from fmriflow.classifiers import (
        GRAM_MAX_SAMPLES,
        bare_estimator,
        linear_kernel_gram,
        precomputed_kernel_equivalent,
        thread_safe,
    )
    from fmriflow.permutations import permutation_labels

    labellings = permutation_labels(y, runs, n_permutations, seed, blocks)
    backend = "threading" if thread_safe(estimator) else "loky"
    # A linear-kernel SVC refits on the dot products of the same samples in
    # every fold of every labelling: computed once, as libsvm computes them.
    kernel_estimator = None
    if not search and len(X) <= GRAM_MAX_SAMPLES:
        kernel_estimator = precomputed_kernel_equivalent(bare_estimator(estimator))
    kernel = kernel_estimator is not None
    if kernel:
        estimator, X = kernel_estimator, linear_kernel_gram(X)
    progress = Progress(
        len(labellings) + 1, what="permutation test", unit="labellings", logger=logger.name
    )
    scores = []
    with parallel_config(backend=backend):
        for score in Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(mean_accuracy)(estimator, X, labels, runs, cv, search, kernel)
            for labels in [np.asarray(y), *labellings]
        ):
            scores.append(score)
            progress()
    score, null = scores[0], np.asarray(scores[1:])
    p_value = (1.0 + np.sum(null >= score)) / (1.0 + len(null))
    return float(score), null, float(p_value)


def mean_accuracy(estimator, X, y, runs, cv, search=False, kernel=False):
    """Mean fold accuracy of a fresh clone of ``estimator`` cross-validated on ``y``.

    The value of ``cross_val_score(clone(estimator), X, y, groups=runs,
    cv=cv, scoring="accuracy")`` (with ``params={"groups": runs}`` for a
    search), without its per-call validation and scorer machinery, which
    cost a third of the time of a permutation test of small fits; without a
    search, each fold is fitted by :func:`fmriflow.fits.fold_fit_predict`.

    With ``kernel``, ``X`` is the Gram matrix of the samples (an estimator
    with a precomputed kernel): each fold trains on the rows and columns of
    its training samples and predicts from the test rows of those columns.
    """
    from sklearn.base import clone

    from fmriflow.classifiers import bare_estimator, repeated_fits
    from fmriflow.fits import fold_fit_predict

    estimator = bare_estimator(estimator)
    scores = []
    with repeated_fits(X, what="decoding features"):
        for train, test in cv.split(X, y, runs):
            X_train, X_test = (
                (X[train][:, train], X[test][:, train]) if kernel else (X[train], X[test])
            )
            if search:
                model = clone(estimator).fit(X_train, y[train], groups=runs[train])
                predicted = model.predict(X_test)
            else:
                predicted = fold_fit_predict(estimator, y[train])(X_train, X_test)
            scores.append(np.mean(predicted == y[test]))
    return float(np.mean(scores))


def summarize(folds, classes, permutation=None):
    """Summary of a cross-validated decoding analysis (for ``summary.json``).

    Parameters
    ----------
    folds : pandas.DataFrame
        From :func:`cross_validate`.
    classes : sequence
        The classes.
    permutation : tuple, optional
        ``(score, null, p_value)`` from :func:`permutation_test`, optionally
        followed by :func:`fmriflow.permutations.describe`'s dict.
    """
    summary = {
        "accuracy_mean": float(folds["accuracy"].mean()),
        "accuracy_std": float(folds["accuracy"].std(ddof=0)),
        "balanced_accuracy_mean": float(folds["balanced_accuracy"].mean()),
        "balanced_accuracy_std": float(folds["balanced_accuracy"].std(ddof=0)),
        "chance": float(folds["chance"].mean()),
        "chance_balanced": 1.0 / len(classes),
        "n_folds": int(len(folds)),
        "n_samples": int(folds["n_test"].sum()),
        "classes": [str(c) for c in classes],
    }
    best = [c for c in folds.columns if c.startswith("best_")]
    if best:
        summary["best_params_per_fold"] = folds[best].to_dict(orient="list")
    if "search_tied" in folds.columns:
        # Folds where every grid value tied: the chosen value says nothing.
        summary["search_tied_per_fold"] = [int(n) for n in folds["search_tied"]]
    if permutation is not None:
        score, null, p_value, *described = permutation
        summary["permutation"] = (described[0] if described else {}) | {
            "score": score,
            "p_value": p_value,
            # At its floor the p-value is an upper bound: no permutation reached the score.
            "p_value_floor": p_value_floor(len(null)),
            "p_value_at_floor": bool(at_floor(p_value, len(null))),
            "n_permutations": int(len(null)),
            "null_mean": float(np.mean(null)),
            "null_std": float(np.std(null)),
            # The null accuracies themselves, for prevalence inference across subjects.
            "null": [float(value) for value in null],
        }
    return summary


def binomial_chance_interval(n_samples, chance, level=0.95):
    """Interval of accuracies compatible with chance for ``n_samples`` predictions."""
    from scipy.stats import binom

    low, high = binom.interval(level, n_samples, chance)
    return low / n_samples, high / n_samples


def group_test(accuracies, chances):
    """One-sided tests across subjects of accuracy above chance.

    Parameters
    ----------
    accuracies, chances : array-like
        Per-subject mean accuracy and chance level.

    Returns
    -------
    dict
        ``t``, ``p_value`` (one-sample t-test of accuracy - chance > 0),
        ``wilcoxon_p_value`` (signed-rank, when there are enough subjects)
        and the means.
    """
    from scipy import stats

    differences = np.asarray(accuracies) - np.asarray(chances)
    result = {
        "n_subjects": int(differences.size),
        "accuracy_mean": float(np.mean(accuracies)),
        "chance_mean": float(np.mean(chances)),
    }
    if differences.size >= 2 and np.std(differences) > 0:
        test = stats.ttest_1samp(differences, 0.0, alternative="greater")
        result |= {
            "t": float(test.statistic),
            "df": int(differences.size - 1),
            "p_value": float(test.pvalue),
        }
    else:
        result |= {"t": None, "df": None, "p_value": None}
    nonzero = differences[differences != 0]
    if nonzero.size >= 5:
        result["wilcoxon_p_value"] = float(stats.wilcoxon(nonzero, alternative="greater").pvalue)
    else:
        result["wilcoxon_p_value"] = None
    return result


def analysis_data(clean_path, events_path, labels, drop_incomplete_runs=False):
    """The cleaned matrix and the volumes, labels and runs of one analysis.

    Parameters
    ----------
    clean_path, events_path : str or pathlib.Path
        The subject's ``clean.npy`` and ``events.tsv``.
    labels : list of str or "all"
        The classes (see :func:`select_target`).
    drop_incomplete_runs : bool
        See :func:`select_target`.

    Returns
    -------
    matrix : numpy.memmap, shape (n_volumes, n_voxels)
        All volumes, memory-mapped.
    rows, y, runs, dropped
        As returned by :func:`select_target`.
    """
    from fmriflow.io import load_matrix, read_events

    matrix = load_matrix(clean_path, "cleaned data")
    events = read_events(events_path, n_volumes=matrix.shape[0])
    rows, y, runs, dropped = select_target(
        events, labels, events_path, drop_incomplete_runs=drop_incomplete_runs
    )
    return matrix, rows, y, runs, dropped


@dataclass
class SubjectAnalysis:
    """One subject's data for a decoding or searchlight analysis.

    Attributes
    ----------
    matrix : numpy.memmap, shape (n_volumes, n_voxels)
        The cleaned matrix, all volumes, memory-mapped.
    rows, y, runs : numpy.ndarray
        The analysis' volumes, their labels and runs (:func:`select_target`).
    dropped : list
        Runs left out for lacking a class.
    mask : numpy.ndarray of bool
        The preprocessing mask (the matrix's columns).
    affine : numpy.ndarray
        Its affine.
    columns : numpy.ndarray of bool, shape (n_voxels,)
        The subject ROI's columns, or every column without an ROI.
    """

    matrix: object
    rows: np.ndarray
    y: np.ndarray
    runs: np.ndarray
    dropped: list
    mask: np.ndarray
    affine: np.ndarray
    columns: np.ndarray


def load_subject_analysis(
    clean_path, events_path, mask_path, labels, drop_incomplete_runs=False, roi_path=None
):
    """Read what a decoding or searchlight node needs, logging what was left out.

    Parameters
    ----------
    clean_path, events_path, mask_path : str or pathlib.Path
        The subject's ``clean.npy``, ``events.tsv`` and preprocessing mask.
    labels : list of str or "all"
        The classes (see :func:`select_target`).
    drop_incomplete_runs : bool, default=False
        See :func:`select_target`.
    roi_path : str or pathlib.Path, optional
        The subject ROI (``roi.nii.gz``): ``columns`` are then its voxels.

    Returns
    -------
    SubjectAnalysis
    """
    from fmriflow.io import load_mask
    from fmriflow.masking import roi_columns

    matrix, rows, y, runs, dropped = analysis_data(
        clean_path, events_path, labels, drop_incomplete_runs
    )
    if dropped:
        logger.warning("runs %s lack a class and were left out", dropped)
    mask, mask_img = load_mask(mask_path, "preprocessing mask")
    columns = np.ones(int(mask.sum()), dtype=bool)
    if roi_path is not None:
        columns, notes = roi_columns(mask, mask_img.affine, roi_path)
        for note in notes:
            logger.info(note)
    return SubjectAnalysis(matrix, rows, y, runs, dropped, mask, mask_img.affine, columns)
