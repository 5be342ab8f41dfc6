"""Region signals and connectivity: parity with nilearn and scikit-learn, closed forms,
edge-wise tests against scipy and a brute-force correction, bad input."""

import nibabel as nib
import numpy as np
import pytest
from nilearn.connectome import (
    ConnectivityMeasure,
    GroupSparseCovarianceCV,
    cov_to_corr,
    prec_to_partial,
    sym_matrix_to_vec,
)
from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker
from nilearn.signal import standardize_signal
from scipy import linalg, stats
from sklearn.covariance import GraphicalLassoCV, LedoitWolf
from threadpoolctl import threadpool_limits

from fmriflow import connectivity, regions
from fmriflow import connectome_prediction as prediction
from fmriflow.errors import InputError
from fmriflow.masking import unmask

SHAPE = (12, 12, 10)
N_VOLUMES = 150  # more than one block of the maps fit (connectivity.VOLUME_BLOCK)

#: Labels that wrap in 8 bits (128 -> -128 as int8, 256 -> 0 as uint8) or need 16.
WIDE_LABELS = [127, 128, 255, 256, 257, 300, 1000, 30000]


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """As in the workflow's nodes (and many small eigendecompositions)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def grid():
    """A mask (a box with two corners cut) on an anisotropic grid, and cleaned-like data."""
    rng = np.random.default_rng(11)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    mask[1:4, 1:4, 1:4] = False
    mask[-4:-1, -4:-1, -4:-1] = False
    affine = np.diag([3.5, 3.0, 3.25, 1.0])
    affine[:3, 3] = [-20.0, -18.0, -12.0]
    data = rng.standard_normal((N_VOLUMES, int(mask.sum()))).astype(np.float32)
    data += 3.0  # a baseline, as a cleaned matrix without standardisation keeps
    return mask, affine, data


def images(grid):
    """The data as a 4D image and the mask image, for nilearn's maskers."""
    mask, affine, data = grid
    bold = nib.Nifti1Image(unmask(data, mask), affine)
    return bold, nib.Nifti1Image(mask.astype(np.uint8), affine)


def labels_volume(mask, values, rng):
    """An int16 labels image: every value on at least one mask voxel, all mask voxels labelled."""
    voxels = np.flatnonzero(mask)
    assignment = np.concatenate([values, rng.choice(values, voxels.size - len(values))])
    volume = np.zeros(mask.shape, dtype=np.int16)
    volume.flat[voxels] = rng.permutation(assignment)
    return volume


# --- region signals -------------------------------------------------------------------


def test_400_int16_labels_signals_equal_nilearn_labels_masker(grid):
    """400 labels stored as int16, some > 127 and > 255: nilearn's signals are right
    here (only its masked atlas, ``region_atlas_``, is cast to int8 in 0.13.1, which
    tests/test_regions.py checks against numpy instead)."""
    mask, affine, data = grid
    rng = np.random.default_rng(1)
    values = np.array(sorted(set(range(1, 399)) | {1000, 30000}))
    assert len(values) == 400 and set(WIDE_LABELS) <= set(values)
    volume = labels_volume(mask, values, rng)
    region_set = regions.labels_regions(volume, mask, affine)
    index = region_set.table["index"].tolist()
    assert index == values.tolist()
    signals = connectivity.region_signals(data, "labels", region_set.values, index)

    bold, mask_img = images(grid)
    masker = NiftiLabelsMasker(
        nib.Nifti1Image(volume, affine), mask_img=mask_img, standardize=None, detrend=False
    )
    expected = masker.fit_transform(bold)
    found_ids = [v for k, v in masker.region_ids_.items() if k != "background"]
    assert found_ids == index
    np.testing.assert_allclose(signals, expected, rtol=1e-6, atol=1e-6)
    # and the direct definition, in float64: the mean of each label's voxels.
    for k, value in enumerate(values):
        np.testing.assert_allclose(
            signals[:, k], data[:, volume[mask] == value].astype(float).mean(axis=1), rtol=1e-12
        )


def nonnegative_maps(mask, rng, n_maps=6):
    """Sparse, overlapping, non-negative maps on the mask's voxels."""
    maps = rng.random((int(mask.sum()), n_maps))
    maps[maps < 0.6] = 0.0
    return maps


def nilearn_maps_signals(grid, maps):
    """nilearn's NiftiMapsMasker on the grid's data, with the maps given on its mask."""
    mask, affine, _ = grid
    bold, mask_img = images(grid)
    masker = NiftiMapsMasker(
        nib.Nifti1Image(unmask(maps.T, mask), affine),
        mask_img=mask_img,
        standardize=None,
        detrend=False,
    )
    return masker.fit_transform(bold)


def test_nonnegative_maps_signals_equal_nilearn_maps_masker(grid):
    mask, affine, data = grid
    maps = nonnegative_maps(mask, np.random.default_rng(2))
    signals = connectivity.region_signals(data, "maps", maps)
    np.testing.assert_allclose(signals, nilearn_maps_signals(grid, maps), rtol=1e-6, atol=1e-6)


def test_signed_maps_signals_are_the_least_squares_fit_on_every_voxel(grid):
    """Signed maps (ICA regions, a sign-flipped component): ``numpy.linalg.lstsq`` on
    all the mask's voxels, and nilearn's NiftiMapsMasker (which, before 0.14, left out
    the voxels where every map is negative)."""
    mask, affine, data = grid
    rng = np.random.default_rng(3)
    maps = nonnegative_maps(mask, rng) * rng.choice([-1.0, 1.0], size=(int(mask.sum()), 6))
    only_negative = (maps <= 0).all(axis=1) & (maps < 0).any(axis=1)
    assert only_negative.sum() > 20  # the voxels nilearn 0.13 dropped
    signals = connectivity.region_signals(data, "maps", maps)
    expected, *_ = np.linalg.lstsq(maps, data.T.astype(np.float64), rcond=None)
    np.testing.assert_allclose(signals, expected.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(signals, nilearn_maps_signals(grid, maps), rtol=1e-6, atol=1e-6)
    # The normal equations hold: the residual is orthogonal to every map.
    residual = data.astype(np.float64) - signals @ maps.T
    np.testing.assert_allclose(residual @ maps, 0.0, atol=1e-8)
    # Voxels without any weight do not change the fit.
    extra = np.hstack([data, rng.standard_normal((N_VOLUMES, 30))])
    padded = np.vstack([maps, np.zeros((30, maps.shape[1]))])
    np.testing.assert_allclose(connectivity.maps_signals(extra, padded), signals, atol=1e-10)


def test_regions_without_voxels_or_weight_are_refused(grid):
    mask, affine, data = grid
    labels = np.ones(data.shape[1], dtype=int)
    labels[:10] = 2
    with pytest.raises(InputError, match="region 3: has no voxel in the data's mask"):
        connectivity.labels_signals(data, labels, [1, 2, 3])
    with pytest.raises(InputError, match="give .* labels for data with"):
        connectivity.labels_signals(data, labels[:-1], [1, 2])
    maps = nonnegative_maps(mask, np.random.default_rng(4))
    maps[:, 2] = 0.0
    with pytest.raises(InputError, match=r"region map\(s\) \[3\]: have no weight"):
        connectivity.maps_signals(data, maps)
    with pytest.raises(InputError, match="unknown kind 'spheres'"):
        connectivity.region_signals(data, "spheres", labels)


# --- per-subject matrices ---------------------------------------------------------------


def subject_signals(rng, n_volumes=60, n_regions=7):
    """Correlated signals with their own means and scales."""
    mixing = np.eye(n_regions) + 0.4 * rng.standard_normal((n_regions, n_regions))
    scales = rng.uniform(0.5, 4.0, n_regions)
    return (rng.standard_normal((n_volumes, n_regions)) @ mixing) * scales + rng.normal(
        0, 10, n_regions
    )


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(5)
    return [subject_signals(rng, n_volumes=rng.integers(50, 90)) for _ in range(9)]


@pytest.mark.parametrize("n_volumes, n_regions", [(200, 7), (40, 60), (30, 1), (12, 90)])
def test_ledoit_wolf_covariance_is_scikit_learns(n_volumes, n_regions):
    """Long and short signals, one region, and more regions than volumes (full shrinkage)."""
    rng = np.random.default_rng(n_regions)
    mixing = rng.standard_normal((n_regions, n_regions)) * rng.uniform(0.1, 10, n_regions)
    signals = rng.standard_normal((n_volumes, n_regions)) @ mixing + rng.normal(5, 3, n_regions)
    expected = LedoitWolf(store_precision=False).fit(signals).covariance_
    np.testing.assert_allclose(
        connectivity.ledoit_wolf_covariance(signals), expected, rtol=1e-13, atol=0
    )


def test_a_subjects_connectome_does_not_import_scikit_learn():
    """Importing it was half of a subject's connectome job (24 jobs in the default run)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from fmriflow import connectivity\n"
        "s = np.random.default_rng(0).standard_normal((50, 4))\n"
        "connectivity.subject_matrices(s)\n"
        "print('sklearn' in sys.modules, 'nilearn' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"], result


@pytest.mark.parametrize(
    "kind, key",
    [
        ("covariance", "covariance"),
        ("correlation", "correlation"),
        ("partial correlation", "partial_correlation"),
    ],
)
def test_subject_matrices_equal_connectivity_measure(cohort, kind, key):
    expected = ConnectivityMeasure(kind=kind).fit_transform(cohort)
    found = np.array([connectivity.subject_matrices(s)[key] for s in cohort])
    np.testing.assert_allclose(found, expected, rtol=1e-10, atol=1e-12)


def test_correlation_and_partial_helpers_are_nilearns_to_the_bit(cohort):
    """Our cov_to_corr and prec_to_partial (kept out of nilearn.connectome's import)."""
    for signals in cohort:
        covariance = np.cov(signals, rowvar=False) * 3.7
        precision = linalg.inv(covariance)
        np.testing.assert_array_equal(
            connectivity.covariance_to_correlation(covariance), cov_to_corr(covariance)
        )
        np.testing.assert_array_equal(
            connectivity.precision_to_partial(precision), prec_to_partial(precision)
        )


def test_tangent_matrices_equal_connectivity_measure(cohort):
    """Same algorithm (Fletcher & Joshi's gradient descent, 30 iterations, tol 1e-7),
    so the two agree to rounding: relative 1e-9 on the mean, absolute 1e-9 on the
    tangent matrices (whose entries are of order 1)."""
    measure = ConnectivityMeasure(kind="tangent")
    expected = measure.fit_transform(cohort)
    covariances = np.array([connectivity.subject_matrices(s)["covariance"] for s in cohort])
    tangent, reference = connectivity.tangent_matrices(covariances)
    np.testing.assert_allclose(
        reference, measure.mean_, rtol=1e-9, atol=1e-9 * np.abs(measure.mean_).max()
    )
    np.testing.assert_allclose(tangent, expected, atol=1e-9)
    # Given a reference, it is used as is.
    around_first, given = connectivity.tangent_matrices(covariances, reference=covariances[0])
    assert given is not None and np.allclose(around_first[0], 0.0, atol=1e-10)


def random_spd(rng, n, count, spread=1.0):
    matrices = []
    for _ in range(count):
        a = rng.standard_normal((n, 3 * n)) * spread
        matrices.append(a @ a.T / (3 * n) + 0.1 * np.eye(n))
    return np.array(matrices)


def test_geometric_mean_of_diagonal_matrices_is_the_entrywise_geometric_mean():
    rng = np.random.default_rng(6)
    diagonals = rng.uniform(0.05, 20.0, (7, 5))
    found = connectivity.geometric_mean(np.array([np.diag(d) for d in diagonals]))
    np.testing.assert_allclose(found, np.diag(np.exp(np.log(diagonals).mean(axis=0))), rtol=1e-7)


def test_geometric_mean_of_commuting_matrices_is_the_exponential_of_the_mean_logarithm():
    rng = np.random.default_rng(7)
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    eigenvalues = rng.uniform(0.1, 10.0, (6, 5))
    matrices = np.array([rotation @ np.diag(v) @ rotation.T for v in eigenvalues])
    expected = linalg.expm(np.mean([linalg.logm(m).real for m in matrices], axis=0))
    np.testing.assert_allclose(connectivity.geometric_mean(matrices), expected, rtol=1e-7)


def test_geometric_mean_of_two_matrices_is_the_geodesic_midpoint():
    """A # B = A^1/2 (A^-1/2 B A^-1/2)^1/2 A^1/2 for matrices that do not commute."""
    a, b = random_spd(np.random.default_rng(8), 6, 2, spread=2.0)
    assert not np.allclose(a @ b, b @ a)
    root = linalg.sqrtm(a).real
    inverse_root = np.linalg.inv(root)
    midpoint = root @ linalg.sqrtm(inverse_root @ b @ inverse_root).real @ root
    np.testing.assert_allclose(connectivity.geometric_mean([a, b]), midpoint, rtol=1e-6)


def test_geometric_mean_is_a_critical_point_and_affine_invariant():
    """The Riemannian gradient vanishes at the mean, and mean(W M W') = W mean(M) W'."""
    rng = np.random.default_rng(9)
    matrices = random_spd(rng, 5, 8, spread=1.5)
    mean = connectivity.geometric_mean(matrices)
    whitening = np.linalg.inv(linalg.sqrtm(mean).real)
    gradient = np.mean([linalg.logm(whitening @ m @ whitening).real for m in matrices], axis=0)
    assert np.abs(gradient).max() < 1e-6
    w = rng.standard_normal((5, 5)) + 3 * np.eye(5)
    moved = connectivity.geometric_mean(np.array([w @ m @ w.T for m in matrices]))
    np.testing.assert_allclose(moved, w @ mean @ w.T, rtol=1e-6, atol=1e-9)


def test_geometric_mean_refuses_matrices_that_are_not_positive_definite():
    matrices = random_spd(np.random.default_rng(10), 4, 3)
    matrices[1] = -matrices[1]
    with pytest.raises(InputError, match=r"\[1\]: are not positive definite"):
        connectivity.geometric_mean(matrices)
    matrices[1] = -matrices[1]
    matrices[2, 0, 1] += 1e-3
    with pytest.raises(InputError, match="are not symmetric"):
        connectivity.geometric_mean(matrices)


def test_tangent_space_fitted_on_training_subjects_equals_connectivity_measure(cohort):
    train, test = cohort[:6], cohort[6:]
    n = cohort[0].shape[1]
    covariances = np.array([connectivity.subject_matrices(s)["covariance"] for s in cohort])
    flat = covariances.reshape(len(cohort), -1)
    space = prediction.TangentSpace(n).fit(flat[:6])
    measure = ConnectivityMeasure(kind="tangent", vectorize=True).fit(train)
    np.testing.assert_allclose(space.transform(flat[6:]), measure.transform(test), atol=1e-9)
    np.testing.assert_allclose(space.mean_, measure.mean_, rtol=1e-9)
    assert space.n_fitted_ == 6
    with pytest.raises(InputError, match=r"not \(n_subjects, 49\)"):
        space.transform(flat[:, :-1])


def test_vectorize_is_nilearns_convention():
    """Lower triangle row by row, diagonal divided by sqrt(2): proportional to the
    off-diagonal entries times sqrt(2) with the diagonal kept, norm = matrix norm / sqrt(2)."""
    matrices = random_spd(np.random.default_rng(12), 4, 3)
    vectors = connectivity.vectorize(matrices)
    rows, cols = np.tril_indices(4)
    np.testing.assert_array_equal(
        vectors, matrices[:, rows, cols] / np.where(rows == cols, np.sqrt(2), 1.0)
    )
    np.testing.assert_allclose(
        np.linalg.norm(vectors, axis=1), np.linalg.norm(matrices, axis=(1, 2)) / np.sqrt(2)
    )
    edges = prediction.EdgeVectors(4).fit_transform(matrices.reshape(3, -1))
    np.testing.assert_array_equal(edges, sym_matrix_to_vec(matrices, discard_diagonal=True))
    for discard in (False, True):
        for stack in (matrices[0], matrices, matrices.reshape(3, 1, 4, 4)):
            np.testing.assert_array_equal(
                connectivity.vectorize(stack, discard_diagonal=discard),
                sym_matrix_to_vec(stack, discard_diagonal=discard),
            )


# --- sparse models -------------------------------------------------------------------------


def chain_signals(rng, n_regions, n_volumes, strength=0.45):
    """Signals drawn from a sparse precision: a chain of regions (the ground truth)."""
    precision = np.eye(n_regions)
    for k in range(n_regions - 1):
        precision[k, k + 1] = precision[k + 1, k] = strength
    signals = rng.multivariate_normal(np.zeros(n_regions), np.linalg.inv(precision), n_volumes)
    return signals, precision


@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
def test_sparse_inverse_covariance_equals_graphical_lasso_cv_on_standardised_signals():
    """As nilearn's example: GraphicalLassoCV on the signals standardised per region
    (nilearn's "zscore_sample"), precision -> partial correlations."""
    rng = np.random.default_rng(20)
    for _ in range(2):
        signals = chain_signals(rng, 6, 150)[0] * rng.uniform(0.5, 3.0, 6) + 4.0
        partial, alpha = connectivity.sparse_inverse_covariance(signals, n_folds=3)
        estimator = GraphicalLassoCV(cv=3, max_iter=500).fit(
            standardize_signal(signals, standardize="zscore_sample")
        )
        np.testing.assert_allclose(partial, prec_to_partial(estimator.precision_), atol=1e-10)
        assert alpha == estimator.alpha_
        assert np.array_equal(partial == 0, estimator.precision_ == 0)


def test_sparse_inverse_covariance_recovers_a_planted_chain():
    """Ground truth: signals drawn from a sparse precision (a chain of 6 regions)."""
    n = 6
    signals, precision = chain_signals(np.random.default_rng(13), n, 3000)
    partial, _ = connectivity.sparse_inverse_covariance(signals)
    truth = prec_to_partial(precision)
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(partial[off], truth[off], atol=0.08)
    chain = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) == 1
    assert np.abs(partial[chain]).min() > np.abs(partial[off & ~chain]).max() + 0.2


def test_group_sparse_partial_correlations_equal_group_sparse_covariance_cv():
    rng = np.random.default_rng(19)
    subjects = [chain_signals(rng, 5, 120)[0] * rng.uniform(1, 3) + 2.0 for _ in range(4)]
    partials, alpha = connectivity.group_sparse_partial_correlations(subjects, n_folds=3)
    estimator = GroupSparseCovarianceCV(cv=3, verbose=0).fit(
        [standardize_signal(s, standardize="zscore_sample") for s in subjects]
    )
    expected = np.array([prec_to_partial(p) for p in np.moveaxis(estimator.precisions_, -1, 0)])
    np.testing.assert_allclose(partials, expected, atol=1e-10)
    assert alpha == estimator.alpha_
    # The chain is the group's support: its edges are the strongest in every subject.
    chain = np.abs(np.subtract.outer(np.arange(5), np.arange(5))) == 1
    off = ~np.eye(5, dtype=bool)
    assert (
        np.abs(partials[:, chain]).min(axis=1) > np.abs(partials[:, off & ~chain]).max(axis=1)
    ).all()


# --- group comparison -----------------------------------------------------------------------


def from_edges(edges, n_regions):
    """Symmetric matrices (unit diagonal) from upper-triangle edge values."""
    i, j = np.triu_indices(n_regions, k=1)
    matrices = np.tile(np.eye(n_regions), (len(edges), 1, 1))
    matrices[:, i, j] = edges
    matrices[:, j, i] = edges
    return matrices


def brute_force_bh(p):
    """Benjamini-Hochberg adjusted p-values from the definition:
    p_adj(i) = min over tests k with p_k >= p_i of min(1, m p_k / rank(k))."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    rank = np.empty(m, dtype=int)
    rank[order] = np.arange(1, m + 1)
    adjusted = np.empty(m)
    for i in range(m):
        candidates = [min(1.0, m * p[k] / rank[k]) for k in range(m) if rank[k] >= rank[i]]
        adjusted[i] = min(candidates)
    return adjusted


def planted_comparison(rng, n_regions=10, per_group=15, effect=2.0, planted=(0, 7, 20, 44)):
    n_edges = n_regions * (n_regions - 1) // 2
    edges = rng.standard_normal((2 * per_group, n_edges))
    groups = np.repeat(["a", "b"], per_group)
    truth = np.zeros(n_edges, dtype=bool)
    truth[list(planted)] = True
    edges[np.ix_(groups == "b", truth)] += effect
    return from_edges(edges, n_regions), groups, truth


def test_compare_groups_equals_welch_t_tests_and_corrections():
    rng = np.random.default_rng(14)
    matrices, groups, _ = planted_comparison(rng, effect=0.7)
    groups = np.where(groups == "a", "patient", "control")  # sorted: control first
    result = connectivity.compare_groups(matrices, groups, "fdr_bh")
    assert result["names"] == ["control", "patient"]
    i, j = np.triu_indices(10, k=1)
    t, p = stats.ttest_ind(
        matrices[groups == "patient"][:, i, j],
        matrices[groups == "control"][:, i, j],
        equal_var=False,
    )
    np.testing.assert_array_equal(result["i"], i)
    np.testing.assert_allclose(result["t"], t, rtol=1e-12)
    np.testing.assert_allclose(result["p"], p, rtol=1e-12)
    np.testing.assert_allclose(result["p_corrected"], brute_force_bh(p), rtol=1e-12)
    np.testing.assert_array_equal(result["significant"], brute_force_bh(p) < 0.05)
    np.testing.assert_allclose(
        result["means"][1], matrices[groups == "patient"][:, i, j].mean(axis=0)
    )
    bonferroni = connectivity.compare_groups(matrices, groups, "bonferroni", alpha=0.01)
    np.testing.assert_allclose(bonferroni["p_corrected"], np.minimum(p * 45, 1.0), rtol=1e-12)
    np.testing.assert_array_equal(bonferroni["significant"], p * 45 < 0.01)
    assert 0 < result["significant"].sum() < 45  # a comparison where the correction matters


def test_compare_groups_finds_the_planted_edges():
    """The planted edges have the smallest p-values and survive both corrections; the
    family-wise correction keeps no other edge (the false discovery rate may keep a few:
    their rate is checked over repetitions below)."""
    matrices, groups, truth = planted_comparison(np.random.default_rng(15), effect=2.5)
    fdr = connectivity.compare_groups(matrices, groups, "fdr_bh")
    assert set(np.argsort(fdr["p"])[: truth.sum()]) == set(np.flatnonzero(truth))
    assert fdr["significant"][truth].all() and (fdr["t"][truth] > 0).all()  # "b" is larger
    bonferroni = connectivity.compare_groups(matrices, groups, "bonferroni")
    np.testing.assert_array_equal(bonferroni["significant"], truth)


def test_fdr_and_bonferroni_control_false_positives_over_noise_repetitions():
    """Over 400 cohorts: with 4 planted edges among 45, the mean false discovery
    proportion stays under alpha m0 / m (Benjamini-Hochberg, independent tests); on
    pure noise, the proportion of cohorts with any discovery (FDR = FWER there) stays
    under alpha for both corrections. Without correction these would be about 0.3 and 0.9."""
    rng = np.random.default_rng(16)
    n_repeats, alpha = 400, 0.05
    fdp, any_noise = [], {c: [] for c in connectivity.CORRECTIONS}
    for _ in range(n_repeats):
        matrices, groups, truth = planted_comparison(rng, effect=1.2)
        found = connectivity.compare_groups(matrices, groups, "fdr_bh", alpha)["significant"]
        fdp.append((found & ~truth).sum() / max(1, found.sum()))
        noise, groups, _ = planted_comparison(rng, effect=0.0)
        for correction in connectivity.CORRECTIONS:
            result = connectivity.compare_groups(noise, groups, correction, alpha)
            any_noise[correction].append(result["significant"].any())
    fdp = np.array(fdp)
    bound = alpha * 41 / 45
    assert fdp.mean() <= bound + 2.5 * fdp.std() / np.sqrt(n_repeats), fdp.mean()
    margin = 2.5 * np.sqrt(alpha * (1 - alpha) / n_repeats)
    for correction, hits in any_noise.items():
        assert np.mean(hits) <= alpha + margin, (correction, np.mean(hits))


def test_compare_groups_needs_two_groups_of_two():
    matrices, groups, _ = planted_comparison(np.random.default_rng(17), per_group=3)
    with pytest.raises(InputError, match=r"exactly two groups, found 3: \['a', 'b', 'c'\]"):
        connectivity.compare_groups(matrices, np.array(list("aabbcc")))
    with pytest.raises(InputError, match="exactly two groups, found 1"):
        connectivity.compare_groups(matrices, ["a"] * 6)
    with pytest.raises(InputError, match=r"group sizes \{'a': 1, 'b': 5\}"):
        connectivity.compare_groups(matrices, list("abbbbb"))
    with pytest.raises(InputError, match="unknown correction 'holm'"):
        connectivity.compare_groups(matrices, groups, "holm")


# --- bad signals -------------------------------------------------------------------------------


def test_bad_signals_are_refused_with_a_message():
    rng = np.random.default_rng(18)
    with pytest.raises(InputError, match="sub-01: only 2 volumes"):
        connectivity.check_signals(rng.standard_normal((2, 4)), "sub-01")
    signals = rng.standard_normal((30, 4))
    signals[:, 2] = 5.0
    with pytest.raises(InputError, match=r"region\(s\) \[2\] have a constant signal"):
        connectivity.subject_matrices(signals)
    with pytest.raises(InputError, match="only 1 region"):
        connectivity.subject_matrices(rng.standard_normal((30, 1)))
    signals[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        connectivity.check_signals(signals)
