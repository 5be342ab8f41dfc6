"""The closed-form searchlight paths (ridge, nearest centroid) against scikit-learn and nilearn."""

import numpy as np
import pytest
import test_searchlight as base
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.neighbors import NearestCentroid
from test_searchlight import (
    ANISOTROPIC,
    GRIDS,
    RADIUS,
    contrast,
    few_centres,
    nilearn_scores,
    permutation_blocks,
)

from fmriflow import classifiers, decoding
from fmriflow import searchlight as sl
from fmriflow.errors import InputError
from fmriflow.searchlight import closed_form

subject = base.subject  # the simulated subject fixture, shared

ESTIMATORS = {
    "ridge": RidgeClassifier(alpha=1.0),
    "lda_shrinkage": LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1),
    "lda_auto": LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
    "nearest_centroid": NearestCentroid(),
}


def reference_data(name, X):
    """Ridge and LDA are referred to scikit-learn on float64 data, nearest centroid on the
    data as is."""
    return X if name == "nearest_centroid" else X.astype(np.float64)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize(
    ("grid", "labels", "dtype"),
    [
        ("isotropic", ["face", "house"], np.float32),
        ("anisotropic", ["face", "house"], np.float64),
        ("anisotropic", "all", np.float32),
    ],
)
def test_scores_equal_scikit_learn_sphere_by_sphere(subject, name, grid, labels, dtype):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, labels)
    X = X.astype(dtype)
    # Spheres of the ROI and of the mask's edge (smaller spheres, other sizes).
    spheres = sl.make_spheres(brain, GRIDS[grid], RADIUS, roi | few_centres(brain, 80))
    result = sl.closed_form_searchlight(X, y, runs, spheres, name)
    reference = sl.searchlight(
        reference_data(name, X), y, runs, spheres, ESTIMATORS[name], n_jobs=2, backend="threads"
    )
    np.testing.assert_array_equal(result.fold_scores, reference.fold_scores)
    np.testing.assert_array_equal(result.scores, reference.scores)
    assert len(np.unique(result.scores)) > 10


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_scores_equal_nilearn(subject, name):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "cat"])
    X = reference_data(name, X)
    centres = few_centres(roi, 25)
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, centres)
    result = sl.searchlight_scores(X, y, runs, spheres, name)
    reference = nilearn_scores(X, y, runs, brain, centres, ANISOTROPIC, ESTIMATORS[name])
    np.testing.assert_array_equal(result.scores, reference)


def test_one_voxel_spheres_and_small_radius(subject):
    """The smallest radius with every other slice masked out: one- and two-voxel
    spheres (one-voxel ones are refitted by scikit-learn)."""
    _, _, brain, _ = subject
    X, y, runs = contrast(subject, ["face", "house", "cat"])
    # Half the grid a 3-D checkerboard: voxels with no neighbour within 3.75 mm.
    i, j, k = np.indices(brain.shape)
    sparse_mask = brain & ~((j < brain.shape[1] // 2) & ((i + j + k) % 2 == 1))
    X = np.ascontiguousarray(X[:, sparse_mask[brain]])
    spheres = sl.make_spheres(sparse_mask, ANISOTROPIC, 3.75)
    # Some spheres of every size (the one-voxel ones among them).
    rows = np.concatenate(
        [np.flatnonzero(spheres.sizes == n)[:25] for n in np.unique(spheres.sizes)]
    )
    spheres = spheres.select(np.sort(rows))
    assert spheres.sizes.min() == 1 and spheres.sizes.max() > 1
    for name, estimator in ESTIMATORS.items():
        result = sl.closed_form_searchlight(X, y, runs, spheres, name, n_jobs=2)
        reference = sl.searchlight(
            reference_data(name, X), y, runs, spheres, estimator, n_jobs=2, backend="threads"
        )
        np.testing.assert_array_equal(result.fold_scores, reference.fold_scores)


def test_uncertain_predictions_are_scikit_learns(subject, monkeypatch):
    """Refitting every sphere, fold and labelling with scikit-learn changes nothing."""
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, "all")
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, few_centres(roi, 12))
    fast = {name: sl.closed_form_searchlight(X, y, runs, spheres, name) for name in ESTIMATORS}
    classify = closed_form.classify

    def nothing_certain(scores, bound):
        predicted, uncertain = classify(scores, bound)
        return predicted, np.ones_like(uncertain)

    monkeypatch.setattr(closed_form, "classify", nothing_certain)
    for name in ESTIMATORS:
        rechecked = sl.closed_form_searchlight(X, y, runs, spheres, name)
        assert rechecked.n_rechecked == spheres.n_centres * len(np.unique(runs))
        np.testing.assert_array_equal(rechecked.fold_scores, fast[name].fold_scores)


def test_exact_ties_are_decided_as_scikit_learn_does():
    """Mirror-symmetric classes and zero test volumes: every decision ties exactly."""
    rng = np.random.default_rng(1)
    mask = np.ones((3, 3, 3), dtype=bool)
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
    for name, estimator in ESTIMATORS.items():
        result = sl.closed_form_searchlight(X, y, runs, spheres, name)
        assert result.n_rechecked >= spheres.n_centres * 4, name
        reference = sl.searchlight(X, y, runs, spheres, estimator)
        np.testing.assert_array_equal(result.fold_scores, reference.fold_scores)


@pytest.mark.parametrize("permute", ["volume", "block"])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_null_distribution_is_permutation_test_score_per_sphere(subject, name, permute):
    _, _, brain, roi = subject
    labels = ["face", "cat", "house"]
    X, y, runs = contrast(subject, labels)
    blocks = permutation_blocks(subject, labels, permute)
    X = X.astype(np.float64)
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    result = sl.searchlight_scores(
        X, y, runs, spheres, name, n_permutations=20, seed=7, blocks=blocks
    )
    pipeline = classifiers.make_classifier(name, n_classes=3)
    for sphere in [0, 40, spheres.n_centres - 1]:
        columns = spheres.matrix[sphere].indices
        score, null, p_value = decoding.permutation_test(
            X[:, columns], y, runs, pipeline, LeaveOneGroupOut(), 20, 7, blocks=blocks
        )
        assert result.scores[sphere] == score
        np.testing.assert_array_equal(result.null[:, sphere], null)
        assert result.p_values[sphere] == p_value


def test_same_results_whatever_n_jobs_and_chunk_size(subject, monkeypatch):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    first = sl.closed_form_searchlight(X, y, runs, spheres, "ridge", n_permutations=10, n_jobs=1)
    monkeypatch.setattr(closed_form, "CHUNK_BYTES", 1e4)
    assert len(closed_form.size_chunks(spheres, len(y), 22)) > 20
    second = sl.closed_form_searchlight(X, y, runs, spheres, "ridge", n_permutations=10, n_jobs=2)
    np.testing.assert_array_equal(first.null, second.null)
    np.testing.assert_array_equal(first.scores, second.scores)


def test_noise_decodes_at_chance_and_the_planted_pattern_is_found(subject):
    """Face vs house has FWE-significant spheres; pure noise has none and is at chance.

    (Not the simulator's null pair within the ROI: the haemodynamic tail of the
    block before a bottle or scissors block differs, which the multivariate
    ridge picks up, as it would in real data.)
    """
    _, _, brain, roi = subject
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    X, y, runs = contrast(subject, ["face", "house"])
    noise = np.random.default_rng(0).standard_normal(X.shape).astype(np.float32)
    low, high = decoding.binomial_chance_interval(len(y), 0.5)
    for name in ESTIMATORS:
        result = sl.closed_form_searchlight(X, y, runs, spheres, name, n_permutations=50)
        assert result.scores.max() > 0.9 and (result.fwe_p_values <= 0.05).any(), name
        result = sl.closed_form_searchlight(noise, y, runs, spheres, name, n_permutations=50)
        assert low <= result.scores.mean() <= high, name
        assert not (result.fwe_p_values <= 0.05).any(), name


def test_bad_input_messages(subject):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, few_centres(roi, 5))
    with pytest.raises(InputError, match="has no closed-form path"):
        sl.closed_form_searchlight(X, y, runs, spheres, "svc")
    with pytest.raises(InputError, match="must be positive"):
        sl.closed_form_searchlight(X, y, runs, spheres, "ridge", alpha=0.0)
    with pytest.raises(InputError, match="change its fit with every permutation"):
        sl.searchlight_scores(X, y, runs, spheres, "ridge", balance=True, n_permutations=5)
    # Weighted ridge without permutations: scikit-learn sphere by sphere.
    weighted = sl.searchlight_scores(X, y, runs, spheres, "ridge", balance=True)
    reference = sl.searchlight(X, y, runs, spheres, RidgeClassifier(class_weight="balanced"))
    np.testing.assert_array_equal(weighted.scores, reference.scores)


@pytest.mark.parametrize("name", ["gnb", "ridge", "svc"])
def test_parts_gather_into_the_same_map_bit_for_bit(subject, tmp_path, name):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, few_centres(brain, 40) | roi)
    n_permutations = 0 if name == "svc" else 10
    if name == "svc":
        spheres = spheres.select(np.arange(12))
    whole = sl.searchlight_scores(X, y, runs, spheres, name, n_permutations=n_permutations)
    for n_parts in (1, 3, 7):
        paths = []
        for part in range(n_parts):
            rows = sl.part_rows(spheres.n_centres, n_parts, part)
            result = sl.searchlight_scores(
                X, y, runs, spheres.select(rows), name, n_permutations=n_permutations
            )
            paths.append(tmp_path / f"{name}-{n_parts}-{part}.npz")
            sl.save_part(result, rows, spheres.n_centres, paths[-1], chance=0.5, n_folds=6)
        gathered = sl.gather_parts(paths)
        assert sl.part_design(paths) == (0.5, 6)
        assert gathered.scores.tobytes() == whole.scores.tobytes()
        if not n_permutations:
            assert gathered.fold_scores.tobytes() == whole.fold_scores.tobytes()
        else:
            assert gathered.null.tobytes() == whole.null.tobytes()
            assert gathered.p_values.tobytes() == whole.p_values.tobytes()
            assert gathered.fwe_threshold == whole.fwe_threshold
    with pytest.raises(InputError, match="not the map's"):
        sl.gather_parts(paths[:2])
    sl.save_part(result, rows, spheres.n_centres, paths[-1], chance=0.6, n_folds=6)
    with pytest.raises(InputError, match="disagree on the cross-validation"):
        sl.part_design(paths)


def test_progress_is_logged(subject, caplog):
    _, _, brain, roi = subject
    X, y, runs = contrast(subject, ["face", "house"])
    spheres = sl.make_spheres(brain, ANISOTROPIC, RADIUS, roi)
    progress = sl.Progress(spheres.n_centres, every=0.0)
    with caplog.at_level("INFO", logger="fmriflow.searchlight"):
        sl.searchlight_scores(X, y, runs, spheres, "ridge", progress=progress)
    lines = [r.getMessage() for r in caplog.records if "centres" in r.getMessage()]
    assert lines and lines[-1].startswith(f"searchlight: {spheres.n_centres} of ")
    assert progress.done == spheres.n_centres
