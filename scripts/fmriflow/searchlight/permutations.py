"""Permutation maps of the naive Bayes searchlight, with a family-wise threshold.

Labels are permuted within runs, block by block in a block design (the
volumes of a block share their signal and are not exchangeable one by
one) or volume by volume with the random sequence of
``sklearn.model_selection.permutation_test_score(groups=runs)``. A
permutation changes only the class statistics: for a batch of
permutations, class sums of ``x`` and ``x**2`` over all volumes are one
matrix product, a fold's are those minus its test volumes', and every
sphere's null accuracy follows as for the true labels
(:mod:`fmriflow.searchlight.gnb_scoring`), with the permutations as extra
columns of the per-sphere products. These statistics are float64 sums
rather than scikit-learn's two-pass reductions, so their rounding is
bounded too, and null predictions are certified against float64
arithmetic (uncertain ones are refitted by scikit-learn on float64 data):
for float64 data each sphere's null distribution is exactly that of
``permutation_test_score`` with the same seed. The family-wise error rate
is controlled with the maximum statistic over centres.
"""

import numpy as np

from fmriflow.errors import InputError
from fmriflow.permutations import (  # noqa: F401 (re-exported)
    distinct_labellings,
    label_blocks,
    permutation_labels,
    permute_within_runs,
)
from fmriflow.searchlight import gnb, gnb_scoring
from fmriflow.searchlight.scores import (
    PermutationResult,
    blas_limit,
    fold_accuracies,
    map_in_threads,
    worker_count,
)

#: Working memory (bytes) aimed at for the per-voxel arrays of a batch of
#: permutations.
BATCH_BYTES = 256e6


def gnb_permutation_test(
    X,
    y,
    runs,
    spheres,
    n_permutations,
    seed=0,
    cv=None,
    var_smoothing=1e-9,
    priors=None,
    alpha=0.05,
    n_jobs=1,
    blocks=None,
):
    """Naive Bayes searchlight with per-centre and family-wise permutation p-values.

    Labels are permuted within runs, in the order of
    ``sklearn.model_selection.permutation_test_score(groups=runs,
    random_state=seed)``; class statistics are recomputed for all voxels per
    permutation, and every sphere's null accuracy follows from them.

    Parameters
    ----------
    X, y, runs, spheres, cv, var_smoothing, priors
        As in :func:`~fmriflow.searchlight.gnb.gnb_searchlight`. The cross-validation must split by
        run (every fold's training and test sets unions of whole runs), so
        that permuting within runs leaves the folds unchanged.
    n_permutations : int
        Number of permutations.
    seed : int
        Seed of the permutations.
    alpha : float
        Family-wise error rate of the max-statistic threshold.
    n_jobs : int
        Threads (over folds); results do not depend on it.
    blocks : array-like of int, optional
        Block of each sample (:func:`label_blocks`): blocks exchange labels
        within runs. Without, volumes do, as in ``permutation_test_score``.

    Returns
    -------
    PermutationResult
        For float64 data, ``null[:, i]`` and ``p_values[i]`` are those of
        ``permutation_test_score`` on sphere ``i``; for float32 data the null
        accuracies are those of float64 arithmetic (scikit-learn in float32
        could differ only on predictions tied to within float32 rounding).
    """
    if int(n_permutations) < 1:
        raise InputError(
            f"n_permutations {n_permutations}", "must be at least 1", "Ask for e.g. 100"
        )
    n_jobs = worker_count(n_jobs)
    with blas_limit(n_jobs):
        problem, cv, y = gnb.setup(X, y, runs, spheres, cv, var_smoothing, priors)
        permuted = permutation_labels(y, problem.runs, int(n_permutations), seed, blocks)
        check_folds_survive_permutation(problem, cv, permuted)
        observed = gnb.observed(problem, y, n_jobs)
        null, n_rechecked = null_accuracies(problem, permuted, n_jobs)
    return summarize_permutations(observed.scores, null, alpha, n_rechecked + observed.n_rechecked)


def check_folds_survive_permutation(problem, cv, permuted):
    """Stop unless every fold is a union of whole runs that permuting labels does not change."""
    runs = problem.runs
    for train, test in problem.splits:
        for rows in (train, test):
            inside = np.zeros(len(runs), dtype=bool)
            inside[rows] = True
            if not np.array_equal(np.isin(runs, runs[rows]), inside):
                raise InputError(
                    "searchlight permutations",
                    "the cross-validation puts volumes of one run in different sets, so "
                    "permuting labels within runs would change the folds",
                    "Use a cross-validation by run (leave_one_run_out, kfold_runs or "
                    "repeated_stratified_runs)",
                )
    reference = [(tuple(a), tuple(b)) for a, b in problem.splits]
    dummy = np.zeros((len(runs), 1))
    for labels in permuted[:3]:
        if [(tuple(a), tuple(b)) for a, b in cv.split(dummy, labels, runs)] != reference:
            raise InputError(
                "searchlight permutations",
                "the cross-validation folds change with the permuted labels",
                "Use a cross-validation whose folds depend on the runs only",
            )


class NullSums:
    """Class sums of centred ``x`` and ``x**2`` for batches of permuted labellings.

    Parameters
    ----------
    problem : GNBProblem
        The data and folds.
    permuted_codes : numpy.ndarray of int, shape (n_permutations, n_samples)
        Class codes of every permuted labelling.
    n_jobs : int
        Folds scored at once (for the batch size).
    """

    def __init__(self, problem, permuted_codes, n_jobs):
        n_voxels = problem.spheres.n_voxels
        self.n_classes = n_classes = len(problem.classes)
        self.n_voxels = n_voxels
        x = np.empty((problem.X.shape[0], n_voxels))
        for start in range(0, len(x), 256):
            x[start : start + 256] = problem.X[start : start + 256]
        x -= problem.centre
        self.x, self.x2 = x, x * x
        every = np.arange(len(x))
        covering = [
            np.array_equal(np.sort(np.concatenate([fold.train, fold.test])), every)
            for fold in problem.folds
        ]
        # Per fold: sums over the training volumes, whatever their labels.
        self.training_sums = [
            (x[fold.train].sum(axis=0), self.x2[fold.train].sum(axis=0)) for fold in problem.folds
        ]
        n_perm = len(permuted_codes)
        # About 10 arrays of (batch, classes, voxels) float64 per fold in flight.
        per_perm = 8.0 * n_voxels * n_classes * 10 * min(n_jobs, len(problem.folds))
        batch = int(max(1, min(n_perm, BATCH_BYTES // per_perm)))
        self.batches = [slice(s, min(s + batch, n_perm)) for s in range(0, n_perm, batch)]
        self.one_hot = (
            permuted_codes[:, None, :] == np.arange(n_classes - 1)[None, :, None]
        ).astype(float)
        # Class sums over all volumes, for folds whose training set is all but the test set.
        self.totals = None
        if all(covering) and 2 * n_perm * (n_classes - 1) * n_voxels * 8 <= BATCH_BYTES:
            self.totals = [self.class_sums(labellings, every) for labellings in self.batches]

    def class_sums(self, labellings, rows):
        """Sums of ``x`` and ``x**2`` over ``rows`` of each class but the last."""
        flat = self.one_hot[labellings][:, :, rows].reshape(-1, len(rows))
        shape = (len(flat) // (self.n_classes - 1), self.n_classes - 1, self.n_voxels)
        return (flat @ self.x[rows]).reshape(shape), (flat @ self.x2[rows]).reshape(shape)

    def statistics(self, fold_index, fold, b):
        """Centred class means and variances of one fold for the labellings of batch ``b``."""
        if self.totals is not None:
            tested = self.class_sums(self.batches[b], fold.test)
            sums = [t - s for t, s in zip(self.totals[b], tested, strict=True)]
        else:
            sums = list(self.class_sums(self.batches[b], fold.train))
        # The last class: all training volumes minus the others.
        s1, s2 = (
            np.concatenate([s, (a - s.sum(axis=1))[:, None]], axis=1)[:, fold.classes]
            for s, a in zip(sums, self.training_sums[fold_index], strict=True)
        )
        theta = s1 / fold.counts[:, None]
        s2 /= fold.counts[:, None]
        s2 -= theta**2
        return theta, np.maximum(s2, 0.0, out=s2)


def design_bytes(problem, fold):
    """Memory of a fold's cached per-chunk data matrices."""
    return 8 * problem.spheres.n_centres * len(fold.test) * 2 * problem.index.shape[1]


def null_fold(problem, sums, permuted_codes, fold_index):
    """Correct null predictions of one fold (n_permutations, n_centres) and the re-predictions."""
    fold = problem.folds[fold_index]
    designs = gnb_scoring.DesignCache() if design_bytes(problem, fold) <= BATCH_BYTES else None
    count_type = np.int16 if max(len(f.test) for f in problem.folds) < 2**15 else np.int32
    correct = np.empty((len(permuted_codes), problem.spheres.n_centres), dtype=count_type)
    n_uncertain = 0
    for b, labellings in enumerate(sums.batches):
        theta, var = sums.statistics(fold_index, fold, b)
        codes = permuted_codes[labellings]
        counts, uncertain = gnb_scoring.score_in_place(
            problem, fold, theta, var, codes[:, fold.test], False, designs
        )
        del theta, var
        for p, sphere in zip(*np.nonzero(uncertain), strict=True):
            labels = problem.classes[codes[p]]
            counts[p, sphere] = problem.refit(fold, sphere, labels, float64=True)
        n_uncertain += int(uncertain.sum())
        correct[labellings] = counts
    return correct, n_uncertain


def null_accuracies(problem, permuted, n_jobs):
    """Null accuracies (n_permutations, n_centres) and the number of re-predictions."""
    codes_of = {label: code for code, label in enumerate(problem.classes)}
    permuted_codes = np.vectorize(codes_of.__getitem__, otypes=[np.intp])(permuted)
    sums = NullSums(problem, permuted_codes, n_jobs)
    results = map_in_threads(
        lambda f: null_fold(problem, sums, permuted_codes, f), range(len(problem.folds)), n_jobs
    )
    n_rechecked = sum(r[1] for r in results)
    correct = np.stack([r[0] for r in results])  # (n_folds, n_perm, n_centres)
    del results
    n_test = np.array([len(fold.test) for fold in problem.folds])
    null = np.empty((len(permuted), problem.spheres.n_centres))
    for p in range(len(permuted)):
        null[p], _ = fold_accuracies(correct[:, p], n_test)
    return null, n_rechecked


def summarize_permutations(scores, null, alpha=0.05, n_rechecked=0):
    """Per-centre and family-wise p-values from observed and null accuracies.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n_centres,)
        Accuracies on the true labels.
    null : numpy.ndarray, shape (n_permutations, n_centres)
        Accuracies on permuted labels.
    alpha : float
        Family-wise error rate of the threshold.
    n_rechecked : int
        Passed through to the result.

    Returns
    -------
    PermutationResult
    """
    n_perm = null.shape[0]
    p_values = (1.0 + np.sum(null >= scores, axis=0)) / (1.0 + n_perm)
    max_null = null.max(axis=1)
    fwe_p = (1.0 + np.sum(max_null[:, None] >= scores[None, :], axis=0)) / (1.0 + n_perm)
    return PermutationResult(
        scores=scores,
        null=null,
        p_values=p_values,
        max_null=max_null,
        fwe_threshold=float(np.quantile(max_null, 1.0 - alpha)),
        fwe_p_values=fwe_p,
        alpha=alpha,
        n_rechecked=n_rechecked,
    )
