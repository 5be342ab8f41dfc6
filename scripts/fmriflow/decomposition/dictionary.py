"""Sparse dictionary learning of group maps, started from the group ICA.

The approach of nilearn's ``DictLearning`` (Mensch et al. 2016).
"""

import numpy as np

from fmriflow.decomposition.ica import (
    Decomposition,
    finished_decomposition,
    group_ica,
    resolve_threshold,
)
from fmriflow.decomposition.pca import check_group_solver
from fmriflow.streaming import RowBlocks


def dict_learning(
    subjects,
    n_components,
    alpha=1.0,
    n_epochs=1,
    batch_size=20,
    init=None,
    threshold=None,
    cca=True,
    seed=0,
    solver="auto",
    migp_rows=None,
):
    """Sparse group maps by online dictionary learning, from an ICA start.

    The stacked subject reductions ``A`` (``n_rows x n_voxels``; rows at
    unit norm with ``cca``, as for :func:`group_ica`) are modelled as
    ``A ~ D @ M`` with time courses ``D`` (unit-norm atoms) and sparse maps
    ``M`` (an L1 penalty on ``M``), by
    ``sklearn.decomposition.dict_learning_online`` on ``A.T``: voxels are
    the samples, maps are the codes. The dictionary starts from the
    least-squares time courses of the initial maps — the group ICA maps
    with the same seed by default, as nilearn's ``DictLearning`` starts
    from CanICA. Unlike :func:`group_pca`, this holds ``A`` in memory
    (``n_subjects x n_subject_components x n_voxels`` float64).

    Differences from nilearn's ``DictLearning``: the unit-norm step (nilearn
    learns on the unnormalised reductions, where a few high-variance
    subject components dominate; here that made the maps erratic) and a
    scale-free ``alpha`` (nilearn's is in the data's units, so its effect
    changes with the number of subjects and volumes).

    Parameters
    ----------
    subjects : sequence of numpy.ndarray or path
        Per-subject reductions from :func:`reduce_subject`.
    n_components : int
        Number of maps.
    alpha : float, default=1.0
        Sparsity penalty, in units of the robust spread (1.4826 x median
        absolute deviation) of the voxels' projections on the initial time
        courses — about the noise level, as most voxels are in no network.
        Larger is sparser; results degrade quickly above about 1.5 (a
        soft threshold that removes network voxels too).
    n_epochs : int, default=1
        Maximum passes over the voxels (scikit-learn's ``max_iter``; its
        early stopping usually ends the first pass).
    batch_size : int, default=20
        Voxels per mini-batch.
    init : Decomposition or numpy.ndarray, optional
        Initial maps ``(n_components, n_voxels)``; default
        ``group_ica(subjects, n_components, seed=seed).raw_maps``.
    threshold : None, "auto" or float, default=None
        As in :func:`group_ica`.
    cca : bool, default=True
        Scale every subject component to unit norm first.
    seed : int, default=0
        Seed of the initialisation and of the voxel order.
    solver : {"auto", "exact", "randomized", "migp"}, default="auto"
        Group PCA of the initial group ICA (``init=None``); see
        :func:`group_ica`. The learning itself still holds ``A``.
    migp_rows : int, optional
        Rows kept by MIGP (``solver="migp"``); see :func:`group_pca`.

    Returns
    -------
    Decomposition
        ``extra["init_maps"]`` holds the initial maps and
        ``extra["penalty"]`` the L1 penalty in the data's units.
    """
    from sklearn.decomposition import dict_learning_online

    ratio = resolve_threshold(threshold, n_components)
    check_group_solver(solver, n_components, migp_rows)
    converged = True
    if init is None:
        start = group_ica(subjects, n_components, seed=seed, solver=solver, migp_rows=migp_rows)
        init_maps, converged = start.raw_maps, start.converged
    else:
        init_maps = init.raw_maps if isinstance(init, Decomposition) else np.asarray(init)
    init_maps = np.asarray(init_maps, dtype=np.float64)
    if init_maps.shape[0] != n_components:
        raise ValueError(f"init has {init_maps.shape[0]} maps, not {n_components}")
    data = np.vstack(list(RowBlocks(subjects, normalize_rows=cca)))
    # Time courses of the initial maps by least squares: data ~ courses @ maps.
    gram = init_maps @ init_maps.T
    courses = np.linalg.solve(
        gram + 1e-10 * np.trace(gram) * np.eye(len(gram)), init_maps @ data.T
    )
    norms = np.linalg.norm(courses, axis=1, keepdims=True)
    courses /= np.where(norms > 0, norms, 1.0)
    # Scale-free penalty: in units of the robust (median absolute deviation)
    # spread of the voxels' projections on the initial time courses, which
    # most voxels, outside any network, make a noise level.
    projections = data.T @ courses.T
    spread = 1.4826 * np.median(np.abs(projections - np.median(projections)))
    penalty = float(alpha) * spread
    code, _ = dict_learning_online(
        data.T,
        n_components,
        alpha=penalty,
        max_iter=int(n_epochs),
        return_code=True,
        dict_init=courses,
        batch_size=batch_size,
        shuffle=True,
        method="cd",
        random_state=np.random.RandomState(seed),
    )
    del data
    maps = code.T
    norms = np.linalg.norm(maps, axis=1, keepdims=True)
    maps = maps / np.where(norms > 0, norms, 1.0)
    return finished_decomposition(
        maps,
        subjects,
        "canica",
        ratio,
        method="dict_learning",
        seed=seed,
        converged=converged,
        extra={"init_maps": init_maps.astype(np.float32), "penalty": penalty},
    )
