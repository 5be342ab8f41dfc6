"""Group inference on searchlight maps: against brute force, planted effects, null cohorts."""

import math
import tracemalloc

import numpy as np
import pytest
from nibabel.affines import apply_affine
from scipy import ndimage, optimize, stats

from fmriflow.errors import InputError
from fmriflow.searchlight import group

RANK = {6: 1, 18: 2, 26: 3}


def irregular_mask(shape, seed):
    """A mask with holes, so that voxel order and grid positions differ."""
    mask = np.random.default_rng(seed).random(shape) < 0.8
    mask[0, 0, 0] = True
    return mask


def random_maps(rng, n_subjects, n_permutations, n_voxels):
    accuracy = 0.5 + 0.1 * rng.standard_normal((n_subjects, n_voxels))
    null = 0.5 + 0.1 * rng.standard_normal((n_subjects, n_permutations, n_voxels))
    return accuracy, null


def all_draws(accuracy, null, n_draws, seed):
    """Every draw's maps held at once, shape (n_draws, n_subjects, n_voxels).

    Draw ``d`` gives subject ``s`` its map ``m`` (0: the observed map, else
    permutation ``m - 1``), ``m`` from a numpy Generator's integers.
    """
    n_subjects, n_permutations, _ = null.shape
    indices = np.random.default_rng(seed).integers(
        0, n_permutations + 1, size=(n_draws, n_subjects)
    )
    pooled = np.concatenate([accuracy[:, None], null], axis=1)
    return pooled[np.arange(n_subjects)[None, :], indices]


def subject_mean(maps):
    """Mean over axis 1 (subjects), added in subject order."""
    total = maps[:, 0].astype(np.float64)
    for s in range(1, maps.shape[1]):
        total = total + maps[:, s]
    return total / maps.shape[1]


def largest_cluster(volume, connectivity):
    structure = ndimage.generate_binary_structure(3, RANK[connectivity])
    labels, n = ndimage.label(volume, structure=structure)
    return 0 if n == 0 else int(np.bincount(labels.ravel())[1:].max())


def volume_of(values, mask):
    out = np.zeros(mask.shape, dtype=np.asarray(values).dtype)
    out[mask] = values
    return out


def smooth_cohort(rng, n_subjects, n_permutations, shape):
    """Observed and permutation maps all drawn from one smooth null process."""
    noise = rng.standard_normal((n_subjects * (n_permutations + 1), *shape))
    noise = ndimage.gaussian_filter(noise, sigma=(0, 1, 1, 1), mode="wrap")
    maps = 0.5 + 0.05 * noise.reshape(n_subjects, n_permutations + 1, -1)
    return maps[:, 0], maps[:, 1:]


# --- draws ------------------------------------------------------------------


def test_draws_are_the_same_whatever_the_batch():
    n_draws = group.DRAW_BLOCK + 917  # more than one block of indices
    rng = np.random.default_rng(3)
    reference = np.concatenate(
        [rng.integers(0, 9, size=(group.DRAW_BLOCK, 5)), rng.integers(0, 9, size=(917, 5))]
    )
    for batch in (1, 7, 100, group.DRAW_BLOCK, group.DRAW_BLOCK + 1, 10**6):
        chunks = list(group.draw_indices(5, 9, n_draws, seed=3, batch=batch))
        assert all(len(chunk) == batch for chunk in chunks[:-1])
        np.testing.assert_array_equal(np.concatenate(chunks), reference)


# --- cluster inference (Stelzer et al.) ------------------------------------


@pytest.mark.parametrize("voxel_p", [0.001, 0.01, 0.05, 0.57])
def test_voxel_thresholds_are_order_statistics_of_all_draws(voxel_p):
    rng = np.random.default_rng(0)
    mask = irregular_mask((5, 4, 6), 0)
    accuracy, null = random_maps(rng, 3, 6, int(mask.sum()))
    n_draws = 300
    draws = subject_mean(all_draws(accuracy, null, n_draws, seed=5))
    k = round(voxel_p * n_draws * 1e6) // 10**6  # floor of the decimal product
    expected = np.sort(draws, axis=0)[n_draws - 1 - k]
    if voxel_p != 0.57:  # np.quantile's 1 - 0.57 rounds to a different rank
        quantile = np.quantile(draws, 1 - voxel_p, axis=0, method="inverted_cdf")
        np.testing.assert_array_equal(expected, quantile)
    results = [
        group.cluster_test(accuracy, null, mask, n_draws, voxel_p, seed=5, batch=batch)
        for batch in (7, 50, 300, 1000, None)
    ]
    for result in results:
        np.testing.assert_array_equal(result.voxel_thresholds, expected)
        np.testing.assert_array_equal(result.max_cluster_null, results[0].max_cluster_null)
    # Supra-threshold: strictly above; exceeded by at most voxel_p * n_draws draws.
    assert np.all(np.sum(draws > expected, axis=0) <= voxel_p * n_draws + 1e-9)
    in_cluster = results[0].cluster_labels > 0
    np.testing.assert_array_equal(in_cluster, results[0].mean_accuracy > expected)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_clusters_and_null_sizes_equal_brute_force(connectivity):
    rng = np.random.default_rng(connectivity)
    mask = irregular_mask((7, 6, 5), 1)
    accuracy, null = random_maps(rng, 3, 5, int(mask.sum()))
    accuracy[:, 40:60] += 0.15  # some larger observed clusters
    n_draws, voxel_p = 200, 0.1
    result = group.cluster_test(
        accuracy, null, mask, n_draws, voxel_p, connectivity=connectivity, seed=2, batch=33
    )
    draws = subject_mean(all_draws(accuracy, null, n_draws, seed=2))
    above = draws > result.voxel_thresholds
    expected = [largest_cluster(volume_of(a, mask), connectivity) for a in above]
    np.testing.assert_array_equal(result.max_cluster_null, expected)
    assert len(set(expected)) > 3  # the comparison is not trivial

    mean = accuracy.mean(axis=0)
    np.testing.assert_allclose(result.mean_accuracy, mean, rtol=0, atol=1e-15)
    structure = ndimage.generate_binary_structure(3, RANK[connectivity])
    labels, n = ndimage.label(volume_of(mean > result.voxel_thresholds, mask), structure)
    labels = labels[mask]
    assert n > 1 and len(result.clusters) == n
    table = result.clusters
    assert list(table.columns) == group.CLUSTER_COLUMNS
    np.testing.assert_array_equal(table["cluster"], np.arange(1, n + 1))
    assert np.all(np.diff(table["size_voxels"]) <= 0)
    ijk = np.argwhere(mask)
    for row in table.itertuples():
        members = result.cluster_labels == row.cluster
        # The same voxels as one of scipy's clusters.
        assert len(np.unique(labels[members])) == 1 and labels[members][0] > 0
        assert np.count_nonzero(labels == labels[members][0]) == row.size_voxels
        peak = np.flatnonzero(members)[np.argmax(mean[members])]
        assert (row.i, row.j, row.k) == tuple(ijk[peak])
        assert row.peak_accuracy == pytest.approx(mean[peak], abs=1e-15)
        p = (1 + np.sum(np.asarray(expected) >= row.size_voxels)) / (1 + n_draws)
        assert row.fwe_p == p
        np.testing.assert_array_equal(result.fwe_p[members], p)
    np.testing.assert_array_equal(result.fwe_p[result.cluster_labels == 0], 1.0)


def test_draws_from_permutation_maps_only():
    rng = np.random.default_rng(4)
    mask = irregular_mask((4, 4, 4), 2)
    accuracy, null = random_maps(rng, 3, 4, int(mask.sum()))
    result = group.cluster_test(
        accuracy, null, mask, 100, 0.05, seed=9, batch=30, include_observed=False
    )
    indices = np.random.default_rng(9).integers(0, 4, size=(100, 3))
    draws = subject_mean(null[np.arange(3)[None, :], indices])
    expected = np.sort(draws, axis=0)[100 - 1 - 5]
    np.testing.assert_array_equal(result.voxel_thresholds, expected)


def test_peaks_in_millimetres():
    rng = np.random.default_rng(5)
    mask = irregular_mask((6, 6, 6), 3)
    accuracy, null = random_maps(rng, 4, 5, int(mask.sum()))
    result = group.cluster_test(accuracy, null, mask, 100, 0.1, seed=0)
    affine = np.array([[-3.0, 0, 0, 90], [0, 3.5, 0.2, -126], [0, 0, 4, -72], [0, 0, 0, 1]])
    assert len(result.clusters) > 1
    expected = apply_affine(affine, result.clusters[["i", "j", "k"]].to_numpy())
    np.testing.assert_allclose(group.peaks_mm(result.clusters, affine), expected)


def planted_cohort(seed, n_subjects=12, n_permutations=20, n_test=100):
    """Accuracies as the mean of n_test Bernoulli predictions: p 0.75 in a 3x3x3 cube, else 0.5."""
    rng = np.random.default_rng(seed)
    shape = (12, 12, 12)
    mask = np.ones(shape, dtype=bool)
    region = np.zeros(shape, dtype=bool)
    region[4:7, 5:8, 3:6] = True
    p = np.where(region[mask], 0.75, 0.5)
    accuracy = rng.binomial(n_test, p, size=(n_subjects, p.size)) / n_test
    null = rng.binomial(n_test, 0.5, size=(n_subjects, n_permutations, p.size)) / n_test
    return accuracy, null.astype(np.float32), mask, region[mask]


def test_planted_region_is_found():
    accuracy, null, mask, region = planted_cohort(0)
    clusters = group.cluster_test(accuracy, null, mask, n_draws=5000, seed=1)
    significant = clusters.clusters[clusters.clusters["fwe_p"] <= 0.05]
    assert len(significant) == 1
    members = clusters.cluster_labels == significant["cluster"].iloc[0]
    assert np.all(members[region]) and np.count_nonzero(members & ~region) <= 3
    assert significant["fwe_p"].iloc[0] == 1 / 5001

    prevalence = group.prevalence_test(accuracy, null, n_draws=5000, seed=1)
    assert np.all(prevalence.gamma_corrected[region] > 0.5)
    np.testing.assert_array_equal(prevalence.gamma_corrected[~region], 0.0)
    np.testing.assert_array_equal(prevalence.reject_corrected, region)
    assert np.all(prevalence.t_p[region] < 1e-6)


# --- prevalence inference (Allefeld et al.) ---------------------------------


def gamma_by_root_finding(p, n_subjects, alpha):
    """Largest gamma0 with ((1 - gamma0) p**(1/S) + gamma0)**S <= alpha, by brentq."""
    if p >= alpha:
        return 0.0

    def excess(gamma0):
        return ((1 - gamma0) * p ** (1 / n_subjects) + gamma0) ** n_subjects - alpha

    return optimize.brentq(excess, 0.0, 1.0, xtol=1e-14)


def test_closed_form_bound_solves_the_prevalence_equation():
    for n_subjects in (2, 5, 12, 40):
        for alpha in (0.01, 0.05):
            ps = np.array([1e-6, 1e-4, 1e-3, 0.01, 0.0499, 0.05, 0.2, 1.0])
            gamma = group.prevalence_bound(ps, n_subjects, alpha)
            expected = [gamma_by_root_finding(p, n_subjects, alpha) for p in ps]
            np.testing.assert_allclose(gamma, expected, atol=1e-10)
            rejected = ps <= alpha
            np.testing.assert_allclose(
                group.prevalence_p(gamma[rejected], ps[rejected], n_subjects), alpha
            )


@pytest.mark.parametrize("batch", [1, 64, None])
def test_prevalence_equals_brute_force(batch):
    rng = np.random.default_rng(7)
    n_subjects, n_draws, alpha = 4, 500, 0.05
    accuracy, null = random_maps(rng, n_subjects, 5, 30)
    accuracy[:, :6] += 0.3  # some voxels below alpha
    chance = np.linspace(0.45, 0.55, 30)
    result = group.prevalence_test(accuracy, null, chance, alpha, n_draws, seed=3, batch=batch)

    minimum = all_draws(accuracy, null, n_draws, seed=3).min(axis=1)
    observed = accuracy.min(axis=0)
    p_u = (1 + np.sum(minimum >= observed, axis=0)) / (1 + n_draws)
    p_c = (1 + np.sum(minimum.max(axis=1)[:, None] >= observed, axis=0)) / (1 + n_draws)
    np.testing.assert_array_equal(result.min_accuracy, observed)
    np.testing.assert_array_equal(result.max_min_null, minimum.max(axis=1))
    np.testing.assert_array_equal(result.p_uncorrected, p_u)
    np.testing.assert_array_equal(result.p_corrected, p_c)
    assert 0 < np.sum(p_c <= alpha) < 30  # some rejected, not all
    for ours, p in ((result.gamma_uncorrected, p_u), (result.gamma_corrected, p_c)):
        expected = [gamma_by_root_finding(v, n_subjects, alpha) for v in p]
        np.testing.assert_allclose(ours, expected, atol=1e-10)
    np.testing.assert_array_equal(result.reject_corrected, p_c <= alpha)
    np.testing.assert_array_equal(result.reject_uncorrected, p_u <= alpha)
    assert result.gamma_max == pytest.approx(
        gamma_by_root_finding(1 / (1 + n_draws), n_subjects, alpha), abs=1e-10
    )
    for v in range(30):
        t = stats.ttest_1samp(accuracy[:, v], chance[v], alternative="greater")
        assert result.t[v] == pytest.approx(t.statistic, rel=1e-12)
        assert result.t_p[v] == pytest.approx(t.pvalue, rel=1e-12)


def test_roi_is_one_voxel_without_spatial_correction():
    rng = np.random.default_rng(8)
    accuracy, null = random_maps(rng, 6, 10, 3)
    accuracy[:, 1] += 0.25
    roi = group.prevalence_test(accuracy[:, 1], null[:, :, 1], n_draws=400, seed=2)
    voxel = group.prevalence_test(accuracy, null, n_draws=400, seed=2)
    np.testing.assert_array_equal(roi.p_uncorrected, voxel.p_uncorrected[1:2])
    np.testing.assert_array_equal(roi.p_corrected, roi.p_uncorrected)
    assert roi.p_uncorrected.shape == (1,) and roi.reject_corrected[0]


def test_equal_accuracies_in_float32_and_float64_tie():
    accuracy = np.array([[0.7, 0.65, 0.9], [0.55, 0.8, 0.75]])
    null = np.repeat(accuracy[:, None, :], 4, axis=1).astype(np.float32)
    result = group.prevalence_test(accuracy, null, n_draws=50, include_observed=False)
    np.testing.assert_array_equal(result.p_uncorrected, 1.0)  # every draw ties


# --- error rates under the null hypothesis ----------------------------------


def test_family_wise_error_rates_on_null_cohorts():
    n_cohorts, alpha = 200, 0.05
    cluster_hits = prevalence_hits = 0
    for c in range(n_cohorts):
        accuracy, null = smooth_cohort(np.random.default_rng(1000 + c), 5, 10, (8, 8, 8))
        mask = np.ones((8, 8, 8), dtype=bool)
        clusters = group.cluster_test(accuracy, null, mask, n_draws=400, voxel_p=0.05, seed=c)
        cluster_hits += bool(np.any(clusters.clusters["fwe_p"] <= alpha))
        prevalence = group.prevalence_test(accuracy, null, alpha=alpha, n_draws=400, seed=c)
        prevalence_hits += bool(prevalence.reject_corrected.any())
    # Both tests are exact here (observed maps among the draws' maps), but for
    # ties and the cluster threshold computed without the observed map.
    high = stats.binom.ppf(0.999, n_cohorts, alpha)
    low = stats.binom.ppf(0.001, n_cohorts, alpha)
    assert low > 0
    assert low <= cluster_hits <= high
    assert low <= prevalence_hits <= high


# --- memory -----------------------------------------------------------------


def peak_bytes(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_draws():
    rng = np.random.default_rng(11)
    mask = np.ones((10, 10, 10), dtype=bool)
    n_voxels = int(mask.sum())
    accuracy, null = random_maps(rng, 8, 5, n_voxels)
    null = null.astype(np.float32)
    voxel_p, batch = 0.001, 50
    group.cluster_test(accuracy, null, mask, 10, voxel_p, batch=batch)  # imports, caches
    small, large = 5000, 20000
    runs = {
        "cluster": lambda n: group.cluster_test(accuracy, null, mask, n, voxel_p, batch=batch),
        "prevalence": lambda n: group.prevalence_test(accuracy, null, n_draws=n, batch=batch),
    }
    for name, run in runs.items():
        peaks = [peak_bytes(lambda n=n, run=run: run(n)) for n in (small, large)]
        # What may grow: one number per draw (returned, and a sorted copy), and
        # for clusters the floor(voxel_p * n_draws) + 1 values kept per voxel.
        kept = math.floor(voxel_p * large) - math.floor(voxel_p * small)
        kept = kept if name == "cluster" else 0
        allowed = 3 * 8 * (large - small) + 3 * 8 * n_voxels * kept + 0.05 * peaks[0]
        assert peaks[1] - peaks[0] <= allowed, (name, peaks)
        # Holding the draws' maps would take n_draws * n_voxels * 8 bytes.
        assert peaks[1] < 0.05 * large * n_voxels * 8, (name, peaks)


# --- bad input --------------------------------------------------------------


def good_input():
    rng = np.random.default_rng(0)
    mask = np.ones((3, 3, 2), dtype=bool)
    accuracy, null = random_maps(rng, 3, 4, 18)
    return accuracy, null, mask


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, n, m: (a[0], n, m), r"not \(n_subjects, n_voxels\)"),
        (lambda a, n, m: (a, n[:2], m), "disagree"),
        (lambda a, n, m: (a, n[:, :, :17], m), "disagree"),
        (lambda a, n, m: (a[:1], n[:1], m), "at least 2"),
        (lambda a, n, m: (a, n[:, :0], m), "permutation maps of"),
        (lambda a, n, m: (np.where(a > 0.6, np.nan, a), n, m), "observed maps hold NaN"),
        (lambda a, n, m: (a, np.where(n > 0.7, np.inf, n), m), "permutation maps of subjects"),
        (lambda a, n, m: (a, n, m[:, :, :1]), "3-D boolean mask"),
        (lambda a, n, m: (a, n, m.astype(int)), "3-D boolean mask"),
        (lambda a, n, m: (a, n, m[0]), "3-D boolean mask"),
    ],
)
def test_bad_maps_raise(change, message):
    accuracy, null, mask = change(*good_input())
    with pytest.raises(InputError, match=message):
        group.cluster_test(accuracy, null, mask, n_draws=10)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_draws": 0}, "n_draws 0: must be a whole number"),
        ({"n_draws": 2.5}, "n_draws 2.5: must be a whole number"),
        ({"voxel_p": 0.0}, "voxel_p 0.0: must be strictly between 0 and 1"),
        ({"voxel_p": 1.0}, "voxel_p 1.0"),
        ({"voxel_p": float("nan")}, "voxel_p nan"),
        ({"connectivity": 8}, "connectivity 8"),
        ({"batch": 0}, "batch 0"),
    ],
)
def test_bad_cluster_options_raise(options, message):
    accuracy, null, mask = good_input()
    with pytest.raises(InputError, match=message):
        group.cluster_test(accuracy, null, mask, **{"n_draws": 10, **options})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_draws": -1}, "n_draws -1"),
        ({"alpha": 1.5}, "alpha 1.5"),
        ({"chance": np.full(17, 0.5)}, "chance level"),
        ({"chance": np.nan}, "chance level"),
    ],
)
def test_bad_prevalence_options_raise(options, message):
    accuracy, null, _ = good_input()
    with pytest.raises(InputError, match=message):
        group.prevalence_test(accuracy, null, **{"n_draws": 10, **options})


def test_bad_roi_and_affine_raise():
    accuracy, null, mask = good_input()
    with pytest.raises(InputError, match="disagree"):
        group.prevalence_test(accuracy[:, 0], null[:2, :, 0], n_draws=10)
    with pytest.raises(InputError, match="not \\(n_subjects, n_voxels\\)"):
        group.prevalence_test(accuracy[:, 0], null, n_draws=10)
    result = group.cluster_test(accuracy, null, mask, n_draws=10)
    with pytest.raises(InputError, match="affine"):
        group.peaks_mm(result.clusters, np.eye(3))
