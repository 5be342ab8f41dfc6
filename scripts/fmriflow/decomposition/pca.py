"""The two PCA stages of CanICA: per subject (one cached job each), then the group."""

import numpy as np

from fmriflow.errors import InputError
from fmriflow.streaming import SOLVERS, RowBlocks, migp, open_matrix, truncated_svd

MODELS = ("canica", "concat")

#: Solvers of the group PCA: those of :func:`truncated_svd` on the whole
#: group matrix, or MIGP (:func:`fmriflow.streaming.migp`) first.
GROUP_SOLVERS = (*SOLVERS, "migp")

#: MIGP's default internal dimension, in group components: the running
#: matrix is cut back to ``MIGP_ROWS_FACTOR x n_components`` rows. The
#: subjects' unit-norm rows have a flat spectrum each, so the first cuts
#: choose among many equal directions; measured on 32 simulated subjects
#: (tests/test_migp.py's cohort, 5 networks, 5 components, 15 per subject,
#: simulation seeds 2-4, thresholded and raw maps), recovery below the
#: full group PCA's by 0.005-0.012 at 2x, 0.003-0.006 at 3x and
#: 0.002-0.005 at 4x. At 50 subjects (the data of
#: benchmarks/bench_group_scaling.py) 2x to 6x were alike.
MIGP_ROWS_FACTOR = 4


def subject_components(n_components, n_subject_components=None):
    """Components kept per subject by the per-subject PCA: by default ``3 * n_components``.

    Parameters
    ----------
    n_components : int
        Number of group components.
    n_subject_components : int, optional
        An explicit number (the config's ``n_subject_components``).

    Returns
    -------
    int
    """
    return int(n_subject_components or 3 * n_components)


def check_dimensions(
    n_volumes, n_components, n_subject_components=None, model="canica", names=None
):
    """Check that the data can give the number of components asked for.

    With ``model="canica"`` each subject contributes ``n_subject_components``
    rows to the group matrix, so a subject needs at least that many volumes
    and the group at least ``n_components`` rows (too few subjects for the
    components); with ``model="concat"`` the group matrix has one row per
    volume of every subject.

    Parameters
    ----------
    n_volumes : sequence of int
        Number of volumes (rows of ``clean.npy``) of each subject.
    n_components : int
        Number of group components.
    n_subject_components : int, optional
        Components kept per subject (``model="canica"``); default
        ``n_components``.
    model : {"canica", "concat"}
        The group model.
    names : sequence of str, optional
        Subject names for the messages.

    Raises
    ------
    InputError
        When a subject has fewer volumes than its components, or the group
        fewer rows than the components.
    """
    if model not in MODELS:
        raise InputError(
            f"group ICA model {model!r}",
            f"unknown model; expected one of {list(MODELS)}",
            "Fix it",
        )
    n_volumes = [int(n) for n in n_volumes]
    names = (
        [str(n) for n in names]
        if names is not None
        else [str(i + 1) for i in range(len(n_volumes))]
    )
    if int(n_components) < 1:
        raise InputError(
            "n_components", f"{n_components} components asked for", "Ask for at least 1"
        )
    if model == "canica":
        per_subject = int(n_subject_components or n_components)
        for name, n in zip(names, n_volumes, strict=True):
            if n < per_subject:
                raise InputError(
                    f"subject {name}",
                    f"it has {n} volumes, fewer than the {per_subject} components kept "
                    "per subject",
                    "Lower n_subject_components to at most the shortest scan's "
                    "number of volumes, or leave this subject out",
                )
        rows = per_subject * len(n_volumes)
        if rows < n_components:
            raise InputError(
                "group ICA",
                f"too few subjects for {n_components} components: {len(n_volumes)} "
                f"subject(s) x {per_subject} components each give {rows} group rows, "
                f"fewer than the {n_components} components asked for",
                "Add subjects, raise n_subject_components or ask for fewer components",
            )
    elif sum(n_volumes) < n_components:
        raise InputError(
            "group ICA",
            f"too few volumes for {n_components} components: the {len(n_volumes)} "
            f"subject(s) have {sum(n_volumes)} volumes in all",
            "Add subjects or ask for fewer components",
        )


def reduce_subject(data, n_components, seed=0, standardize=False, solver="auto"):
    """Principal components of one subject's matrix (stage 1, cached per subject).

    Parameters
    ----------
    data : numpy.ndarray or path, shape (n_volumes, n_voxels)
        The cleaned matrix (``clean.npy``; memory-mapped is fine, it is read
        in chunks of :data:`CHUNK_ROWS` volumes). Columns are centered first.
    n_components : int
        Number of components kept (``n_subject_components``; 3 x the group
        ``n_components`` is a good default).
    seed : int, default=0
        Seed of the randomized SVD.
    standardize : bool, default=False
        Also scale each voxel to unit variance (the workflow's ``clean.npy``
        usually already is).
    solver : {"auto", "exact", "randomized"}, default="auto"
        See :func:`truncated_svd`. With "auto", scans shorter than about
        ``27 (n_components + 10)`` volumes get the exact solver (cheaper
        there), longer ones the seeded randomized SVD.

    Returns
    -------
    numpy.ndarray, shape (n_components, n_voxels), float32
        ``S[:, None] * Vt``: the subject's principal spatial patterns scaled
        by their singular values, largest first. The row norms are the
        singular values. Save it with ``numpy.save`` (or
        :func:`fmriflow.io.save_npy`) and give the arrays or paths to the
        group functions.
    """
    matrix = open_matrix(data)
    check_dimensions([matrix.shape[0]], n_components, n_components)
    if n_components > matrix.shape[1]:
        raise InputError(
            "reduce_subject",
            f"{n_components} components asked for from {matrix.shape[1]} voxels",
            "Keep fewer components per subject",
        )
    blocks = RowBlocks([matrix], center=True, standardize=standardize)
    singular_values, components = truncated_svd(blocks, n_components, seed, solver)
    return (singular_values[:, None] * components).astype(np.float32)


def group_blocks(subjects, model, cca):
    """The group matrix of a model, as row blocks."""
    if model not in MODELS:
        raise InputError(
            f"group ICA model {model!r}",
            f"unknown model; expected one of {list(MODELS)}",
            "Fix it",
        )
    if model == "concat":
        return RowBlocks(subjects, standardize=True)
    return RowBlocks(subjects, normalize_rows=cca)


def check_group_rows(blocks, n_components, model):
    """Raise :class:`InputError` if the group matrix has fewer rows than components."""
    if blocks.n_rows >= n_components and blocks.n_columns >= n_components:
        return
    n_subjects = len(blocks.sources)
    if blocks.n_columns < n_components:
        problem = (
            f"the mask has {blocks.n_columns} voxels, fewer than the {n_components} components"
        )
        fix = "Ask for fewer components"
    elif model == "canica":
        problem = (
            f"too few subjects for {n_components} components: {n_subjects} subject(s) give "
            f"{blocks.n_rows} subject components in all ({', '.join(map(str, blocks.row_counts))})"
        )
        fix = "Add subjects, keep more components per subject or ask for fewer group components"
    else:
        problem = (
            f"too few volumes for {n_components} components: {n_subjects} subject(s) have "
            f"{blocks.n_rows} volumes in all"
        )
        fix = "Add subjects or ask for fewer components"
    raise InputError("group decomposition", problem, fix)


def default_migp_rows(n_components):
    """MIGP's rows kept by default: :data:`MIGP_ROWS_FACTOR` x ``n_components``."""
    return MIGP_ROWS_FACTOR * int(n_components)


def check_group_solver(solver, n_components, migp_rows=None):
    """Check the group PCA's solver and MIGP's number of rows; return the rows MIGP keeps.

    Parameters
    ----------
    solver : str
        One of :data:`GROUP_SOLVERS`.
    n_components : int
        Number of group components.
    migp_rows : int, optional
        Rows MIGP keeps (``solver="migp"`` only; default
        :func:`default_migp_rows`).

    Returns
    -------
    int or None
        The rows MIGP keeps, None for the other solvers.

    Raises
    ------
    InputError
        For an unknown solver, ``migp_rows`` given to another solver, or
        fewer MIGP rows than group components.
    """
    if solver not in GROUP_SOLVERS:
        raise InputError(
            f"group PCA solver {solver!r}", f"expected one of {list(GROUP_SOLVERS)}", "Fix it"
        )
    if solver != "migp":
        if migp_rows is not None:
            raise InputError(
                "migp_rows",
                f"it is set ({migp_rows}) but the group PCA is {solver!r}, which does not use it",
                "Choose MIGP (group_pca: migp in the config, solver='migp' in the library) "
                "or remove migp_rows",
            )
        return None
    if migp_rows is None:
        return default_migp_rows(n_components)
    if isinstance(migp_rows, bool) or not isinstance(migp_rows, int | np.integer):
        raise InputError(
            "migp_rows", f"it is {migp_rows!r}, not a whole number", "Give a number of rows"
        )
    if migp_rows < n_components:
        raise InputError(
            "migp_rows",
            f"MIGP would keep {migp_rows} rows, fewer than the {n_components} group "
            "components taken from them",
            f"Set migp_rows to at least n_components (the default, null, keeps "
            f"{default_migp_rows(n_components)})",
        )
    return int(migp_rows)


def reduced_by_migp(blocks, migp_rows, seed):
    """The MIGP matrix of ``blocks`` (:func:`fmriflow.streaming.migp`), as row blocks."""
    return RowBlocks([migp(blocks, migp_rows, seed)])


def group_pca(
    subjects, n_components, model="canica", cca=True, seed=0, solver="auto", migp_rows=None
):
    """Group PCA: the leading spatial components of the stacked subjects.

    Parameters
    ----------
    subjects : sequence of numpy.ndarray or path
        ``model="canica"``: the subjects' reductions from
        :func:`reduce_subject`. ``model="concat"``: their cleaned
        ``(time, voxel)`` matrices, z-scored here (per subject and voxel).
    n_components : int
        Number of components.
    model : {"canica", "concat"}, default="canica"
        Which group matrix.
    cca : bool, default=True
        ``model="canica"`` only: scale every subject component to unit norm
        before the group SVD, so each counts the same (CanICA's canonical
        correlation step).
    seed : int, default=0
        Seed of the randomized SVD, or of MIGP's order of the subjects.
    solver : {"auto", "exact", "randomized", "migp"}, default="auto"
        ``"auto"``, ``"exact"``, ``"randomized"``: the SVD of the whole group
        matrix by :func:`truncated_svd` (streamed from the files; the
        randomized solver reads every subject ``n_iter + 2 = 9`` times).
        ``"migp"``: MIGP (Smith et al. 2014, NeuroImage 101:738;
        :func:`fmriflow.streaming.migp`) reads every subject once, in a
        seeded random order, into a running matrix cut back to
        ``migp_rows`` rows whenever it fills; the components are the exact
        top ones of that matrix. Approximate, but exact when ``migp_rows``
        is at least the group matrix's number of rows (or its rank); its
        memory does not depend on the number of subjects and its time grows
        linearly with it — for hundreds of subjects.
    migp_rows : int, optional
        ``solver="migp"`` only: the rows MIGP keeps (its internal
        dimension), at least ``n_components``; default
        ``MIGP_ROWS_FACTOR x n_components`` (4 x). More is closer to the exact
        group PCA, and costs memory ``2 migp_rows x n_voxels`` float64
        (or ``migp_rows`` + one subject's rows, if larger).

    Returns
    -------
    singular_values : numpy.ndarray, shape (n_components,)
    components : numpy.ndarray, shape (n_components, n_voxels)
        Orthonormal spatial components, float64.
    """
    rows = check_group_solver(solver, n_components, migp_rows)
    blocks = group_blocks(subjects, model, cca)
    check_group_rows(blocks, n_components, model)
    if solver == "migp":
        blocks, solver = reduced_by_migp(blocks, rows, seed), "exact"
    return truncated_svd(blocks, n_components, seed, solver)
