"""Decoding: parity with scikit-learn, no leakage, ground truth, permutations."""

import numpy as np
import pandas as pd
import pytest
from nilearn.signal import clean
from scipy import stats
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import (
    GridSearchCV,
    LeaveOneGroupOut,
    cross_val_score,
    permutation_test_score,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC, LinearSVC

from fmriflow import classifiers, decoding, simulate
from fmriflow.errors import InputError
from fmriflow.permutations import label_blocks, permute_within_runs

#: Each registry entry built directly with scikit-learn, as a reference.
REFERENCES = {
    "svc": lambda: SVC(kernel="linear"),
    "linear_svc": lambda: LinearSVC(random_state=0, max_iter=10000),
    "linear_svc_l1": lambda: LinearSVC(penalty="l1", dual=False, random_state=0, max_iter=10000),
    "logreg_l1": lambda: OneVsRestClassifier(
        LogisticRegression(l1_ratio=1.0, solver="liblinear", random_state=0)
    ),
    "logreg_l2": lambda: LogisticRegression(max_iter=5000),
    "ridge": lambda: RidgeClassifier(),
    "gnb": lambda: GaussianNB(),
    "nearest_centroid": lambda: NearestCentroid(),
    "lda_shrinkage": lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1),
    "lda_auto": lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
    "anova_svc": lambda: make_pipeline(SelectKBest(f_classif, k=50), SVC(kernel="linear")),
}


@pytest.fixture(scope="module")
def subject():
    """A simulated subject, cleaned per run, over its whole brain mask."""
    sim = simulate.simulate_task_subject(
        0, 5, (12, 14, 12), 6, 2.5, (2.0, 2.0), block_volumes=8, rest_volumes=4
    )
    brain, roi = simulate.task_masks((12, 14, 12))
    runs = sim.events["run"].to_numpy()
    data = np.vstack(
        [
            clean(sim.bold[brain].T[runs == r].astype(float), standardize="zscore_sample")
            for r in np.unique(runs)
        ]
    )
    return sim, data, brain, roi


def contrast(subject, labels, voxels="roi"):
    sim, data, brain, roi = subject
    rows, y, runs, _ = decoding.select_target(sim.events, labels, "events.tsv")
    columns = roi[brain] if voxels == "roi" else np.ones(int(brain.sum()), bool)
    return data[rows][:, columns], y, runs


@pytest.mark.parametrize("name", classifiers.names())
def test_fold_accuracies_equal_cross_val_score(subject, name):
    X, y, runs = contrast(subject, ["face", "cat", "house"])
    pipeline = classifiers.make_classifier(name, selection_value=50)
    folds, predictions = decoding.cross_validate(
        X, y, runs, pipeline, decoding.make_cv("leave_one_run_out"), n_jobs=2
    )
    reference = cross_val_score(REFERENCES[name](), X, y, groups=runs, cv=LeaveOneGroupOut())
    np.testing.assert_array_equal(folds["accuracy"].to_numpy(), reference)
    assert len(predictions) == len(y) and set(predictions["run"]) == set(runs)


@pytest.mark.parametrize("name", ["svc", "ridge"])
def test_nested_search_equals_cross_val_score_of_grid_search(subject, name):
    X, y, runs = contrast(subject, ["face", "cat"])
    grid = [0.001, 0.1, 10.0]
    pipeline = classifiers.make_classifier(name)
    search = classifiers.with_search(pipeline, name, grid)
    folds, _ = decoding.cross_validate(
        X, y, runs, search, decoding.make_cv("leave_one_run_out"), search=True
    )
    key = "C" if name == "svc" else "alpha"
    reference_search = GridSearchCV(
        make_pipeline(REFERENCES[name]()),
        {f"{REFERENCES[name]().__class__.__name__.lower()}__{key}": grid},
        cv=LeaveOneGroupOut(),
    )
    reference = cross_val_score(
        reference_search, X, y, groups=runs, cv=LeaveOneGroupOut(), params={"groups": runs}
    )
    np.testing.assert_array_equal(folds["accuracy"].to_numpy(), reference)
    assert set(folds[f"best_{key}"]) <= set(grid)
    # Ties among the grid's inner scores, from GridSearchCV's own results per fold.
    for fold, (train, _) in enumerate(LeaveOneGroupOut().split(X, y, runs)):
        inner = clone(reference_search).fit(X[train], y[train], groups=runs[train])
        scores = inner.cv_results_["mean_test_score"]
        assert folds["search_tied"][fold] == np.sum(scores == scores.max())


@pytest.mark.parametrize(
    "name, labels",
    [
        ("anova_svc", ["face", "house"]),
        ("anova_svc", None),
        ("svc", None),
        ("logreg_l1", ["face", "house"]),  # a wrapped classifier: clf__estimator__C
    ],
)
def test_nested_search_is_grid_search_with_one_selection_per_inner_fold(subject, name, labels):
    """Every inner score, the ranks, the choice and the refitted model's predictions are
    GridSearchCV's, binary and multiclass, with the ANOVA step fitted once per inner fold."""
    X, y, runs = contrast(subject, labels or "all", voxels="mask")
    train, test = runs < 4, runs >= 4
    pipeline = classifiers.make_classifier(
        name, n_features=X.shape[1], selection_value=40, n_classes=len(set(y))
    )
    grid = [0.001, 0.01, 1.0]
    path = classifiers.get(name).search_path
    ours = classifiers.with_search(pipeline, name, grid).fit(X[train], y[train], runs[train])
    reference = GridSearchCV(pipeline, {path: grid}, cv=LeaveOneGroupOut(), scoring="accuracy")
    reference.fit(X[train], y[train], groups=runs[train])
    for key in ["mean_test_score", "rank_test_score"] + [
        f"split{k}_test_score" for k in range(len(np.unique(runs[train])))
    ]:
        np.testing.assert_array_equal(ours.cv_results_[key], reference.cv_results_[key])
    assert ours.best_params_ == reference.best_params_
    assert ours.best_score_ == reference.best_score_
    np.testing.assert_array_equal(ours.predict(X[test]), reference.predict(X[test]))
    if name == "anova_svc":
        fits = []
        original = SelectKBest.fit

        def counted(self, *args, **kwargs):
            fits.append(1)
            return original(self, *args, **kwargs)

        SelectKBest.fit = counted
        try:
            clone(ours).fit(X[train], y[train], runs[train])
        finally:
            SelectKBest.fit = original
        # One per inner fold, and one for the refit on all training runs.
        assert len(fits) == len(np.unique(runs[train])) + 1


def test_a_separable_problem_marks_every_grid_value_tied(subject):
    """Far apart classes: every C scores 100% in the inner folds, and the fold table says
    that the chosen C is no preference."""
    X, y, runs = contrast(subject, ["face", "house"])
    X = X + 50.0 * (y == "face")[:, None]
    search = classifiers.with_search(classifiers.make_classifier("svc"), "svc", [0.01, 1, 100])
    folds, _ = decoding.cross_validate(
        X, y, runs, search, decoding.make_cv("leave_one_run_out"), search=True
    )
    assert (folds["search_tied"] == 3).all()
    summary = decoding.summarize(folds, np.unique(y))
    assert summary["search_tied_per_fold"] == [3] * len(folds)


def test_mean_accuracy_is_cross_val_score_with_and_without_a_search(subject):
    """The permutation test's per-labelling score: scikit-learn's cross_val_score, exactly."""
    X, y, runs = contrast(subject, ["face", "house"])
    cv = decoding.make_cv("kfold_runs", n_splits=3, n_repeats=1, seed=0)
    labels = permute_within_runs(y, runs, 1, seed=4)[0]
    svc = classifiers.make_classifier("svc")
    search = classifiers.with_search(svc, "svc", [0.001, 0.1, 10])
    for estimator, is_search in ((svc, False), (search, True)):
        params = {"groups": runs} if is_search else None
        reference = cross_val_score(
            clone(estimator), X, labels, groups=runs, cv=cv, scoring="accuracy", params=params
        ).mean()
        assert decoding.mean_accuracy(estimator, X, labels, runs, cv, is_search) == reference


def test_leave_one_run_out_is_scikit_learns_leave_one_group_out():
    """Unordered, unequal runs with labels that are not 0..n-1."""
    from sklearn.model_selection import LeaveOneGroupOut

    runs = np.random.default_rng(0).choice([7, 2, 11, 5], size=53)
    X = np.zeros((runs.size, 2))
    ours = decoding.make_cv("leave_one_run_out")
    expected = list(LeaveOneGroupOut().split(X, groups=runs))
    found = list(ours.split(X, None, runs))
    assert len(found) == len(expected) == ours.get_n_splits(X, None, runs) == 4
    for (train, test), (train_ref, test_ref) in zip(found, expected, strict=True):
        np.testing.assert_array_equal(train, train_ref)
        np.testing.assert_array_equal(test, test_ref)
    with pytest.raises(ValueError, match="at least 2 runs"):
        next(ours.split(X, None, np.zeros(runs.size)))
    with pytest.raises(ValueError, match="needs the run of each sample"):
        ours.get_n_splits(X)


def test_a_closed_form_searchlight_does_not_import_scikit_learn():
    """A searchlight part on the ridge or naive Bayes engine: a second less per job."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from fmriflow import decoding, searchlight as sl\n"
        "rng = np.random.default_rng(0)\n"
        "mask = np.ones((4, 4, 3), bool)\n"
        "spheres = sl.make_spheres(mask, np.eye(4), 1.5)\n"
        "X = rng.standard_normal((40, 48)); y = np.tile(['a', 'b'], 20)\n"
        "runs = np.repeat(np.arange(4), 10)\n"
        "cv = decoding.make_cv('leave_one_run_out')\n"
        "for name in ('ridge', 'gnb', 'nearest_centroid'):\n"
        "    sl.searchlight_scores(X, y, runs, spheres, name, cv=cv, n_permutations=5)\n"
        "print('sklearn' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False"], result


def test_other_cv_schemes_split_by_run(subject):
    X, y, runs = contrast(subject, ["face", "house"])
    for scheme in ("kfold_runs", "repeated_stratified_runs"):
        cv = decoding.make_cv(scheme, n_splits=3, n_repeats=2, seed=1)
        splits = list(cv.split(X, y, runs))
        assert len(splits) == (3 if scheme == "kfold_runs" else 6)
        for train, test in splits:
            assert not set(runs[train]) & set(runs[test])
    with pytest.raises(InputError, match="inflates accuracy"):
        decoding.make_cv("kfold_volumes")
    assert decoding.make_cv("kfold_volumes", allow_leaky=True).get_n_splits() == 5


def noise_data(seed=0, n_runs=12, per_class=9, n_features=1000):
    rng = np.random.default_rng(seed)
    runs = np.repeat(np.arange(n_runs), 2 * per_class)
    y = np.tile(np.repeat(["a", "b"], per_class), n_runs)
    return rng.standard_normal((runs.size, n_features)), y, runs


def at_chance(accuracy, n_samples, chance=0.5):
    low, high = decoding.binomial_chance_interval(n_samples, chance)
    return low <= accuracy <= high


NOISE_SETUPS = [(name, None) for name in classifiers.names()] + [
    ("anova_svc", [0.01, 1.0]),
    ("logreg_l2", [0.01, 1.0]),
]


@pytest.mark.parametrize(("name", "grid"), NOISE_SETUPS)
def test_every_decoder_is_at_chance_on_noise(name, grid):
    X, y, runs = noise_data()
    pipeline = classifiers.make_classifier(name, selection_value=20)
    estimator = classifiers.with_search(pipeline, name, grid) if grid else pipeline
    folds, _ = decoding.cross_validate(
        X, y, runs, estimator, decoding.make_cv("leave_one_run_out"), bool(grid), n_jobs=2
    )
    assert at_chance(folds["accuracy"].mean(), len(y)), folds["accuracy"].mean()
    assert np.all(folds["chance"] == 0.5)


def test_the_noise_check_catches_selection_outside_the_cv():
    """Selecting voxels on all data before cross-validation leaks, and the check sees it."""
    X, y, runs = noise_data()
    leaky = SelectKBest(f_classif, k=20).fit(X, y).transform(X)
    pipeline = classifiers.make_classifier("svc")
    folds, _ = decoding.cross_validate(
        leaky, y, runs, pipeline, decoding.make_cv("leave_one_run_out")
    )
    assert not at_chance(folds["accuracy"].mean(), len(y))
    assert folds["accuracy"].mean() > 0.65


def test_informative_contrast_decodes_and_null_pair_does_not(subject):
    pipeline = classifiers.make_classifier("svc")
    cv = decoding.make_cv("leave_one_run_out")
    X, y, runs = contrast(subject, ["face", "house"])
    informative, _ = decoding.cross_validate(X, y, runs, pipeline, cv)
    X, y, runs = contrast(subject, ["bottle", "scissors"])
    null, _ = decoding.cross_validate(X, y, runs, pipeline, cv)
    assert informative["accuracy"].mean() > 0.75
    assert at_chance(null["accuracy"].mean(), len(y))


def test_largest_weights_fall_on_informative_voxels(subject):
    sim, _, brain, _ = subject
    X, y, _ = contrast(subject, ["face", "house"], voxels="brain")
    maps, names = classifiers.display_weights(classifiers.make_classifier("svc"), X, y, "svc")
    assert maps.shape == (1, X.shape[1]) and names == ["house (positive) vs face (negative)"]
    informative = simulate.informative_voxels(sim.truth, "face", "house")[brain]
    ranking = np.argsort(np.abs(maps[0]))[::-1]
    # The voxels with the largest weights are mostly informative, far above
    # the share of informative voxels in the brain.
    assert informative[ranking[: int(0.02 * ranking.size)]].mean() > 0.75
    precision = informative[ranking[: informative.sum()]].mean()
    assert precision > 5 * informative.mean()


def test_permutation_p_values(subject):
    pipeline = classifiers.make_classifier("svc")
    cv = decoding.make_cv("leave_one_run_out")
    X, y, runs = contrast(subject, ["face", "house"])
    _, null, p_informative = decoding.permutation_test(X, y, runs, pipeline, cv, 50, 0, n_jobs=2)
    X, y, runs = contrast(subject, ["bottle", "scissors"])
    _, _, p_null = decoding.permutation_test(X, y, runs, pipeline, cv, 50, 0, n_jobs=2)
    assert p_informative == pytest.approx(1 / 51)
    assert p_null > 0.05
    assert abs(np.mean(null) - 0.5) < 0.05


def test_volume_permutations_are_permutation_test_score(subject):
    X, y, runs = contrast(subject, ["face", "house"])
    pipeline, cv = classifiers.make_classifier("gnb"), LeaveOneGroupOut()
    score, null, p_value = decoding.permutation_test(X, y, runs, pipeline, cv, 30, 5, n_jobs=2)
    reference = permutation_test_score(
        GaussianNB(), X, y, groups=runs, cv=cv, n_permutations=30, random_state=5
    )
    assert score == reference[0] and p_value == reference[2]
    np.testing.assert_array_equal(null, reference[1])


def test_block_permutations_cross_validate_each_block_labelling(subject):
    """The null of block permutations: each labelling cross-validated from scratch."""
    sim = subject[0]
    rows, y, runs, _ = decoding.select_target(sim.events, ["face", "house"], "events.tsv")
    X = contrast(subject, ["face", "house"])[0]
    blocks = label_blocks(y, runs, rows)
    # 6 runs, one face and one house block each.
    assert len(np.unique(blocks)) == 12
    pipeline, cv = classifiers.make_classifier("gnb"), LeaveOneGroupOut()
    score, null, p_value = decoding.permutation_test(
        X, y, runs, pipeline, cv, 30, 2, blocks=blocks
    )
    labellings = permute_within_runs(y, runs, 30, seed=2, blocks=blocks)
    reference = [
        cross_val_score(GaussianNB(), X, labels, groups=runs, cv=cv).mean()
        for labels in labellings
    ]
    np.testing.assert_allclose(null, reference, rtol=0, atol=1e-12)
    # Swapping the labels of every run reproduces the true accuracy: with two
    # blocks per run, 2 of the 64 labellings are as good as the truth.
    swapped = np.all(labellings != y, axis=1)
    identical = np.all(labellings == y, axis=1)
    assert swapped.any() and identical.any()
    assert np.all(null[swapped | identical] == score)
    assert p_value == (1 + np.sum(null >= score)) / 31


def test_permutation_progress_is_logged(subject, caplog):
    X, y, runs = contrast(subject, ["face", "house"])
    pipeline, cv = classifiers.make_classifier("gnb"), LeaveOneGroupOut()
    with caplog.at_level("INFO", logger="fmriflow.decoding"):
        decoding.permutation_test(X, y, runs, pipeline, cv, 12, 0)
    lines = [r.getMessage() for r in caplog.records if "labellings" in r.getMessage()]
    assert lines[-1].startswith("permutation test: 13 of 13 labellings (100%) in ")
    assert "s left" in lines[-1]


def test_same_seed_same_permutation_result(subject):
    X, y, runs = contrast(subject, ["face", "cat"])
    pipeline, cv = classifiers.make_classifier("gnb"), LeaveOneGroupOut()
    first = decoding.permutation_test(X, y, runs, pipeline, cv, 20, 3)
    second = decoding.permutation_test(X, y, runs, pipeline, cv, 20, 3, n_jobs=2)
    assert first[0] == second[0] and first[2] == second[2]
    np.testing.assert_array_equal(first[1], second[1])


def test_multiclass_and_anova_weight_maps(subject):
    X, y, _ = contrast(subject, ["face", "house", "cat"])
    for name in ("svc", "logreg_l2", "gnb"):
        maps, names = classifiers.display_weights(classifiers.make_classifier(name), X, y, name)
        assert maps.shape == (3, X.shape[1]) and names == [
            "cat vs the other classes",
            "face vs the other classes",
            "house vs the other classes",
        ]
    pipeline = classifiers.make_classifier("anova_svc", selection_value=25)
    maps, _ = classifiers.display_weights(pipeline, X[:, :200], y, "anova_svc")
    assert all(np.count_nonzero(m) <= 25 for m in maps)
    selected = SelectKBest(f_classif, k=25).fit(X[:, :200], y == "cat").get_support()
    assert not maps[0][~selected].any()


def test_gnb_map_is_the_standardized_mean_difference(subject):
    X, y, _ = contrast(subject, ["face", "house"])
    maps, _ = classifiers.display_weights(classifiers.make_classifier("gnb"), X, y, "gnb")
    model = GaussianNB().fit(X, y)
    expected = (X[y == "house"].mean(0) - X[y == "face"].mean(0)) / np.sqrt(model.var_.mean(0))
    np.testing.assert_allclose(maps[0], expected, rtol=1e-10)


def events_table(labels, runs):
    return pd.DataFrame({"label": labels, "run": runs})


def test_select_target_checks_labels_and_runs():
    events = events_table(["rest", "a", "b", "a", "b", "rest", "a", "a"], [0, 0, 0, 1, 1, 1, 2, 2])
    rows, y, runs, dropped = decoding.select_target(
        events, ["a", "b"], "e.tsv", drop_incomplete_runs=True
    )
    assert rows.tolist() == [1, 2, 3, 4] and dropped == [2] and runs.tolist() == [0, 0, 1, 1]
    with pytest.raises(InputError, match=r"run 2 has only \['a'\] among the classes"):
        decoding.select_target(events, ["a", "b"], "e.tsv")
    with pytest.raises(InputError, match=r"label\(s\) \['c'\] not found"):
        decoding.select_target(events, ["a", "c"], "e.tsv")
    _, y, _, _ = decoding.select_target(events.iloc[:5], "all", "e.tsv")
    assert sorted(set(y)) == ["a", "b"]


def test_group_test_matches_scipy():
    accuracies, chances = [0.7, 0.8, 0.65, 0.9, 0.75, 0.6], [0.5, 0.5, 0.52, 0.5, 0.5, 0.48]
    result = decoding.group_test(accuracies, chances)
    reference = stats.ttest_1samp(np.subtract(accuracies, chances), 0, alternative="greater")
    assert result["t"] == pytest.approx(reference.statistic)
    assert result["p_value"] == pytest.approx(reference.pvalue)
    assert result["wilcoxon_p_value"] == pytest.approx(
        stats.wilcoxon(np.subtract(accuracies, chances), alternative="greater").pvalue
    )


def test_chance_is_the_majority_class_rate():
    assert decoding.chance_accuracy(["a", "a", "b"], ["a", "b", "b", "b"]) == 0.25


@pytest.mark.parametrize("name", ["linear_svc_l1", "logreg_l1"])
def test_parallel_folds_of_liblinear_give_the_serial_result(subject, name):
    # Folds fitted two at a time must not depend on scheduling: liblinear's
    # process-wide random generator raced between threads before.
    X, y, runs = contrast(subject, ["face", "cat", "house"])
    pipeline = classifiers.make_classifier(name)
    cv = decoding.make_cv("leave_one_run_out")
    serial, _ = decoding.cross_validate(X, y, runs, pipeline, cv, n_jobs=1)
    for _ in range(4):
        parallel, _ = decoding.cross_validate(X, y, runs, pipeline, cv, n_jobs=2)
        np.testing.assert_array_equal(parallel["accuracy"], serial["accuracy"])


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("n_features", [7, 300])
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_precomputed_gram_fits_the_linear_svc_bit_for_bit(n_classes, n_features, class_weight):
    """libsvm on linear_kernel_gram reaches the linear kernel's solution exactly."""
    rng = np.random.default_rng(n_classes * 1000 + n_features)
    for _ in range(5):
        n_samples = int(rng.integers(30, 90))
        X = rng.standard_normal((n_samples, n_features)).astype(np.float32)
        y = np.resize(np.arange(n_classes), n_samples)[rng.permutation(n_samples)]
        X[:, :3] += 0.7 * y[:, None]
        train, test = np.arange(n_samples) >= n_samples // 4, np.arange(n_samples) < n_samples // 4
        linear = SVC(kernel="linear", class_weight=class_weight)
        kernel_svc = classifiers.precomputed_kernel_equivalent(linear)
        assert kernel_svc.kernel == "precomputed" and kernel_svc.class_weight == class_weight
        gram = classifiers.linear_kernel_gram(X)
        linear.fit(X[train], y[train])
        kernel_svc.fit(gram[train][:, train], y[train])
        for attribute in ("support_", "dual_coef_", "intercept_", "n_support_"):
            np.testing.assert_array_equal(
                getattr(kernel_svc, attribute), getattr(linear, attribute)
            )
        np.testing.assert_array_equal(
            kernel_svc.decision_function(gram[test][:, train]), linear.decision_function(X[test])
        )
        np.testing.assert_array_equal(
            kernel_svc.predict(gram[test][:, train]), linear.predict(X[test])
        )


def test_only_a_linear_kernel_svc_has_a_precomputed_equivalent():
    assert classifiers.precomputed_kernel_equivalent(SVC(kernel="rbf")) is None
    assert classifiers.precomputed_kernel_equivalent(LinearSVC()) is None
    pipeline = classifiers.make_classifier("anova_svc")
    assert classifiers.precomputed_kernel_equivalent(pipeline) is None
    bare = classifiers.bare_estimator(classifiers.make_classifier("svc", balance=True))
    equivalent = classifiers.precomputed_kernel_equivalent(bare)
    assert equivalent.get_params() == {**bare.get_params(), "kernel": "precomputed"}


@pytest.mark.parametrize("labels", [["face", "house"], ["face", "house", "cat", "shoe"]])
def test_svc_permutations_are_permutation_test_score(subject, labels):
    """The SVC's permutation test on its Gram matrix: scikit-learn's result exactly."""
    X, y, runs = contrast(subject, labels)
    pipeline, cv = classifiers.make_classifier("svc"), LeaveOneGroupOut()
    score, null, p_value = decoding.permutation_test(X, y, runs, pipeline, cv, 20, 5, n_jobs=2)
    reference = permutation_test_score(
        SVC(kernel="linear"), X, y, groups=runs, cv=cv, n_permutations=20, random_state=5
    )
    assert score == reference[0] and p_value == reference[2]
    np.testing.assert_array_equal(null, reference[1])
    folds, _ = decoding.cross_validate(X, y, runs, pipeline, cv)
    assert score == folds["accuracy"].mean()


def test_a_permutation_test_beyond_the_gram_limit_keeps_the_linear_kernel(subject, monkeypatch):
    """Above GRAM_MAX_SAMPLES no Gram matrix is built, and the result is the same."""
    X, y, runs = contrast(subject, ["face", "house"])
    pipeline, cv = classifiers.make_classifier("svc"), LeaveOneGroupOut()
    with_gram = decoding.permutation_test(X, y, runs, pipeline, cv, 5, 1)
    built = []
    monkeypatch.setattr(classifiers, "GRAM_MAX_SAMPLES", len(X) - 1)
    monkeypatch.setattr(classifiers, "linear_kernel_gram", lambda X: built.append(X))
    without = decoding.permutation_test(X, y, runs, pipeline, cv, 5, 1)
    assert built == []
    assert with_gram[0] == without[0] and with_gram[2] == without[2]
    np.testing.assert_array_equal(with_gram[1], without[1])
