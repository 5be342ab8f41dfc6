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
from scipy import sparse
from scipy.sparse import csgraph

from fmriflow.errors import InputError

# scipy.ndimage and scipy.stats are imported where used: the workflow imports
# this package when it parses (to check searchlight radii), before any job.

#: Draws whose indices are generated at once (the random sequence does not
#: depend on ``batch``).
DRAW_BLOCK = 4096

#: Working memory (bytes) at most for one batch of group null maps.
BATCH_BYTES = 256e6

#: Draws per batch when memory allows (larger batches are no faster).
MAX_BATCH = 256

#: Candidates (pairs of a draw and a voxel whose statistic may matter) over
#: which a batch's statistics are computed for every pair at once instead.
DENSE_FRACTION = 0.1

#: Working memory (bytes) of one block of integer bounds (kept in cache).
BOUND_BLOCK_BYTES = 2**19

#: Quantile of the first batch's maxima of the minimum statistic below
#: which a draw's maximum is computed from all its voxels.
PILOT_QUANTILE = 0.02

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
        """Value of map ``indices[p]`` of ``subject`` at voxel ``voxels[p]``, as in ``maps``."""
        rows = np.maximum(indices - self.shift, 0) if self.shift else indices
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


class Parts:
    """Calls of a function on contiguous parts of ``range(n)``, in worker threads.

    numpy releases the GIL in the array operations the parts run, so threads
    share the work; every part's result is what one call would compute.
    """

    def __init__(self, executor, n_parts):
        self.executor = executor
        self.n_parts = n_parts

    def map(self, function, n_items, smallest=1):
        """``[function(part) for part in parts]``: slices covering ``range(n_items)`` in order.

        At most one part per thread, each of at least ``smallest`` items
        (one part, possibly empty, when there are fewer).
        """
        n_parts = max(1, min(self.n_parts, n_items // max(1, smallest)))
        edges = [n_items * i // n_parts for i in range(n_parts + 1)]
        parts = [slice(a, b) for a, b in itertools.pairwise(edges)]
        if self.executor is None or n_parts == 1:
            return [function(part) for part in parts]
        return list(self.executor.map(function, parts))


@contextlib.contextmanager
def worker_threads(n_jobs):
    """:class:`Parts` over ``n_jobs`` threads (None or -1: one per CPU)."""
    if n_jobs in (None, -1):
        n_jobs = os.cpu_count() or 1
    n_jobs = check_count(n_jobs, "n_jobs", "Use e.g. 2, or -1 for one thread per CPU")
    if n_jobs == 1:
        yield Parts(None, 1)
        return
    with concurrent.futures.ThreadPoolExecutor(n_jobs) as executor:
        yield Parts(executor, n_jobs)


def dense_statistic(pool, indices, how, parts):
    """``pool.group_mean(indices)`` or ``pool.group_min(indices)`` (``how``), rows shared out."""
    function = pool.group_mean if how == "mean" else pool.group_min
    return np.concatenate(parts.map(lambda rows: function(indices[rows]), len(indices)))


def pair_statistic(pool, indices, draws, voxels, how, parts):
    """:meth:`MapPool.pair_statistic`, pairs shared out."""
    return np.concatenate(
        parts.map(
            lambda part: pool.pair_statistic(indices, draws[part], voxels[part], how),
            len(draws),
            smallest=4096,
        )
    )


class BoundedSums:
    """Integer upper bounds of the sums over subjects of drawn maps.

    Subject ``s``'s map value ``x`` at voxel ``v`` is stored as the integer
    ``q = round((x - low[v]) / step[v])`` (``low``: the voxel's smallest
    value over all maps, ``step``: its range over ``levels``), so that
    ``x < low[v] + (q + 1) * step[v]`` and a group mean is below
    ``low[v] + (Q / n_subjects + 1) * step[v]`` for the sum ``Q`` of the
    integers — a sum of small integers, several times cheaper to form than
    the sum of the values. Draws whose bound is at most a voxel's threshold
    (:meth:`cut`) cannot exceed it.
    """

    def __init__(self, pool):
        n = pool.n_subjects
        self.n_subjects = n
        self.dtype = np.dtype(np.uint16 if n <= 255 else np.uint32)
        # Sums of n integers up to `levels` fit the type.
        self.levels = min(np.iinfo(self.dtype).max // n, 2**16 - 1)
        low = high = None
        for s in range(n):
            maps = pool.all_maps(s)
            low_s, high_s = maps.min(axis=0), maps.max(axis=0)
            low = low_s if low is None else np.minimum(low, low_s)
            high = high_s if high is None else np.maximum(high, high_s)
        low, high = low.astype(np.float64), high.astype(np.float64)
        scale = np.abs(low) + np.abs(high)
        # Steps of at least 1e-12 of the values' magnitude keep the rounding
        # of (x - low) / step far below half a step.
        step = np.maximum((high - low) / self.levels, 1e-12 * scale)
        self.step = np.maximum(step, np.finfo(np.float64).tiny)
        self.low = low
        # More than the rounding error of a mean of n values in float64.
        self.slack = 1e-15 * n * scale
        self.tables = [self.quantize(pool.all_maps(s)) for s in range(n)]
        self.block = max(1, int(BOUND_BLOCK_BYTES // (self.dtype.itemsize * pool.n_voxels)))

    def quantize(self, maps):
        """The integers of ``maps`` (one row per map)."""
        q = np.floor((maps - self.low) / self.step + 0.5)
        return np.minimum(q, self.levels).astype(self.dtype)

    def cut(self, thresholds, voxels=slice(None)):
        """Smallest integer sum whose group mean may exceed the threshold, at ``voxels``.

        One less than that, for the rounding of this computation: a draw
        whose sum is below the cut has a mean at most the threshold.
        """
        low, step, slack = self.low[voxels], self.step[voxels], self.slack[voxels]
        x = self.n_subjects * ((thresholds - low - slack) / step - 1.0)
        top = np.iinfo(self.dtype).max
        return np.clip(np.floor(x) - 1.0, 0, top).astype(self.dtype)

    def candidates(self, indices, cut, parts):
        """Pairs of a draw and a voxel whose group mean may exceed the voxel's threshold.

        Parameters
        ----------
        indices : numpy.ndarray of int64, shape (n_draws, n_subjects)
            The batch's draws.
        cut : numpy.ndarray, shape (n_voxels,)
            From :meth:`cut`.
        parts : Parts
            Worker threads.

        Returns
        -------
        (draws, voxels) or None
            Rows of ``indices`` and voxels whose integer sum reaches the
            cut, by draw then voxel; None when they are more than
            ``DENSE_FRACTION`` of the pairs (then better all computed).
        """
        n_voxels = len(cut)

        def work(rows):
            found, count = [], 0
            allowed = DENSE_FRACTION * (rows.stop - rows.start) * n_voxels
            # Blocks of a few draws, so that the sums stay in cache.
            for start in range(rows.start, rows.stop, self.block):
                chosen = indices[start : min(start + self.block, rows.stop)]
                total = self.tables[0][chosen[:, 0]]
                for s in range(1, self.n_subjects):
                    total += self.tables[s][chosen[:, s]]
                draws, voxels = np.divmod(np.flatnonzero(total >= cut), n_voxels)
                count += len(draws)
                if count > allowed:
                    return None
                found.append((draws + start, voxels))
            return found

        results = parts.map(work, len(indices))
        if any(found is None for found in results):
            return None
        found = [pair for part in results for pair in part]
        return tuple(np.concatenate([pair[i] for pair in found]) for i in (0, 1))


class TopValues:
    """The ``keep`` largest values of every voxel among those added so far, and their draws.

    Each voxel has room for ``keep + room`` values; when a voxel's values
    would overflow, or have grown by a quarter since it was last sorted
    out, its ``keep`` largest are kept and the smallest of them becomes its
    threshold. Values at most the threshold need not be added: they cannot
    be among the ``keep`` largest (ties leave the ``keep``-th largest value
    unchanged), and every value above the final threshold is kept.
    """

    def __init__(self, n_voxels, keep, room, n_draws):
        self.keep = keep
        self.size = keep + room
        self.values = np.full((n_voxels, self.size), -np.inf)
        self.draws = np.zeros((n_voxels, self.size), dtype=index_type(n_draws))
        self.fill = np.zeros(n_voxels, dtype=np.int64)
        self.threshold = np.full(n_voxels, -np.inf)

    def add(self, voxels, values, draws):
        """Add ``values[p]`` of draw ``draws[p]`` to voxel ``voxels[p]``.

        ``voxels`` ascending, at most ``room`` values per voxel. Returns the
        voxels whose threshold changed.
        """
        n_voxels = len(self.fill)
        counts = np.bincount(voxels, minlength=n_voxels)
        full = np.flatnonzero(self.fill + counts > self.size)
        if len(full):
            self.compact(full)
            above = values > self.threshold[voxels]
            voxels, values, draws = voxels[above], values[above], draws[above]
            counts = np.bincount(voxels, minlength=n_voxels)
        starts = np.cumsum(counts) - counts
        slots = self.fill[voxels] + (np.arange(len(voxels)) - starts[voxels])
        self.values[voxels, slots] = values
        self.draws[voxels, slots] = draws
        self.fill += counts
        grown = np.flatnonzero(self.fill >= self.keep + max(1, self.keep // 4))
        self.compact(grown)
        return np.union1d(full, grown)

    def compact(self, rows):
        """Keep the ``keep`` largest values of voxels ``rows``, the smallest as threshold."""
        step = max(1, int(BATCH_BYTES // (8 * 32 * self.size)))
        for start in range(0, len(rows), step):
            some = rows[start : start + step]
            # Slots past a voxel's fill hold -inf.
            width = max(int(self.fill[some].max()), self.keep)
            block = self.values[some, :width]
            order = np.argpartition(block, width - self.keep, axis=1)[:, width - self.keep :]
            top = np.take_along_axis(block, order, axis=1)
            draws = np.take_along_axis(self.draws[some, :width], order, axis=1)
            self.draws[some, : self.keep] = draws
            self.values[some, : self.keep] = top
            self.values[some, self.keep :] = -np.inf
            self.threshold[some] = top.min(axis=1)
            self.fill[some] = self.keep

    def finish(self):
        """The ``keep``-th largest value of every voxel (each has at least ``keep``).

        Returns
        -------
        thresholds : numpy.ndarray of float64, shape (n_voxels,)
        keys : numpy.ndarray of int64
            ``draw * n_voxels + voxel`` of the values above the threshold,
            ascending.
        """
        n_voxels = len(self.fill)
        self.compact(np.arange(n_voxels))
        above = self.values[:, : self.keep] > self.threshold[:, None]
        keys = self.draws[:, : self.keep][above].astype(np.int64)
        keys *= n_voxels
        keys += np.repeat(np.arange(n_voxels), np.count_nonzero(above, axis=1))
        keys.sort()
        return self.threshold, keys


def index_type(n):
    """The smaller integer type that holds ``0 .. n - 1``."""
    return np.int32 if n <= np.iinfo(np.int32).max else np.int64


class BitMaps:
    """Every map of every subject as bits, one per voxel: is the value at least a level.

    One table per level (a number, or one per voxel). The bits of a draw's
    maps, AND-ed over subjects, say where its minimum reaches the level.
    """

    def __init__(self, pool, levels):
        n_bytes = -(-pool.n_voxels // 8)
        width = -(-n_bytes // 8) * 8  # whole 64-bit words
        self.n_voxels = pool.n_voxels
        self.tables = [[] for _ in levels]
        for s in range(pool.n_subjects):
            maps = pool.all_maps(s)
            for table, level in zip(self.tables, levels, strict=True):
                bits = np.zeros((pool.n_maps, width), dtype=np.uint8)
                bits[:, :n_bytes] = np.packbits(maps >= level, axis=1)
                table.append(bits.view(np.uint64))

    def all(self, which, indices):
        """Packed bits (a row of bytes per draw): where all drawn maps reach level ``which``."""
        table = self.tables[which]
        words = table[0][indices[:, 0]]
        for s in range(1, len(table)):
            words &= table[s][indices[:, s]]
        return words.view(np.uint8)

    def counts(self, which, indices, parts):
        """Draws, per voxel, whose maps all reach level ``which`` there."""

        def work(rows):
            bits = np.unpackbits(self.all(which, indices[rows]), axis=1, count=self.n_voxels)
            return bits.sum(axis=0, dtype=np.int64)

        return sum(parts.map(work, len(indices)))


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
    n_jobs=1,
):
    """Permutation-based cluster inference on the group mean accuracy.

    The method of Stelzer et al. (2013): group null maps are means over
    subjects of one randomly drawn map per subject (:func:`draw_indices`).
    A pass over the draws keeps, per voxel, the largest
    ``floor(voxel_p * n_draws) + 1`` values and the draws they come from;
    the smallest of them is the voxel's threshold, so a value strictly
    above it is reached by at most ``voxel_p * n_draws`` draws (for
    ``n_draws = 1e5`` and ``voxel_p = 0.001``: above the 101st largest).
    Those values are among the kept ones, so their draws give every draw's
    supra-threshold voxels, and its largest cluster. Observed clusters of
    the thresholded group mean get the family-wise p-value ``(1 + #{draws
    with largest cluster >= size}) / (1 + n_draws)``.

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
        Draws made and processed at once (None: ``MAX_BATCH``, within
        ``BATCH_BYTES`` of working memory). Results do not depend on it.
    include_observed : bool
        Let draws pick a subject's observed map too (see the module
        docstring); False draws from ``null`` only, as Stelzer et al. do.
    n_jobs : int
        Threads sharing the work (-1 or None: one per CPU). Results do not
        depend on it.

    Returns
    -------
    ClusterResult

    Notes
    -----
    Besides a batch of draws, this holds the integer bounds of every map
    (2 bytes a value for up to 255 subjects) and, per voxel, room for the
    ``floor(voxel_p * n_draws) + 1`` kept values and a quarter more (at
    least 16), with their draws (12 bytes each): for 20 subjects of 100
    permutation maps of 28,144 voxels and 1e5 draws, 114 and 43 MB. There,
    1e5 draws take about 25 s of CPU (computing every group mean took 7 to
    9 minutes).
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
    batch = batch_size(batch, n_draws, accuracy.shape[1])

    with worker_threads(n_jobs) as parts:
        thresholds, keys = voxel_thresholds(pool, n_draws, keep, seed, batch, parts)
    # The supra-threshold voxels of every draw, a batch of draws at a time.
    neighbours = neighbour_table(mask, connectivity)
    n_voxels = accuracy.shape[1]
    max_null = np.empty(n_draws, dtype=np.int64)
    for start in range(0, n_draws, batch):
        stop = min(start + batch, n_draws)
        first, last = np.searchsorted(keys, [start * n_voxels, stop * n_voxels])
        draws, voxels = np.divmod(keys[first:last], n_voxels)
        max_null[start:stop] = max_cluster_sizes(draws - start, voxels, stop - start, neighbours)

    mean = combine(pool.observed_maps(), "mean")[0]
    labels, sizes = label_clusters(mean > thresholds, mask, structure)
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


def voxel_thresholds(pool, n_draws, keep, seed, batch, parts):
    """The ``keep``-th largest group null value of every voxel, and the draws above it.

    Streams the draws, keeping only the ``keep`` largest values of every
    voxel and their draws (:class:`TopValues`); a draw's mean at a voxel
    is computed only if its bound (:class:`BoundedSums`) exceeds the
    voxel's running threshold, below which no value can count (all of
    them, a few draws at a time, while too many may).

    Returns
    -------
    thresholds : numpy.ndarray of float64, shape (n_voxels,)
    keys : numpy.ndarray of int64
        ``draw * n_voxels + voxel`` where the draw's group mean exceeds the
        voxel's threshold, ascending.
    """
    bounds = BoundedSums(pool)
    # Room for a quarter of the kept values more, and for the values of
    # `room` draws (each gives a voxel at most one).
    room = max(keep // 4 + 1, 16)
    top = TopValues(pool.n_voxels, keep, room, n_draws)
    cut = bounds.cut(top.threshold)
    start = 0
    for indices in draw_indices(pool.n_subjects, pool.n_maps, n_draws, seed, batch):
        found = bounds.candidates(indices, cut, parts) if cut.any() else None
        if found is None:
            for rows in range(0, len(indices), room):
                means = dense_statistic(pool, indices[rows : rows + room], "mean", parts)
                above = np.ascontiguousarray((means > top.threshold).T)
                voxels, draws = np.divmod(np.flatnonzero(above), len(above.T))
                changed = top.add(voxels, means[draws, voxels], draws + (start + rows))
                cut[changed] = bounds.cut(top.threshold[changed], changed)
        else:
            draws, voxels = found
            means = pair_statistic(pool, indices, draws, voxels, "mean", parts)
            above = means > top.threshold[voxels]
            draws, voxels, means = draws[above], voxels[above], means[above]
            # Draws by `room` (usually all at once), their values by voxel.
            pieces = [0, len(draws)]
            if np.bincount(voxels).max(initial=0) > room:
                pieces = np.searchsorted(draws, np.arange(0, len(indices) + room, room))
            for first, last in itertools.pairwise(pieces):
                order = first + np.argsort(voxels[first:last], kind="stable")
                changed = top.add(voxels[order], means[order], draws[order] + start)
                cut[changed] = bounds.cut(top.threshold[changed], changed)
        start += len(indices)
    del bounds, cut
    return top.finish()


def cluster_structure(connectivity):
    """Structuring element of clusters (3-D)."""
    if connectivity not in CONNECTIVITY:
        raise InputError(
            f"connectivity {connectivity!r}",
            "is not a number of neighbours of a voxel",
            "Use 6 (faces), 18 (faces and edges) or 26 (faces, edges and corners)",
        )
    from scipy import ndimage

    return ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])


def neighbour_table(mask, connectivity):
    """Neighbours of every mask voxel, half of them (each pair once).

    Returns
    -------
    numpy.ndarray of int64, shape (n_voxels, n_offsets)
        Index (among the mask's voxels, C order) of the voxel at each of the
        offsets of ``scipy.ndimage.generate_binary_structure`` that come
        after ``(0, 0, 0)`` in lexicographic order, -1 outside the mask or
        the grid.
    """
    rank = CONNECTIVITY[connectivity]
    offsets = [
        offset
        for offset in itertools.product((-1, 0, 1), repeat=3)
        if offset > (0, 0, 0) and sum(map(abs, offset)) <= rank
    ]
    index = np.full(np.add(mask.shape, 2), -1, dtype=np.int64)
    index[1:-1, 1:-1, 1:-1][mask] = np.arange(int(mask.sum()))
    i, j, k = (np.argwhere(mask) + 1).T
    return np.stack([index[i + a, j + b, k + c] for a, b, c in offsets], axis=1)


def max_cluster_sizes(draws, voxels, n_maps, neighbours):
    """Size of the largest cluster of every map of a batch.

    Parameters
    ----------
    draws, voxels : numpy.ndarray of int64
        The supra-threshold voxels of the maps: map ``draws[p]`` at voxel
        ``voxels[p]``, ordered by map then voxel.
    n_maps : int
        Maps in the batch.
    neighbours : numpy.ndarray of int64
        From :func:`neighbour_table`.

    Returns
    -------
    numpy.ndarray of int64, shape (n_maps,)
        0 for a map without supra-threshold voxels.
    """
    out = np.zeros(n_maps, dtype=np.int64)
    n = len(draws)
    if n == 0:
        return out
    # Supra-threshold voxels as sorted keys; a neighbour in the same map is
    # found by binary search.
    keys = draws * len(neighbours) + voxels
    first, second = [], []
    for offset in neighbours.T:
        other = offset[voxels]
        has = np.flatnonzero(other >= 0)
        wanted = keys[has] + (other[has] - voxels[has])
        at = np.minimum(np.searchsorted(keys, wanted), n - 1)
        found = keys[at] == wanted
        first.append(has[found])
        second.append(at[found])
    first, second = np.concatenate(first), np.concatenate(second)
    if len(first):
        graph = sparse.csr_matrix(
            (np.ones(len(first), dtype=np.int8), (first, second)), shape=(n, n)
        )
        _, component = csgraph.connected_components(graph, directed=False)
        sizes = np.bincount(component)[component]
    else:
        sizes = np.ones(n, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, draws[1:] != draws[:-1]])
    out[draws[starts]] = np.maximum.reduceat(sizes, starts)
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
    from scipy import ndimage

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
    n_jobs=1,
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
    seed, batch, include_observed, n_jobs
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
    batch = batch_size(batch, n_draws, n_voxels)

    observed = combine(pool.observed_maps(), "min")[0]
    with worker_threads(n_jobs) as parts:
        count, max_min = minimum_statistics(pool, observed, n_draws, seed, batch, parts)

    p_u = (1.0 + count) / (1.0 + n_draws)
    at_least = n_draws - np.searchsorted(np.sort(max_min), observed, side="left")
    p_c = (1.0 + at_least) / (1.0 + n_draws)
    from scipy import stats

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


def minimum_statistics(pool, observed, n_draws, seed, batch, parts):
    """Per voxel, draws whose minimum reaches the observed one; per draw, its largest minimum.

    The first batch is computed in full. Later ones use bit maps
    (:class:`BitMaps`): of ``map >= observed``, whose AND over subjects
    gives the counts exactly, and of ``map >= level``, with ``level`` a low
    quantile (``PILOT_QUANTILE``) of the first batch's largest minima: a
    draw's largest minimum is among the voxels where all its maps reach
    the level, computed there only (in full for a draw without such voxels).
    """
    count = np.zeros(pool.n_voxels, dtype=np.int64)
    max_min = np.empty(n_draws)
    bits = None
    start = 0
    for indices in draw_indices(pool.n_subjects, pool.n_maps, n_draws, seed, batch):
        out = max_min[start : start + len(indices)]
        if bits is None:
            minimum = dense_statistic(pool, indices, "min", parts)
            count += np.count_nonzero(minimum >= observed, axis=0)
            out[:] = minimum.max(axis=1)
            del minimum
            level = np.sort(out)[int(PILOT_QUANTILE * len(out))]
            bits = BitMaps(pool, [observed, level])
        else:
            count += bits.counts(0, indices, parts)
            out[:] = largest_minima(pool, bits, indices, parts)
        start += len(indices)
    return count, max_min


def largest_minima(pool, bits, indices, parts):
    """Maximum over voxels of each draw's minimum over subjects (:func:`minimum_statistics`)."""
    n = len(indices)
    high = bits.all(1, indices)
    draws, where = np.divmod(np.flatnonzero(high), high.shape[1])
    which, bit = np.divmod(np.flatnonzero(np.unpackbits(high[draws, where])), 8)
    draws, voxels = draws[which], where[which] * 8 + bit  # by draw, then voxel
    if len(draws) > DENSE_FRACTION * n * pool.n_voxels:
        return dense_statistic(pool, indices, "min", parts).max(axis=1)
    out = np.empty(n)
    if len(draws):
        minima = pair_statistic(pool, indices, draws, voxels, "min", parts)
        starts = np.flatnonzero(np.r_[True, draws[1:] != draws[:-1]])
        out[draws[starts]] = np.maximum.reduceat(minima, starts)
    rest = np.ones(n, dtype=bool)
    rest[draws] = False
    if rest.any():
        out[rest] = dense_statistic(pool, indices[rest], "min", parts).max(axis=1)
    return out


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


def batch_size(batch, n_draws, n_voxels):
    """Draws per batch: ``batch``, or at most ``BATCH_BYTES`` of working memory.

    Batches of more than ``MAX_BATCH`` draws gain nothing.
    """
    if batch is None:
        per_draw = 4 * 8 * n_voxels
        return int(max(1, min(n_draws, MAX_BATCH, BATCH_BYTES // per_draw)))
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
