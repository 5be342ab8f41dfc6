"""Searchlight: nilearn's spheres and scores, ground truth, permutations, bad input."""

import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.decoding import SearchLight
from nilearn.image import coord_transform
from nilearn.maskers.nifti_spheres_masker import apply_mask_and_get_affinity
from nilearn.signal import clean
from sklearn.base import clone
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import SVC

from fmriflow import classifiers, decoding, simulate
from fmriflow import searchlight as sl
from fmriflow.errors import InputError
from fmriflow.permutations import unit_blocks
from fmriflow.searchlight import gnb_scoring

from conftest import SCRIPTS

SHAPE = (12, 14, 12)
RADIUS = 5.6
#: Haxby's voxel size with an offset origin, and the simulator's isotropic grid.
ANISOTROPIC = np.array(
    [[3.5, 0, 0, -30.0], [0, 3.75, 0, -40.0], [0, 0, 3.75, -20.0], [0, 0, 0, 1]]
)
ISOTROPIC = simulate.grid_affine(SHAPE, (3.0, 3.0, 3.0))
GRIDS = {"isotropic": ISOTROPIC, "anisotropic": ANISOTROPIC}


@pytest.fixture(scope="module")
def subject():
    """A simulated subject cleaned per run: data over the brain mask (float32)."""
    sim = simulate.simulate_task_subject(
        0, 5, SHAPE, 6, 2.5, (2.0, 2.0), block_volumes=8, rest_volumes=4
    )
    brain, roi = simulate.task_masks(SHAPE)
    runs = sim.events["run"].to_numpy()
    data = np.vstack(
        [
            clean(sim.bold[brain].T[runs == r].astype(float), standardize="zscore_sample")
            for r in np.unique(runs)
        ]
    ).astype(np.float32)
    return sim, data, brain, roi


def contrast(subject, labels):
    sim, data, _, _ = subject
    rows, y, runs, _ = decoding.select_target(sim.events, labels, "events.tsv")
    return np.ascontiguousarray(data[rows]), y, runs


def permutation_blocks(subject, labels, permute):
    """The blocks of a contrast for block permutations, None for volume permutations."""
    rows, y, runs, _ = decoding.select_target(subject[0].events, labels, "events.tsv")
    return unit_blocks(permute, y, runs, rows)


def image(X, mask, affine):
    volume = np.zeros(mask.shape + (X.shape[0],), dtype=X.dtype)
    volume[mask] = X.T
    return nib.Nifti1Image(volume, affine)


def mask_image(mask, affine):
    return nib.Nifti1Image(mask.astype(np.uint8), affine)


def nilearn_scores(X, y, runs, brain, centres, affine, estimator):
    """``masked_scores_`` of nilearn's SearchLight on the same data."""
    searchlight = SearchLight(
        mask_image(brain, affine),
        process_mask_img=mask_image(centres, affine),
        radius=RADIUS,
        estimator=estimator,
        cv=LeaveOneGroupOut(),
        scoring="accuracy",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        searchlight.fit(image(X, brain, affine), y, groups=runs)
    return searchlight.masked_scores_


def sphere_rows(spheres, table):
    """Row of the sphere matrix of every row of a best-spheres table."""
    index = np.full(spheres.centre_mask.shape, -1)
    index[spheres.centre_mask] = np.arange(spheres.n_centres)
    return index[table["i"], table["j"], table["k"]]


def few_centres(roi, n, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.zeros_like(roi)
    centres[tuple(np.argwhere(roi)[rng.choice(int(roi.sum()), n, replace=False)].T)] = True
    return centres


# --- spheres ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "radius"),
    # Radii equal to voxel distances (3 mm, 3.5 mm, 2 x 3.75 mm) test the boundary.
    [("isotropic", 3.0), ("isotropic", RADIUS), ("anisotropic", 3.5)]
    + [("anisotropic", RADIUS), ("anisotropic", 7.5)],
)
def test_spheres_are_nilearns_neighbourhoods(subject, grid, radius):
    _, data, brain, roi = subject
    affine = GRIDS[grid]
    centres = roi | few_centres(brain, 60)
    spheres = sl.make_spheres(brain, affine, radius, centres)
    seeds = np.asarray(coord_transform(*np.nonzero(centres), affine)).T
    _, reference = apply_mask_and_get_affinity(
        seeds, image(data[:2], brain, affine), radius, True, mask_img=mask_image(brain, affine)
    )
    reference = reference.tocsr()
    reference.sort_indices()
    np.testing.assert_array_equal(spheres.matrix.indptr, reference.indptr)
    np.testing.assert_array_equal(spheres.matrix.indices, reference.indices)
    assert spheres.sizes.min() >= 1 and spheres.matrix.dtype == bool
    np.testing.assert_array_equal(spheres.centres, np.argwhere(centres))
    np.testing.assert_array_equal(np.flatnonzero(centres[brain]), spheres.centre_columns)


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_interior_spheres_hold_every_voxel_within_the_radius(grid):
    """Counted another way: integer offsets whose world length is at most the radius."""
    affine = GRIDS[grid]
    mask = np.ones((9, 9, 9), dtype=bool)
    centre = np.zeros_like(mask)
    centre[4, 4, 4] = True
    spheres = sl.make_spheres(mask, affine, RADIUS, centre)
    offsets = np.argwhere(mask) - 4
    lengths = np.linalg.norm(offsets @ affine[:3, :3].T, axis=1)
    expected = np.flatnonzero(lengths <= RADIUS)
    np.testing.assert_array_equal(spheres.matrix.indices, expected)
    # 3 mm: faces, edges (4.24 mm) and corners (5.20 mm); Haxby's grid: faces and
    # edges (5.13 and 5.30 mm), not corners (6.4 mm).
    assert len(expected) == {"isotropic": 27, "anisotropic": 19}[grid]


# --- Gaussian naive Bayes --------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "labels", "dtype"),
    [
        ("isotropic", ["face", "house"], np.float32),
        ("anisotropic", ["face", "house"], np.float64),
        ("anisotropic", "all", np.float32),
    ],
)
def test_gnb_scores_equal_nilearn(subject, grid, labels, dtype):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, labels)
    X = X.astype(dtype)
    affine = GRIDS[grid]
    spheres = sl.make_spheres(brain, affine, RADIUS, roi)
    result = sl.gnb_searchlight(X, y, runs, spheres)
    reference = nilearn_scores(X, y, runs, brain, roi, affine, GaussianNB())
    np.testing.assert_array_equal(result.scores, reference)
    assert result.scores.dtype == np.float64 and len(np.unique(result.scores)) > 10
    # Every fold's accuracy is cross_val_score's, mean included.
    np.testing.assert_array_equal(result.fold_scores.mean(axis=0), result.scores)


def test_uncertain_predictions_are_scikit_learns(subject, monkeypatch):
    """Re-predicting every sphere and fold with scikit-learn's GaussianNB changes nothing."""
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, "all")
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, few_centres(roi, 30))
    fast = sl.gnb_searchlight(X, y, runs, spheres)
    certified = gnb_scoring.score_in_place

    def nothing_certain(*args, **kwargs):
        correct, uncertain = certified(*args, **kwargs)
        return correct, np.ones_like(uncertain)

    monkeypatch.setattr(gnb_scoring, "score_in_place", nothing_certain)
    rechecked = sl.gnb_searchlight(X, y, runs, spheres)
    assert rechecked.n_rechecked == spheres.n_centres * len(np.unique(runs))
    np.testing.assert_array_equal(rechecked.scores, fast.scores)
    # ... and is sphere by sphere scikit-learn, fitted (the general path).
    slow = sl.searchlight(X, y, runs, spheres, GaussianNB(), n_jobs=2, backend="threads")
    np.testing.assert_array_equal(slow.fold_scores, fast.fold_scores)


def test_exact_ties_are_decided_as_scikit_learn_does():
    """Mirror-symmetric classes tie exactly at 0, where scikit-learn predicts the first class."""
    rng = np.random.default_rng(1)
    mask = np.ones((4, 4, 4), dtype=bool)
    n_voxels = int(mask.sum())
    blocks, labels, runs = [], [], []
    for run in range(4):
        values = rng.standard_normal((5, n_voxels))
        zero = np.zeros((1, n_voxels))
        blocks += [values, zero, -values, zero]
        labels += ["a"] * 6 + ["b"] * 6
        runs += [run] * 12
    X, y, runs = np.vstack(blocks), np.array(labels), np.array(runs)
    spheres = sl.make_spheres(mask, np.eye(4), 1.0)
    result = sl.gnb_searchlight(X, y, runs, spheres)
    assert result.n_rechecked >= spheres.n_centres * 4
    reference = sl.searchlight(X, y, runs, spheres, GaussianNB())
    np.testing.assert_array_equal(result.scores, reference.scores)


@pytest.mark.parametrize("var_smoothing", [1e-9, 1e-2])
def test_epsilon_is_the_spheres_own(var_smoothing):
    """Voxel variances spanning 12 orders of magnitude: epsilon (from the sphere's
    largest variance) dominates the small ones, differently in every sphere."""
    rng = np.random.default_rng(2)
    mask = np.ones((5, 5, 5), dtype=bool)
    runs = np.repeat(np.arange(4), 10)
    y = np.tile(np.repeat(["a", "b"], 5), 4)
    X = rng.standard_normal((len(y), int(mask.sum())))
    X[y == "b", ::3] += 0.8
    X *= 10.0 ** rng.uniform(-3, 3, X.shape[1])
    spheres = sl.make_spheres(mask, np.eye(4), 1.5)
    result = sl.gnb_searchlight(X, y, runs, spheres, var_smoothing=var_smoothing)
    reference = sl.searchlight(X, y, runs, spheres, GaussianNB(var_smoothing=var_smoothing))
    np.testing.assert_array_equal(result.scores, reference.scores)
    assert result.n_rechecked > 0


def test_registry_dispatch_and_memory_mapped_data(subject, tmp_path):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "cat"])
    np.save(tmp_path / "clean.npy", X)
    mapped = np.load(tmp_path / "clean.npy", mmap_mode="r")
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, few_centres(roi, 30))
    fast = sl.searchlight_scores(mapped, y, runs, spheres, "gnb", n_jobs=2)
    pipeline = classifiers.make_classifier("gnb")
    slow = sl.searchlight(mapped, y, runs, spheres, pipeline, n_jobs=2, backend="threads")
    np.testing.assert_array_equal(fast.scores, slow.scores)
    balanced = sl.searchlight_scores(mapped, y, runs, spheres, "gnb", balance=True)
    uniform = sl.searchlight(mapped, y, runs, spheres, GaussianNB(priors=[0.5, 0.5]))
    np.testing.assert_array_equal(balanced.scores, uniform.scores)


# --- any classifier ----------------------------------------------------------------


@pytest.mark.parametrize("workers", ["if_worth_it", "always"])
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_svc_scores_equal_nilearn(subject, grid, workers, tmp_path, monkeypatch):
    """Equal to nilearn's, whether the spheres are fitted in this process (a small
    searchlight: starting workers would cost more) or in worker processes."""
    from fmriflow.searchlight import estimator as general

    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    np.save(tmp_path / "clean.npy", X)
    mapped = np.load(tmp_path / "clean.npy", mmap_mode="r")  # worker processes share it
    centres = few_centres(roi, 30)
    affine = GRIDS[grid]
    spheres = sl.make_spheres(brain, affine, RADIUS, centres)
    in_processes = []

    def spy(*args, **kwargs):
        in_processes.append(True)
        return fit_in_processes(*args, **kwargs)

    fit_in_processes = general.fit_in_processes
    monkeypatch.setattr(general, "fit_in_processes", spy)
    if workers == "always":
        monkeypatch.setattr(general, "WORKER_START_SECONDS", 0.0)
    result = sl.searchlight_scores(mapped, y, runs, spheres, "svc", n_jobs=2)
    assert bool(in_processes) == (workers == "always")
    reference = nilearn_scores(X, y, runs, brain, centres, affine, SVC(kernel="linear"))
    np.testing.assert_array_equal(result.scores, reference)


def _liblinear_models():
    """liblinear classifiers the direct path serves, by a label for the test's id."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    def registry(name, balance, n_classes):
        return classifiers.make_classifier(name, balance=balance, n_classes=n_classes).steps[-1][1]

    return {
        "linear_svc": lambda k: registry("linear_svc", False, k),
        "linear_svc_balanced": lambda k: registry("linear_svc", True, k),
        "linear_svc_l1": lambda k: registry("linear_svc_l1", False, k),
        "linear_svc_dual": lambda k: LinearSVC(dual=True, C=0.1, random_state=3, max_iter=10000),
        "logreg_l1": lambda k: registry("logreg_l1", False, k),
        "logreg_l1_balanced": lambda k: registry("logreg_l1", True, k),
        "logistic_liblinear_l2": lambda k: (
            LogisticRegression(solver="liblinear", l1_ratio=0, random_state=0)
            if k == 2
            else OneVsRestClassifier(LogisticRegression(solver="liblinear", l1_ratio=0))
        ),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", [["face", "house"], ["face", "cat", "shoe"]])
@pytest.mark.parametrize("model", sorted(_liblinear_models()))
def test_liblinear_without_per_call_overhead_predicts_as_scikit_learn(
    subject, model, labels, dtype, capfd
):
    """The direct liblinear call predicts, fold by fold and sphere by sphere, what
    scikit-learn's fitted LinearSVC / LogisticRegression / OneVsRestClassifier predicts,
    and is as quiet as scikit-learn's fit."""
    from sklearn.svm import _liblinear

    from fmriflow import fits
    from fmriflow.searchlight import estimator as general

    _liblinear.set_verbosity_wrap(1)  # liblinear's own default: a report of every fit
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, labels)
    train = runs != runs[0]
    estimator = _liblinear_models()[model](len(labels))
    fits.liblinear_fold_fit(estimator, y[train])(X[train][:, :5], X[~train][:, :5])
    assert capfd.readouterr().out == ""
    X = X.astype(dtype)
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, few_centres(roi, 12))
    estimator = _liblinear_models()[model](len(labels))
    settings = fits.liblinear_settings(estimator)
    splits = list(LeaveOneGroupOut().split(X, y, runs))
    matrix = spheres.matrix
    for train, test in splits[:4]:
        fast = fits.liblinear_fold_fit(estimator, y[train])
        assert fast is not None
        for sphere in range(spheres.n_centres):
            x = X[:, matrix.indices[matrix.indptr[sphere] : matrix.indptr[sphere + 1]]]
            reference = clone(estimator).fit(x[train], y[train])
            np.testing.assert_array_equal(fast(x[train], x[test]), reference.predict(x[test]))
            if settings["one_vs_rest"]:
                continue
            # The decision values too, bit for bit (the seed, the intercept, the weights).
            train_x = fits._liblinear_data(x[train], settings["float64"])
            decisions = fits._liblinear_problem(settings, y[train])(train_x, x[test])
            expected = reference.decision_function(x[test])
            np.testing.assert_array_equal(decisions.reshape(expected.shape), expected)
    counts = general.fit_spheres(X, y, splits, matrix.indices, matrix.indptr, estimator)
    train, test = splits[-1]
    x = X[:, matrix.indices[matrix.indptr[0] : matrix.indptr[1]]]
    expected = clone(estimator).fit(x[train], y[train]).predict(x[test])
    assert counts[-1, 0] == np.sum(expected == y[test])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", [["face", "house"], ["face", "cat", "shoe"]])
@pytest.mark.parametrize(
    "make_svc",
    [
        lambda: SVC(kernel="linear"),
        lambda: SVC(kernel="linear", C=0.05, class_weight="balanced", random_state=2),
    ],
    ids=["registry", "weighted"],
)
def test_libsvm_without_per_call_overhead_predicts_as_scikit_learn(
    subject, make_svc, labels, dtype, capfd
):
    """The direct libsvm call predicts what SVC(kernel="linear") fitted by scikit-learn
    predicts, fold by fold and sphere by sphere; unbalanced classes make the weights count.
    It is as quiet as scikit-learn's fit."""
    from sklearn.svm import _libsvm

    from fmriflow import fits

    _libsvm.set_verbosity_wrap(1)  # libsvm's own default: a report of every fit
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, labels)
    train = runs != runs[0]
    fits.libsvm_fold_fit(make_svc(), y[train])(X[train][:, :5], X[~train][:, :5])
    assert capfd.readouterr().out == ""

    _, _, brain, roi = subject
    X, y, runs = contrast(subject, labels)
    keep = (y != labels[-1]) | (np.arange(len(y)) % 3 == 0)  # a third of the last class
    X, y, runs = X[keep].astype(dtype), y[keep], runs[keep]
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, few_centres(roi, 12))
    estimator = make_svc()
    matrix = spheres.matrix
    for train, test in list(LeaveOneGroupOut().split(X, y, runs))[:4]:
        fast = fits.libsvm_fold_fit(estimator, y[train])
        assert fast is not None
        for sphere in range(spheres.n_centres):
            x = X[:, matrix.indices[matrix.indptr[sphere] : matrix.indptr[sphere + 1]]]
            reference = clone(estimator).fit(x[train], y[train]).predict(x[test])
            np.testing.assert_array_equal(fast(x[train], x[test]), reference)


def test_only_liblinear_and_linear_svc_take_the_direct_paths(subject):
    from sklearn.linear_model import LogisticRegression

    from fmriflow import fits

    y = np.array(["a", "b"] * 10)
    assert fits.liblinear_fold_fit(SVC(kernel="linear"), y) is None
    assert fits.libsvm_fold_fit(SVC(kernel="rbf"), y) is None
    from sklearn.svm import LinearSVC

    seeded = LinearSVC(random_state=np.random.RandomState(0))  # copied into every clone
    assert fits.liblinear_fold_fit(seeded, y) is None
    assert fits.libsvm_fold_fit(SVC(kernel="linear", random_state=seeded.random_state), y) is None
    assert fits.libsvm_fold_fit(SVC(kernel="linear"), y[::2]) is None
    assert fits.liblinear_fold_fit(LogisticRegression(), y) is None  # lbfgs
    assert fits.liblinear_fold_fit(classifiers.make_classifier("ridge").steps[-1][1], y) is None
    one_class = fits.liblinear_fold_fit(
        classifiers.make_classifier("linear_svc").steps[-1][1], y[::2]
    )
    assert one_class is None  # scikit-learn's fit says what is wrong


# --- ground truth ------------------------------------------------------------------


def test_best_spheres_sit_on_informative_voxels_and_the_null_pair_is_at_chance(subject):
    sim, _, brain, _ = subject
    spheres = sl.make_spheres(brain, ISOTROPIC, RADIUS)
    X, y, runs = contrast(subject, ["face", "house"])
    scores = sl.gnb_searchlight(X, y, runs, spheres).scores
    informative = simulate.informative_voxels(sim.truth, "face", "house")[brain]
    touches = (spheres.matrix.astype(int) @ informative.astype(int)) > 0
    best = sphere_rows(spheres, sl.best_spheres(scores, spheres, n=20))
    assert touches[best].all()
    assert scores[touches].mean() > scores[~touches].mean() + 0.1
    low, high = decoding.binomial_chance_interval(len(y), 0.5)
    assert low <= scores[~touches].mean() <= high
    X, y, runs = contrast(subject, ["bottle", "scissors"])
    null_pair = sl.gnb_searchlight(X, y, runs, spheres).scores
    low, high = decoding.binomial_chance_interval(len(y), 0.5)
    assert low <= null_pair.mean() <= high, null_pair.mean()
    assert null_pair.mean() < scores[touches].mean() - 0.1


def test_outputs_are_float32_maps_and_a_sorted_table(subject):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    scores = sl.gnb_searchlight(X, y, runs, spheres).scores
    volume = sl.to_volume(scores, spheres)
    assert volume.dtype == np.float32 and volume.shape == brain.shape
    np.testing.assert_array_equal(volume[roi], scores.astype(np.float32))
    assert not volume[~roi].any()
    table = sl.best_spheres(scores, spheres, n=None, p_value=np.linspace(0, 1, len(scores)))
    assert list(table.columns) == ["i", "j", "k", "x", "y", "z", "score", "n_voxels", "p_value"]
    assert len(table) == spheres.n_centres and table["score"].is_monotonic_decreasing
    ijk = table[["i", "j", "k"]].to_numpy()
    np.testing.assert_allclose(
        table[["x", "y", "z"]].to_numpy(), nib.affines.apply_affine(ANISOTROPIC, ijk)
    )
    order = sphere_rows(spheres, table)
    sizes = np.asarray(spheres.matrix.sum(axis=1)).ravel()
    np.testing.assert_array_equal(table["n_voxels"].to_numpy(), sizes[order])
    np.testing.assert_array_equal(table["score"].to_numpy(), scores[order])


# --- permutations ------------------------------------------------------------------


def test_permutations_stay_within_runs():
    runs = np.repeat([3, 1, 2], [6, 8, 7])
    y = np.array(list("aabbab" + "abababab" + "aabbbab"))
    permuted = sl.permute_within_runs(y, runs, 20, seed=0)
    assert permuted.shape == (20, len(y))
    assert not all(np.array_equal(p, y) for p in permuted)
    for labels in permuted:
        for run in np.unique(runs):
            assert sorted(labels[runs == run]) == sorted(y[runs == run])


@pytest.mark.parametrize("permute", ["volume", "block"])
def test_null_distribution_is_permutation_test_score_per_sphere(subject, permute):
    """Per sphere, the decoding permutation test (itself checked against scikit-learn's
    permutation_test_score for volumes and a cross_val_score loop for blocks)."""
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "cat"])
    blocks = permutation_blocks(subject, ["face", "cat"], permute)
    X = X.astype(np.float64)
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    result = sl.gnb_permutation_test(X, y, runs, spheres, 20, seed=7, blocks=blocks)
    pipeline = classifiers.make_classifier("gnb")
    for sphere in [0, 40, spheres.n_centres - 1]:
        columns = spheres.matrix[sphere].indices
        score, null, p_value = decoding.permutation_test(
            X[:, columns], y, runs, pipeline, LeaveOneGroupOut(), 20, 7, blocks=blocks
        )
        assert result.scores[sphere] == score
        np.testing.assert_array_equal(result.null[:, sphere], null)
        assert result.p_values[sphere] == p_value


def test_same_seed_same_p_values_whatever_n_jobs(subject):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    first = sl.gnb_permutation_test(X, y, runs, spheres, 20, seed=3, n_jobs=1)
    second = sl.gnb_permutation_test(X, y, runs, spheres, 20, seed=3, n_jobs=2)
    np.testing.assert_array_equal(first.null, second.null)
    np.testing.assert_array_equal(first.p_values, second.p_values)
    np.testing.assert_array_equal(first.fwe_p_values, second.fwe_p_values)
    other = sl.gnb_permutation_test(X, y, runs, spheres, 20, seed=4, n_jobs=2)
    assert not np.array_equal(first.null, other.null)
    np.testing.assert_array_equal(first.scores, other.scores)


def test_p_values_are_uniform_on_noise():
    """Non-overlapping spheres on pure noise: independent p-values, about 5% below 0.05."""
    rng = np.random.default_rng(0)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    centres = np.zeros((27, 27, 27), dtype=bool)
    centres[1::3, 1::3, 1::3] = True  # 12 mm apart, radius 5.6 mm: disjoint spheres
    spheres = sl.make_spheres(np.ones_like(centres), affine, RADIUS, centres)
    assert spheres.matrix.sum(axis=0).max() == 1
    mask = np.zeros_like(centres)
    mask[tuple(np.argwhere(np.ones_like(centres))[spheres.matrix.indices].T)] = True
    spheres = sl.make_spheres(mask, affine, RADIUS, centres)
    runs = np.repeat(np.arange(8), 12)
    y = np.tile(np.repeat(["a", "b"], 6), 8)
    X = rng.standard_normal((len(y), int(mask.sum()))).astype(np.float32)
    result = sl.gnb_permutation_test(X, y, runs, spheres, 99, seed=0, n_jobs=2)
    n = spheres.n_centres
    low, high = decoding.binomial_chance_interval(n, 0.05, level=0.99)
    assert low <= np.mean(result.p_values <= 0.05) <= high
    assert abs(np.mean(result.p_values) - 0.5) < 0.05
    assert np.mean(result.fwe_p_values <= 0.05) <= 2 / n
    assert result.fwe_threshold >= np.quantile(result.null, 0.95)
    # The threshold is the 95th percentile of the per-permutation maxima.
    maxima = np.sort([max(row) for row in result.null])
    assert maxima[93] <= result.fwe_threshold <= maxima[94]
    significant = result.scores > result.fwe_threshold
    assert (result.fwe_p_values[significant] <= 0.05).all()


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored:UserWarning")
def test_permutations_need_a_cv_by_run(subject):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    leaky = decoding.make_cv("kfold_volumes", n_splits=4, allow_leaky=True)
    with pytest.raises(InputError, match="volumes of one run in different sets"):
        sl.gnb_permutation_test(X, y, runs, spheres, 5, cv=leaky)
    by_runs = decoding.make_cv("kfold_runs", n_splits=3)
    result = sl.gnb_permutation_test(X, y, runs, spheres, 5, cv=by_runs)
    np.testing.assert_array_equal(
        result.scores, sl.searchlight(X, y, runs, spheres, GaussianNB(), cv=by_runs).scores
    )


# --- bad input -------------------------------------------------------------------


def test_bad_input_messages(subject):
    _, data, brain, roi = subject
    with pytest.raises(InputError, match=r"voxel size \(3\.5 x 3\.75 x 3\.75 mm\)"):
        sl.make_spheres(brain, ANISOTROPIC, 3.0)
    with pytest.raises(InputError, match="the data mask is empty"):
        sl.make_spheres(np.zeros_like(brain), ANISOTROPIC, RADIUS)
    outside = roi.copy()
    outside[0, 0, 0] = True
    assert not brain[0, 0, 0]
    with pytest.raises(InputError, match="1 of the 77 voxels of the centre mask lie outside"):
        sl.make_spheres(brain, ANISOTROPIC, RADIUS, outside)
    corner = np.zeros_like(brain)
    corner[0, 0, 0] = True
    with pytest.raises(InputError, match="all 1 voxels of the centre mask lie outside"):
        sl.make_spheres(brain, ANISOTROPIC, RADIUS, corner)
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    with pytest.raises(InputError, match="the searchlight mask has 800 voxels"):
        sl.gnb_searchlight(data[:, :10], np.zeros(len(data)), np.zeros(len(data)), spheres)


def test_a_plan_spreads_its_sample_and_keeps_parts_within_the_run_time():
    """plan_sample: distinct rows spread from the first centre to the last; plan_parts:
    the fewest parts whose estimated time is within the target, at most one per centre."""
    rows = sl.plan_sample(10_000)
    assert len(rows) == sl.parts.PLAN_SAMPLE_CENTRES and rows[0] == 0 and rows[-1] == 9_999
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(sl.plan_sample(20), np.arange(20))
    # 10,000 centres at 0.5 s: 83.3 min, so 9 parts of at most 10 min, not 8.
    assert sl.plan_parts(10_000, 0.5, 10) == 9
    assert 10_000 * 0.5 / 9 <= 600 < 10_000 * 0.5 / 8
    assert sl.plan_parts(10_000, 0.001, 10) == 1
    assert sl.plan_parts(50, 100.0, 1) == 50  # never more parts than centres
    assert sl.plan_parts(0, 0.0, 1) == 1
    with pytest.raises(InputError, match="must be positive"):
        sl.plan_parts(100, 0.1, 0)


def test_a_plan_file_without_a_number_of_parts_is_refused(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text('{"n_parts": 3}')
    assert sl.read_plan(path) == 3
    path.write_text('{"n_parts": 0}')
    with pytest.raises(InputError, match=r"plan\.json: gives n_parts 0"):
        sl.read_plan(path)


def test_the_package_imports_each_engine_when_first_used():
    code = """
import sys
import fmriflow.searchlight as package
assert "fmriflow.searchlight.spheres" not in sys.modules
from fmriflow.searchlight import check_radius
assert "fmriflow.searchlight.spheres" not in sys.modules
from fmriflow.searchlight import make_spheres
assert "fmriflow.searchlight.spheres" in sys.modules
import importlib
for name in package.__all__:
    value = getattr(package, name)
    if name != "searchlight_scores":
        module = importlib.import_module("fmriflow.searchlight." + package.DEFINED_IN[name])
        assert value is getattr(module, name), name
assert set(package.__all__) <= set(dir(package))
try:
    package.no_such_name
except AttributeError as error:
    assert "no_such_name" in str(error)
else:
    raise AssertionError("no AttributeError")
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=SCRIPTS
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
