"""Encoding models: parity with scikit-learn, the shifted-stimulus null, ground truth."""

import numpy as np
import pytest
from sklearn.linear_model import LassoLarsCV, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    LeaveOneGroupOut,
    cross_val_predict,
    cross_validate,
)

from fmriflow import encoding
from fmriflow.errors import InputError

ALPHAS = np.logspace(-2, 3, 6)


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """One BLAS thread, as the workflow's nodes run (and fast on a busy machine)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def regression_data(seed, n_samples, n_features, n_voxels, n_runs, signal=0.3):
    """Random stimuli, linear voxels plus white noise, runs of equal length."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    W = rng.standard_normal((n_features, n_voxels)) * signal / np.sqrt(n_features)
    Y = X @ W * np.linspace(0.0, 3.0, n_voxels) + rng.standard_normal((n_samples, n_voxels))
    groups = np.repeat(np.arange(n_runs), n_samples // n_runs)
    return X, Y + 5.0, groups


def grid_search(inner_cv, alphas=ALPHAS):
    return GridSearchCV(Ridge(), {"alpha": list(alphas)}, cv=inner_cv, scoring="r2")


# --- ridge against scikit-learn ----------------------------------------------------


@pytest.mark.parametrize(("n_train", "n_features"), [(80, 20), (40, 100)])
def test_ridge_predictions_equal_sklearn_ridge(n_train, n_features):
    rng = np.random.default_rng(n_features)
    X_train = rng.standard_normal((n_train, n_features)) + 2.0
    Y_train = rng.standard_normal((n_train, 7)) - 1.0
    X_test = rng.standard_normal((15, n_features))
    predictions = encoding.ridge_predictions(X_train, Y_train, X_test, ALPHAS)
    assert predictions.shape == (len(ALPHAS), 15, 7)
    for i, alpha in enumerate(ALPHAS):
        expected = Ridge(alpha=alpha).fit(X_train, Y_train).predict(X_test)
        np.testing.assert_allclose(predictions[i], expected, rtol=1e-8, atol=1e-12)


def test_ridge_coefficients_equal_sklearn_per_voxel_alpha():
    X, Y, _ = regression_data(1, 90, 25, 6, 3)
    alphas = ALPHAS[[0, 3, 3, 5, 1, 0]]
    coef, intercept = encoding.ridge_coefficients(X, Y, alphas)
    assert coef.shape == (25, 6) and intercept.shape == (6,)
    for v, alpha in enumerate(alphas):
        reference = Ridge(alpha=alpha).fit(X, Y[:, v])
        np.testing.assert_allclose(coef[:, v], reference.coef_, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(intercept[v], reference.intercept_, rtol=1e-10)


def test_r2_columns_equal_sklearn_including_constant_columns():
    rng = np.random.default_rng(2)
    y_true = rng.standard_normal((20, 4))
    y_pred = y_true + rng.standard_normal((20, 4))
    y_true[:, 2] = 3.0  # constant, imperfect prediction -> 0.0
    y_true[:, 3] = y_pred[:, 3] = 1.0  # constant, perfect prediction -> 1.0
    expected = r2_score(y_true, y_pred, multioutput="raw_values")
    np.testing.assert_array_equal(encoding.r2_columns(y_true, y_pred), expected)


# --- penalty selection against GridSearchCV -----------------------------------------


def test_select_alphas_equals_grid_search_per_voxel():
    X, Y, groups = regression_data(3, 120, 30, 15, 6)
    # A constant-zero voxel: every penalty predicts it perfectly, R^2 = 1 in
    # every fold for every penalty (scikit-learn's force_finite), so all tie.
    Y[:, 0] = 0.0
    # A repeated penalty ties exactly with itself on every voxel.
    alphas = np.array([0.01, 1.0, 10.0, 10.0, 100.0, 1e3])
    chosen = encoding.select_alphas(X, Y, groups, alphas, LeaveOneGroupOut())
    assert chosen.dtype.kind == "i" and chosen.shape == (15,)
    expected = []
    for v in range(Y.shape[1]):
        search = grid_search(LeaveOneGroupOut(), alphas).fit(X, Y[:, v], groups=groups)
        expected.append(search.best_index_)
        assert alphas[chosen[v]] == search.best_params_["alpha"]
    np.testing.assert_array_equal(chosen, expected)
    assert chosen[0] == 0
    assert 3 not in chosen  # the duplicate of alphas[2] never wins its tie
    assert len(set(chosen.tolist())) > 1  # the check means something


# --- cross-validated encoding against cross_val_predict -------------------------------


def test_cross_validated_encoding_equals_nested_sklearn():
    X, Y, groups = regression_data(4, 120, 30, 10, 6)
    inner = GroupKFold(3)
    result = encoding.cross_validated_encoding(X, Y, groups, ALPHAS, LeaveOneGroupOut(), inner)
    predictions = np.empty_like(Y)
    for v in range(Y.shape[1]):
        # The runs go to the outer split (groups=) and to GridSearchCV.fit (params=).
        reference = cross_validate(
            grid_search(inner),
            X,
            Y[:, v],
            groups=groups,
            cv=LeaveOneGroupOut(),
            params={"groups": groups},
            scoring="r2",
            return_estimator=True,
            return_indices=True,
        )
        tests = reference["indices"]["test"]
        for k, (search, test) in enumerate(zip(reference["estimator"], tests, strict=True)):
            np.testing.assert_array_equal(result.folds[k][1], test)
            assert result.alpha_index[k, v] == search.best_index_
            predictions[test, v] = search.predict(X[test])
        np.testing.assert_allclose(result.fold_r2[:, v], reference["test_score"], 1e-9, 1e-12)
    assert len(np.unique(result.alpha_index)) > 1  # the penalties differ between voxels
    np.testing.assert_allclose(result.predictions, predictions, rtol=1e-9)
    expected = r2_score(Y, predictions, multioutput="raw_values")
    np.testing.assert_allclose(result.r2, expected, rtol=1e-9, atol=1e-12)
    correlation = [np.corrcoef(Y[:, v], result.predictions[:, v])[0, 1] for v in range(10)]
    np.testing.assert_allclose(result.correlation, correlation, rtol=1e-10)
    np.testing.assert_array_equal(result.chosen_alphas, ALPHAS[result.alpha_index])


def test_cross_validated_encoding_with_one_alpha_equals_ridge_cross_val_predict():
    X, Y, groups = regression_data(5, 120, 40, 50, 6)
    result = encoding.cross_validated_encoding(
        X, Y, groups, [10.0], LeaveOneGroupOut(), LeaveOneGroupOut()
    )
    predicted = cross_val_predict(Ridge(alpha=10.0), X, Y, groups=groups, cv=LeaveOneGroupOut())
    expected = r2_score(Y, predicted, multioutput="raw_values")
    np.testing.assert_allclose(result.r2, expected, rtol=1e-12, atol=1e-14)
    assert np.all(result.alpha_index == 0)


def test_outer_folds_must_partition_the_volumes():
    X, Y, groups = regression_data(6, 60, 5, 2, 3)

    class TrainOnly:
        def split(self, X, y, groups):
            yield np.arange(40), np.arange(40, 50)

    with pytest.raises(InputError, match="partition"):
        encoding.cross_validated_encoding(X, Y, groups, ALPHAS, TrainOnly(), KFold(2))


@pytest.mark.parametrize("alphas", [[], [1.0, -1.0], [0.0], [np.nan]])
def test_bad_alphas_raise(alphas):
    X, Y, groups = regression_data(7, 60, 5, 2, 3)
    with pytest.raises(InputError, match="ridge penalties"):
        encoding.select_alphas(X, Y, groups, alphas, LeaveOneGroupOut())


def test_mismatched_volumes_raise():
    X, Y, groups = regression_data(8, 60, 5, 2, 3)
    with pytest.raises(InputError, match="volumes"):
        encoding.ridge_coefficients(X, Y[:-1], 1.0)


# --- shifted stimuli ---------------------------------------------------------------


def test_shifted_stimuli_rotate_each_run_within_bounds():
    runs = np.repeat([3, 1, 2, 0], [30, 25, 40, 21])
    groups = np.concatenate([runs[::2], runs[1::2]])  # runs' volumes not contiguous
    X = np.arange(len(groups) * 2, dtype=float).reshape(-1, 2)  # every row distinct
    min_shift = 5
    shifted = encoding.shifted_stimuli(X, groups, np.random.default_rng(0), min_shift)
    offsets = []
    for run in np.unique(groups):
        rows = np.flatnonzero(groups == run)
        matches = [
            k for k in range(rows.size) if np.array_equal(np.roll(X[rows], k, 0), shifted[rows])
        ]
        assert len(matches) == 1
        assert min_shift <= matches[0] <= rows.size - min_shift
        offsets.append(matches[0])
    assert len(set(offsets)) > 1  # independent offsets
    again = encoding.shifted_stimuli(X, groups, np.random.default_rng(0), min_shift)
    np.testing.assert_array_equal(shifted, again)


def test_shifted_stimuli_cover_the_whole_range():
    groups = np.zeros(7, dtype=int)
    X = np.arange(7.0)[:, None]
    rng = np.random.default_rng(1)
    first = {encoding.shifted_stimuli(X, groups, rng, 2)[0, 0] for _ in range(200)}
    # Row 0 after a shift k holds original row (-k mod 7): k in [2, 5] -> rows 5, 4, 3, 2.
    assert first == {2.0, 3.0, 4.0, 5.0}


def test_shifted_stimuli_refuse_too_short_runs():
    groups = np.repeat(["run-01", "run-02"], [30, 10])
    X = np.zeros((40, 3))
    with pytest.raises(InputError, match="run-02"):
        encoding.shifted_stimuli(X, groups, 0, 5)
    encoding.shifted_stimuli(X, groups, 0, 4)  # 10 volumes allow shifts of 4 to 6


def test_permutation_pvalues_by_counting():
    rng = np.random.default_rng(2)
    null = rng.standard_normal((50, 8))
    observed = np.array([-3.0, 0.0, 0.5, 1.0, 2.0, 3.0, null[0, 6], 10.0])
    pvalues, threshold = encoding.permutation_pvalues(observed, null)
    for v in range(8):
        count = sum(null[i, v] >= observed[v] for i in range(50))
        assert pvalues[v] == (1 + count) / 51
    maxima = sorted(max(row) for row in null)
    assert maxima[46] <= threshold <= maxima[47]  # the 95th percentile of 50 maxima


# --- receptive fields: bank, lasso -------------------------------------------------


def test_prf_bank_pixel_order_and_parameters():
    weights, parameters = encoding.gaussian_prf_bank((4, 6), step=0.5, sizes=(1.0, 2.0))
    assert weights.shape == (24, 7 * 11 * 2)
    assert list(parameters.columns) == ["row", "col", "size"]
    assert parameters["row"].max() == 3.0 and parameters["col"].max() == 5.0
    for candidate in (0, 37, 150):
        row, col, size = parameters.iloc[candidate]
        for j in range(24):
            r, c = j // 6, j % 6
            expected = np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * size**2))
            assert weights[j, candidate] == pytest.approx(expected, rel=1e-12)


def test_lasso_receptive_field_equals_lasso_lars_cv():
    X, Y, groups = regression_data(9, 120, 30, 3, 6)
    y = Y[:, 2]
    splits = list(GroupKFold(5).split(X, y, groups))
    expected = LassoLarsCV(cv=splits).fit(X, y).coef_
    np.testing.assert_array_equal(encoding.lasso_receptive_field(X, y, groups, 5), expected)


# --- ground truth: planted Gaussian receptive fields ------------------------------------

SHAPE = (10, 10)
N_RUNS, RUN_VOLUMES, BLOCK = 8, 80, 4  # 20 random images per run, each held 4 volumes
NOISE_SD, AR, GAIN = 1.0, 0.5, 2.0
N_RF, N_NOISE = 12, 100
N_PERMUTATIONS, MIN_SHIFT = 49, 8
#: Half the diagonal of a 0.5-pixel cell of candidate centres.
GRID_ERROR = np.hypot(0.25, 0.25)


def gaussian_weights(row, col, size):
    pixel_row, pixel_col = np.divmod(np.arange(SHAPE[0] * SHAPE[1]), SHAPE[1])
    return np.exp(-((pixel_row - row) ** 2 + (pixel_col - col) ** 2) / (2 * size**2))


def ar_noise(rng, n_voxels):
    """AR(1) noise per run with marginal standard deviation NOISE_SD."""
    innovations = rng.standard_normal((N_RUNS, RUN_VOLUMES, n_voxels))
    innovations *= NOISE_SD * np.sqrt(1 - AR**2)
    noise = np.empty_like(innovations)
    noise[:, 0] = innovations[:, 0] / np.sqrt(1 - AR**2)
    for t in range(1, RUN_VOLUMES):
        noise[:, t] = AR * noise[:, t - 1] + innovations[:, t]
    return noise.reshape(N_RUNS * RUN_VOLUMES, n_voxels)


@pytest.fixture(scope="module")
def planted():
    """Binary 10x10 images in blocks; N_RF Gaussian receptive-field voxels, N_NOISE of noise."""
    rng = np.random.default_rng(11)
    images = (rng.random((N_RUNS * RUN_VOLUMES // BLOCK, SHAPE[0] * SHAPE[1])) < 0.5) * 1.0
    X = np.repeat(images, BLOCK, axis=0)
    groups = np.repeat(np.arange(N_RUNS), RUN_VOLUMES)
    rows, cols = rng.uniform(2.0, 7.0, (2, N_RF))
    sizes = rng.choice([0.75, 1.0, 1.5], N_RF)
    weights = np.column_stack([gaussian_weights(*p) for p in zip(rows, cols, sizes, strict=True)])
    signal = GAIN * (X - 0.5) @ weights
    Y = np.hstack([signal, np.zeros((len(X), N_NOISE))]) + ar_noise(rng, N_RF + N_NOISE)
    return X, Y, groups, rows, cols, sizes


def centre_standard_error(row, col, size, n_samples):
    """Cramér-Rao bound of the centre coordinates of one planted voxel.

    For ``y = GAIN * X w(row, col) + noise`` with independent Bernoulli(1/2)
    pixels, the Fisher information of ``row`` is ``n * var(pixel) * GAIN^2 *
    sum_j (dw_j/drow)^2 / NOISE_SD^2``, with ``dw_j/drow = w_j (r_j - row) /
    size^2`` (likewise for ``col``). Least squares under AR(1) noise with a
    regressor held BLOCK volumes has its variance inflated by ``1 + 2
    sum_k rho_x(k) AR^k`` with ``rho_x(k) = (BLOCK - k) / BLOCK``.
    """
    pixel_row, pixel_col = np.divmod(np.arange(SHAPE[0] * SHAPE[1]), SHAPE[1])
    w = gaussian_weights(row, col, size)
    lags = np.arange(1, BLOCK)
    inflation = 1 + 2 * np.sum((BLOCK - lags) / BLOCK * AR**lags)
    errors = []
    for offset in (pixel_row - row, pixel_col - col):
        information = n_samples * 0.25 * GAIN**2 * np.sum((w * offset / size**2) ** 2)
        errors.append(np.sqrt(inflation * NOISE_SD**2 / information))
    return np.hypot(*errors)


def test_fit_prf_recovers_on_grid_fields_exactly_without_noise():
    rng = np.random.default_rng(12)
    X = (rng.random((300, 100)) < 0.5) * 1.0
    truth = [(2.0, 7.5, 0.75), (5.5, 5.0, 1.5), (8.0, 1.5, 1.0), (4.5, 3.5, 3.0), (0.0, 9.0, 2.0)]
    Y = np.column_stack([X @ gaussian_weights(*p) for p in truth] + [np.ones(300)])
    fitted = encoding.fit_prf(X, Y, SHAPE, block=2)
    np.testing.assert_array_equal(fitted[["row", "col", "size"]].to_numpy()[:5], truth)
    np.testing.assert_allclose(fitted["correlation"][:5], 1.0, rtol=1e-12)
    assert fitted.iloc[5][["row", "col", "size"]].isna().all()  # constant voxel: no fit
    assert fitted["correlation"][5] == 0.0


def test_fit_prf_recovers_planted_centres(planted):
    X, Y, groups, rows, cols, sizes = planted
    fitted = encoding.fit_prf(X, Y[:, :N_RF], SHAPE, block=5)
    distance = np.hypot(fitted["row"] - rows, fitted["col"] - cols)
    # Tolerance: the grid's discretisation plus 5 standard errors (Cramér-Rao) of the centre.
    tolerance = GRID_ERROR + 5 * np.array(
        [centre_standard_error(*p, len(X)) for p in zip(rows, cols, sizes, strict=True)]
    )
    assert np.all(tolerance < 0.8)  # the bound is informative at this signal-to-noise
    assert np.all(distance <= tolerance), (distance, tolerance)
    assert np.all(fitted["correlation"] > 0.5)


def test_noise_voxels_at_chance_under_the_shifted_null(planted):
    X, Y, groups, *_ = planted
    alphas, outer, inner = np.logspace(-1, 4, 6), GroupKFold(4), GroupKFold(3)
    observed = encoding.cross_validated_encoding(X, Y, groups, alphas, outer, inner)
    null = encoding.null_scores(
        X, Y, groups, alphas, outer, inner, N_PERMUTATIONS, seed=0, min_shift=MIN_SHIFT
    )
    assert null.shape == (N_PERMUTATIONS, N_RF + N_NOISE)
    pvalues, threshold = encoding.permutation_pvalues(observed.r2, null)
    # Receptive-field voxels: above every shifted null, and family-wise significant.
    assert np.all(pvalues[:N_RF] == 1 / (N_PERMUTATIONS + 1))
    assert np.all(observed.r2[:N_RF] > threshold)
    # Noise voxels: p-values not concentrated near 0 (under the null about 5% are
    # below 0.05; fewer than 3x that), nor near 1.
    noise = pvalues[N_RF:]
    assert np.sum(noise < 0.05) < 3 * 0.05 * N_NOISE
    assert 0.3 < np.median(noise) < 0.7
    # The same seed gives the same null.
    again = encoding.null_scores(
        X, Y[:, :3], groups, alphas, outer, inner, 2, seed=0, min_shift=MIN_SHIFT
    )
    np.testing.assert_allclose(again, null[:2, :3], rtol=1e-10, atol=1e-12)


def test_the_null_of_moved_signals_is_the_null_of_shifted_stimuli(planted):
    """null_scores moves the signals and reuses each fold's SVD: the same R^2 as
    cross-validating the shifted stimuli themselves, shift by shift."""
    X, Y, groups, *_ = planted
    alphas, outer, inner = np.logspace(-1, 4, 6), GroupKFold(4), GroupKFold(3)
    null = encoding.null_scores(X, Y, groups, alphas, outer, inner, 6, seed=3, min_shift=MIN_SHIFT)
    rng = np.random.default_rng(3)
    for row in null:
        shifted = encoding.shifted_stimuli(X, groups, rng, MIN_SHIFT)
        reference = encoding.cross_validated_encoding(shifted, Y, groups, alphas, outer, inner)
        np.testing.assert_allclose(row, reference.r2, rtol=1e-9, atol=1e-12)


def test_a_cached_svd_changes_no_result(planted):
    X, Y, groups, *_ = planted
    alphas, outer, inner = np.logspace(-1, 4, 6), GroupKFold(4), GroupKFold(3)
    plain = encoding.cross_validated_encoding(X, Y, groups, alphas, outer, inner)
    cache, sizes = {}, []
    for _ in range(2):
        cached = encoding.cross_validated_encoding(X, Y, groups, alphas, outer, inner, cache)
        np.testing.assert_array_equal(cached.predictions, plain.predictions)
        np.testing.assert_array_equal(cached.alpha_index, plain.alpha_index)
        sizes.append(len(cache))
    # At most one SVD per distinct training set (4 outer, 3 inner in each), none
    # added by the second pass.
    assert 4 < sizes[0] <= 4 * 3 + 4 and sizes[1] == sizes[0]
