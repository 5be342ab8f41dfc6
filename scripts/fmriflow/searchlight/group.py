"""Group inference on subjects' searchlight accuracy maps on a shared grid.

Two permutation methods, both written here because nilearn and scipy lack
them, both on the subjects' observed maps and their first-level permutation
maps (from :func:`~fmriflow.searchlight.permutations.gnb_permutation_test`,
say):

* :func:`cluster_test` — Stelzer, Chen & Turner (2013), NeuroImage 65:69–82:
  group null maps average one randomly chosen permutation map per subject; a
  voxel-wise threshold from them forms clusters, and the largest cluster of
  every null map gives family-wise p-values of the observed clusters;
* :func:`prevalence_test` — Allefeld, Görgen & Haynes (2016), NeuroImage
  141:378–392: the minimum statistic over subjects, its permutation p-values
  (uncorrected, and corrected with the maximum over voxels) and the largest
  population prevalence of an effect they support; with a one-sample t-test
  against chance to report next to it.

Both draw the group null maps the same way (:func:`draw_indices`): draw
``d`` picks, for every subject independently and uniformly, one of that
subject's maps. By default (``include_observed=True``) a subject's maps are
its observed map and its permutation maps, since the observed labelling is
one of the permutations (the identity), as in Allefeld et al.; this makes
the observed group map exchangeable with the draws under the null
hypothesis, so that the prevalence p-values are valid with any number of
permutation maps, and the cluster p-values nearly so (the voxel-wise
threshold comes from the draws alone). With ``include_observed=False``
draws use the permutation maps only, as in Stelzer et al.; with few of
them this is liberal (in simulated null cohorts of 5 subjects with 10
permutation maps each, 14% had a cluster at a nominal family-wise 5%,
against about 6% with the observed maps included). Either way, p-values
are ``(1 + #{draws at least as extreme}) / (1 + n_draws)``: the observed
map counts as one more draw, Allefeld et al.'s first second-level
permutation.

Maps are compared at the coarser precision of the observed and permutation
maps (float64 observed accuracies are rounded to float32 when the
permutation maps are float32), so that equal accuracies tie; means and
minima over subjects are then taken in float64, the same way for observed
and null maps.

Draws are made and used ``batch`` at a time and never all kept: memory
depends on the batch, the grid and ``voxel_p * n_draws`` (the values the
voxel-wise threshold needs), and on ``n_draws`` only through the per-draw
null statistics returned (one number per draw).

Most group null values are never computed exactly, because they cannot
matter: a draw's mean counts only where it may exceed a voxel's threshold,
and its minimum only where it may be the draw's maximum (or reach the
observed minimum). Integer bounds of every map (:class:`BoundedSums`) and
bit maps (:class:`BitMaps`), a few times cheaper to combine than the
values, rule out the rest; every value that may matter is then computed
exactly as above, so results are those of computing them all. Work on a
batch is shared by ``n_jobs`` threads; results do not depend on it.
"""

import concurrent.futures
import contextlib
import itertools
import math
import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse, stats

from fmriflow.errors import InputError

#: Draws whose indices are generated at once (the random sequence does not
#: depend on ``batch``).
DRAW_BLOCK = 4096

#: Working memory (bytes) at most for one batch of group null maps.
BATCH_BYTES = 256e6

#: Draws per batch when memory allows (larger batches are no faster).
MAX_BATCH = 256

#: Candidates (pairs of a draw and a voxel whose statistic may matter) over
#: which a batch's statistics are computed for every pair at once instead.
DENSE_FRACTION = 0.03

#: Working memory (bytes) of one block of integer bounds (kept in cache).
BOUND_BLOCK_BYTES = 2**19

#: Quantile of the first batch's maxima of the minimum statistic below
#: which a draw's maximum is computed from all its voxels.
PILOT_QUANTILE = 0.05

#: Connectivity (neighbours of a voxel) → rank of
#: ``scipy.ndimage.generate_binary_structure``.
CONNECTIVITY = {6: 1, 18: 2, 26: 3}

CLUSTER_COLUMNS = ["cluster", "size_voxels", "i", "j", "k", "peak_accuracy", "fwe_p"]


@dataclass
class ClusterResult:
    """Cluster inference on the group mean accuracy (Stelzer et al. 2013).

    All maps are over the mask's voxels (``volume[mask]``, C order).

    Attributes
    ----------
    mean_accuracy : numpy.ndarray of float64, shape (n_voxels,)
        Mean over subjects of the observed accuracies.
    voxel_thresholds : numpy.ndarray of float64, shape (n_voxels,)
        The ``(floor(voxel_p * n_draws) + 1)``-th largest group null value of
        each voxel; a voxel is supra-threshold when strictly above it.
    cluster_labels : numpy.ndarray of int64, shape (n_voxels,)
        Cluster of each voxel, 0 for none, numbered by decreasing size (ties
        by the first voxel in C order).
    clusters : pandas.DataFrame
        One row per cluster: ``cluster``, ``size_voxels``, ``i``, ``j``, ``k``
        (grid index of the peak, the voxel of highest mean accuracy, first in
        C order among ties), ``peak_accuracy`` and ``fwe_p``.
    max_cluster_null : numpy.ndarray of int64, shape (n_draws,)
        Size of the largest cluster of each group null map (0 if none).
    fwe_p : numpy.ndarray of float64, shape (n_voxels,)
        Family-wise p-value of each voxel's cluster, 1 outside clusters.
    n_draws : int
        Group null maps drawn.
    voxel_p : float
        Exceedance probability of the voxel-wise threshold.
    connectivity : int
        Neighbours of a voxel in a cluster: 6 (faces), 18 (and edges) or 26.
    include_observed : bool
        Whether draws could pick the observed maps.
    """

    mean_accuracy: np.ndarray
    voxel_thresholds: np.ndarray
    cluster_labels: np.ndarray
    clusters: object
    max_cluster_null: np.ndarray
    fwe_p: np.ndarray
    n_draws: int
    voxel_p: float
    connectivity: int
    include_observed: bool


@dataclass
class PrevalenceResult:
    """Prevalence inference with the minimum statistic (Allefeld et al. 2016).

    Maps have one value per voxel (or per ROI: one value for a single ROI).

    Attributes
    ----------
    min_accuracy : numpy.ndarray of float64, shape (n_voxels,)
        Minimum over subjects of the observed accuracy.
    p_uncorrected : numpy.ndarray of float64, shape (n_voxels,)
        ``(1 + #{draws whose minimum >= observed minimum}) / (1 + n_draws)``.
    p_corrected : numpy.ndarray of float64, shape (n_voxels,)
        The same with the maximum over voxels of each draw's minimum: a
        family-wise p-value over voxels (equal to ``p_uncorrected`` for one
        voxel).
    gamma_uncorrected, gamma_corrected : numpy.ndarray of float64, shape (n_voxels,)
        Largest prevalence ``gamma0`` whose null hypothesis (prevalence at
        most ``gamma0``) is rejected at level ``alpha`` (:func:`prevalence_bound`),
        0 where none is.
    reject_uncorrected, reject_corrected : numpy.ndarray of bool, shape (n_voxels,)
        Global null hypothesis (no effect in any subject) rejected:
        ``p <= alpha``.
    gamma_max : float
        Largest bound these draws can give (from the smallest p-value,
        ``1 / (1 + n_draws)``).
    max_min_null : numpy.ndarray of float64, shape (n_draws,)
        Maximum over voxels of the minimum statistic of each draw.
    mean_accuracy : numpy.ndarray of float64, shape (n_voxels,)
        Mean over subjects of the observed accuracy.
    t, t_p : numpy.ndarray of float64, shape (n_voxels,)
        One-sample t statistic of the accuracies against chance and its
        one-sided p-value (``scipy.stats.ttest_1samp``, ``alternative="greater"``),
        uncorrected; nan or inf where all subjects have the same accuracy.
    chance : numpy.ndarray of float64, shape (n_voxels,)
        Chance level of each voxel.
    alpha : float
        Level of the tests.
    n_subjects, n_draws : int
        Subjects, and second-level permutations drawn.
    include_observed : bool
        Whether draws could pick the observed maps.
    """

    min_accuracy: np.ndarray
    p_uncorrected: np.ndarray
    p_corrected: np.ndarray
    gamma_uncorrected: np.ndarray
    gamma_corrected: np.ndarray
    reject_uncorrected: np.ndarray
    reject_corrected: np.ndarray
    gamma_max: float
    max_min_null: np.ndarray
    mean_accuracy: np.ndarray
    t: np.ndarray
    t_p: np.ndarray
    chance: np.ndarray
    alpha: float
    n_subjects: int
    n_draws: int
    include_observed: bool


def draw_indices(n_subjects, n_maps, n_draws, seed=0, batch=DRAW_BLOCK):
    """Which map every subject contributes to each group null map, a batch at a time.

    Parameters
    ----------
    n_subjects : int
        Subjects.
    n_maps : int
        Maps each subject offers.
    n_draws : int
        Group null maps.
    seed : int
        Seed of the ``numpy.random.Generator`` (``numpy.random.default_rng``).
    batch : int
        Draws per yielded array.

    Yields
    ------
    numpy.ndarray of int64, shape (batch, n_subjects)
        Map index of each subject in each draw (the last array may be
        shorter). Indices are generated ``DRAW_BLOCK`` draws at a time, so
        the sequence of draws is the same whatever ``batch``.
    """
    rng = np.random.default_rng(seed)
    block = np.empty((0, n_subjects), dtype=np.int64)
    used = generated = 0
    for start in range(0, n_draws, batch):
        wanted = min(batch, n_draws - start)
        pieces = []
        while wanted:
            if used == len(block):
                size = min(DRAW_BLOCK, n_draws - generated)
                block = rng.integers(0, n_maps, size=(size, n_subjects), dtype=np.int64)
                generated += size
                used = 0
            take = min(wanted, len(block) - used)
            # Copies, so that a spent block is freed.
            pieces.append(block[used : used + take].copy())
            used += take
            wanted -= take
        yield pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


class MapPool:
    """Every subject's maps a draw picks from, read without copying ``null``.

    Map 0 of a subject is its observed map when ``include_observed``, map
    ``m`` its permutation map ``m - include_observed``. Values are rounded to
    the coarser floating type of ``accuracy`` and ``null``, so that equal
    accuracies stored in float32 and float64 compare equal.
    """

    def __init__(self, accuracy, null, include_observed):
        coarse = min(accuracy.dtype, null.dtype, key=lambda t: np.finfo(t).bits)
        self.dtype = coarse
        self.observed = accuracy.astype(coarse)
        self.null = null
        self.shift = int(bool(include_observed))
        self.n_subjects, self.n_permutations, self.n_voxels = null.shape
        self.n_maps = self.n_permutations + self.shift

    def maps(self, subject, indices):
        """Maps ``indices`` of ``subject``, shape (len(indices), n_voxels)."""
        rows = self.null[subject][np.maximum(indices - self.shift, 0)]
        rows = rows.astype(self.dtype, copy=False)
        if self.shift:
            rows[indices == 0] = self.observed[subject]
        return rows

    def group_mean(self, indices):
        """Mean over subjects of the maps ``indices[:, s]`` of subject ``s``, float64."""
        return combine((self.maps(s, indices[:, s]) for s in range(self.n_subjects)), "mean")

    def group_min(self, indices):
        """Minimum over subjects of the maps ``indices[:, s]`` of subject ``s``, float64."""
        return combine((self.maps(s, indices[:, s]) for s in range(self.n_subjects)), "min")

    def observed_maps(self):
        """The observed maps, one row each, as ``maps`` gives them."""
        return [self.observed[s][None] for s in range(self.n_subjects)]

    def all_maps(self, subject):
        """Every map of ``subject``, in the order draws index them."""
        return self.maps(subject, np.arange(self.n_maps))

    def values(self, subject, indices, voxels):
        """Value of map ``indices[p]`` of ``subject`` at voxel ``voxels[p]``, as ``maps`` gives it."""
        rows = np.maximum(indices - self.shift, 0)
        values = self.null[subject][rows, voxels].astype(self.dtype, copy=False)
        if self.shift:
            observed = indices == 0
            values[observed] = self.observed[subject][voxels[observed]]
        return values

    def pair_statistic(self, indices, draws, voxels, how):
        """``group_mean`` or ``group_min`` (``how``) of draw ``draws[p]`` at voxel ``voxels[p]``.

        The same values, added or compared in the same order, as the
        corresponding entries of the whole maps.
        """
        return combine(
            (self.values(s, indices[draws, s], voxels) for s in range(self.n_subjects)), how
        )


def combine(rows, how):
    """Mean or minimum over subjects of float arrays, added in subject order in float64.

    The observed group map and the null maps go through this one function,
    so equal inputs give bit-equal statistics.
    """
    total = None
    count = 0
    for row in rows:
        count += 1
        if total is None:
            total = np.array(row, dtype=np.float64)
        elif how == "mean":
            total += row
        else:
            np.minimum(total, row, out=total)
    return total / count if how == "mean" else total


def cluster_test(
    accuracy,
    null,
    mask,
    n_draws=100_000,
    voxel_p=0.001,
    connectivity=6,
    seed=0,
    batch=None,
    include_observed=True,
):
    """Permutation-based cluster inference on the group mean accuracy.

    The method of Stelzer et al. (2013): group null maps are means over
    subjects of one randomly drawn map per subject (:func:`draw_indices`).
    A first pass over the draws keeps, per voxel, the largest
    ``floor(voxel_p * n_draws) + 1`` values; the smallest of them is the
    voxel's threshold, so a value strictly above it is reached by at most
    ``voxel_p * n_draws`` draws (for ``n_draws = 1e5`` and ``voxel_p =
    0.001``: above the 101st largest). A second pass regenerates the same
    draws from ``seed``, thresholds them and records each one's largest
    cluster. Observed clusters of the thresholded group mean get the
    family-wise p-value ``(1 + #{draws with largest cluster >= size}) / (1 +
    n_draws)``.

    Parameters
    ----------
    accuracy : array-like, shape (n_subjects, n_voxels)
        Observed accuracies over the mask (``volume[mask]``) of each subject.
    null : array-like, shape (n_subjects, n_permutations, n_voxels)
        Each subject's permutation accuracy maps (float32 is fine, and not
        copied).
    mask : array-like of bool, shape (x, y, z)
        The shared grid; its ``n_voxels`` True voxels in C order.
    n_draws : int
        Group null maps (the paper draws 1e5).
    voxel_p : float
        Exceedance probability of the voxel-wise cluster-forming threshold,
        in (0, 1). ``voxel_p * n_draws`` should be large (100 in the paper):
        the threshold is computed from the draws without the observed map,
        so the observed map exceeds it a fraction ``1 / floor(voxel_p *
        n_draws)`` more often than a draw does.
    connectivity : {6, 18, 26}
        Voxels sharing a face (6), or also an edge (18), or also a corner
        (26) are in the same cluster.
    seed : int
        Seed of the draws.
    batch : int or None
        Draws made and processed at once (None: ``MAX_BATCH``, or
        ``floor(voxel_p * n_draws) + 1`` if more, within ``BATCH_BYTES`` of
        working memory). Results do not depend on it.
    include_observed : bool
        Let draws pick a subject's observed map too (see the module
        docstring); False draws from ``null`` only, as Stelzer et al. do.

    Returns
    -------
    ClusterResult

    Notes
    -----
    Besides a batch of group maps, the first pass holds ``floor(voxel_p *
    n_draws) + 1 + batch`` rows of ``n_voxels`` float64 values: for 1e5
    draws, ``voxel_p = 0.001``, 40,000 voxels and 100 draws a batch, 64 MB.
    With 20 subjects of 100 float32 permutation maps of 42,000 voxels, 1e5
    draws took 7 to 9 minutes and under 250 MB besides the maps, on one core.
    """
    accuracy, null = check_maps(accuracy, null)
    mask = check_mask(mask, accuracy.shape[1])
    n_draws = check_count(n_draws, "n_draws", "Ask for e.g. 100000 (Stelzer et al.)")
    voxel_p = check_probability(voxel_p, "voxel_p", "Use e.g. 0.001")
    structure = cluster_structure(connectivity)
    pool = MapPool(accuracy, null, include_observed)
    # floor(voxel_p * n_draws) + 1, with the product rounded as written in
    # decimal (0.57 * 100 is 56.99999999999999 in binary).
    keep = math.floor(round(voxel_p * n_draws, 9)) + 1
    batch = batch_size(batch, n_draws, accuracy.shape[1], mask.size, keep)

    thresholds = voxel_thresholds(pool, n_draws, keep, seed, batch)
    max_null = np.empty(n_draws, dtype=np.int64)
    start = 0
    for indices in draw_indices(pool.n_subjects, pool.n_maps, n_draws, seed, batch):
        above = pool.group_mean(indices) > thresholds
        max_null[start : start + len(indices)] = max_cluster_sizes(above, mask, structure)
        start += len(indices)

    mean = combine(pool.observed_maps(), "mean")[0]
    labels, sizes = label_clusters(mean > thresholds, mask, structure[1])
    ranked = np.sort(max_null)
    at_least = n_draws - np.searchsorted(ranked, sizes, side="left")
    cluster_p = (1.0 + at_least) / (1.0 + n_draws)
    fwe_p = np.ones(len(mean))
    fwe_p[labels > 0] = cluster_p[labels[labels > 0] - 1]
    return ClusterResult(
        mean_accuracy=mean,
        voxel_thresholds=thresholds,
        cluster_labels=labels,
        clusters=cluster_table(mean, labels, sizes, cluster_p, mask),
        max_cluster_null=max_null,
        fwe_p=fwe_p,
        n_draws=n_draws,
        voxel_p=voxel_p,
        connectivity=int(connectivity),
        include_observed=bool(include_observed),
    )


def voxel_thresholds(pool, n_draws, keep, seed, batch):
    """The ``keep``-th largest group null value of every voxel.

    Streams the draws, keeping only the ``keep`` largest values of every
    voxel: they and a new batch share one buffer, partitioned in place.
    """
    buffer = np.empty((keep + batch, pool.n_voxels))
    filled = 0
    for indices in draw_indices(pool.n_subjects, pool.n_maps, n_draws, seed, batch):
        buffer[filled : filled + len(indices)] = pool.group_mean(indices)
        filled += len(indices)
        if filled > keep:
            values = buffer[:filled]
            values.partition(filled - keep, axis=0)
            buffer[:keep] = values[filled - keep :]
            filled = keep
    return buffer[:filled].min(axis=0)


def cluster_structure(connectivity):
    """Structuring elements of clusters: 3-D, and 4-D for a stack of volumes."""
    if connectivity not in CONNECTIVITY:
        raise InputError(
            f"connectivity {connectivity!r}",
            "is not a number of neighbours of a voxel",
            "Use 6 (faces), 18 (faces and edges) or 26 (faces, edges and corners)",
        )
    three = ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])
    four = np.zeros((3, 3, 3, 3), dtype=bool)
    four[1] = three  # no connection between volumes of the stack
    return four, three


def max_cluster_sizes(above, mask, structure):
    """Size of the largest cluster of every map of a batch.

    Parameters
    ----------
    above : numpy.ndarray of bool, shape (n_maps, n_voxels)
        Supra-threshold voxels of each map.
    mask : numpy.ndarray of bool, shape (x, y, z)
        The grid.
    structure : tuple
        From :func:`cluster_structure`.

    Returns
    -------
    numpy.ndarray of int64, shape (n_maps,)
        0 for a map without supra-threshold voxels.
    """
    volumes = np.zeros((len(above), *mask.shape), dtype=bool)
    volumes[:, mask] = above
    labels, n_clusters = ndimage.label(volumes, structure=structure[0])
    out = np.zeros(len(above), dtype=np.int64)
    if n_clusters == 0:
        return out
    labels = labels.reshape(len(above), -1)
    sizes = np.bincount(labels.ravel(), minlength=n_clusters + 1)
    map_of = np.zeros(n_clusters + 1, dtype=np.int64)
    rows, columns = np.nonzero(labels)
    map_of[labels[rows, columns]] = rows
    np.maximum.at(out, map_of[1:], sizes[1:])
    return out


def label_clusters(above, mask, structure):
    """Clusters of one map, numbered by decreasing size.

    Returns
    -------
    labels : numpy.ndarray of int64, shape (n_voxels,)
        Cluster of each voxel (0: none).
    sizes : numpy.ndarray of int64, shape (n_clusters,)
        Voxels of cluster ``c`` at ``sizes[c - 1]``, decreasing.
    """
    volume = np.zeros(mask.shape, dtype=bool)
    volume[mask] = above
    labels, n_clusters = ndimage.label(volume, structure=structure)
    labels = labels[mask].astype(np.int64)
    sizes = np.bincount(labels, minlength=n_clusters + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    renumber = np.zeros(n_clusters + 1, dtype=np.int64)
    renumber[order + 1] = np.arange(1, n_clusters + 1)
    return renumber[labels], sizes[order]


def cluster_table(mean, labels, sizes, cluster_p, mask):
    """One row per cluster: size, peak voxel and accuracy, family-wise p-value."""
    import pandas as pd

    ijk = np.argwhere(mask)
    rows = []
    for c, size in enumerate(sizes, start=1):
        members = np.flatnonzero(labels == c)
        peak = members[np.argmax(mean[members])]
        rows.append((c, int(size), *ijk[peak].tolist(), mean[peak], cluster_p[c - 1]))
    table = pd.DataFrame(rows, columns=CLUSTER_COLUMNS)
    integers = {name: "int64" for name in CLUSTER_COLUMNS[:5]}
    return table.astype({**integers, "peak_accuracy": "float64", "fwe_p": "float64"})


def peaks_mm(clusters, affine):
    """World coordinates (mm) of the cluster peaks: ``affine @ (i, j, k, 1)``.

    Parameters
    ----------
    clusters : pandas.DataFrame
        :attr:`ClusterResult.clusters`.
    affine : array-like, shape (4, 4)
        Voxel-to-world affine of the grid.

    Returns
    -------
    numpy.ndarray of float64, shape (n_clusters, 3)
        ``x``, ``y``, ``z`` of each cluster's peak, in the table's order.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(
            "affine", f"has shape {affine.shape}, not (4, 4)", "Pass the image's 4x4 affine"
        )
    ijk = clusters[["i", "j", "k"]].to_numpy(dtype=np.float64)
    homogeneous = np.column_stack([ijk, np.ones(len(ijk))])
    return (affine @ homogeneous.T).T[:, :3]


def prevalence_test(
    accuracy,
    null,
    chance=0.5,
    alpha=0.05,
    n_draws=100_000,
    seed=0,
    batch=None,
    include_observed=True,
):
    """Population prevalence inference with the minimum statistic.

    The method of Allefeld et al. (2016): the statistic is the minimum over
    subjects of the accuracy; second-level permutations draw one map per
    subject (:func:`draw_indices`), and the p-values count the draws whose
    minimum is at least the observed one, per voxel (uncorrected) or for
    the largest minimum over voxels (corrected). The observed maps count as
    one more draw (the paper's first permutation). From a p-value ``p`` of
    the global null hypothesis, :func:`prevalence_bound` gives the largest
    prevalence ``gamma0`` such that "at most a fraction ``gamma0`` of the
    population has an effect" is rejected at level ``alpha``.

    Parameters
    ----------
    accuracy : array-like, shape (n_subjects, n_voxels) or (n_subjects,)
        Observed accuracies: per voxel (or ROI) of every subject, or of one
        ROI. Several columns are corrected together (voxels or ROIs alike).
    null : array-like, shape (n_subjects, n_permutations, n_voxels) or (n_subjects, n_permutations)
        Each subject's first-level permutation accuracies (float32 is fine,
        and not copied).
    chance : float or array-like, shape (n_voxels,)
        Chance accuracy, for the t-test only.
    alpha : float
        Level of the tests, in (0, 1).
    n_draws : int
        Second-level permutations (the paper uses 1e5 when not all
        combinations are enumerated).
    seed, batch, include_observed
        As in :func:`cluster_test` (include_observed=True is the paper's
        choice of first-level permutations, the identity among them).

    Returns
    -------
    PrevalenceResult
        Maps of shape (n_voxels,): (1,) for one ROI.
    """
    accuracy, null = np.asarray(accuracy), np.asarray(null)
    if accuracy.ndim == 1 and null.ndim == 2:
        accuracy, null = accuracy[:, None], null[:, :, None]
    accuracy, null = check_maps(accuracy, null)
    n_subjects, n_voxels = accuracy.shape
    n_draws = check_count(n_draws, "n_draws", "Ask for e.g. 100000 (Allefeld et al.)")
    alpha = check_probability(alpha, "alpha", "Use e.g. 0.05")
    chance = check_chance(chance, n_voxels)
    pool = MapPool(accuracy, null, include_observed)
    batch = batch_size(batch, n_draws, n_voxels, 0)

    observed = combine(pool.observed_maps(), "min")[0]
    count = np.zeros(n_voxels, dtype=np.int64)
    max_min = np.empty(n_draws)
    start = 0
    for indices in draw_indices(n_subjects, pool.n_maps, n_draws, seed, batch):
        minimum = pool.group_min(indices)
        count += np.count_nonzero(minimum >= observed, axis=0)
        max_min[start : start + len(indices)] = minimum.max(axis=1)
        start += len(indices)

    p_u = (1.0 + count) / (1.0 + n_draws)
    at_least = n_draws - np.searchsorted(np.sort(max_min), observed, side="left")
    p_c = (1.0 + at_least) / (1.0 + n_draws)
    t = stats.ttest_1samp(accuracy, chance[None, :], axis=0, alternative="greater")
    return PrevalenceResult(
        min_accuracy=observed,
        p_uncorrected=p_u,
        p_corrected=p_c,
        gamma_uncorrected=prevalence_bound(p_u, n_subjects, alpha),
        gamma_corrected=prevalence_bound(p_c, n_subjects, alpha),
        reject_uncorrected=p_u <= alpha,
        reject_corrected=p_c <= alpha,
        gamma_max=float(prevalence_bound(1.0 / (1.0 + n_draws), n_subjects, alpha)),
        max_min_null=max_min,
        mean_accuracy=combine(pool.observed_maps(), "mean")[0],
        t=np.asarray(t.statistic, dtype=np.float64),
        t_p=np.asarray(t.pvalue, dtype=np.float64),
        chance=chance,
        alpha=alpha,
        n_subjects=n_subjects,
        n_draws=n_draws,
        include_observed=bool(include_observed),
    )


def prevalence_p(gamma0, p, n_subjects):
    """p-value of the prevalence null hypothesis ``gamma <= gamma0``.

    ``((1 - gamma0) * p**(1/S) + gamma0)**S`` for ``S`` subjects, where
    ``p`` is the p-value of the global null hypothesis (Allefeld et al.
    2016, eq. 24).
    """
    root = np.asarray(p, dtype=np.float64) ** (1.0 / n_subjects)
    return ((1.0 - gamma0) * root + gamma0) ** n_subjects


def prevalence_bound(p, n_subjects, alpha):
    """Largest ``gamma0`` with ``prevalence_p(gamma0, p, S) <= alpha``, 0 if none.

    ``(alpha**(1/S) - p**(1/S)) / (1 - p**(1/S))``, clipped at 0 (where
    ``p > alpha`` no prevalence null hypothesis is rejected).

    Parameters
    ----------
    p : float or array-like
        p-values of the global null hypothesis.
    n_subjects : int
        Subjects ``S``.
    alpha : float
        Level.

    Returns
    -------
    numpy.ndarray of float64 (shape of ``p``)
    """
    root = np.asarray(p, dtype=np.float64) ** (1.0 / n_subjects)
    level = alpha ** (1.0 / n_subjects)
    rejected = root <= level
    gamma = np.zeros(root.shape)
    gamma[rejected] = (level - root[rejected]) / (1.0 - root[rejected])
    return gamma


def batch_size(batch, n_draws, n_voxels, grid_size, keep=0):
    """Draws per batch: ``batch``, or at most ``BATCH_BYTES`` of working memory.

    Batches of more than ``MAX_BATCH`` draws gain nothing, unless to spread
    the partition of ``keep`` kept values per voxel over more draws.
    """
    if batch is None:
        per_draw = 4 * 8 * n_voxels + 6 * grid_size
        return int(max(1, min(n_draws, max(MAX_BATCH, keep), BATCH_BYTES // per_draw)))
    return check_count(batch, "batch", "Use e.g. 100, or None to size batches by memory")


def check_maps(accuracy, null):
    """Observed and permutation maps as float arrays of matching shapes."""
    accuracy, null = as_float(accuracy), as_float(null)
    if accuracy.ndim != 2 or null.ndim != 3:
        raise InputError(
            "group accuracy maps",
            f"observed maps of shape {accuracy.shape} and permutation maps of shape "
            f"{null.shape}, not (n_subjects, n_voxels) and "
            "(n_subjects, n_permutations, n_voxels)",
            "Stack one row per subject, the permutations of a subject along the middle axis",
        )
    if null.shape[0] != accuracy.shape[0] or null.shape[2] != accuracy.shape[1]:
        raise InputError(
            "group accuracy maps",
            f"observed maps of shape {accuracy.shape} (subjects, voxels) and permutation "
            f"maps of shape {null.shape} (subjects, permutations, voxels) disagree",
            "Give every subject its observed and permutation maps on the same voxels, "
            "in the same subject order",
        )
    if accuracy.shape[0] < 2:
        raise InputError(
            "group accuracy maps",
            f"{accuracy.shape[0]} subject(s); group inference needs at least 2",
            "Add subjects",
        )
    if null.shape[1] < 1 or accuracy.shape[1] < 1:
        raise InputError(
            "group accuracy maps",
            f"{null.shape[1]} permutation maps of {accuracy.shape[1]} voxels",
            "Give at least one permutation map per subject, and at least one voxel",
        )
    bad = [s for s in range(len(null)) if not np.isfinite(null[s]).all()]
    if not np.isfinite(accuracy).all() or bad:
        where = f"permutation maps of subjects {bad}" if bad else "observed maps"
        raise InputError(
            "group accuracy maps",
            f"the {where} hold NaN or infinite values",
            "Give accuracies of voxels every subject has (restrict the mask to them)",
        )
    return accuracy, null


def as_float(values):
    """``values`` as an array of a floating type (float64 unless already floating)."""
    values = np.asarray(values)
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)


def check_mask(mask, n_voxels):
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.dtype != bool or int(mask.sum()) != n_voxels:
        raise InputError(
            "group mask",
            f"is a {mask.dtype} array of shape {mask.shape} with "
            f"{int(np.count_nonzero(mask))} True voxels, not a 3-D boolean mask of the "
            f"maps' {n_voxels} voxels",
            "Pass the boolean mask whose True voxels (C order) the maps hold",
        )
    return mask


def check_count(value, name, fix):
    if isinstance(value, bool) or not float(value).is_integer() or value < 1:
        raise InputError(f"{name} {value!r}", "must be a whole number, at least 1", fix)
    return int(value)


def check_probability(value, name, fix):
    if not 0.0 < float(value) < 1.0:
        raise InputError(f"{name} {value!r}", "must be strictly between 0 and 1", fix)
    return float(value)


def check_chance(chance, n_voxels):
    chance = np.asarray(chance, dtype=np.float64)
    if chance.ndim == 0:
        chance = np.full(n_voxels, float(chance))
    if chance.shape != (n_voxels,) or not np.isfinite(chance).all():
        raise InputError(
            "chance level",
            f"of shape {chance.shape} for {n_voxels} voxels, or not finite",
            "Give one number, or one finite number per voxel",
        )
    return chance
