"""Prediction from connectomes: parity with scikit-learn pipelines built on nilearn's
ConnectivityMeasure, the permutation test, chance and ground truth, no leakage."""

import logging

import numpy as np
import pytest
from nilearn.connectome import ConnectivityMeasure
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import (
    RepeatedStratifiedKFold,
    cross_val_score,
    permutation_test_score,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from fmriflow import classifiers, connectivity, decoding, simulate
from fmriflow import connectome_prediction as prediction
from fmriflow.errors import InputError

MEASURES = ("correlation", "partial_correlation", "tangent")
#: nilearn's name of each measure.
NILEARN_KIND = {
    "correlation": "correlation",
    "partial_correlation": "partial correlation",
    "tangent": "tangent",
}

pytestmark = pytest.mark.filterwarnings(
    "ignore:The default strategy for standardize:FutureWarning"
)


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """As in the workflow's nodes: many small fits, one BLAS thread each."""
    with threadpool_limits(limits=1):
        yield


def cohort(seed, n_subjects=24, n_regions=5, n_volumes=80, coupling=0.0):
    """Region signals of a balanced cohort. Each subject has a connectome of its own (a
    random mixing of independent time courses); in the "patient" group, regions 0 and 1
    are coupled on top of it by ``coupling`` (the simulator's ``couple_time_courses``)."""
    rng = np.random.default_rng(seed)
    y = np.array(["control", "patient"] * (n_subjects // 2))
    signals = []
    for label in y:
        mixing = np.eye(n_regions) + 0.2 * rng.standard_normal((n_regions, n_regions))
        courses = rng.standard_normal((n_volumes, n_regions)) @ mixing
        courses /= courses.std(axis=0)
        if label == "patient":
            courses = simulate.couple_time_courses(courses, [(0, 1)], coupling)
        signals.append(courses * rng.uniform(0.5, 2.0, n_regions))
    return np.array(signals), y


def inputs(signals, measure):
    """The matrix each measure is predicted from, per subject."""
    source = prediction.MEASURE_INPUT[measure]
    return np.array([connectivity.subject_matrices(s)[source] for s in signals])


@pytest.fixture(scope="module")
def weak():
    """A weak group difference: fold accuracies spread between chance and 1."""
    return cohort(1, coupling=0.3)


def reference_estimator_and_data(signals, measure, name, seed):
    """The same prediction built another way: for the tangent space, nilearn's
    ConnectivityMeasure as the pipeline's first step (fitted on each fold's training
    subjects' signals by scikit-learn); for the other measures, nilearn's vectors."""
    n_regions = signals.shape[2]
    n_features = prediction.n_edges(measure, n_regions)
    model = classifiers.make_classifier(name, seed=seed, n_features=n_features)
    if measure == "tangent":
        return make_pipeline(ConnectivityMeasure(kind="tangent", vectorize=True), model), signals
    vectors = ConnectivityMeasure(
        kind=NILEARN_KIND[measure], vectorize=True, discard_diagonal=True
    ).fit_transform(signals)
    assert vectors.shape[1] == n_features
    return model, vectors


@pytest.mark.parametrize("name", ["logreg_l2", "svc", "anova_svc", "ridge", "gnb"])
@pytest.mark.parametrize("measure", MEASURES)
def test_fold_accuracies_equal_cross_val_score_of_a_nilearn_pipeline(weak, measure, name):
    signals, y = weak
    result = prediction.predict_from_connectomes(
        inputs(signals, measure),
        y,
        measure,
        name,
        n_splits=4,
        n_repeats=2,
        n_permutations=0,
        seed=3,
    )
    estimator, X = reference_estimator_and_data(signals, measure, name, seed=3)
    cv = RepeatedStratifiedKFold(n_splits=4, n_repeats=2, random_state=3)
    expected = cross_val_score(estimator, X, y, cv=cv, scoring="accuracy")
    np.testing.assert_array_equal(result["accuracies"], expected)
    assert result["accuracy"] == expected.mean() and result["std"] == expected.std()
    assert result["n_splits"] == 4 and result["n_repeats"] == 2
    assert result["p_value"] is None and len(result["null"]) == 0
    assert len(set(expected)) > 1  # a comparison where the folds differ


@pytest.mark.parametrize("measure", ["correlation", "tangent"])
def test_permutation_test_equals_scikit_learn_permutation_test_score(weak, measure):
    """Labels shuffled as permutation_test_score shuffles them, folds drawn again for
    the shuffled labels, everything refitted: the same null and p-value."""
    signals, y = weak
    result = prediction.predict_from_connectomes(
        inputs(signals, measure), y, measure, n_splits=3, n_repeats=2, n_permutations=9, seed=5
    )
    estimator, X = reference_estimator_and_data(signals, measure, "logreg_l2", seed=5)
    cv = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=5)
    score, null, p_value = permutation_test_score(
        estimator, X, y, cv=cv, n_permutations=9, random_state=5, scoring="accuracy"
    )
    assert result["accuracy"] == pytest.approx(score, abs=1e-12)
    np.testing.assert_allclose(result["null"], null, atol=1e-12)
    assert result["p_value"] == pytest.approx(p_value)
    # The definition, recomputed: (1 + #{null >= observed}) / (1 + n).
    recomputed = (1 + np.sum(result["null"] >= result["accuracy"])) / 10
    assert result["p_value"] == pytest.approx(recomputed)
    assert prediction.permutation_p_value(0.7, np.array([0.5, 0.7, 0.9, 0.6])) == 3 / 5


def test_a_classifier_that_ignores_the_data_gets_a_p_value_of_one(weak, monkeypatch):
    """A majority-class dummy carries no information, so no permutation test may find
    any. Shuffled labels on the true labels' folds (stratified for the true labels, not
    for the shuffled ones) unbalance every training set against its test set: the dummy
    then predicts the test set's minority and the null falls below chance, giving
    p = 1 / (n + 1). With folds drawn again for the shuffled labels, every null accuracy
    equals the observed one and p = 1."""
    signals, y = weak

    def dummy(*args, **kwargs):
        return Pipeline([("clf", DummyClassifier(strategy="most_frequent"))])

    monkeypatch.setattr(classifiers, "make_classifier", dummy)
    for measure in ("correlation", "tangent"):
        result = prediction.predict_from_connectomes(
            inputs(signals, measure), y, measure, n_splits=4, n_repeats=2, n_permutations=19
        )
        assert result["accuracy"] == 0.5
        np.testing.assert_array_equal(result["null"], 0.5)
        assert result["p_value"] == 1.0


@pytest.mark.parametrize("measure", MEASURES)
def test_noise_is_at_chance_and_a_planted_difference_is_found(measure):
    n_subjects, n_permutations = 30, 39
    settings = dict(n_splits=5, n_repeats=2, n_permutations=n_permutations, seed=0)
    low, high = decoding.binomial_chance_interval(n_subjects, 0.5)
    noise_signals, y = cohort(2, n_subjects=n_subjects)
    noise = prediction.predict_from_connectomes(
        inputs(noise_signals, measure), y, measure, **settings
    )
    assert noise["chance"] == 0.5
    assert low <= noise["accuracy"] <= high, noise["accuracy"]
    assert noise["p_value"] > 0.05, noise
    planted_signals, y = cohort(2, n_subjects=n_subjects, coupling=0.7)
    planted = prediction.predict_from_connectomes(
        inputs(planted_signals, measure), y, measure, **settings
    )
    assert planted["accuracy"] >= 0.8 and planted["accuracy"] > high, planted["accuracy"]
    assert planted["p_value"] == 1 / (n_permutations + 1)
    assert planted["null"].max() < planted["accuracy"]


def test_chance_is_the_majority_class_and_folds_are_capped_by_the_smallest(caplog):
    signals, _ = cohort(3, n_subjects=14)
    y = np.array(["a"] * 11 + ["b"] * 3)
    with caplog.at_level(logging.WARNING, logger="fmriflow"):
        result = prediction.predict_from_connectomes(
            inputs(signals, "tangent"), y, "tangent", n_splits=5, n_repeats=1, n_permutations=0
        )
    assert result["chance_majority"] == 11 / 14
    assert result["n_splits"] == 3 and len(result["accuracies"]) == 3
    # Chance per fold: the training set's majority ('a') guessed for the test set,
    # recomputed from scikit-learn's folds.
    cv = RepeatedStratifiedKFold(n_splits=3, n_repeats=1, random_state=0)
    expected = [np.mean(y[test] == "a") for _, test in cv.split(np.zeros(14), y)]
    np.testing.assert_allclose(result["folds"]["chance"], expected)
    assert result["chance"] == pytest.approx(np.mean(expected))
    assert list(result["folds"]["n_test"]) == [len(t) for _, t in cv.split(np.zeros(14), y)]
    assert "the smallest class has 3 subjects: 3 folds instead of 5" in caplog.text


def test_bad_targets_and_inputs_are_refused():
    signals, y = cohort(4, n_subjects=10)
    matrices = inputs(signals, "correlation")
    lonely = np.array(["a"] * 9 + ["b"])
    with pytest.raises(InputError, match=r"class\(es\) \['b'\] have fewer than 2 subjects"):
        prediction.predict_from_connectomes(matrices, lonely, "correlation")
    with pytest.raises(InputError, match="has a single class"):
        prediction.predict_from_connectomes(matrices, ["a"] * 10, "correlation")
    with pytest.raises(InputError, match="9 labels for 10 subjects"):
        prediction.predict_from_connectomes(matrices, y[:9], "correlation")
    with pytest.raises(InputError, match="unknown measure 'precision'"):
        prediction.predict_from_connectomes(matrices, y, "precision")
    with pytest.raises(InputError, match="have shape"):
        prediction.predict_from_connectomes(matrices[:, :, :3], y, "correlation")


# --- no leakage ------------------------------------------------------------------------------


class RecordingTangentSpace(prediction.TangentSpace):
    """The tangent space, recording which subjects each fitted copy saw, and which
    fitted copy and subject every feature vector it produced comes from."""

    subject_of_row = {}
    log = []
    origin = {}

    def _subjects(self, X):
        return [self.subject_of_row[np.asarray(row).tobytes()] for row in X]

    def fit(self, X, y=None):
        self.record_ = {"fit": frozenset(self._subjects(X))}
        RecordingTangentSpace.log.append(self.record_)
        return super().fit(X, y)

    def transform(self, X):
        features = super().transform(X)
        for subject, row in zip(self._subjects(X), features, strict=True):
            RecordingTangentSpace.origin[row.tobytes()] = (self.record_, subject)
        return features


class RecordingStep(TransformerMixin, BaseEstimator):
    """A pass-through first step of the classifier pipeline, recording what it sees."""

    log = []

    def fit(self, X, y=None):
        RecordingStep.log.append(("fit", np.array(X)))
        return self

    def transform(self, X):
        RecordingStep.log.append(("transform", np.array(X)))
        return X


@pytest.fixture
def recorded(monkeypatch):
    """Instrument the group-level fits: the tangent space and the classifier pipeline."""
    signals, y = cohort(6, n_subjects=20, coupling=0.3)
    covariances = inputs(signals, "tangent")
    flat = covariances.reshape(len(y), -1)
    RecordingTangentSpace.subject_of_row = {row.tobytes(): k for k, row in enumerate(flat)}
    RecordingTangentSpace.log = []
    RecordingTangentSpace.origin = {}
    RecordingStep.log = []
    monkeypatch.setattr(
        prediction, "connectome_transformer", lambda measure, n: RecordingTangentSpace(n)
    )
    build = classifiers.make_classifier

    def recording_classifier(*args, **kwargs):
        pipeline = build(*args, **kwargs)
        return Pipeline([("record", RecordingStep()), *pipeline.steps])

    monkeypatch.setattr(classifiers, "make_classifier", recording_classifier)
    return covariances, flat, y


def classifier_folds():
    """What the classifier pipeline saw in each fold: fit(train) then transform(train)
    (inside fit_transform), then transform(test) (inside predict)."""
    log = RecordingStep.log
    assert [kind for kind, _ in log] == ["fit", "transform", "transform"] * (len(log) // 3)
    return [(log[k][1], log[k + 2][1]) for k in range(0, len(log), 3)]


def leaks(splits):
    """The folds whose classifier saw features that are not its own subjects', or
    features (training or test) computed with a tangent reference fitted on anything but
    the fold's training subjects."""
    problems = []
    folds = classifier_folds()
    assert len(folds) == len(splits)
    for k, ((train, test), (fitted, predicted)) in enumerate(zip(splits, folds, strict=True)):
        found = set()
        for subjects, features in ((train, fitted), (test, predicted)):
            origins = [RecordingTangentSpace.origin[row.tobytes()] for row in features]
            if [subject for _, subject in origins] != subjects.tolist():
                found.add("classifier saw other subjects")
            for record, _ in origins:
                if record["fit"] & set(test.tolist()):
                    found.add("reference saw test subjects")
                elif record["fit"] != set(train.tolist()):
                    found.add("reference fitted on other subjects")
        problems += [(k, problem) for problem in sorted(found)]
    return problems


def all_splits(y, n_splits, n_repeats, seed, n_permutations):
    """The folds of the true labels, then of each permutation (as permutation_test_score)."""
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    random_state = check_random_state(seed)
    labels = [y] + [y[random_state.permutation(len(y))] for _ in range(n_permutations)]
    return [split for yy in labels for split in cv.split(np.zeros(len(y)), yy)]


def test_group_level_fits_see_only_the_training_subjects_of_their_fold(recorded):
    """The tangent reference and the classifier pipeline (ANOVA selection, SVC) of every
    fold, permutations included, only ever see the fold's training subjects."""
    covariances, flat, y = recorded
    prediction.predict_from_connectomes(
        covariances, y, "tangent", "anova_svc", n_splits=4, n_repeats=2, n_permutations=3, seed=2
    )
    splits = all_splits(y, 4, 2, 2, 3)
    # One tangent fit per training set the folds draw (a permutation's fold that draws
    # a training set again reuses its features), each on exactly those subjects.
    drawn = list(dict.fromkeys((tr.tobytes(), te.tobytes()) for tr, te in splits))
    assert len(drawn) > 4
    assert [r["fit"] for r in RecordingTangentSpace.log] == [
        frozenset(np.frombuffer(tr, dtype=splits[0][0].dtype).tolist()) for tr, _ in drawn
    ]
    assert leaks(splits) == []
    # And the classifier's features are those of a tangent space fitted on the fold.
    for (train, test), (fitted, predicted) in zip(splits[:8], classifier_folds(), strict=False):
        space = prediction.TangentSpace(covariances.shape[1]).fit(flat[train])
        np.testing.assert_allclose(fitted, space.transform(flat[train]), atol=1e-12)
        np.testing.assert_allclose(predicted, space.transform(flat[test]), atol=1e-12)


def test_features_kept_for_training_sets_drawn_again_change_nothing(monkeypatch):
    """Permutations draw some training sets again; their kept features give the same
    accuracies, null and p-value as features recomputed for every fold."""
    signals, y = cohort(5, n_subjects=12, coupling=0.3)
    covariances = inputs(signals, "tangent")
    arguments = dict(n_splits=3, n_repeats=2, n_permutations=30, seed=1)
    kept = prediction.predict_from_connectomes(covariances, y, "tangent", **arguments)
    fits = []
    original = prediction.TangentSpace.fit

    def counted_fit(self, X, y=None):
        fits.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(prediction.TangentSpace, "fit", counted_fit)
    cache_class = prediction.FoldFeatureCache
    monkeypatch.setattr(prediction, "FoldFeatureCache", lambda: cache_class(max_bytes=0))
    recomputed = prediction.predict_from_connectomes(covariances, y, "tangent", **arguments)
    assert len(fits) == 31 * 6  # every fold of the true labels and of each permutation
    np.testing.assert_array_equal(kept["accuracies"], recomputed["accuracies"])
    np.testing.assert_array_equal(kept["null"], recomputed["null"])
    assert kept["p_value"] == recomputed["p_value"]


def test_the_feature_cache_keeps_no_more_than_its_budget():
    matrices = np.stack([np.eye(3) * (k + 1) for k in range(6)]).reshape(6, -1)
    space = prediction.EdgeVectors(3)
    splits = [
        (np.array([0, 1, 2, 3]), np.array([4, 5])),
        (np.array([2, 3, 4, 5]), np.array([0, 1])),
    ]
    one_fold = 6 * 3 * 8  # 6 subjects x 3 edges, float64
    cache = prediction.FoldFeatureCache(max_bytes=one_fold)
    for train, test in splits * 2:
        X_train, X_test = cache.features(matrices, space, train, test)
        np.testing.assert_array_equal(X_train, space.fit_transform(matrices[train]))
        np.testing.assert_array_equal(X_test, space.transform(matrices[test]))
    assert cache.n_bytes == one_fold and len(cache) == 1


def test_a_tangent_space_fitted_on_all_subjects_is_caught(recorded):
    """The deliberate leak: the tangent reference fitted on every subject (test subjects
    included) before cross-validation. The same check flags every fold."""
    covariances, flat, y = recorded
    splits = all_splits(y, 4, 2, 2, 0)
    space = RecordingTangentSpace(covariances.shape[1]).fit(flat)
    features = space.transform(flat)
    folds = [prediction.FoldFeatures(tr, te, features[tr], features[te]) for tr, te in splits]
    prediction.fold_accuracies(folds, y, classifiers.make_classifier("logreg_l2"))
    assert leaks(splits) == [(k, "reference saw test subjects") for k in range(len(splits))]
