"""Group decompositions of resting-state data: group ICA and dictionary learning.

The model is CanICA (Varoquaux et al. 2010), as in section 6 of Abraham et
al. (2014), cut into the two stages the workflow runs as separate jobs:

1. **Per-subject reduction** (:func:`reduce_subject`), one job per subject:
   the principal components of the subject's cleaned ``(time, voxel)``
   matrix (exact when the scan is short, otherwise a seeded randomized
   SVD). The result, ``S[:, None] * Vt`` (``n_subject_components`` rows, one
   column per voxel, float32), is saved as ``.npy`` and cached, so adding
   subjects or changing the group settings never redoes it. We recommend
   ``n_subject_components = 3 * n_components`` (nilearn keeps
   ``n_components``): on the simulations it recovers the networks better
   (see ``tests/test_decomposition.py``) at little cost.
2. **Group job** (:func:`group_ica`): the reductions are stacked in time,
   each row scaled to unit norm (the "canonical correlation" step: every
   subject component counts the same), reduced again to ``n_components``
   by a randomized SVD (:func:`group_pca`), and the resulting spatial basis
   is rotated by spatial FastICA. This is restarted ``n_init`` times with
   different seeds and the *consensus* run kept (the one agreeing best with
   the others). Maps are sign-flipped to positive skewness, ordered by the
   variance they explain, and optionally thresholded
   (:func:`threshold_maps`, CanICA's semantics).

``model="concat"`` is the paper's simple alternative: skip the per-subject
PCA, z-score each subject's matrix and concatenate them in time. A second
method, :func:`dict_learning`, learns sparse maps by online dictionary
learning initialised from the group ICA maps (the approach of nilearn's
``DictLearning``, Mensch et al. 2016).

What is ours and what is not
----------------------------
* The SVDs (:func:`truncated_svd`, used by :func:`reduce_subject` and
  :func:`group_pca`) are our own and never build the stacked matrix: they
  read the subjects one at a time from memory-mapped ``.npy`` files, by
  chunks. A seeded randomized subspace iteration (Halko et al. 2011; memory
  ``n_voxels x (n_components + 10)`` floats whatever the number of
  subjects) or, when there are few rows (a subject's scan), the exact
  eigendecomposition of the small Gram matrix, which is then cheaper.
  nilearn's ``CanICA`` loads each 4D image, stacks every subject's reduced
  data in memory and calls scikit-learn's SVDs.
* FastICA (``sklearn.decomposition.fastica``) and dictionary learning
  (``sklearn.decomposition.dict_learning_online``) are scikit-learn's.
* Stability (:func:`stability`): nilearn runs FastICA ten times and keeps
  the sparsest result without saying how much the runs agreed; we run the
  group stage with several seeds (optionally on bootstrap samples of the
  subjects) and report, per component of the reference run, the best-match
  absolute spatial correlation with each other run's components (mean over
  runs).
* :func:`match_components` scores estimated maps against ground truth by a
  one-to-one Hungarian matching (``scipy.optimize.linear_sum_assignment``)
  on absolute spatial correlation; :func:`component_table` gives one row of
  statistics per component.
* :func:`check_common_space` and :func:`check_dimensions` stop bad input
  with one :class:`~fmriflow.errors.InputError` message.

Every map is a vector over the mask's voxels in numpy's C order, like the
columns of ``clean.npy``: :func:`fmriflow.masking.unmask` turns maps into a
4D image.
"""

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmriflow.errors import InputError

logger = logging.getLogger("fmriflow")

#: Extra random directions of the randomized SVDs (Halko et al.'s ``p``).
N_OVERSAMPLES = 10
#: Power (subspace) iterations of the randomized SVDs. The spectrum of rest
#: data is flat beyond the first few components, so more than scikit-learn's
#: usual 4 are needed for the leading subspace to converge.
N_POWER_ITERATIONS = 7
#: Rows of a subject's matrix read and converted at once.
CHUNK_ROWS = 256
#: Size of the blocks of columns (all rows, some voxels) read at once by the
#: exact solver.
COLUMN_BLOCK_BYTES = 32 * 2**20
#: Largest number of rows for which the exact solver may be chosen (its
#: ``n_rows x n_rows`` Gram matrix takes 128 MB at 4000).
GRAM_MAX_ROWS = 4000
SOLVERS = ("auto", "exact", "randomized")
#: ``threshold="auto"``: keep as many non-zero values as there are voxels.
AUTO_THRESHOLD = 1.0
MODELS = ("canica", "concat")
ICA_FUNCTIONS = ("logcosh", "cube", "exp")


# --- input checks --------------------------------------------------------------


def _grid_of(item):
    """(affine, shape, mask or None) of an image, a path or a tuple."""
    if isinstance(item, str | Path):
        from fmriflow.io import load_mask

        mask, img = load_mask(item, "subject mask")
        return np.asarray(img.affine, dtype=float), tuple(mask.shape), mask
    if hasattr(item, "affine") and hasattr(item, "dataobj"):
        mask = np.asanyarray(item.dataobj) != 0
        return np.asarray(item.affine, dtype=float), tuple(mask.shape[:3]), mask
    affine, shape, *rest = item
    mask = np.asarray(rest[0], dtype=bool) if rest and rest[0] is not None else None
    return np.asarray(affine, dtype=float), tuple(int(n) for n in shape[:3]), mask


def check_common_space(grids, names=None, atol=1e-3):
    """Check that every subject is on one grid, with one mask.

    Group decompositions stack the subjects' matrices, so column ``j`` must
    be the same voxel for everyone: same grid shape, same affine (within
    ``atol`` mm) and, when masks are given, the same mask.

    Parameters
    ----------
    grids : sequence
        One item per subject: a mask image (nibabel), the path of one, or a
        tuple ``(affine, shape)`` or ``(affine, shape, mask)``.
    names : sequence of str, optional
        Subject names for the messages (default: positions from 1).
    atol : float, default=1e-3
        Tolerance on the affines' entries, in millimetres.

    Returns
    -------
    affine : numpy.ndarray
        The common affine.
    shape : tuple of int
        The common 3D shape.
    mask : numpy.ndarray of bool or None
        The common mask, if masks were given.

    Raises
    ------
    InputError
        Naming the first subject that differs from the first one.
    """
    grids = [_grid_of(item) for item in grids]
    if not grids:
        raise InputError("group decomposition", "no subject was given", "List the subjects")
    names = (
        [str(n) for n in names] if names is not None else [str(i + 1) for i in range(len(grids))]
    )
    fix = (
        "Group ICA and clustering need every subject on one grid with one mask: "
        "resample the data to a common template (e.g. MNI) and use a template or "
        "group mask (preprocess.mask: mni_gm or mni_brain)"
    )
    affine0, shape0, mask0 = grids[0]
    for name, (affine, shape, mask) in zip(names[1:], grids[1:], strict=True):
        where = f"subject {name}"
        if shape != shape0:
            raise InputError(
                where,
                f"its grid has shape {shape} but subject {names[0]}'s has {shape0}: "
                "the subjects are not in a common space",
                fix,
            )
        if not np.allclose(affine, affine0, atol=atol):
            worst = float(np.max(np.abs(affine - affine0)))
            raise InputError(
                where,
                f"its affine differs from subject {names[0]}'s by up to {worst:.3g} mm: "
                "the subjects are not in a common space",
                fix,
            )
        if mask is not None and mask0 is not None and not np.array_equal(mask, mask0):
            differ = int(np.sum(mask != mask0))
            raise InputError(
                where,
                f"its mask ({int(mask.sum())} voxels) differs from subject {names[0]}'s "
                f"({int(mask0.sum())} voxels) in {differ} voxels, so the matrix columns "
                "are not the same voxels",
                fix,
            )
    return affine0, shape0, mask0


@dataclass
class CommonMask:
    """The voxels every subject has, and where they are in each subject's matrix.

    Attributes
    ----------
    affine : numpy.ndarray
        The common affine.
    mask : numpy.ndarray of bool
        The intersection of the subjects' masks (3D).
    columns : list of (numpy.ndarray of int or None)
        Per subject, the columns of its matrices that are the common voxels,
        in the mask's order; None when the subject's mask is the common one.
    dropped : list of int
        Per subject, how many of its voxels are not common.
    sizes : list of int
        Per subject, the number of voxels of its mask.
    names : list of str
        The subjects' names, for messages.
    """

    affine: np.ndarray
    mask: np.ndarray
    columns: list
    dropped: list
    sizes: list
    names: list

    def select(self, sources):
        """The subjects' matrices restricted to the common voxels (lazily).

        Raises
        ------
        InputError
            If a matrix does not have one column per voxel of its subject's mask.
        """
        selected = []
        for name, source, size, columns in zip(
            self.names, sources, self.sizes, self.columns, strict=True
        ):
            n_columns = _open(source).shape[-1]
            if n_columns != size:
                where = f"subject {name}" + (
                    f" ({source})" if isinstance(source, str | Path) else ""
                )
                raise InputError(
                    where,
                    f"it has {n_columns} columns but the subject's mask has {size} voxels",
                    "Give each subject's own mask, or re-run its preprocessing",
                )
            selected.append(source if columns is None else ColumnSubset(source, columns))
        return selected


def common_mask(masks, names=None, atol=1e-3):
    """Intersect the subjects' masks after checking they share one grid.

    Real data in a template space rarely give identical masks (voxels
    dropped as constant at the edge of one subject's coverage), while the
    group stages need one set of voxels. The intersection is that set; each
    subject's matrices are read on it through :meth:`CommonMask.select`.

    Parameters
    ----------
    masks : sequence
        One mask per subject, as for :func:`check_common_space`.
    names : sequence of str, optional
        Subject names for the messages.
    atol : float, default=1e-3
        Tolerance on the affines' entries, in millimetres.

    Returns
    -------
    CommonMask

    Raises
    ------
    InputError
        If the grids differ, or if the subjects share no voxel.
    """
    grids = [_grid_of(item) for item in masks]
    names = (
        [str(n) for n in names] if names is not None else [str(i + 1) for i in range(len(grids))]
    )
    affine, _, _ = check_common_space([(a, s) for a, s, _ in grids], names, atol)
    subject_masks = [mask for _, _, mask in grids]
    common = np.logical_and.reduce(subject_masks)
    if not common.any():
        raise InputError(
            "group decomposition",
            f"the masks of subjects {', '.join(names)} have no voxel in common",
            "Check that the subjects are registered to the same template, or use a "
            "template mask (preprocess.mask: mni_gm or mni_brain)",
        )
    columns, dropped = [], []
    for name, mask in zip(names, subject_masks, strict=True):
        if np.array_equal(mask, common):
            columns.append(None)
            dropped.append(0)
            continue
        columns.append(np.flatnonzero(common[mask]))
        dropped.append(int(mask.sum() - common.sum()))
        logger.warning(
            "subject %s: %d of its %d voxels are not in every subject's mask; the group "
            "analysis uses the %d common voxels",
            name,
            dropped[-1],
            int(mask.sum()),
            int(common.sum()),
        )
    sizes = [int(mask.sum()) for mask in subject_masks]
    return CommonMask(affine, common, columns, dropped, sizes, names)


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


# --- streaming row blocks --------------------------------------------------------


def _open(source):
    """An array from an array or the path of a ``.npy`` (memory-mapped)."""
    if isinstance(source, str | Path):
        from fmriflow.io import load_matrix

        return load_matrix(source, "subject matrix")
    return source


class ColumnSubset:
    """Some columns of a matrix, read lazily (rows are sliced before the columns).

    Parameters
    ----------
    source : numpy.ndarray or path
        A ``(rows, columns)`` matrix or its ``.npy`` (memory-mapped).
    columns : numpy.ndarray of int
        The columns kept, in order.
    """

    def __init__(self, source, columns):
        self.source = source
        self.columns = np.asarray(columns, dtype=np.intp)
        matrix = _open(source)
        if self.columns.size and self.columns.max() >= matrix.shape[1]:
            raise InputError(
                f"subject matrix {source}",
                f"it has {matrix.shape[1]} columns, fewer than its mask has voxels",
                "Re-run the subject's preprocessing",
            )
        self.shape = (matrix.shape[0], self.columns.size)
        self.ndim = 2

    def __getitem__(self, key):
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        chosen = self.columns[columns]
        return np.asarray(_open(self.source)[rows][:, chosen])


class RowBlocks:
    """Subjects' matrices stacked in time, read one chunk of rows at a time.

    The stacked matrix is never built: iterating yields float64 chunks of
    at most ``chunk_rows`` rows, subject after subject, transformed on the
    fly. Sources given as paths are memory-mapped and reopened at each
    pass, so only one chunk is in memory at a time.

    Parameters
    ----------
    sources : sequence of numpy.ndarray or path
        One ``(n_rows_i, n_voxels)`` matrix per subject, or its ``.npy``.
    center : bool, default=False
        Subtract each subject's column means.
    standardize : bool, default=False
        Center and divide each subject's columns by their standard
        deviation (``ddof=1``; constant columns are left at zero).
    normalize_rows : bool, default=False
        Scale every row to unit Euclidean norm (after the above).
    chunk_rows : int, default=CHUNK_ROWS
        Rows per chunk.
    """

    def __init__(
        self, sources, center=False, standardize=False, normalize_rows=False, chunk_rows=CHUNK_ROWS
    ):
        self.sources = list(sources)
        if not self.sources:
            raise InputError("group decomposition", "no subject was given", "List the subjects")
        self.normalize_rows = normalize_rows
        self.chunk_rows = int(chunk_rows)
        shapes = [tuple(_open(s).shape) for s in self.sources]
        for i, shape in enumerate(shapes):
            if len(shape) != 2:
                raise InputError(
                    f"subject matrix {i + 1}",
                    f"it has shape {shape}, not (rows, voxels)",
                    "Pass (time, voxel) matrices or per-subject reductions",
                )
        columns = {shape[1] for shape in shapes}
        if len(columns) > 1:
            raise InputError(
                "group decomposition",
                f"the subjects' matrices have different numbers of voxels {sorted(columns)}: "
                "they were not masked with one common mask",
                "Mask every subject with the same group or template mask",
            )
        self.row_counts = [shape[0] for shape in shapes]
        self.n_rows = int(sum(self.row_counts))
        self.n_columns = int(shapes[0][1])
        self._offsets = [None] * len(self.sources)
        self._scales = [None] * len(self.sources)
        self._inverse_row_norms = None
        if center or standardize:
            for i, source in enumerate(self.sources):
                mean, std = _column_moments(_open(source), self.chunk_rows)
                self._offsets[i] = mean
                if standardize:
                    self._scales[i] = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)

    def __iter__(self):
        """Yield the transformed chunks as float64 arrays, in order."""
        return self._chunks(self.normalize_rows)

    def _chunks(self, normalize_rows):
        for i, source in enumerate(self.sources):
            matrix = _open(source)
            for start in range(0, matrix.shape[0], self.chunk_rows):
                chunk = np.array(matrix[start : start + self.chunk_rows], dtype=np.float64)
                if self._offsets[i] is not None:
                    chunk -= self._offsets[i]
                if self._scales[i] is not None:
                    chunk *= self._scales[i]
                if normalize_rows:
                    norms = np.linalg.norm(chunk, axis=1, keepdims=True)
                    chunk /= np.where(norms > 0, norms, 1.0)
                yield chunk

    def _transformed_columns(self, i, matrix, columns):
        """Rows of source ``i`` restricted to ``columns``, centred/scaled (float64)."""
        block = np.array(matrix[:, columns], dtype=np.float64)
        if self._offsets[i] is not None:
            block -= self._offsets[i][columns]
        if self._scales[i] is not None:
            block *= self._scales[i][columns]
        return block

    def _row_scales(self):
        """1 / norm of every transformed row (1 for null rows), computed once."""
        if self._inverse_row_norms is None:
            squares = []
            for chunk in self._chunks(normalize_rows=False):
                squares.append(np.einsum("ij,ij->i", chunk, chunk))
            norms = np.sqrt(np.concatenate(squares))
            self._inverse_row_norms = 1.0 / np.where(norms > 0, norms, 1.0)
        return self._inverse_row_norms

    def column_blocks(self, width=None):
        """Yield ``(columns, block)``: all rows of the stack on a slice of columns.

        ``block`` is float64, ``n_rows x len(columns)``, transformed as the
        row chunks are; by default about :data:`COLUMN_BLOCK_BYTES` each.
        """
        if width is None:
            width = max(64, COLUMN_BLOCK_BYTES // (8 * self.n_rows))
        scales = self._row_scales()[:, None] if self.normalize_rows else None
        matrices = [_open(source) for source in self.sources]
        for start in range(0, self.n_columns, int(width)):
            columns = slice(start, min(start + int(width), self.n_columns))
            block = np.vstack(
                [self._transformed_columns(i, m, columns) for i, m in enumerate(matrices)]
            )
            if scales is not None:
                block *= scales
            yield columns, block


def _column_moments(matrix, chunk_rows):
    """Column means and sample standard deviations, read in chunks (float64)."""
    n = matrix.shape[0]
    total = np.zeros(matrix.shape[1])
    for start in range(0, n, chunk_rows):
        total += np.asarray(matrix[start : start + chunk_rows], dtype=np.float64).sum(axis=0)
    mean = total / n
    squares = np.zeros(matrix.shape[1])
    for start in range(0, n, chunk_rows):
        chunk = np.asarray(matrix[start : start + chunk_rows], dtype=np.float64) - mean
        squares += np.einsum("ij,ij->j", chunk, chunk)
    std = np.sqrt(squares / max(n - 1, 1))
    return mean, std


def truncated_svd(
    blocks,
    n_components,
    seed=0,
    solver="auto",
    n_oversamples=N_OVERSAMPLES,
    n_iter=N_POWER_ITERATIONS,
):
    """Truncated SVD of a stack of subjects' matrices, without building it.

    Two solvers, neither of which holds the stacked matrix ``A``
    (``n_rows x n_columns``):

    * ``"exact"``: the eigendecomposition of the ``n_rows x n_rows`` Gram
      matrix ``A @ A.T``, accumulated over blocks of columns, then one more
      pass for the right singular vectors. Exact (to rounding) and
      deterministic; cheap when there are few rows (a subject's volumes).
    * ``"randomized"``: randomized subspace iteration (Halko, Martinsson &
      Tropp 2011, algorithm 4.4) on ``A.T``, seeded, reading the row chunks
      once per iteration; memory ``n_columns x (k + p)``.

    ``"auto"`` takes the exact solver when it needs fewer operations
    (``n_rows <= 2 (n_iter + 2)(k + p)``, and at most
    :data:`GRAM_MAX_ROWS` rows), otherwise the randomized one. Signs are
    fixed so that each right singular vector's largest absolute entry is
    positive.

    Parameters
    ----------
    blocks : RowBlocks
        The matrix ``A``.
    n_components : int
        Number of singular triplets ``k``.
    seed : int, default=0
        Seed of the randomized solver's test matrix
        (``numpy.random.default_rng``); the exact solver ignores it.
    solver : {"auto", "exact", "randomized"}, default="auto"
        See above.
    n_oversamples : int, default=N_OVERSAMPLES
        Extra random directions ``p`` (randomized solver).
    n_iter : int, default=N_POWER_ITERATIONS
        Power iterations (randomized solver).

    Returns
    -------
    singular_values : numpy.ndarray, shape (k,)
        In decreasing order.
    components : numpy.ndarray, shape (k, n_columns)
        Right singular vectors (orthonormal rows), float64.
    """
    k = int(n_components)
    if not 1 <= k <= min(blocks.n_rows, blocks.n_columns):
        raise ValueError(f"{k} components from a {blocks.n_rows} x {blocks.n_columns} matrix")
    if solver not in SOLVERS:
        raise InputError(f"SVD solver {solver!r}", f"expected one of {list(SOLVERS)}", "Fix it")
    if solver == "auto":
        cheaper = blocks.n_rows <= 2 * (int(n_iter) + 2) * (k + int(n_oversamples))
        solver = "exact" if cheaper and blocks.n_rows <= GRAM_MAX_ROWS else "randomized"
    if solver == "exact":
        singular_values, components = _exact_svd(blocks, k)
    else:
        singular_values, components = _randomized_svd(blocks, k, seed, n_oversamples, n_iter)
    peaks = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(k), peaks])
    components *= np.where(signs == 0, 1.0, signs)[:, None]
    return singular_values, components


def _exact_svd(blocks, k):
    """Top ``k`` singular triplets through the Gram matrix ``A @ A.T``."""
    gram = np.zeros((blocks.n_rows, blocks.n_rows))
    for _, block in blocks.column_blocks():
        gram += block @ block.T
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:k]
    singular_values = np.sqrt(np.maximum(eigenvalues[order], 0.0))
    left = eigenvectors[:, order]
    inverse = np.where(
        singular_values > 0, 1.0 / np.where(singular_values > 0, singular_values, 1.0), 0.0
    )
    components = np.zeros((k, blocks.n_columns))
    for columns, block in blocks.column_blocks():
        components[:, columns] = (left.T @ block) * inverse[:, None]
    return singular_values, components


def _randomized_svd(blocks, n_components, seed, n_oversamples, n_iter):
    """Randomized subspace iteration (Halko et al. 2011, algorithm 4.4) on ``A.T``.

    The random test matrix, each power iteration and the final projection
    are each one pass over the row chunks, accumulating
    ``sum_i B_i.T @ (B_i @ Q)`` in an ``(n_columns, k + p)`` array.
    """
    k = int(n_components)
    width = min(k + int(n_oversamples), blocks.n_rows, blocks.n_columns)
    rng = np.random.default_rng(seed)
    range_ = np.zeros((blocks.n_columns, width))
    for chunk in blocks:
        range_ += chunk.T @ rng.standard_normal((chunk.shape[0], width))
    basis, _ = np.linalg.qr(range_)
    for _ in range(int(n_iter)):
        range_[:] = 0.0
        for chunk in blocks:
            range_ += chunk.T @ (chunk @ basis)
        basis, _ = np.linalg.qr(range_)
    del range_
    # SVD of A @ basis through its small Gram matrix, so that no array grows
    # with the number of rows.
    gram = np.zeros((width, width))
    for chunk in blocks:
        projected = chunk @ basis
        gram += projected.T @ projected
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:k]
    singular_values = np.sqrt(np.maximum(eigenvalues[order], 0.0))
    components = (basis @ eigenvectors[:, order]).T
    return singular_values, components


# --- stage 1: per subject ------------------------------------------------------


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
        ``18 (n_components + 10)`` volumes get the exact solver (cheaper
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
    matrix = _open(data)
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


# --- stage 2: group ------------------------------------------------------------


def _group_blocks(subjects, model, cca):
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


def _check_group_rows(blocks, n_components, model):
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


def group_pca(subjects, n_components, model="canica", cca=True, seed=0, solver="auto"):
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
        Seed of the randomized SVD.
    solver : {"auto", "exact", "randomized"}, default="auto"
        See :func:`truncated_svd`.

    Returns
    -------
    singular_values : numpy.ndarray, shape (n_components,)
    components : numpy.ndarray, shape (n_components, n_voxels)
        Orthonormal spatial components, float64.
    """
    blocks = _group_blocks(subjects, model, cca)
    _check_group_rows(blocks, n_components, model)
    return truncated_svd(blocks, n_components, seed, solver)


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


def _resolve_threshold(threshold, n_components):
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


def _skewness(maps):
    """Skewness of each row (population moments, like ``scipy.stats.skew``)."""
    centred = maps - maps.mean(axis=1, keepdims=True)
    variance = np.mean(centred**2, axis=1)
    third = np.mean(centred**3, axis=1)
    return np.where(variance > 0, third / np.where(variance > 0, variance, 1.0) ** 1.5, 0.0)


def _orient_and_sort(maps, subjects, model):
    """Flip maps to positive skewness and sort them by explained variance."""
    maps = maps * np.where(_skewness(maps) < 0, -1.0, 1.0)[:, None]
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


def _finished(maps, subjects, model, ratio, method, seed, converged, extra):
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
        Seed of the group SVD and of FastICA (of the first restart; the
        others get independent seeds derived from it).
    n_init : int, default=5
        Restarts of the group stage (randomized group SVD and FastICA, each
        with its own seed). The run kept is the *consensus* one: the run
        whose maps agree best with the other runs' (mean best-match
        absolute correlation), where nilearn's CanICA keeps its sparsest
        FastICA run. Beyond the few real components the group spectrum is
        flat, so which noise directions complete the subspace is arbitrary,
        and some draws leave networks partly mixed together; the consensus
        run avoids those (see the benchmark). With ``n_init > 1`` and
        ``solver="auto"`` the group SVD is randomized, for the restarts to
        differ. ``extra["agreement"]`` holds every run's agreement and
        ``extra["run"]`` the one kept.
    max_iter : int, default=200
        FastICA iterations (scikit-learn's default). With more components
        than independent sources, the extra ones are Gaussian noise and
        FastICA may not converge on them; the maps are still usable and
        ``converged`` says so.
    tol : float, default=1e-4
        FastICA tolerance.
    solver : {"auto", "exact", "randomized"}, default="auto"
        Solver of the group SVD (:func:`truncated_svd`).

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
    ratio = _resolve_threshold(threshold, n_components)
    blocks = _group_blocks(subjects, model, cca)
    _check_group_rows(blocks, n_components, model)
    if int(n_init) > 1 and solver == "auto":
        solver = "randomized"
    runs, converged = [], []
    for run_seed in _run_seeds(seed, int(n_init)):
        _, basis = truncated_svd(blocks, n_components, run_seed, solver)
        maps, ok = _fastica(basis, run_seed, fun, max_iter, tol)
        runs.append(maps)
        converged.append(ok)
    agreement = _consensus(runs) if len(runs) > 1 else np.ones(1)
    best = int(np.argmax(agreement))
    return _finished(
        runs[best],
        subjects,
        model,
        ratio,
        method="canica" if model == "canica" else "concat_ica",
        seed=seed,
        converged=converged[best],
        extra={"agreement": agreement, "run": best},
    )


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

    Returns
    -------
    Decomposition
        ``extra["init_maps"]`` holds the initial maps and
        ``extra["penalty"]`` the L1 penalty in the data's units.
    """
    from sklearn.decomposition import dict_learning_online

    ratio = _resolve_threshold(threshold, n_components)
    converged = True
    if init is None:
        start = group_ica(subjects, n_components, seed=seed)
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
    return _finished(
        maps,
        subjects,
        "canica",
        ratio,
        method="dict_learning",
        seed=seed,
        converged=converged,
        extra={"init_maps": init_maps.astype(np.float32), "penalty": penalty},
    )


# --- comparing maps -------------------------------------------------------------


def spatial_correlation(maps_a, maps_b):
    """Pearson correlation across voxels between every pair of maps.

    Parameters
    ----------
    maps_a : numpy.ndarray, shape (n_a, n_voxels)
    maps_b : numpy.ndarray, shape (n_b, n_voxels)

    Returns
    -------
    numpy.ndarray, shape (n_a, n_b)
        Signed correlations; 0 for a constant map.
    """

    def standardized(maps):
        maps = np.atleast_2d(np.asarray(maps, dtype=np.float64))
        centred = maps - maps.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        return centred / np.where(norms > 0, norms, 1.0)

    return standardized(maps_a) @ standardized(maps_b).T


@dataclass
class Matching:
    """One-to-one matching of estimated maps to reference maps.

    Attributes
    ----------
    estimated : numpy.ndarray of int
        Index of each matched estimated map.
    reference : numpy.ndarray of int
        Index of the reference map it is matched to.
    correlations : numpy.ndarray
        Absolute spatial correlation of each pair.
    mean : float
        Mean of ``correlations``.
    """

    estimated: np.ndarray
    reference: np.ndarray
    correlations: np.ndarray
    mean: float

    @property
    def pairs(self):
        """The matched pairs as a list of ``(estimated, reference)`` indices."""
        return [(int(a), int(b)) for a, b in zip(self.estimated, self.reference, strict=True)]


def match_components(estimated, reference):
    """Match maps one to one by absolute spatial correlation (Hungarian).

    ``min(n_estimated, n_reference)`` pairs maximise the summed absolute
    correlation (``scipy.optimize.linear_sum_assignment``); with more
    estimated maps than reference maps (the usual case against ground
    truth) the extra ones are left out.

    Parameters
    ----------
    estimated : numpy.ndarray, shape (n_estimated, n_voxels)
        E.g. group ICA maps.
    reference : numpy.ndarray, shape (n_reference, n_voxels)
        E.g. the planted network maps.

    Returns
    -------
    Matching
        Pairs ordered by reference index.
    """
    from scipy.optimize import linear_sum_assignment

    similarity = np.abs(spatial_correlation(estimated, reference))
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    order = np.argsort(columns)
    rows, columns = rows[order], columns[order]
    correlations = similarity[rows, columns]
    return Matching(rows, columns, correlations, float(correlations.mean()))


def reproducibility(reference, others):
    """Per-component reproducibility of a decomposition across runs.

    For each map of the reference run and each other run, the largest
    absolute spatial correlation with that run's maps (best match, not one
    to one); then the mean over runs.

    Parameters
    ----------
    reference : numpy.ndarray, shape (n_components, n_voxels)
        Maps of the reference run.
    others : sequence of numpy.ndarray
        Maps of the other runs.

    Returns
    -------
    mean : numpy.ndarray, shape (n_components,)
        Mean best-match correlation of each reference map.
    per_run : numpy.ndarray, shape (n_runs, n_components)
        Best-match correlation in each run.
    """
    per_run = np.array(
        [np.abs(spatial_correlation(reference, other)).max(axis=1) for other in others]
    ).reshape(len(others), np.atleast_2d(reference).shape[0])
    mean = per_run.mean(axis=0) if len(others) else np.full(per_run.shape[1], np.nan)
    return mean, per_run


@dataclass
class Stability:
    """A decomposition repeated with several seeds.

    Attributes
    ----------
    reference : Decomposition
        The run with the first seed.
    runs : list of Decomposition
        All runs, reference first.
    reproducibility : numpy.ndarray, shape (n_components,)
        Mean best-match absolute correlation of each reference map with the
        other runs' maps (:func:`reproducibility`, on the maps before
        thresholding).
    per_run : numpy.ndarray, shape (n_seeds - 1, n_components)
        The same, run by run.
    seeds : list of int
    """

    reference: Decomposition
    runs: list
    reproducibility: np.ndarray
    per_run: np.ndarray
    seeds: list


def stability(
    subjects,
    n_components,
    seeds=(0, 1, 2, 3, 4),
    method="ica",
    resample_subjects=False,
    **options,
):
    """Run the group stage with several seeds and measure its reproducibility.

    The subjects' reductions are fixed (they are cached once). By default
    what varies is the group stage's randomness: the randomized group SVD's
    test matrix and FastICA's (and dictionary learning's) initialisation.
    Beyond the real components the group spectrum is flat, so the noise
    directions that complete the subspace change from seed to seed: real
    components score near 1 and noise components clearly lower (see the
    tests). With ``solver="exact", n_init=1`` only FastICA's initialisation
    varies, and when it converges every component may score about 1.

    With ``resample_subjects``, every run but the reference also draws its
    subjects with replacement (a bootstrap, from its seed), so the score
    says which components are reproducible across subject samples: planted
    networks then score high and noise components low (see the tests).

    Parameters
    ----------
    subjects : sequence of numpy.ndarray or path
        As for :func:`group_ica` or :func:`dict_learning`.
    n_components : int
        Number of components.
    seeds : sequence of int, default=(0, 1, 2, 3, 4)
        The first is the reference run (on all subjects).
    method : {"ica", "dict_learning"}, default="ica"
        Which decomposition.
    resample_subjects : bool, default=False
        Bootstrap the subjects in the other runs.
    **options
        Passed to :func:`group_ica` or :func:`dict_learning`.

    Returns
    -------
    Stability
    """
    functions = {"ica": group_ica, "dict_learning": dict_learning}
    if method not in functions:
        raise InputError(
            f"decomposition method {method!r}", f"expected one of {sorted(functions)}", "Fix it"
        )
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise InputError(
            f"stability seeds {seeds}",
            "at least two different seeds are needed",
            "List two or more distinct seeds",
        )
    subjects = list(subjects)
    runs = []
    for position, seed in enumerate(seeds):
        sample = subjects
        if resample_subjects and position > 0:
            picks = np.random.default_rng(seed).integers(0, len(subjects), len(subjects))
            sample = [subjects[i] for i in picks]
        runs.append(functions[method](sample, n_components, seed=seed, **options))
    mean, per_run = reproducibility(runs[0].raw_maps, [run.raw_maps for run in runs[1:]])
    return Stability(runs[0], runs, mean, per_run, seeds)


# --- report ---------------------------------------------------------------------


def component_table(
    decomposition, mask, affine, reproducibility=None, z_threshold=3.0, names=None
):
    """One row of statistics per component.

    Parameters
    ----------
    decomposition : Decomposition
        The maps (statistics use ``raw_maps``, except ``nonzero_voxels``).
    mask : numpy.ndarray of bool
        The mask whose voxels are the maps' columns.
    affine : numpy.ndarray
        Voxel-to-world (MNI) affine of the mask.
    reproducibility : numpy.ndarray, optional
        Per-component stability (:attr:`Stability.reproducibility`).
    z_threshold : float, default=3.0
        ``size_voxels`` counts the voxels where the map, divided by its
        standard deviation over the mask, is at least this.
    names : sequence of str, optional
        Names of the components (e.g. the matched ground-truth networks).

    Returns
    -------
    pandas.DataFrame
        Columns ``component`` (0-based, in the maps' order),
        ``explained_variance``, ``skewness``, ``peak_x``, ``peak_y``,
        ``peak_z`` (world millimetres of the maximum), ``peak_value`` (in
        standard deviations), ``size_voxels``, ``size_mm3``,
        ``nonzero_voxels`` (of the final, possibly thresholded maps), and
        ``reproducibility`` and ``name`` when given.
    """
    import pandas as pd

    raw = np.asarray(decomposition.raw_maps, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if raw.shape[1] != int(mask.sum()):
        raise ValueError(f"maps have {raw.shape[1]} voxels but the mask has {int(mask.sum())}")
    affine = np.asarray(affine, dtype=float)
    std = raw.std(axis=1, keepdims=True)
    z = raw / np.where(std > 0, std, 1.0)
    ijk = np.argwhere(mask)
    peaks = np.argmax(z, axis=1)
    xyz = ijk[peaks] @ affine[:3, :3].T + affine[:3, 3]
    voxel_volume = float(abs(np.linalg.det(affine[:3, :3])))
    size = np.sum(z >= z_threshold, axis=1)
    table = pd.DataFrame(
        {
            "component": np.arange(raw.shape[0]),
            "explained_variance": decomposition.explained_variance,
            "skewness": _skewness(raw),
            "peak_x": xyz[:, 0],
            "peak_y": xyz[:, 1],
            "peak_z": xyz[:, 2],
            "peak_value": z[np.arange(raw.shape[0]), peaks],
            "size_voxels": size,
            "size_mm3": size * voxel_volume,
            "nonzero_voxels": np.count_nonzero(decomposition.maps, axis=1),
        }
    )
    if reproducibility is not None:
        table["reproducibility"] = np.asarray(reproducibility, dtype=float)
    if names is not None:
        table["name"] = list(names)
    return table
