"""Brain parcellations by clustering voxels: Ward, K-means and ReNA.

Section 6 of Abraham et al. (2014): cluster the voxels of resting-state
data into parcels, each voxel described by its time course. The paper's
point, which :func:`summarize_parcellation` measures: Ward agglomeration
with a spatial connectivity constraint gives contiguous parcels, while
K-means on the same features groups distant voxels with similar time
courses (e.g. the two hemispheres of a network) into fragmented parcels.

Input
-----
Voxel features come from :func:`voxel_features`: the group PCA
(:func:`fmriflow.decomposition.group_pca`, without the unit-norm step) of
the subjects' per-subject reductions — the same cached ``.npy`` files as
group ICA's first stage (:func:`fmriflow.decomposition.reduce_subject`) —
and each voxel's feature vector is its column of ``S @ Vt`` (the group
singular values times the components). Euclidean distances between these
vectors approximate the distances between the voxels' time courses
concatenated over subjects, restricted to the subjects' leading principal
components. So the group job reads ``n_subjects x n_subject_components``
rows, never the full ``n_subjects x n_volumes`` matrix (which
:func:`voxel_features` can also take, streamed one subject at a time, for
an exact PCA of the concatenated data). nilearn's ``Parcellations``
instead reduces each subject to 200 components (as 4D images it loads),
stacks them with unit norms and clusters the voxels on the 200 *unscaled*
group components, which weighs every component, noise included, the
same. Optional smoothing (:func:`smooth_features_in_place`) filters each feature as
a volume; being linear, it equals smoothing every volume of the data before
the group projection. On noisy data K-means without smoothing splits the
brain into salt-and-pepper parcels (tens of thousands of regions for 100
parcels in the benchmark); a few millimetres of smoothing, as in the paper,
makes them blobs.

Methods
-------
* ``ward``: ``sklearn.cluster.FeatureAgglomeration`` (Ward linkage) with the
  connectivity of ``sklearn.feature_extraction.image.grid_to_graph`` over
  the mask: voxels sharing a face (6-connectivity), so every parcel is one
  connected region.
* ``kmeans``: ``sklearn.cluster.KMeans`` on the voxels (features as
  coordinates), no spatial constraint.
* ``rena``: nilearn's recursive neighbour agglomeration
  (``nilearn.regions.ReNA``), fast and spatially constrained.

What is ours: the features (shared with group ICA's cached reductions), the
region counting with the same 6-connectivity as the graph
(:func:`count_regions`), the compression quality (:func:`compression_r2`)
computed one subject at a time, the canonical label order, and the
simulator of planted parcels (:func:`simulate_parcels`) used by the tests.
The clustering itself is scikit-learn's or nilearn's.

Labels are ``int32`` arrays over the mask's voxels (numpy C order, like the
columns of ``clean.npy``), numbered from 1 in the order of each parcel's
first voxel; :func:`fmriflow.masking.unmask` makes them a label image (0
outside the mask).
"""

from dataclasses import dataclass

import numpy as np

from fmriflow.errors import InputError
from fmriflow.streaming import RowBlocks, truncated_svd

METHODS = ("ward", "kmeans", "rena")
#: K-means restarts (the best inertia is kept): one k-means++ start, as
#: scikit-learn's ``n_init="auto"`` does; more rarely changes the parcels much
#: and costs proportionally more time.
KMEANS_N_INIT = 1


def connectivity_structure():
    """The 3D neighbourhood used everywhere here: voxels sharing a face.

    It is the connectivity of ``sklearn.feature_extraction.image.grid_to_graph``
    (6 neighbours), as a ``scipy.ndimage`` structuring element.

    Returns
    -------
    numpy.ndarray of bool, shape (3, 3, 3)
    """
    from scipy.ndimage import generate_binary_structure

    return generate_binary_structure(3, 1)


def voxel_features(subjects, n_features, seed=0, center=False, standardize=False, solver="auto"):
    """Describe each voxel by its group principal component scores.

    Parameters
    ----------
    subjects : sequence of numpy.ndarray or path
        Per-subject reductions (:func:`fmriflow.decomposition.reduce_subject`,
        recommended) or the subjects' cleaned ``(time, voxel)`` matrices;
        arrays or ``.npy`` paths, read one subject at a time.
    n_features : int
        Number of group components kept.
    seed : int, default=0
        Seed of the randomized SVD.
    center : bool, default=False
        Subtract each subject's column means first: for ``(time, voxel)``
        matrices that are not already centred (the workflow's cleaned ones
        are). Never for reductions, whose rows are components, not volumes.
    standardize : bool, default=False
        Z-score each subject's columns first (implies ``center``; same
        caveat).
    solver : {"auto", "exact", "randomized"}, default="auto"
        See :func:`fmriflow.decomposition.truncated_svd`.

    Returns
    -------
    numpy.ndarray, shape (n_voxels, n_features), float32
        Column ``j`` is component ``j`` scaled by its singular value.
    """
    blocks = RowBlocks(subjects, center=center, standardize=standardize)
    if blocks.n_rows < n_features:
        raise InputError(
            "parcellation",
            f"the subjects give {blocks.n_rows} rows in all, fewer than the "
            f"{n_features} features asked for",
            "Ask for fewer features or keep more components per subject",
        )
    singular_values, components = truncated_svd(blocks, n_features, seed, solver)
    return (components.T * singular_values).astype(np.float32)


def smooth_features_in_place(features, mask, affine, fwhm):
    """Smooth each feature as a volume (zero outside the mask), in place.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_voxels, n_features)
        From :func:`voxel_features`.
    mask : numpy.ndarray of bool
        The mask whose voxels are the rows.
    affine : numpy.ndarray
        Its affine (for the voxel sizes).
    fwhm : float
        Full width at half maximum, millimetres.

    Returns
    -------
    numpy.ndarray
        ``features``, smoothed.
    """
    from fmriflow.masking import smooth_volume_in_place, smoothing_sigmas

    sigmas = smoothing_sigmas(affine, fwhm)
    volume = np.zeros(mask.shape)
    for j in range(features.shape[1]):
        volume[:] = 0.0
        volume[mask] = features[:, j]
        features[:, j] = smooth_volume_in_place(volume, sigmas)[mask]
    return features


def canonical_labels(labels):
    """Renumber labels 1..K in the order of each label's first occurrence.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n_voxels,)

    Returns
    -------
    numpy.ndarray of int32
    """
    labels = np.asarray(labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int32)
    rank[np.argsort(first, kind="stable")] = np.arange(1, first.size + 1, dtype=np.int32)
    return rank[inverse.ravel()]


def _check_parcels(n_parcels, n_voxels):
    if not 1 <= int(n_parcels) <= n_voxels:
        raise InputError(
            f"n_parcels {n_parcels}",
            f"it must be between 1 and the number of voxels ({n_voxels})",
            "Ask for fewer parcels",
        )


def ward_parcellation(features, mask, n_parcels):
    """Ward agglomeration of the voxels under 6-connectivity.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_voxels, n_features)
        From :func:`voxel_features`.
    mask : numpy.ndarray of bool
        Its voxels are the rows of ``features`` (C order).
    n_parcels : int
        Number of parcels.

    Returns
    -------
    numpy.ndarray of int32, shape (n_voxels,)
        Labels 1..n_parcels; each parcel is one connected region.
    """
    from sklearn.cluster import FeatureAgglomeration
    from sklearn.feature_extraction.image import grid_to_graph

    mask = np.asarray(mask, dtype=bool)
    _check_parcels(n_parcels, features.shape[0])
    connectivity = grid_to_graph(*mask.shape, mask=mask)
    agglomeration = FeatureAgglomeration(
        n_clusters=int(n_parcels), connectivity=connectivity, linkage="ward"
    )
    agglomeration.fit(np.asarray(features, dtype=np.float64).T)
    return canonical_labels(agglomeration.labels_)


def kmeans_parcellation(features, n_parcels, seed=0, n_init=KMEANS_N_INIT):
    """K-means on the voxels, without spatial constraint.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_voxels, n_features)
        From :func:`voxel_features` (optionally :func:`smooth_features_in_place`).
    n_parcels : int
        Number of clusters.
    seed : int, default=0
        Seed of the k-means++ initialisations.
    n_init : int, default=KMEANS_N_INIT
        Restarts; the lowest inertia is kept.

    Returns
    -------
    numpy.ndarray of int32, shape (n_voxels,)
        Labels 1..n_parcels; a parcel may be several regions.
    """
    from sklearn.cluster import KMeans

    _check_parcels(n_parcels, features.shape[0])
    kmeans = KMeans(n_clusters=int(n_parcels), n_init=int(n_init), random_state=int(seed))
    kmeans.fit(np.asarray(features, dtype=np.float64))
    return canonical_labels(kmeans.labels_)


def rena_parcellation(features, mask, affine, n_parcels):
    """Recursive neighbour agglomeration (nilearn's ``ReNA``).

    Parameters
    ----------
    features : numpy.ndarray, shape (n_voxels, n_features)
        From :func:`voxel_features`.
    mask : numpy.ndarray of bool
        Its voxels are the rows of ``features``.
    affine : numpy.ndarray
        The mask's affine.
    n_parcels : int
        Number of parcels.

    Returns
    -------
    numpy.ndarray of int32, shape (n_voxels,)
        Labels 1..n_parcels (ReNA may stop with slightly fewer).
    """
    import nibabel as nib
    from nilearn.regions import ReNA

    _check_parcels(n_parcels, features.shape[0])
    mask_img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), np.asarray(affine, dtype=float))
    rena = ReNA(mask_img, n_clusters=int(n_parcels), scaling=False, n_iter=10)
    rena.fit(np.asarray(features, dtype=np.float64).T)
    return canonical_labels(rena.labels_)


def parcellate(
    features, mask, n_parcels, method="ward", seed=0, affine=None, n_init=KMEANS_N_INIT
):
    """Cluster voxels into parcels with one of :data:`METHODS`.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_voxels, n_features)
        From :func:`voxel_features`.
    mask : numpy.ndarray of bool
        Its voxels are the rows of ``features``.
    n_parcels : int
        Number of parcels.
    method : {"ward", "kmeans", "rena"}, default="ward"
        See the module docstring.
    seed : int, default=0
        For ``kmeans``.
    affine : numpy.ndarray, optional
        Needed by ``rena``.
    n_init : int, default=KMEANS_N_INIT
        Restarts of ``kmeans``.

    Returns
    -------
    numpy.ndarray of int32, shape (n_voxels,)
        Labels from 1.
    """
    mask = np.asarray(mask, dtype=bool)
    if features.shape[0] != int(mask.sum()):
        raise ValueError(f"{features.shape[0]} feature rows but {int(mask.sum())} mask voxels")
    if method == "ward":
        return ward_parcellation(features, mask, n_parcels)
    if method == "kmeans":
        return kmeans_parcellation(features, n_parcels, seed, n_init)
    if method == "rena":
        return rena_parcellation(
            features, mask, np.eye(4) if affine is None else affine, n_parcels
        )
    raise InputError(
        f"parcellation method {method!r}", f"expected one of {list(METHODS)}", "Fix the config"
    )


# --- statistics ------------------------------------------------------------------


def count_regions(labels, mask):
    """Number of spatially connected regions of each parcel.

    Regions are connected through shared faces (6-connectivity,
    :func:`connectivity_structure`), the adjacency of the Ward graph.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n_voxels,) or mask.shape
        Parcel labels over the mask's voxels, or a label image (0 =
        background).
    mask : numpy.ndarray of bool
        The mask.

    Returns
    -------
    parcels : numpy.ndarray of int
        The labels present, sorted.
    regions : numpy.ndarray of int
        Number of connected regions of each.
    """
    from scipy.ndimage import find_objects, label

    mask = np.asarray(mask, dtype=bool)
    labels = np.asarray(labels)
    if labels.shape == mask.shape:
        image = np.where(mask, labels, 0).astype(np.int64)
    else:
        image = np.zeros(mask.shape, dtype=np.int64)
        image[mask] = labels
    if np.any(image < 0):
        raise ValueError("labels must be non-negative")
    parcels = np.unique(image[image > 0])
    structure = connectivity_structure()
    boxes = find_objects(image)
    regions = np.zeros(parcels.size, dtype=np.int64)
    for i, parcel in enumerate(parcels):
        box = boxes[parcel - 1]
        _, n = label(image[box] == parcel, structure=structure)
        regions[i] = n
    return parcels, regions


def parcel_sizes(labels):
    """Number of voxels of each parcel (labels sorted).

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n_voxels,)

    Returns
    -------
    parcels, sizes : numpy.ndarray of int
    """
    parcels, sizes = np.unique(np.asarray(labels), return_counts=True)
    keep = parcels > 0
    return parcels[keep], sizes[keep]


def compression_r2(subjects, labels, standardize=False):
    """Variance of the data explained by replacing each voxel by its parcel mean.

    For every subject's matrix ``X`` (columns centred over time; z-scored
    too with ``standardize``), ``1 - sum ||X - P(X)||^2 / sum ||X||^2``
    over all subjects, where ``P`` replaces each column by the mean of its
    parcel's columns. 1 means no loss; ``n_parcels = n_voxels`` gives 1.

    Parameters
    ----------
    subjects : sequence of numpy.ndarray or path
        The subjects' cleaned ``(time, voxel)`` matrices (read one chunk of
        volumes at a time).
    labels : numpy.ndarray of int, shape (n_voxels,)
        Parcel labels (from 1).
    standardize : bool, default=False
        Z-score each subject's voxels first.

    Returns
    -------
    float
    """
    labels = np.asarray(labels)
    blocks = RowBlocks(subjects, center=True, standardize=standardize)
    if labels.shape != (blocks.n_columns,):
        raise ValueError(f"{labels.shape} labels for {blocks.n_columns} voxels")
    _, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    index = index.ravel()
    total = kept = 0.0
    for chunk in blocks:
        sums = np.zeros((chunk.shape[0], counts.size))
        np.add.at(sums.T, index, chunk.T)
        # Squared norm of the projection onto parcel-constant columns.
        kept += float(np.sum(sums**2 / counts))
        total += float(np.sum(chunk**2))
    return 1.0 - (total - kept) / total if total > 0 else float("nan")


def summarize_parcellation(labels, mask, subjects=None, standardize=False):
    """Number of parcels and regions, sizes, and compression quality.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n_voxels,)
        Parcel labels over the mask's voxels (from 1).
    mask : numpy.ndarray of bool
        The mask.
    subjects : sequence of numpy.ndarray or path, optional
        Data for :func:`compression_r2`.
    standardize : bool, default=False
        Passed to :func:`compression_r2`.

    Returns
    -------
    dict
        ``n_parcels``, ``n_regions`` (connected regions over all parcels,
        6-connectivity), ``n_fragmented`` (parcels of more than one
        region), ``size_min``, ``size_median``, ``size_max`` (voxels) and
        ``r2`` (None without ``subjects``).
    """
    _, regions = count_regions(labels, mask)
    _, sizes = parcel_sizes(labels)
    return {
        "n_parcels": int(sizes.size),
        "n_regions": int(regions.sum()),
        "n_fragmented": int(np.sum(regions > 1)),
        "size_min": int(sizes.min()),
        "size_median": float(np.median(sizes)),
        "size_max": int(sizes.max()),
        "r2": None if subjects is None else compression_r2(subjects, labels, standardize),
    }


# --- simulation -------------------------------------------------------------------


@dataclass
class PlantedParcels:
    """Simulated data with planted parcels.

    Attributes
    ----------
    mask : numpy.ndarray of bool
        The grid's voxels with data.
    labels : numpy.ndarray of int32, shape (n_voxels,)
        Planted parcel of each mask voxel (from 1), each one connected
        region (6-connectivity).
    signals : numpy.ndarray of int, shape (n_parcels,)
        Which time course each parcel carries (parcels sharing one are
        indistinguishable from their data).
    subjects : list of numpy.ndarray
        One ``(n_volumes, n_voxels)`` float32 matrix per subject.
    """

    mask: np.ndarray
    labels: np.ndarray
    signals: np.ndarray
    subjects: list


def grow_parcels(mask, n_parcels, rng):
    """Partition a mask into contiguous parcels by simultaneous region growing.

    ``n_parcels`` seed voxels are drawn at random; each step, every parcel
    (in random order) annexes the unassigned face-neighbours of its voxels,
    so every parcel is one 6-connected region. Voxels not reachable from any
    seed (another connected piece of the mask) are left at 0.

    Parameters
    ----------
    mask : numpy.ndarray of bool
    n_parcels : int
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of int32, shape mask.shape
        Parcel numbers from 1, 0 outside.
    """
    from scipy.ndimage import binary_dilation

    mask = np.asarray(mask, dtype=bool)
    image = np.zeros(mask.shape, dtype=np.int32)
    seeds = rng.choice(np.flatnonzero(mask), size=int(n_parcels), replace=False)
    image.flat[seeds] = np.arange(1, n_parcels + 1)
    structure = connectivity_structure()
    while True:
        free = mask & (image == 0)
        grew = False
        for parcel in rng.permutation(np.arange(1, n_parcels + 1)):
            frontier = binary_dilation(image == parcel, structure) & free
            if frontier.any():
                image[frontier] = parcel
                free &= ~frontier
                grew = True
        if not grew:
            return image


def simulate_parcels(
    shape=(14, 14, 14),
    n_parcels=12,
    n_subjects=3,
    n_volumes=80,
    noise=1.0,
    n_signals=None,
    seed=0,
):
    """Data whose voxels are their parcel's time course plus noise.

    The mask is a ball filling the grid, partitioned by :func:`grow_parcels`.
    For each subject, parcel ``p`` carries time course ``signals[p]`` (one
    standard normal series per signal and subject), and every voxel adds
    independent Gaussian noise of standard deviation ``noise``.

    Parameters
    ----------
    shape : tuple of 3 int, default=(14, 14, 14)
        Grid shape.
    n_parcels : int, default=12
        Number of planted parcels.
    n_subjects : int, default=3
        Number of subjects.
    n_volumes : int, default=80
        Volumes per subject.
    noise : float, default=1.0
        Noise standard deviation (signals have unit variance).
    n_signals : int, optional
        Number of distinct time courses; parcel ``p`` carries signal
        ``p % n_signals``, so with fewer signals than parcels, separate
        parcels share one (like the two hemispheres of a network). Default:
        one per parcel.
    seed : int, default=0
        Seed of every draw.

    Returns
    -------
    PlantedParcels
    """
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=float)
    centre = (np.asarray(shape, dtype=float) - 1) / 2
    radius = np.sqrt(
        sum(((g - c) / (n / 2)) ** 2 for g, c, n in zip(grid, centre, shape, strict=True))
    )
    mask = radius <= 1.0
    image = grow_parcels(mask, n_parcels, rng)
    labels = image[mask]
    n_signals = int(n_signals or n_parcels)
    signals = np.arange(n_parcels) % n_signals
    subjects = []
    for _ in range(int(n_subjects)):
        courses = rng.standard_normal((n_volumes, n_signals))
        data = courses[:, signals[labels - 1]] + noise * rng.standard_normal(
            (n_volumes, labels.size)
        )
        subjects.append(data.astype(np.float32))
    return PlantedParcels(
        mask=mask, labels=labels.astype(np.int32), signals=signals, subjects=subjects
    )
