"""The classifier registry: the one list every part of the workflow reads."""

import numpy as np
import pytest
from sklearn.base import clone

from fmriflow import classifiers
from fmriflow.errors import InputError
from fmriflow.schema import load_schema


def test_the_schema_offers_exactly_the_registry():
    defs = load_schema()["$defs"]
    assert sorted(defs["classifier"]["enum"]) == classifiers.names()
    searchlight = defs["searchlight"]
    assert sorted(searchlight["properties"]["classifier"]["enum"]) == classifiers.names(
        searchlight=True
    )
    # Permutation maps only where the classifier's engine computes them.
    with_permutations = searchlight["if"]["properties"]["classifier"]["not"]["enum"]
    assert sorted(with_permutations) == classifiers.names(searchlight=True, permutation_maps=True)


def test_every_engine_is_known():
    for entry in classifiers.REGISTRY.values():
        assert entry.searchlight in (*classifiers.SEARCHLIGHT_ENGINES, None), entry.name
        assert not entry.permutation_maps or entry.searchlight is not None


@pytest.mark.parametrize("name", classifiers.names())
def test_each_entry_builds_searches_and_reads_weights(name, rng):
    X = rng.standard_normal((40, 12))
    for n_classes in (2, 3):
        y = np.array(list("abc"[:n_classes]) * 40)[:40]
        pipeline = classifiers.make_classifier(name, n_classes=n_classes, selection_value=6)
        # The searched parameter is a parameter of the pipeline, and the search fits.
        search = classifiers.with_search(pipeline, name, [0.5, 1.0])
        assert search.path in clone(pipeline).get_params()
        search.fit(X, y, groups=np.repeat([0, 1, 2, 3], 10))
        assert search.best_params_[search.path] in (0.5, 1.0)
        maps, titles = classifiers.display_weights(pipeline, X, y, name)
        assert maps.shape == (1 if n_classes == 2 else n_classes, X.shape[1])
        assert len(titles) == len(maps) and np.isfinite(maps).all()


def test_unknown_name_lists_the_registry():
    with pytest.raises(InputError, match="Choose one of"):
        classifiers.make_classifier("random_forest")


def test_liblinear_entries_are_not_fitted_in_threads():
    # liblinear shares one random generator per process: its entries, bare or
    # wrapped in a search, must be recognised; the others may use threads.
    liblinear = {"linear_svc", "linear_svc_l1", "logreg_l1"}
    for name in classifiers.names():
        pipeline = classifiers.make_classifier(name)
        expected = name not in liblinear
        assert classifiers.thread_safe(pipeline) is expected, name
        assert classifiers.thread_safe(classifiers.with_search(pipeline, name, [1.0])) is expected


def test_weight_maps_say_what_their_colour_bar_measures():
    assert classifiers.weight_units("gnb") == "difference of class means / pooled SD"
    assert "centroids" in classifiers.weight_units("nearest_centroid")
    assert classifiers.weight_units("svc") == "classifier weight (arbitrary units)"


@pytest.mark.parametrize("name", classifiers.names())
def test_bare_estimator_predicts_what_the_pipeline_predicts(name):
    """A one-step pipeline is replaced by its step; longer pipelines are kept whole."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 8))
    y = np.repeat(["a", "b", "c"], 20)
    X[y == "a", 0] += 1.5
    pipeline = classifiers.make_classifier(name, seed=0, n_classes=3, n_features=8)
    bare = classifiers.bare_estimator(pipeline)
    if len(pipeline.steps) == 1:
        assert bare is pipeline.steps[0][1]
    else:
        assert bare is pipeline
    expected = clone(pipeline).fit(X[:45], y[:45]).predict(X[45:])
    np.testing.assert_array_equal(clone(bare).fit(X[:45], y[:45]).predict(X[45:]), expected)


@pytest.mark.parametrize("name", classifiers.names())
def test_repeated_fits_change_no_prediction(name):
    """scikit-learn's checks skipped inside the block: the same fit, the same predictions."""
    import sklearn

    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 8))
    y = np.repeat(["a", "b", "c"], 20)
    X[y == "b", 1] += 1.0
    model = classifiers.make_classifier(name, seed=0, n_classes=3, n_features=8)
    expected = clone(model).fit(X[:45], y[:45]).predict(X[45:])
    with classifiers.repeated_fits(X):
        assert sklearn.get_config()["skip_parameter_validation"]
        assert sklearn.get_config()["assume_finite"]
        found = clone(model).fit(X[:45], y[:45]).predict(X[45:])
    np.testing.assert_array_equal(found, expected)
    assert not sklearn.get_config()["assume_finite"]


def test_repeated_fits_refuse_data_scikit_learn_would_no_longer_check():
    X = np.ones((10, 3))
    X[4, 2] = np.nan
    with pytest.raises(InputError, match=r"decoding features: holds 1 NaN or infinite"):
        with classifiers.repeated_fits(np.ones(3), X, what="decoding features"):
            pass


@pytest.mark.parametrize("balance", [False, True])
@pytest.mark.parametrize("name", classifiers.names(searchlight=True))
def test_engine_settings_are_the_built_estimators(name, balance):
    """The closed-form and naive Bayes engines read the entry's settings without building it."""
    if classifiers.get(name).searchlight == "sklearn":
        pytest.skip("fitted by scikit-learn itself")
    clf = classifiers.make_classifier(name, balance=balance, n_classes=3).named_steps["clf"]
    settings = classifiers.engine_settings(name, balance=balance, n_classes=3)
    # Nearest centroid's engine takes no setting (its ``priors`` is sklearn's own default).
    for key in ("alpha", "shrinkage", "var_smoothing", "priors"):
        if hasattr(clf, key) and name != "nearest_centroid":
            np.testing.assert_equal(settings[key], getattr(clf, key))
