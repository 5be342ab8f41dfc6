"""Stimulus reconstruction: patches, parity with scikit-learn, ground truth, no leakage."""

import inspect
import re

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import lsq_linear
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from fmriflow import reconstruction
from fmriflow.errors import InputError

SHAPE = (10, 10)
N_VOXELS = 150
TRAIN_RUNS, PER_RUN = 5, 40
GAIN = 1.5

#: Each Table 1 registry entry built directly with scikit-learn, as a reference.
REFERENCES = {
    "logreg_l1": lambda C: LogisticRegression(
        l1_ratio=1.0, solver="liblinear", C=C, random_state=0
    ),
    "logreg_l2": lambda C: LogisticRegression(C=C, max_iter=5000),
    "linear_svc_l1": lambda C: LinearSVC(
        penalty="l1", dual=False, C=C, random_state=0, max_iter=10000
    ),
    "linear_svc": lambda C: LinearSVC(C=C, random_state=0, max_iter=10000),
}


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """As in the workflow's nodes: thousands of small fits, one BLAS thread each."""
    with threadpool_limits(limits=1):
        yield


def random_images(n, rng, density=0.5):
    return (rng.random((n, *SHAPE)) < density).astype(int)


def receptive_fields(rng, n_voxels=N_VOXELS, width=1.0):
    """One Gaussian receptive field per voxel, centred anywhere on the grid."""
    centres = rng.uniform(-0.5, SHAPE[0] - 0.5, (n_voxels, 2))
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    distance = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    return np.exp(-distance / (2 * width**2)).reshape(n_voxels, -1)


def voxel_responses(images, fields, rng, gain=1.0, noise=1.0):
    """Linear responses to the pixels' contrast (around the mean grey), plus noise."""
    contrast = images.reshape(len(images), -1) - 0.5
    return gain * contrast @ fields.T + noise * rng.standard_normal((len(images), len(fields)))


def figures():
    """Square outlines and thick crosses at several places."""
    shapes = []
    for size, top, left in [(4, 0, 0), (5, 2, 3), (6, 4, 4), (4, 5, 1), (6, 0, 4), (5, 3, 0)]:
        image = np.zeros(SHAPE, dtype=int)
        image[top : top + size, left : left + size] = 1
        image[top + 1 : top + size - 1, left + 1 : left + size - 1] = 0
        shapes.append(image)
    for centre_row, centre_col, arm in [(4, 4, 4), (3, 6, 3), (6, 3, 3), (5, 5, 4)]:
        image = np.zeros(SHAPE, dtype=int)
        image[centre_row : centre_row + 2, max(centre_col - arm, 0) : centre_col + arm + 2] = 1
        image[max(centre_row - arm, 0) : centre_row + arm + 2, centre_col : centre_col + 2] = 1
        shapes.append(image)
    return np.array(shapes)


def training_set(rng, fields=None, n_runs=TRAIN_RUNS, per_run=PER_RUN, n_voxels=N_VOXELS):
    """Random half-on patterns in runs; voxels respond to them (or are pure noise)."""
    images = random_images(n_runs * per_run, rng)
    runs = np.repeat(np.arange(n_runs), per_run)
    if fields is None:
        X = rng.standard_normal((len(images), n_voxels))
    else:
        X = voxel_responses(images, fields, rng, gain=GAIN)
    return X, images, runs


# --- patches ---------------------------------------------------------------


def test_patch_counts_and_order():
    layout = reconstruction.patch_layout(SHAPE)
    counts = layout.groupby("scale", sort=False).size()
    assert counts.to_dict() == {"1x1": 100, "1x2": 90, "2x1": 90, "2x2": 81}
    assert list(counts.index) == ["1x1", "1x2", "2x1", "2x2"]
    assert reconstruction.scale_names(layout) == ("1x1", "1x2", "2x1", "2x2")
    pixels = layout[layout["scale"] == "1x1"]
    # The 1x1 patches are the pixels in row-major order.
    np.testing.assert_array_equal(pixels["row"] * SHAPE[1] + pixels["col"], np.arange(100))
    # Every patch lies inside the image, once.
    assert not layout.duplicated().any()
    assert (
        (layout["row"] + layout["height"] <= 10) & (layout["col"] + layout["width"] <= 10)
    ).all()
    small = reconstruction.patch_layout((3, 4))
    assert small.groupby("scale", sort=False).size().tolist() == [12, 9, 8, 6]


@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_patch_targets_equal_a_direct_loop(rng, density):
    images = random_images(30, rng, density)
    layout = reconstruction.patch_layout(SHAPE)
    targets = reconstruction.patch_targets(images, layout)
    expected = np.zeros_like(targets)
    for sample, image in enumerate(images):
        for patch, (_, height, width, row, col) in enumerate(layout.itertuples(index=False)):
            mean = image[row : row + height, col : col + width].mean()
            expected[sample, patch] = 1 if mean > 0.5 else (0 if mean < 0.5 else -1)
    np.testing.assert_array_equal(targets, expected)
    # Half-on patches are undecided; the others on or off.
    assert targets.dtype.kind == "i" and set(np.unique(targets)) == {-1, 0, 1}


def test_pixel_estimates_average_the_covering_patches(rng):
    layout = reconstruction.patch_layout(SHAPE)
    predicted = rng.integers(0, 2, (7, len(layout)))
    estimates = reconstruction.pixel_estimates(predicted, layout, SHAPE)
    assert estimates.shape == (7, 4, 10, 10)
    for index, scale in enumerate(reconstruction.scale_names(layout)):
        for row in range(10):
            for col in range(10):
                covering = [
                    patch
                    for patch, p in enumerate(layout.itertuples(index=False))
                    if p.scale == scale
                    and p.row <= row < p.row + p.height
                    and p.col <= col < p.col + p.width
                ]
                np.testing.assert_allclose(
                    estimates[:, index, row, col], predicted[:, covering].mean(axis=1)
                )
    assert 0 <= estimates.min() and estimates.max() <= 1


# --- scale weights ------------------------------------------------------------


def test_scale_weights_recover_an_exact_combination(rng):
    images = random_images(40, rng)
    first = rng.random(images.shape)
    second = (images - 0.6 * first) / 0.4
    others = rng.random((2, *images.shape))
    estimates = np.stack([first, second, *others], axis=1)
    weights = reconstruction.fit_scale_weights(estimates, images)
    np.testing.assert_allclose(weights, [0.6, 0.4, 0.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(
        reconstruction.combine_scales(estimates, weights), images, atol=1e-9
    )


def test_scale_weights_are_the_bounded_least_squares_solution(rng):
    images = random_images(30, rng)
    estimates = np.clip(
        images[:, None] * rng.random((1, 4, 1, 1)) + rng.random((30, 4, 10, 10)), 0, 1
    )
    estimates[:, 3] = 1 - estimates[:, 3]  # anticorrelated: its weight is 0
    weights = reconstruction.fit_scale_weights(estimates, images)
    design = estimates.transpose(0, 2, 3, 1).reshape(-1, 4)
    reference = lsq_linear(design, images.ravel().astype(float), bounds=(0, np.inf), tol=1e-12)
    np.testing.assert_allclose(weights, reference.x, atol=1e-8)
    assert weights[3] == 0
    combined = reconstruction.combine_scales(estimates, weights)
    np.testing.assert_allclose(combined, sum(w * estimates[:, s] for s, w in enumerate(weights)))


# --- parity with scikit-learn -----------------------------------------------------


@pytest.fixture(scope="module")
def parity_data():
    """Smaller than the simulation (2 x 500 fits per case): 6 runs of 20, 60 voxels."""
    rng = np.random.default_rng(1)
    return training_set(rng, receptive_fields(rng, 60), n_runs=6, per_run=20)


#: One case per model of Table 1; ANOVA selection inside the folds in one.
PARITY_CASES = [
    ("logreg_l1", 0.5, None),
    ("logreg_l2", 0.01, None),
    ("linear_svc_l1", 0.05, None),
    ("linear_svc", 0.01, ("k", 30)),
]


@pytest.mark.parametrize(("name", "C", "selection"), PARITY_CASES)
def test_model_table_equals_cross_val_predict(parity_data, name, C, selection):
    X, images, runs = parity_data
    cv = GroupKFold(5)
    table = reconstruction.model_table(X, images, runs, [name], [C], cv, selection=selection)
    reference_model = REFERENCES[name](C)
    if selection is not None:
        reference_model = make_pipeline(SelectKBest(f_classif, k=selection[1]), reference_model)
    pixels = images.reshape(len(images), -1)
    predicted = np.column_stack(
        [cross_val_predict(reference_model, X, y, groups=runs, cv=GroupKFold(5)) for y in pixels.T]
    )
    expected = [np.mean(predicted[test] == pixels[test]) for _, test in cv.split(X, None, runs)]
    assert table["fold"].tolist() == list(range(5))
    assert set(table["classifier"]) == {name} and set(table["C"]) == {C}
    np.testing.assert_array_equal(table["accuracy"].to_numpy(), expected)
    summary = reconstruction.summarize_model_table(table)
    assert summary["accuracy_mean"].item() == pytest.approx(np.mean(expected))
    assert summary["accuracy_std"].item() == pytest.approx(np.std(expected))
    assert summary["chance"].item() == 0.5


def test_fit_predict_patches_equals_per_column_fits_and_records_constant_columns(parity_data):
    X, images, runs = parity_data
    train, test = runs != 0, runs == 0
    targets = images.reshape(len(images), -1)[:, :12].copy()
    targets[train, 3] = 1
    targets[train, 7] = 0
    model = reconstruction.make_pixel_model("linear_svc_l1", 0.05)
    predicted, constant = reconstruction.fit_predict_patches(
        X[train], targets[train], X[test], model
    )
    assert predicted.dtype.kind == "i" and predicted.shape == (test.sum(), 12)
    np.testing.assert_array_equal(np.flatnonzero(constant), [3, 7])
    for column in range(12):
        if column in (3, 7):
            expected = np.full(test.sum(), targets[train, column][0])
        else:
            reference = REFERENCES["linear_svc_l1"](0.05).fit(X[train], targets[train, column])
            expected = reference.predict(X[test])
        np.testing.assert_array_equal(predicted[:, column], expected)


def test_summary_rows_per_classifier_and_C(parity_data):
    X, images, runs = parity_data
    table = reconstruction.model_table(
        X[:, :20], images[:, :2, :3], runs, ["linear_svc", "logreg_l1"], [0.01, 1.0], GroupKFold(5)
    )
    assert len(table) == 2 * 2 * 5
    summary = reconstruction.summarize_model_table(table)
    assert summary[["classifier", "C"]].values.tolist() == [
        ["linear_svc", 0.01],
        ["linear_svc", 1.0],
        ["logreg_l1", 0.01],
        ["logreg_l1", 1.0],
    ]
    means = table.groupby(["classifier", "C"])["accuracy"].mean()
    for row in summary.itertuples():
        assert row.accuracy_mean == pytest.approx(means[(row.classifier, row.C)])


# --- ground truth -----------------------------------------------------------------


def fold_model():
    return reconstruction.make_pixel_model("linear_svc_l1", 0.05)


@pytest.fixture(scope="module")
def simulated():
    """Training on random patterns, test on figures (two repetitions each)."""
    rng = np.random.default_rng(0)
    fields = receptive_fields(rng)
    X_train, images_train, runs_train = training_set(rng, fields)
    images_test = np.concatenate([figures(), figures()])
    X_test = voxel_responses(images_test, fields, rng, gain=GAIN)
    result = reconstruction.reconstruct(
        X_train, images_train, runs_train, X_test, fold_model(), GroupKFold(5)
    )
    return result, images_train, images_test


def test_figures_are_reconstructed_from_a_linear_visual_cortex(simulated):
    result, images_train, images_test = simulated
    assert result.scales == ("1x1", "1x2", "2x1", "2x2")
    assert result.estimates.shape == (len(images_test), 4, 10, 10)
    assert result.combined.shape == result.binary.shape == images_test.shape
    np.testing.assert_array_equal(result.binary, result.combined >= 0.5)
    table, per_pixel = reconstruction.score_reconstruction(result, images_test)
    assert table["scale"].tolist() == ["1x1", "1x2", "2x1", "2x2", "combined"]
    assert per_pixel.shape == (5, 10, 10)
    np.testing.assert_allclose(table["accuracy"], per_pixel.mean(axis=(1, 2)))
    np.testing.assert_allclose(
        per_pixel[0], np.mean((result.estimates[:, 0] >= 0.5) == images_test, 0)
    )
    combined = table.set_index("scale")["accuracy"]["combined"]
    guess = reconstruction.constant_guess_accuracy(images_train, images_test)
    assert combined > 0.85, table
    assert combined > guess + 0.2, (combined, guess)
    assert np.all(result.weights >= 0) and result.weights.sum() > 0


def test_pure_noise_is_reconstructed_at_chance():
    """Noise voxels: every pixel at chance, on fair-coin test images.

    Each test image is a fair coin per pixel, independent of everything the
    reconstruction saw, so given the fitted decoders each pixel's number of
    correct test predictions is exactly binomial(n_test, 0.5), and the total
    over pixels binomial(100 n_test, 0.5). (On figures, a decoder biased to
    'off' would score above 0.5 on their background: that reference is
    constant_guess_accuracy.) Tolerance: the central interval of family-wise
    level 0.99, Bonferroni over 100 pixels x 5 maps (four scales and the
    combination); the pixel average, the 0.99 interval of its binomial.
    """
    rng = np.random.default_rng(2)
    X_train, images_train, runs_train = training_set(rng, per_run=20, n_voxels=40)
    n_test = 200
    images_test = random_images(n_test, rng)
    X_test = rng.standard_normal((n_test, X_train.shape[1]))
    result = reconstruction.reconstruct(
        X_train, images_train, runs_train, X_test, fold_model(), GroupKFold(5)
    )
    table, per_pixel = reconstruction.score_reconstruction(result, images_test)
    low, high = stats.binom.interval(1 - 0.01 / (100 * 5), n_test, 0.5)
    assert np.all(per_pixel >= low / n_test) and np.all(per_pixel <= high / n_test), (
        per_pixel.min(),
        per_pixel.max(),
        (low / n_test, high / n_test),
    )
    total = 100 * n_test
    low, high = stats.binom.interval(1 - 0.01 / 5, total, 0.5)
    assert table["accuracy"].between(low / total, high / total).all(), table


# --- no leakage ---------------------------------------------------------------------


class RecordingNearestMean(ClassifierMixin, BaseEstimator):
    """Nearest class mean on columns 1..; column 0 is a sample id, recorded at each fit."""

    fitted_ids = []

    def fit(self, X, y):
        type(self).fitted_ids.append(frozenset(X[:, 0].astype(int)))
        self.classes_ = np.unique(y)
        self.means_ = np.array([X[y == c, 1:].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        distances = ((X[:, None, 1:] - self.means_[None]) ** 2).sum(axis=2)
        return self.classes_[np.argmin(distances, axis=1)]


def test_reconstruct_never_sees_test_images_nor_fits_on_test_samples():
    parameters = list(inspect.signature(reconstruction.reconstruct).parameters)
    assert parameters == [
        "X_train",
        "images_train",
        "runs_train",
        "X_test",
        "model",
        "cv",
        "layout",
    ]
    rng = np.random.default_rng(3)
    fields = receptive_fields(rng, n_voxels=40)
    X_train, images_train, runs_train = training_set(rng, fields)
    images_test = figures()
    X_test = voxel_responses(images_test, fields, rng, gain=GAIN)
    n_train = len(X_train)
    ids_train = np.arange(n_train)[:, None]
    ids_test = n_train + np.arange(len(X_test))[:, None]
    X_train, X_test = np.hstack([ids_train, X_train]), np.hstack([ids_test, X_test])
    cv = GroupKFold(5)

    RecordingNearestMean.fitted_ids = []
    result = reconstruction.reconstruct(
        X_train, images_train, runs_train, X_test, RecordingNearestMean(), cv
    )
    fitted = RecordingNearestMean.fitted_ids
    allowed = {frozenset(train) for train, _ in cv.split(X_train, None, runs_train)}
    allowed.add(frozenset(range(n_train)))
    # Random half-on patterns: no patch is constant, so every patch is fitted 5 + 1 times,
    # each time on (the decided samples of) one training set.
    assert len(fitted) == 6 * len(result.layout)
    assert all(any(ids <= train for train in allowed) for ids in set(fitted))
    # The scale weights are those of the out-of-fold training estimates.
    targets = reconstruction.patch_targets(images_train, result.layout)
    out_of_fold = np.zeros_like(targets)
    for train, test in cv.split(X_train, None, runs_train):
        out_of_fold[test], _ = reconstruction.fit_predict_patches(
            X_train[train], targets[train], X_train[test], RecordingNearestMean()
        )
    expected = reconstruction.pixel_estimates(out_of_fold, result.layout, SHAPE)
    np.testing.assert_array_equal(result.cv_estimates, expected)
    np.testing.assert_array_equal(
        result.weights, reconstruction.fit_scale_weights(expected, images_train)
    )
    # Each test sample's reconstruction depends on its own voxels only.
    order = rng.permutation(len(X_test))
    again = reconstruction.reconstruct(
        X_train, images_train, runs_train, X_test[order], RecordingNearestMean(), cv
    )
    np.testing.assert_array_equal(again.combined, result.combined[order])


def test_anova_selection_is_a_step_of_the_pipeline(rng):
    model = reconstruction.make_pixel_model("logreg_l1", 0.1, selection=("k", 20), n_features=60)
    assert [name for name, _ in model.steps] == ["anova", "clf"]
    assert isinstance(model.named_steps["anova"], SelectKBest)
    assert model.get_params()["anova__k"] == 20
    assert model.get_params()["clf__estimator__C"] == 0.1
    X = rng.standard_normal((80, 60))
    first, second = rng.integers(0, 2, (2, 80))
    X[:, :5] += first[:, None]
    X[:, 30:35] += second[:, None]
    supports = []
    for y in (first, second):
        fitted = reconstruction.make_pixel_model(
            "logreg_l1", 0.1, selection=("k", 20), n_features=60
        ).fit(X[:60], y[:60])
        reference = SelectKBest(f_classif, k=20).fit(X[:60], y[:60]).get_support()
        np.testing.assert_array_equal(fitted.named_steps["anova"].get_support(), reference)
        supports.append(reference)
    assert not np.array_equal(*supports)
    # An entry with its own selection takes the one asked for, once.
    own = reconstruction.make_pixel_model("anova_svc", 2.0, selection=("percentile", 10))
    assert [name for name, _ in own.steps] == ["anova", "clf"]
    assert own.get_params()["anova__percentile"] == 10 and own.get_params()["clf__C"] == 2.0
    plain = reconstruction.make_pixel_model("linear_svc", 0.3)
    assert [name for name, _ in plain.steps] == ["clf"] and plain.get_params()["clf__C"] == 0.3


# --- bad input ------------------------------------------------------------------------


def test_constant_guess_is_the_training_majority(rng):
    images_train = np.zeros((5, *SHAPE), dtype=int)
    images_train[:3, :, :4] = 1  # columns 0-3 mostly on
    images_test = random_images(20, rng)
    expected = (
        np.mean(images_test[:, :, :4] == 1) * 0.4 + np.mean(images_test[:, :, 4:] == 0) * 0.6
    )
    assert reconstruction.constant_guess_accuracy(images_train, images_test) == pytest.approx(
        expected
    )


@pytest.mark.parametrize("bad", [2, 0.5, -1])
def test_images_that_are_not_binary_are_refused(rng, bad):
    images = random_images(4, rng).astype(float)
    images[1, 2, 3] = bad
    layout = reconstruction.patch_layout(SHAPE)
    with pytest.raises(InputError, match="other than 0 and 1"):
        reconstruction.patch_targets(images, layout)
    with pytest.raises(InputError, match="other than 0 and 1"):
        reconstruction.reconstruct(
            rng.standard_normal((4, 5)),
            images,
            np.arange(4),
            rng.standard_normal((2, 5)),
            fold_model(),
            GroupKFold(2),
        )


def test_sample_counts_must_agree(rng):
    X = rng.standard_normal((30, 8))
    images = random_images(25, rng)
    shapes = re.escape("(30, 8)") + ".*" + re.escape("(25, 10, 10)")
    with pytest.raises(InputError, match=shapes):
        reconstruction.reconstruct(
            X, images, np.arange(30) % 5, X[:3], fold_model(), GroupKFold(5)
        )
    with pytest.raises(InputError, match=shapes):
        reconstruction.model_table(
            X, images, np.arange(30) % 5, ["linear_svc"], [1.0], GroupKFold(5)
        )
    with pytest.raises(InputError, match="scale"):
        reconstruction.patch_layout(SHAPE, scales=[(1, 1), (11, 1)])
    with pytest.raises(InputError, match="not C"):
        reconstruction.make_pixel_model("ridge", 1.0)
    with pytest.raises(InputError, match="positive"):
        reconstruction.make_pixel_model("linear_svc", 0.0)


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored")
def test_cross_validation_must_split_by_run_and_partition_the_samples(rng):
    from sklearn.model_selection import KFold, LeaveOneGroupOut, ShuffleSplit

    X = rng.standard_normal((40, 6))
    images = random_images(40, rng)
    runs = np.repeat(np.arange(4), 10)
    with pytest.raises(InputError, match="in both the training and the test set"):
        reconstruction.reconstruct(X, images, runs, X[:2], fold_model(), KFold(4, shuffle=True))
    with pytest.raises(InputError, match="in both the training and the test set"):
        reconstruction.model_table(X, images, runs, ["linear_svc"], [1.0], KFold(4, shuffle=True))
    with pytest.raises(InputError, match="exactly one test fold"):
        reconstruction.reconstruct(
            X, images, np.arange(40), X[:2], fold_model(), ShuffleSplit(3, random_state=0)
        )
    # Leave-one-run-out is a partition by run: accepted.
    splits = reconstruction.run_splits(LeaveOneGroupOut(), X, runs, "test")
    assert len(splits) == 4
