"""Group ICA: the CanICA model and the paper's concatenation ICA.

The CanICA model: group PCA, spatial FastICA, consensus over restarts; and
the paper's concatenation ICA; thresholding, sign and order of the maps.
"""

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from fmriflow.decomposition.matching import spatial_correlation
from fmriflow.decomposition.pca import (
    check_group_rows,
    check_group_solver,
    group_blocks,
    reduced_by_migp,
)
from fmriflow.errors import InputError
from fmriflow.progress import Progress
from fmriflow.streaming import RowBlocks, truncated_svd

logger = logging.getLogger("fmriflow")


#: ``threshold="auto"``: keep as many non-zero values as there are voxels.
AUTO_THRESHOLD = 1.0


ICA_FUNCTIONS = ("logcosh", "cube", "exp")


@dataclass
class Decomposition:
    """Group maps and how they were obtained.

    Attributes
    ----------
    maps : numpy.ndarray, shape (n_components, n_voxels), float32
        Final maps (thresholded if a threshold was asked for), ordered by
        decreasing explained variance, each with positive skewness.
    raw_maps : numpy.ndarray, shape (n_components, n_voxels), float32
        The same maps before thresholding.
    explained_variance : numpy.ndarray, shape (n_components,)
        Fraction of the group data's variance explained by each map alone
        (see :func:`explained_variance`).
    method : str
        ``"canica"``, ``"concat_ica"`` or ``"dict_learning"``.
    seed : int
        Seed of the group stage.
    threshold : float or None
        Absolute value below which map values were set to zero.
    converged : bool
        Whether FastICA (or the dictionary learning's initialisation)
        converged within its iterations.
    extra : dict
        Method-specific details: for :func:`group_ica`, ``agreement`` (each
        restart's consensus score) and ``run`` (the restart kept); for
        :func:`dict_learning`, ``init_maps`` and ``penalty``.
    """

    maps: np.ndarray
    raw_maps: np.ndarray
    explained_variance: np.ndarray
    method: str
    seed: int
    threshold: float | None = None
    converged: bool = True
    extra: dict = field(default_factory=dict)


def threshold_maps(maps, ratio=AUTO_THRESHOLD):
    """Zero the weakest values of a set of maps (CanICA's threshold semantics).

    Keeps the ``ratio * n_voxels`` values of largest magnitude across all
    maps together (``ratio=1``: as many non-zero values as there are
    voxels, CanICA's ``threshold="auto"``), zeroing the rest. Ties at the
    cut are kept.

    Parameters
    ----------
    maps : numpy.ndarray, shape (n_maps, n_voxels)
        The maps.
    ratio : float, default=AUTO_THRESHOLD
        In ``(0, n_maps]``.

    Returns
    -------
    thresholded : numpy.ndarray
        A copy of ``maps`` with the weak values set to 0.
    cut : float
        The absolute value kept at least.
    """
    maps = np.asarray(maps)
    ratio = float(ratio)
    if not 0 < ratio <= maps.shape[0]:
        raise InputError(
            f"threshold {ratio:g}",
            f"it must be in (0, n_components] = (0, {maps.shape[0]}]",
            "Use null (no threshold), auto (= 1) or a ratio in that range",
        )
    magnitudes = np.abs(maps).ravel()
    n_keep = min(magnitudes.size, max(1, int(round(ratio * maps.shape[1]))))
    cut = float(np.partition(magnitudes, magnitudes.size - n_keep)[magnitudes.size - n_keep])
    return np.where(np.abs(maps) >= cut, maps, 0).astype(maps.dtype), cut


def resolve_threshold(threshold, n_components):
    """The ratio for ``threshold`` (None, "auto" or a number)."""
    if threshold is None:
        return None
    if threshold == "auto":
        return AUTO_THRESHOLD
    if isinstance(threshold, str):
        raise InputError(
            f"threshold {threshold!r}",
            "it must be null, 'auto' or a number",
            "Use null (no threshold), auto (= 1) or a ratio in (0, n_components]",
        )
    ratio = float(threshold)
    if not 0 < ratio <= n_components:
        raise InputError(
            f"threshold {ratio:g}",
            f"it must be in (0, n_components] = (0, {n_components}]",
            "Use null (no threshold), auto (= 1) or a ratio in that range",
        )
    return ratio


def explained_variance(maps, subjects, model="canica"):
    """Fraction of the group data's variance that each map explains alone.

    For a map ``m`` scaled to unit norm, ``sum_i ||B_i m||^2 / sum_i ||B_i||^2``
    over the subjects' blocks ``B_i``: the subjects' reductions as saved
    (scaled by their singular values, so this is a fraction of the
    variance the subject PCAs kept) for ``model="canica"``, the z-scored
    matrices for ``model="concat"``.

    Parameters
    ----------
    maps : numpy.ndarray, shape (n_maps, n_voxels)
        The maps.
    subjects : sequence of numpy.ndarray or path
        As for :func:`group_pca`.
    model : {"canica", "concat"}, default="canica"
        Which group data.

    Returns
    -------
    numpy.ndarray, shape (n_maps,)
    """
    blocks = RowBlocks(subjects, standardize=model == "concat")
    unit = np.asarray(maps, dtype=np.float64)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.where(norms > 0, norms, 1.0)
    explained = np.zeros(unit.shape[0])
    total = 0.0
    for chunk in blocks:
        explained += np.sum((chunk @ unit.T) ** 2, axis=0)
        total += float(np.sum(chunk**2))
    return explained / total if total > 0 else explained


def skewness(maps):
    """Skewness of each row (population moments, like ``scipy.stats.skew``)."""
    centred = maps - maps.mean(axis=1, keepdims=True)
    variance = np.mean(centred**2, axis=1)
    third = np.mean(centred**3, axis=1)
    return np.where(variance > 0, third / np.where(variance > 0, variance, 1.0) ** 1.5, 0.0)


def _orient_and_sort(maps, subjects, model):
    """Flip maps to positive skewness and sort them by explained variance."""
    maps = maps * np.where(skewness(maps) < 0, -1.0, 1.0)[:, None]
    variance = explained_variance(maps, subjects, model)
    order = np.argsort(-variance, kind="stable")
    return maps[order], variance[order]


def _fastica(basis, seed, fun, max_iter, tol):
    """Spatial FastICA of an orthonormal basis; return (maps, converged)."""
    seed = int(seed) % (2**32)
    from sklearn.decomposition import fastica
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, _, sources, n_iter = fastica(
            basis.T,
            whiten="unit-variance",
            fun=fun,
            max_iter=max_iter,
            tol=tol,
            random_state=np.random.RandomState(seed),
            return_n_iter=True,
        )
    converged = n_iter < max_iter
    if not converged:
        logger.warning("FastICA did not converge in %d iterations (seed %d)", max_iter, seed)
    return sources.T, converged


def _run_seeds(seed, n_init):
    """Seeds of the restarts: ``seed`` itself, then independent children of it."""
    if n_init == 1:
        return [int(seed)]
    children = np.random.SeedSequence(int(seed)).generate_state(n_init - 1)
    return [int(seed)] + [int(c) for c in children]


def _consensus(runs):
    """Mean best-match |correlation| of every run's maps with the other runs'."""
    n = len(runs)
    agreement = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if i != j:
                similarity = np.abs(spatial_correlation(runs[i], runs[j]))
                agreement[i] += similarity.max(axis=1).mean() / (n - 1)
    return agreement


def finished_decomposition(maps, subjects, model, ratio, method, seed, converged, extra):
    """Orient, sort and (with ``ratio``) threshold final maps into a :class:`Decomposition`."""
    maps, variance = _orient_and_sort(maps, subjects, model)
    final, cut = maps, None
    if ratio is not None:
        final, cut = threshold_maps(maps, ratio)
    return Decomposition(
        maps=final.astype(np.float32),
        raw_maps=maps.astype(np.float32),
        explained_variance=variance,
        method=method,
        seed=int(seed),
        threshold=cut,
        converged=converged,
        extra=extra,
    )


def group_ica(
    subjects,
    n_components,
    model="canica",
    cca=True,
    threshold=None,
    fun="logcosh",
    seed=0,
    n_init=5,
    max_iter=200,
    tol=1e-4,
    solver="auto",
    migp_rows=None,
):
    """Group ICA of resting-state data (CanICA, or concatenated ICA).

    Parameters
    ----------
    subjects : sequence of numpy.ndarray or path
        ``model="canica"``: the per-subject reductions from
        :func:`reduce_subject` (arrays or ``.npy`` paths, memory-mapped).
        ``model="concat"``: the subjects' cleaned ``(time, voxel)``
        matrices, z-scored here and concatenated in time.
    n_components : int
        Number of group components.
    model : {"canica", "concat"}, default="canica"
        ``"canica"``: per-subject PCA, unit-norm subject components (if
        ``cca``), group PCA, spatial ICA. ``"concat"``: the paper's simple
        concatenation ICA, without per-subject PCA.
    cca : bool, default=True
        See :func:`group_pca`.
    threshold : None, "auto" or float, default=None
        Thresholding of the final maps: None for none, otherwise the ratio
        of :func:`threshold_maps` (``"auto"`` = 1, CanICA's default).
    fun : {"logcosh", "cube", "exp"}, default="logcosh"
        FastICA's contrast function (CanICA uses ``"cube"``).
    seed : int, default=0
        Seed of the group SVD (randomized solver, or MIGP's order) and of
        FastICA (of the first restart; the others get independent seeds
        derived from it).
    n_init : int, default=5
        FastICA restarts on the one group subspace, as nilearn's CanICA
        does. The run kept is the *consensus* one: the run whose maps agree
        best with the other runs' (mean best-match absolute correlation),
        where CanICA keeps its sparsest run. ``extra["agreement"]`` holds
        every run's agreement and ``extra["run"]`` the one kept. (Drawing a
        new randomized subspace per restart, as this function once did,
        recovered planted networks less well: beyond the real components the
        group spectrum is flat and the noise directions drawn mix into the
        networks.)
    max_iter : int, default=200
        FastICA iterations (scikit-learn's default). With more components
        than independent sources, the extra ones are Gaussian noise and
        FastICA may not converge on them; the maps are still usable and
        ``converged`` says so.
    tol : float, default=1e-4
        FastICA tolerance.
    solver : {"auto", "exact", "randomized", "migp"}, default="auto"
        Solver of the group SVD (:func:`truncated_svd`), or ``"migp"``: the
        group matrix is first reduced once by MIGP (Smith et al. 2014;
        subjects read once, in an order drawn from ``seed``, memory
        independent of their number; see :func:`group_pca`) to
        ``migp_rows`` rows, whose exact top components are the basis. For
        hundreds of subjects.
    migp_rows : int, optional
        Rows kept by MIGP (``solver="migp"`` only); see :func:`group_pca`.

    Returns
    -------
    Decomposition
    """
    if fun not in ICA_FUNCTIONS:
        raise InputError(
            f"ICA function {fun!r}", f"expected one of {list(ICA_FUNCTIONS)}", "Fix it"
        )
    if int(n_init) < 1:
        raise InputError(f"n_init {n_init}", "at least one run is needed", "Use n_init >= 1")
    ratio = resolve_threshold(threshold, n_components)
    rows = check_group_solver(solver, n_components, migp_rows)
    blocks = group_blocks(subjects, model, cca)
    check_group_rows(blocks, n_components, model)
    if solver == "migp":
        blocks, solver = reduced_by_migp(blocks, rows, seed), "exact"
    _, basis = truncated_svd(blocks, n_components, seed, solver)
    runs, converged = [], []
    progress = Progress(int(n_init), what="ICA", unit="restarts", logger="fmriflow.ica", every=0)
    for run_seed in _run_seeds(seed, int(n_init)):
        maps, ok = _fastica(basis, run_seed, fun, max_iter, tol)
        runs.append(maps)
        converged.append(ok)
        progress()
    agreement = _consensus(runs) if len(runs) > 1 else np.ones(1)
    best = int(np.argmax(agreement))
    return finished_decomposition(
        runs[best],
        subjects,
        model,
        ratio,
        method="canica" if model == "canica" else "concat_ica",
        seed=seed,
        converged=converged[best],
        extra={"agreement": agreement, "run": best},
    )
