"""Parcellations: planted parcels, connectivity, region counts, compression, bad input."""

import numpy as np
import pytest
from scipy import stats
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.image import grid_to_graph
from sklearn.metrics import adjusted_rand_score

from fmriflow import decomposition, parcellation, simulate
from fmriflow.errors import InputError


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """One BLAS/OpenMP thread, as the workflow's nodes run."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def planted():
    """12 contiguous parcels on a 14^3 ball, three subjects, noise as strong as the signal."""
    return parcellation.simulate_parcels(n_parcels=12, noise=1.5, seed=0)


@pytest.fixture(scope="module")
def features(planted):
    reductions = [decomposition.reduce_subject(s, 15, seed=0) for s in planted.subjects]
    return parcellation.voxel_features(reductions, 12, seed=0)


def test_the_simulator_plants_contiguous_parcels(planted):
    parcels, regions = parcellation.count_regions(planted.labels, planted.mask)
    np.testing.assert_array_equal(parcels, np.arange(1, 13))
    np.testing.assert_array_equal(regions, 1)
    assert planted.labels.size == planted.mask.sum() and planted.labels.min() == 1


@pytest.mark.parametrize(("method", "minimum"), [("ward", 0.95), ("kmeans", 0.95), ("rena", 0.8)])
def test_clustering_recovers_planted_parcels(planted, features, method, minimum):
    labels = parcellation.parcellate(features, planted.mask, 12, method, affine=np.eye(4))
    assert adjusted_rand_score(planted.labels, labels) >= minimum
    if method in ("ward", "rena"):
        _, regions = parcellation.count_regions(labels, planted.mask)
        np.testing.assert_array_equal(regions, 1)


def test_features_from_data_or_reductions_give_the_same_parcels(planted, features):
    direct = parcellation.voxel_features(planted.subjects, 12, seed=0, center=True)
    for method in ("ward", "kmeans"):
        a = parcellation.parcellate(features, planted.mask, 12, method)
        b = parcellation.parcellate(direct, planted.mask, 12, method)
        assert adjusted_rand_score(a, b) >= 0.95


def test_without_subject_pca_the_features_are_those_of_full_rank_subject_pcas(planted):
    """subject_pca false (clean data, centred) = subject PCAs keeping every volume."""
    volumes = planted.subjects[0].shape[0]
    assert all(s.shape[0] == volumes for s in planted.subjects)
    full = [decomposition.reduce_subject(s, volumes, seed=0) for s in planted.subjects]
    n = 12
    from_pcas = parcellation.voxel_features(full, n, seed=0)
    from_data = parcellation.voxel_features(planted.subjects, n, seed=0, center=True)
    # Same columns up to sign (the sign of each component is fixed by its largest entry,
    # which ties can flip), to float32 precision of the saved reductions.
    signs = np.sign(np.sum(from_pcas * from_data, axis=0))
    np.testing.assert_allclose(from_data * signs, from_pcas, atol=2e-4 * np.abs(from_pcas).max())
    a = parcellation.parcellate(from_pcas, planted.mask, 12, "ward")
    b = parcellation.parcellate(from_data, planted.mask, 12, "ward")
    assert adjusted_rand_score(a, b) == 1


def test_kmeans_fragments_shared_signals_and_ward_does_not():
    """Parcels sharing a time course (like two hemispheres of one network)."""
    sim = parcellation.simulate_parcels(n_parcels=12, n_signals=4, noise=1.0, seed=3)
    grouped = sim.signals[sim.labels - 1] + 1
    _, expected_regions = parcellation.count_regions(grouped, sim.mask)
    assert expected_regions.sum() > 4  # the draw has separated parcels sharing a signal
    reductions = [decomposition.reduce_subject(s, 10, seed=0) for s in sim.subjects]
    features = parcellation.voxel_features(reductions, 6, seed=0)
    kmeans = parcellation.parcellate(features, sim.mask, 4, "kmeans")
    assert adjusted_rand_score(grouped, kmeans) >= 0.95
    summary = parcellation.summarize_parcellation(kmeans, sim.mask)
    assert summary["n_regions"] == expected_regions.sum() > summary["n_parcels"] == 4
    ward = parcellation.summarize_parcellation(
        parcellation.parcellate(features, sim.mask, 4, "ward"), sim.mask
    )
    assert ward["n_regions"] == ward["n_parcels"] == 4 and ward["n_fragmented"] == 0


def test_ward_parcels_are_connected_and_kmeans_fragments_on_rest_data():
    """The paper's point on the rest simulation: networks are bilateral."""
    brain, grey, affine = simulate.rest_grid(8)
    maps, _ = simulate.network_maps(grey, affine, 5, 14.0)
    subjects = []
    for index in range(3):
        sim = simulate.simulate_rest_subject(index, 1, maps, brain, 100, 2.0, (3.0, 4.0))
        subjects.append(stats.zscore(sim.bold[grey].T, axis=0, ddof=1).astype(np.float32))
    reductions = [decomposition.reduce_subject(s, 20, seed=0) for s in subjects]
    features = parcellation.voxel_features(reductions, 20)
    ward = parcellation.parcellate(features, grey, 40, "ward")
    kmeans = parcellation.parcellate(features, grey, 40, "kmeans")
    ward_summary = parcellation.summarize_parcellation(ward, grey, subjects)
    kmeans_summary = parcellation.summarize_parcellation(kmeans, grey, subjects)
    assert ward_summary["n_regions"] == ward_summary["n_parcels"] == 40
    assert kmeans_summary["n_fragmented"] > 0
    assert kmeans_summary["n_regions"] > kmeans_summary["n_parcels"]
    assert 0 < ward_summary["r2"] < 1 and 0 < kmeans_summary["r2"] < 1


# --- region counting and compression, against references computed another way ----------


def test_region_count_on_a_hand_built_label_image():
    image = np.zeros((9, 9, 9), dtype=int)
    image[0:2, 0:2, 0:2] = 1  # label 1: two separate cubes
    image[6:8, 6:8, 6:8] = 1
    image[4, 0:5, 0] = 2  # label 2: an L, one region
    image[4, 4, 0:5] = 2
    image[0, 8, 8] = 3  # label 3: two voxels sharing only an edge -> 2 regions
    image[1, 7, 8] = 3
    image[8, 0, 8] = 4  # label 4: two voxels sharing only a corner -> 2 regions
    image[7, 1, 7] = 4
    image[2, 8, 0] = 5  # label 5: one voxel
    mask = np.ones(image.shape, dtype=bool)
    parcels, regions = parcellation.count_regions(image, mask)
    np.testing.assert_array_equal(parcels, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(regions, [2, 1, 2, 2, 1])
    # The same from labels over a mask's voxels; background voxels are ignored.
    inside = image > 0
    parcels, regions = parcellation.count_regions(image[inside], inside)
    np.testing.assert_array_equal(regions, [2, 1, 2, 2, 1])
    summary = parcellation.summarize_parcellation(image[inside], inside)
    assert summary == {
        "n_parcels": 5,
        "n_regions": 8,
        "n_fragmented": 3,
        "size_min": 1,
        "size_median": 2.0,
        "size_max": 16,
        "r2": None,
    }


def test_region_count_equals_components_of_the_ward_graph(rng):
    """Reference: connected components of grid_to_graph restricted to each label."""
    mask = rng.random((8, 9, 7)) < 0.8
    labels = rng.integers(1, 7, int(mask.sum()))
    graph = grid_to_graph(*mask.shape, mask=mask).tocsr()
    parcels, regions = parcellation.count_regions(labels, mask)
    for parcel, count in zip(parcels, regions, strict=True):
        members = np.flatnonzero(labels == parcel)
        n, _ = connected_components(graph[members][:, members], directed=False)
        assert count == n


def test_compression_r2_equals_explicit_parcel_means(planted):
    labels = planted.labels
    got = parcellation.compression_r2(planted.subjects, labels)
    residual = total = 0.0
    for data in planted.subjects:
        centred = data.astype(np.float64) - data.mean(axis=0)
        means = np.zeros_like(centred)
        for parcel in np.unique(labels):
            columns = labels == parcel
            means[:, columns] = centred[:, columns].mean(axis=1, keepdims=True)
        residual += np.sum((centred - means) ** 2)
        total += np.sum(centred**2)
    assert got == pytest.approx(1 - residual / total, rel=1e-9)
    assert parcellation.compression_r2(planted.subjects, np.arange(labels.size)) == pytest.approx(
        1
    )


def test_voxel_features_preserve_distances_of_the_concatenated_data():
    """Distances in the signal subspace (12 parcels: rank 12), against an exact SVD."""
    subjects = parcellation.simulate_parcels(n_parcels=12, n_subjects=2, noise=0.3).subjects
    features = parcellation.voxel_features(subjects, 12, seed=0, center=True)
    stacked = np.vstack([s - s.mean(axis=0) for s in subjects]).astype(np.float64)
    _, values, vt = np.linalg.svd(stacked, full_matrices=False)
    exact = vt[:12].T * values[:12]
    pairs = np.random.default_rng(1).integers(0, stacked.shape[1], (200, 2))
    got = np.linalg.norm(features[pairs[:, 0]] - features[pairs[:, 1]], axis=1)
    want = np.linalg.norm(exact[pairs[:, 0]] - exact[pairs[:, 1]], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-3)


def test_smoothing_features_equals_smoothing_the_volumes(planted):
    from fmriflow.masking import smooth_volume_in_place, smoothing_sigmas

    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    features = parcellation.voxel_features(planted.subjects, 5, seed=0)
    smoothed = parcellation.smooth_features_in_place(
        features.astype(np.float64), planted.mask, affine, 6.0
    )
    volume = np.zeros(planted.mask.shape)
    volume[planted.mask] = features[:, 2]
    expected = smooth_volume_in_place(volume, smoothing_sigmas(affine, 6.0))[planted.mask]
    np.testing.assert_allclose(smoothed[:, 2], expected, rtol=1e-6)


# --- determinism and bad input ------------------------------------------------------------


def test_same_seed_gives_identical_labels(planted):
    a = parcellation.voxel_features(planted.subjects, 8, seed=3)
    np.testing.assert_array_equal(a, parcellation.voxel_features(planted.subjects, 8, seed=3))
    for method in ("kmeans", "ward"):
        first = parcellation.parcellate(a, planted.mask, 10, method, seed=5)
        np.testing.assert_array_equal(
            first, parcellation.parcellate(a, planted.mask, 10, method, seed=5)
        )
        assert first.dtype == np.int32 and first[0] == 1
        assert set(np.unique(first)) == set(range(1, 11))


def test_bad_input_is_refused(planted, features):
    with pytest.raises(InputError, match="unknown|expected one of"):
        parcellation.parcellate(features, planted.mask, 5, "spectral")
    with pytest.raises(InputError, match="between 1 and the number of voxels"):
        parcellation.parcellate(features, planted.mask, features.shape[0] + 1, "ward")
    with pytest.raises(InputError, match="fewer than the 500 features"):
        parcellation.voxel_features(planted.subjects, 500)
    with pytest.raises(InputError, match="different numbers of voxels"):
        parcellation.voxel_features([np.ones((5, 40)), np.ones((5, 41))], 3)
