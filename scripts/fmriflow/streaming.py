"""Truncated SVDs of subjects' matrices stacked in time, streamed from ``.npy`` files.

The stacked matrix is never built: :class:`RowBlocks` reads the subjects one
chunk of rows at a time (memory-mapped), and :func:`truncated_svd` computes
either the exact eigendecomposition of the small Gram matrix (few rows, e.g.
one subject's scan) or a seeded randomized subspace iteration (Halko et al.
2011; memory ``n_voxels x (n_components + 10)`` floats whatever the number
of subjects). Shared by the group decompositions and the parcellations.

:func:`migp` is the third way, for hundreds of subjects: MIGP (Smith et al.
2014) reads every subject once, in a seeded random order, and keeps a small
running matrix whose top components approximate the stack's.
"""

from pathlib import Path

import numpy as np

from fmriflow.errors import InputError

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


#: ``"auto"`` solves exactly up to ``EXACT_ROWS_FACTOR (n_iter + 2)(k + p)`` rows.
#: The randomized solver makes ``n_iter + 2`` passes of two products with
#: ``k + p`` columns; the exact one forms the Gram matrix (a symmetric
#: product, about twice as fast per operation) and diagonalises it. Measured
#: on one core (20 subjects' full 150-component reductions, 3,000 x 28,144,
#: k = 150, n_iter = 7): exact 9.6 s, randomized 15.1 s; the two meet near
#: 4,000 rows, i.e. a factor of about 3.
EXACT_ROWS_FACTOR = 3


#: Largest number of rows for which the exact solver may be chosen (its
#: ``n_rows x n_rows`` Gram matrix takes 128 MB at 4000, diagonalised in place).
GRAM_MAX_ROWS = 4000


SOLVERS = ("auto", "exact", "randomized")


def open_matrix(source):
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
        matrix = open_matrix(source)
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
        return np.asarray(open_matrix(self.source)[rows][:, chosen])


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
        shapes = [tuple(open_matrix(s).shape) for s in self.sources]
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
                mean, std = _column_moments(open_matrix(source), self.chunk_rows)
                self._offsets[i] = mean
                if standardize:
                    self._scales[i] = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)

    def __iter__(self):
        """Yield the transformed chunks as float64 arrays, in order."""
        return self._chunks(self.normalize_rows)

    def _chunks(self, normalize_rows):
        for i in range(len(self.sources)):
            yield from self._subject_chunks(i, normalize_rows)

    def subject_chunks(self, i):
        """Yield the transformed chunks of subject ``i`` alone (float64), in order."""
        return self._subject_chunks(i, self.normalize_rows)

    def _subject_chunks(self, i, normalize_rows):
        matrix = open_matrix(self.sources[i])
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

    def _transform_columns_into(self, i, out, columns):
        """Write the rows of source ``i`` on ``columns``, centred/scaled, into ``out``.

        The source is opened here and closed on return: a column slice of a
        memory-mapped ``(time, voxel)`` matrix touches every row, and the
        kernel maps the pages around each touched one (fault-around), so
        keeping every subject's mapping open through a block would hold
        tens of pages per row resident.
        """
        out[...] = open_matrix(self.sources[i])[:, columns]
        if self._offsets[i] is not None:
            out -= self._offsets[i][columns]
        if self._scales[i] is not None:
            out *= self._scales[i][columns]

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
        row_starts = np.concatenate([[0], np.cumsum(self.row_counts)])
        for start in range(0, self.n_columns, int(width)):
            columns = slice(start, min(start + int(width), self.n_columns))
            block = np.empty((self.n_rows, columns.stop - columns.start))
            for i in range(len(self.sources)):
                self._transform_columns_into(i, block[row_starts[i] : row_starts[i + 1]], columns)
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

    ``"auto"`` takes the exact solver when it is the faster one
    (``n_rows <= EXACT_ROWS_FACTOR (n_iter + 2)(k + p)``, and at most
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
        cheaper = blocks.n_rows <= EXACT_ROWS_FACTOR * (int(n_iter) + 2) * (k + int(n_oversamples))
        solver = "exact" if cheaper and blocks.n_rows <= GRAM_MAX_ROWS else "randomized"
    if solver == "exact":
        singular_values, components = _exact_svd(blocks, k)
    else:
        singular_values, components = _randomized_svd(blocks, k, seed, n_oversamples, n_iter)
    peaks = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(k), peaks])
    components *= np.where(signs == 0, 1.0, signs)[:, None]
    return singular_values, components


def top_eigenpairs(symmetric, k):
    """The ``k`` largest eigenvalues of a symmetric matrix and their eigenvectors.

    LAPACK's ``syevd``, as ``numpy.linalg.eigh`` (the same values, to the
    bit, in our tests), but through ``scipy.linalg.eigh`` with
    ``overwrite_a``: the eigenvectors replace ``symmetric`` instead of
    taking two more matrices of its size (a copy and the result; 256 MB at
    4,000 rows). ``symmetric`` is destroyed. (LAPACK's subset driver
    ``syevr`` would need less still, but its eigenvectors differ in the
    last bits, and beyond the real components the group spectrum is flat:
    FastICA then lands on visibly different maps, as it does with other
    BLAS kernels.)

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (k,)
        In decreasing order.
    eigenvectors : numpy.ndarray, shape (n, k)
        The matching unit eigenvectors, as columns.
    """
    from scipy.linalg import eigh

    eigenvalues, eigenvectors = eigh(symmetric, driver="evd", overwrite_a=True, check_finite=False)
    order = np.argsort(eigenvalues)[::-1][:k]
    return eigenvalues[order], eigenvectors[:, order]


def _exact_svd(blocks, k):
    """Top ``k`` singular triplets through the Gram matrix ``A @ A.T``."""
    gram = np.zeros((blocks.n_rows, blocks.n_rows))
    for _, block in blocks.column_blocks():
        gram += block @ block.T
    eigenvalues, left = top_eigenpairs(gram, k)
    del gram
    singular_values = np.sqrt(np.maximum(eigenvalues, 0.0))
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


def migp(blocks, n_rows, seed=0):
    """MIGP: a small matrix whose top components approximate those of the stack.

    MELODIC's Incremental Group-PCA (Smith, Hyvärinen, Varoquaux, Miller &
    Beckmann 2014, "Group-PCA for very large fMRI datasets", NeuroImage
    101:738-749). The subjects are visited once each, in a random order
    drawn from ``seed``; their transformed rows (as :class:`RowBlocks`
    yields them) are appended to a running matrix ``W``. Whenever the next
    subject would not fit in a buffer of ``max(2 m, m + r)`` rows (``m =
    n_rows``, ``r`` the most rows of one subject), ``W`` is cut back to its
    top ``m`` components ``S[:m, None] * Vt[:m]``, from the eigendecomposition
    of the small Gram matrix ``W @ W.T``; at the end it is cut once more.
    When everything fits (``m`` at least the total number of rows), ``W`` is
    the stack itself, subjects reordered: its SVD is the stack's.

    Memory: the buffer, ``b = max(2 m, m + r)`` rows of ``n_columns``
    float64, plus one chunk of rows — independent of the number of
    subjects. Time: one pass over the data and one cut each time about
    ``b - m`` rows were added (at most one per subject), each
    ``O(b^2 n_columns)``: linear in the number of subjects.

    Parameters
    ----------
    blocks : RowBlocks
        The subjects' matrices ``A_i`` (transformed as ``blocks`` says).
    n_rows : int
        ``m``: the rows kept after each cut (MIGP's internal dimension),
        at least the number of components wanted from the result.
    seed : int, default=0
        Seed of the subjects' order (``numpy.random.default_rng``).

    Returns
    -------
    numpy.ndarray, shape (min(m, n_rows_total), n_columns), float64
        ``W``, whose right singular vectors and singular values approximate
        the stack's top ``m`` (exactly equal when no cut was needed); give it
        to :func:`truncated_svd` as ``RowBlocks([W])``.
    """
    m = int(n_rows)
    if m < 1:
        raise ValueError(f"MIGP keeps at least one row, not {n_rows}")
    capacity = max(2 * m, m + max(blocks.row_counts))
    buffer = np.empty((capacity, blocks.n_columns))
    filled = 0
    for i in np.random.default_rng(seed).permutation(len(blocks.sources)):
        if filled + blocks.row_counts[i] > capacity:
            filled = _keep_top_rows(buffer, filled, m)
        for chunk in blocks.subject_chunks(int(i)):
            buffer[filled : filled + chunk.shape[0]] = chunk
            filled += chunk.shape[0]
    if filled > m:
        filled = _keep_top_rows(buffer, filled, m)
    return buffer[:filled]


def _keep_top_rows(buffer, filled, m):
    """Replace ``W = buffer[:filled]`` by its top ``m`` components, in place; return ``m``.

    ``W = U S Vt`` gives ``S Vt = U.T @ W``, with ``U`` from the
    eigendecomposition of ``W @ W.T``; computed a block of columns (about
    :data:`COLUMN_BLOCK_BYTES`) at a time, so the temporary stays small.
    """
    rows = buffer[:filled]
    eigenvalues, eigenvectors = np.linalg.eigh(rows @ rows.T)
    top = eigenvectors[:, np.argsort(eigenvalues)[::-1][:m]].T.copy()
    width = max(64, COLUMN_BLOCK_BYTES // (8 * filled))
    for start in range(0, buffer.shape[1], width):
        columns = slice(start, start + width)
        buffer[:m, columns] = top @ buffer[:filled, columns]
    return m
