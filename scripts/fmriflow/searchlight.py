"""Searchlight decoding: a cross-validated accuracy for the sphere around every voxel.

Spheres
-------
A sphere holds every voxel of the data mask whose centre lies within
``radius`` millimetres of the centre voxel, distances being computed in world
coordinates from the image affine (so anisotropic voxels such as Haxby's
3.5 x 3.75 x 3.75 mm are handled). The test is the one nilearn's
``SearchLight`` makes through a KD-tree (``dx**2 + dy**2 + dz**2 <=
radius**2`` on the same world coordinates), so the neighbourhoods are
nilearn's. Spheres are rows of a sparse ``(centre, voxel)`` CSR matrix;
columns are the data mask's voxels in numpy's C order (those of the
``(time, voxel)`` matrices), rows the voxels of the centre mask in C order.

Gaussian naive Bayes, exactly and fast
--------------------------------------
Naive Bayes treats voxels as independent given the class, so the joint
log-likelihood of a test volume ``x`` for class ``c`` in sphere ``s`` is a
sum over the sphere's voxels::

    L_c(x) = log prior_c - 1/2 sum_{v in s} [ log(2 pi a_cv) + (x_v - theta_cv)**2 / a_cv ]

with ``theta_cv`` and ``a_cv = var_cv + eps_s`` the class mean and variance
(``np.var``, ``ddof=0``) of voxel ``v`` over the training volumes. A voxel
has the same class means and variances in every sphere that contains it,
so they are computed once per fold for all voxels, and every sphere's
log-likelihoods are sums of per-voxel terms. With the square expanded (on
data centred voxel by voxel), the differences ``L_c - L_0`` of all test
volumes of a sphere are one small matrix product: the sphere's ``x**2`` and
``x`` against per-voxel coefficients ``-(1/a_c - 1/a_0)/2`` and
``theta_c/a_c - theta_0/a_0``, plus summed constants; ``numpy.matmul``
does all spheres at once, and all permutations at once (below).

Why this is exact. Three things separate these sums from scikit-learn's:

* ``GaussianNB`` adds ``eps = var_smoothing * max(np.var(X_train, axis=0))``
  to every variance, the maximum being over the features the model sees,
  i.e. *within the sphere*: ``eps`` differs from sphere to sphere. The
  per-voxel terms use ``var_smoothing * var_v`` instead, which is at most
  the sphere's ``eps``; since ``d/da (log a + q/a) = (1 - q/a)/a``, this
  changes a log-likelihood by at most ``(eps_s - min_v eps_v) / min a *
  sum (1 + q/a)``, a bound computed for every sphere.
* rounding: scikit-learn evaluates the sum in the data's precision
  (float32 for float32 data) and in another order; both its error and
  ours are bounded by a few units in the last place times the sum of the
  terms' absolute values (which includes the expanded square's).
* the class statistics: they are computed with the numpy reductions
  scikit-learn uses (``np.mean``/``np.var`` over the rows of the C-ordered
  training matrix, which reduce each column in the same order whatever the
  other columns), so they are scikit-learn's bit for bit; one-voxel
  spheres, whose single column numpy sums in another order, always go to
  scikit-learn.

A prediction is the class of largest log-likelihood (the first one on a
tie, as ``np.argmax``). When the winning margin exceeds twice the bound,
scikit-learn necessarily predicts the same class. Every (sphere, fold)
with a test volume whose margin does not (well under 1% of them for
float32 data, almost none for float64; more when ``var_smoothing`` is large
and variances within a sphere differ a lot) is re-predicted by
scikit-learn's ``GaussianNB.predict`` itself, with its fitted attributes
set to those bit-identical statistics. Scores are then equal, not close, to
those of ``nilearn.decoding.SearchLight(estimator=GaussianNB(),
scoring="accuracy")`` with the same cross-validation: the mean over folds
of each fold's accuracy.

Permutations
------------
Labels are permuted within runs with the random sequence of
``sklearn.model_selection.permutation_test_score(groups=runs)``. A
permutation changes only the class statistics: for a batch of
permutations, class sums of ``x`` and ``x**2`` over all volumes are one
matrix product, a fold's are those minus its test volumes', and every
sphere's null accuracy follows as above, with the permutations as extra
columns of the per-sphere products. These statistics are float64 sums
rather than scikit-learn's two-pass reductions, so their rounding is
bounded too, and null predictions are certified against float64
arithmetic (uncertain ones are refitted by scikit-learn on float64 data):
for float64 data each sphere's null distribution is exactly that of
``permutation_test_score`` with the same seed. The family-wise error rate
is controlled with the maximum statistic over centres.

Other classifiers
-----------------
:func:`searchlight` fits any scikit-learn classifier (e.g. from
:func:`fmriflow.decoding.make_classifier`) sphere by sphere and fold by fold,
in worker processes that share a memory-mapped data matrix (never copied),
with the scores nilearn computes.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from fmriflow.errors import InputError

#: Working memory (bytes) aimed at for the per-voxel arrays of a batch of
#: permutations and for one chunk of spheres.
BATCH_BYTES = 256e6
CHUNK_BYTES = 4e6
_U64 = float(np.finfo(np.float64).eps) / 2


# --- spheres -----------------------------------------------------------------


@dataclass(frozen=True)
class Spheres:
    """Searchlight neighbourhoods on a grid.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of bool, shape (n_centres, n_voxels)
        ``matrix[i, j]`` is true when data voxel ``j`` lies in the sphere of
        centre ``i``; column indices are sorted within rows.
    centres : numpy.ndarray of int, shape (n_centres, 3)
        Voxel indices (i, j, k) of the centres, in C order.
    centre_columns : numpy.ndarray of int, shape (n_centres,)
        Column of each centre in the data matrix.
    mask, centre_mask : numpy.ndarray of bool, shape (x, y, z)
        The data mask (columns) and the centre mask (rows).
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine.
    radius : float
        Radius in millimetres.
    """

    matrix: sparse.csr_matrix
    centres: np.ndarray
    centre_columns: np.ndarray
    mask: np.ndarray
    centre_mask: np.ndarray
    affine: np.ndarray
    radius: float

    @property
    def n_centres(self):
        """Number of spheres."""
        return self.matrix.shape[0]

    @property
    def n_voxels(self):
        """Number of data voxels (columns of the data matrix)."""
        return self.matrix.shape[1]

    @property
    def sizes(self):
        """Number of voxels in each sphere."""
        return np.diff(self.matrix.indptr)

    @property
    def world(self):
        """World coordinates (mm) of the centres, shape (n_centres, 3)."""
        return world_coordinates(self.centres, self.affine)

    def padded_indices(self):
        """Sphere voxels as a dense index array.

        Returns
        -------
        numpy.ndarray of int, shape (n_centres, largest sphere size)
            Row ``i`` lists the columns of sphere ``i`` in increasing order,
            then ``n_voxels`` (one past the last column) as padding, for
            gathering from arrays extended with a neutral value.
        """
        sizes = self.sizes
        out = np.full((self.n_centres, int(sizes.max())), self.n_voxels, dtype=np.intp)
        rows = np.repeat(np.arange(self.n_centres), sizes)
        slots = np.arange(self.matrix.nnz) - np.repeat(self.matrix.indptr[:-1], sizes)
        out[rows, slots] = self.matrix.indices
        return out


def voxel_sizes(affine):
    """Voxel sizes along the three axes of an affine.

    Parameters
    ----------
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine.

    Returns
    -------
    numpy.ndarray, shape (3,)
        Length (mm) of a one-voxel step along each axis.
    """
    return np.sqrt(np.sum(np.asarray(affine, dtype=float)[:3, :3] ** 2, axis=0))


def world_coordinates(ijk, affine):
    """World coordinates (mm) of voxel indices, as nilearn computes them.

    Parameters
    ----------
    ijk : numpy.ndarray of int, shape (n, 3)
        Voxel indices.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        ``affine @ [i, j, k, 1]`` for every voxel, with the same matrix
        product as ``nilearn.image.coord_transform`` (so that distances
        equal to the radius fall on the same side).
    """
    ijk = np.asarray(ijk)
    coords = np.c_[ijk[:, 0], ijk[:, 1], ijk[:, 2], np.ones_like(ijk[:, 2])].T
    return np.dot(np.asarray(affine, dtype=float), coords)[:3].T


def _format_sizes(sizes):
    return " x ".join(f"{s:g}" for s in np.round(sizes, 4))


def check_radius(radius, affine):
    """Raise :class:`InputError` unless a sphere of ``radius`` mm spans several voxels.

    Parameters
    ----------
    radius : float
        Searchlight radius in millimetres.
    affine : numpy.ndarray
        Voxel-to-world affine of the data.

    Returns
    -------
    float
        The radius.
    """
    sizes = voxel_sizes(affine)
    try:
        radius = float(radius)
    except (TypeError, ValueError):
        radius = float("nan")
    if not np.isfinite(radius) or radius < sizes.min():
        raise InputError(
            f"searchlight radius {radius:g} mm",
            f"smaller than the voxel size ({_format_sizes(sizes)} mm), so every "
            "sphere would hold only its centre voxel",
            f"Choose a radius of at least {sizes.min():g} mm (nilearn's Haxby "
            "example uses 5.6 mm)",
        )
    return radius


def _check_masks(mask, centre_mask, what):
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise InputError(what, f"the data mask must be 3D, not {mask.ndim}D", "Give a 3D mask")
    if not mask.any():
        raise InputError(
            what,
            "the data mask is empty (no voxel inside it)",
            "Check that the mask belongs to this image (same space and field of view)",
        )
    if centre_mask is None:
        return mask, mask.copy()
    centre_mask = np.asarray(centre_mask) != 0
    if centre_mask.shape != mask.shape:
        raise InputError(
            what,
            f"the centre mask has shape {centre_mask.shape} but the data mask has shape "
            f"{mask.shape}",
            "Resample the centre mask to the data grid (nearest neighbour)",
        )
    n_centres = int(centre_mask.sum())
    if n_centres == 0:
        raise InputError(
            what, "the centre mask is empty", "Give a centre mask with at least one voxel"
        )
    outside = int((centre_mask & ~mask).sum())
    if outside == n_centres:
        raise InputError(
            what,
            f"all {n_centres} voxels of the centre mask lie outside the data mask",
            "The centre mask must be a subset of the data mask: check that both are on "
            "the same grid and in the same space",
        )
    if outside:
        raise InputError(
            what,
            f"{outside} of the {n_centres} voxels of the centre mask lie outside the data "
            "mask, where there is no data",
            "Intersect the centre mask with the data mask (centre_mask & mask) or use a "
            "larger data mask",
        )
    return mask, centre_mask


def make_spheres(mask, affine, radius, centre_mask=None, what="searchlight"):
    """The searchlight spheres of a data mask, as nilearn's ``SearchLight`` builds them.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (x, y, z)
        Data mask: the voxels (columns of the data matrix) spheres may hold.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine of the grid.
    radius : float
        Radius in millimetres; at least the smallest voxel size.
    centre_mask : numpy.ndarray of bool, optional
        Sphere centres (nilearn's ``process_mask_img``), a subset of
        ``mask`` on the same grid. Default: every voxel of ``mask``.
    what : str
        What the masks are, for messages.

    Returns
    -------
    Spheres

    Notes
    -----
    A voxel belongs to a sphere when ``dx**2 + dy**2 + dz**2 <= radius**2``
    in world coordinates (each difference taken between the coordinates of
    ``affine @ [i, j, k, 1]``), the test of nilearn's KD-tree. Like nilearn,
    the first mask voxel whose world coordinates truncate to the same
    integers as the centre's is added too (it is the centre itself unless
    voxels are smaller than 2 mm). On the rare grids where a voxel's
    squared distance is within one rounding of ``radius**2``, nilearn's
    KD-tree may decide that voxel by a bound on a whole tree node and
    disagree with the per-voxel test.
    """
    mask, centre_mask = _check_masks(mask, centre_mask, what)
    affine = np.asarray(affine, dtype=float)
    radius = check_radius(radius, affine)
    column_of = np.full(mask.shape, -1, dtype=np.int64)
    voxels = np.argwhere(mask)
    column_of[mask] = np.arange(len(voxels))
    centres = np.argwhere(centre_mask)
    voxel_world = world_coordinates(voxels, affine)
    centre_world = world_coordinates(centres, affine)
    world_of = np.zeros(mask.shape + (3,))
    world_of[mask] = voxel_world
    # Voxel offsets that can reach the sphere: |offset_i| <= radius * ||row i of A^-1||.
    reach = radius * np.sqrt(np.sum(np.linalg.inv(affine[:3, :3]) ** 2, axis=1))
    half = np.ceil(reach).astype(int) + 1
    offsets = np.stack(
        np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), -1
    ).reshape(-1, 3)
    r2 = radius * radius
    rows, cols = [], []
    step = max(1, int(1e6 // len(offsets)))
    shape = np.array(mask.shape)
    for start in range(0, len(centres), step):
        block = centres[start : start + step]
        candidates = block[:, None, :] + offsets[None, :, :]
        inside = np.all((candidates >= 0) & (candidates < shape), axis=-1)
        centre_index, offset_index = np.nonzero(inside)
        ijk = candidates[centre_index, offset_index]
        column = column_of[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        keep = column >= 0
        centre_index, ijk, column = centre_index[keep], ijk[keep], column[keep]
        diff = centre_world[start + centre_index] - world_of[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        squared = diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1]
        squared = squared + diff[:, 2] * diff[:, 2]
        within = squared <= r2
        rows.append(start + centre_index[within])
        cols.append(column[within])
    rows.append(np.arange(len(centres)))
    cols.append(_truncation_neighbours(voxel_world, centre_world))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    keep = cols >= 0
    matrix = sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (rows[keep], cols[keep])),
        shape=(len(centres), len(voxels)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = True
    matrix.sort_indices()
    return Spheres(
        matrix=matrix,
        centres=centres,
        centre_columns=column_of[centres[:, 0], centres[:, 1], centres[:, 2]],
        mask=mask,
        centre_mask=centre_mask,
        affine=affine,
        radius=radius,
    )


def _truncation_neighbours(voxel_world, centre_world):
    """Index of the first voxel whose truncated world coordinates equal each centre's.

    nilearn adds this voxel to every sphere ("the voxel containing the
    seed"); -1 where there is none.
    """
    keys = np.trunc(voxel_world).astype(np.int64)
    unique, first = np.unique(keys, axis=0, return_index=True)
    wanted = np.trunc(centre_world).astype(np.int64)
    lookup = {tuple(key): index for key, index in zip(unique.tolist(), first, strict=True)}
    return np.array([lookup.get(tuple(key), -1) for key in wanted.tolist()], dtype=np.int64)


# --- inputs ------------------------------------------------------------------


def _check_data(X, y, runs, spheres):
    if X.ndim != 2 or X.shape[1] != spheres.n_voxels:
        raise InputError(
            "data matrix",
            f"has shape {X.shape} but the searchlight mask has {spheres.n_voxels} voxels "
            "(columns)",
            "Use the mask saved with the matrix (mask.nii.gz next to clean.npy)",
        )
    y, runs = np.asarray(y), np.asarray(runs)
    if len(y) != X.shape[0] or len(runs) != X.shape[0]:
        raise InputError(
            "searchlight target",
            f"{len(y)} labels and {len(runs)} runs for {X.shape[0]} volumes",
            "Select the rows of the matrix with the labels (decoding.select_target)",
        )
    return y, runs


def _splits(cv, X, y, runs):
    from fmriflow.decoding import make_cv

    cv = make_cv("leave_one_run_out") if cv is None else cv
    dummy = np.zeros((len(y), 1))
    return cv, [(np.asarray(train), np.asarray(test)) for train, test in cv.split(dummy, y, runs)]


def permute_within_runs(y, runs, n_permutations, seed):
    """Labels permuted within runs, as ``permutation_test_score(groups=runs)`` does.

    Parameters
    ----------
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample.
    n_permutations : int
        Number of permutations.
    seed : int
        Seed of a ``numpy.random.RandomState``; the ``p``-th row is the
        ``p``-th shuffle scikit-learn's ``permutation_test_score`` makes with
        ``random_state=seed``.

    Returns
    -------
    numpy.ndarray, shape (n_permutations, n_samples)
        Permuted labels; every run keeps its own labels.
    """
    y, runs = np.asarray(y), np.asarray(runs)
    random_state = np.random.RandomState(seed)
    out = np.empty((n_permutations, len(y)), dtype=y.dtype)
    groups = [runs == run for run in np.unique(runs)]
    for p in range(n_permutations):
        indices = np.arange(len(y))
        for in_run in groups:
            indices[in_run] = random_state.permutation(indices[in_run])
        out[p] = y[indices]
    return out


# --- Gaussian naive Bayes ------------------------------------------------------


@dataclass
class SearchlightResult:
    """Cross-validated searchlight accuracies.

    Attributes
    ----------
    scores : numpy.ndarray of float64, shape (n_centres,)
        Mean over folds of each fold's accuracy (nilearn's ``masked_scores_``).
    fold_scores : numpy.ndarray of float64, shape (n_folds, n_centres)
        Accuracy of every fold.
    n_test : numpy.ndarray of int, shape (n_folds,)
        Test volumes per fold.
    n_rechecked : int
        (Sphere, fold) pairs re-predicted by scikit-learn because a margin
        was within rounding (fast naive Bayes path only).
    """

    scores: np.ndarray
    fold_scores: np.ndarray
    n_test: np.ndarray
    n_rechecked: int = 0


@dataclass
class PermutationResult:
    """Searchlight accuracies with permutation p-values.

    Attributes
    ----------
    scores : numpy.ndarray of float64, shape (n_centres,)
        Accuracies on the true labels.
    null : numpy.ndarray of float64, shape (n_permutations, n_centres)
        Accuracies on labels permuted within runs.
    p_values : numpy.ndarray of float64, shape (n_centres,)
        ``(1 + #{null >= score}) / (1 + n_permutations)`` per centre.
    max_null : numpy.ndarray of float64, shape (n_permutations,)
        Largest null accuracy over centres, per permutation.
    fwe_threshold : float
        The ``1 - alpha`` quantile of ``max_null`` (``numpy.quantile``,
        linear interpolation): accuracies above it are significant with a
        family-wise error rate of ``alpha``.
    fwe_p_values : numpy.ndarray of float64, shape (n_centres,)
        ``(1 + #{max_null >= score}) / (1 + n_permutations)``.
    alpha : float
        Family-wise error rate of ``fwe_threshold``.
    n_rechecked : int
        (Sphere, fold, labelling) triples re-predicted by scikit-learn.
    """

    scores: np.ndarray
    null: np.ndarray
    p_values: np.ndarray
    max_null: np.ndarray
    fwe_threshold: float
    fwe_p_values: np.ndarray
    alpha: float
    n_rechecked: int = 0


@dataclass
class _Fold:
    """What the naive Bayes path needs of one fold, for all voxels at once."""

    train: np.ndarray
    test: np.ndarray
    classes: np.ndarray  # codes of the classes present in training, sorted
    counts: np.ndarray  # training volumes per present class
    log_prior: np.ndarray  # (n_classes,) float64
    eps_voxel: np.ndarray  # (n_voxels,) var_smoothing * training variance, float64
    eps_sphere: np.ndarray  # (n_centres,) scikit-learn's epsilon, data precision
    delta: np.ndarray  # (n_centres,) bound on eps_sphere - eps_voxel within the sphere
    x_test: np.ndarray  # (n_voxels + 1, n_test) centred float64 test data; last row 0
    reach: np.ndarray  # (n_voxels,) largest |centred test value|
    spread: np.ndarray  # (n_voxels,) largest |raw| + largest |centred| training value
    covering: bool = True  # training and test volumes are all the volumes
    all_sums: tuple = ()  # sums of centred x and x**2 over the training volumes (null)


def _gather(values, fill, index):
    """``values[index]`` with ``fill`` at the padding index ``len(values)``."""
    return np.append(values, np.asarray(fill, dtype=values.dtype))[index]


class _GNBProblem:
    """Data, spheres and folds shared by the observed and permuted labellings."""

    #: Re-predict every (sphere, fold) with scikit-learn (to test that path).
    force_recheck = False

    def __init__(self, X, y, runs, spheres, splits, var_smoothing, priors):
        self.X = X
        self.dtype = np.dtype(X.dtype) if X.dtype.kind == "f" else np.dtype(np.float64)
        self.spheres = spheres
        self.classes, self.codes = np.unique(y, return_inverse=True)
        self.runs = runs
        self.splits = splits
        self.var_smoothing = float(var_smoothing)
        self.priors = None if priors is None else np.asarray(priors, dtype=float)
        self.index = spheres.padded_indices()
        self.sizes = spheres.sizes
        self.centre = np.zeros(spheres.n_voxels)
        for start in range(0, X.shape[0], 256):
            self.centre += np.asarray(X[start : start + 256], dtype=np.float64).sum(axis=0)
        self.centre /= X.shape[0]
        self.folds = [self._fold(train, test) for train, test in splits]

    def _rows(self, rows):
        x = np.ascontiguousarray(self.X[rows])
        return x if x.dtype.kind == "f" else x.astype(np.float64)

    def _fold(self, train, test):
        x_train = self._rows(train)
        # The variance whose maximum scikit-learn scales into epsilon, in its precision.
        variance = np.var(x_train, axis=0)
        eps_raw = self.var_smoothing * _gather(variance, -np.inf, self.index).max(axis=1)
        eps_voxel = self.var_smoothing * variance.astype(np.float64)
        low = _gather(eps_voxel, np.inf, self.index).min(axis=1)
        eps_sphere = eps_raw.astype(np.float64)
        classes, counts = np.unique(self.codes[train], return_counts=True)
        if self.priors is None:
            prior = counts.astype(self.dtype) / counts.astype(self.dtype).sum()
            log_prior = np.log(prior).astype(np.float64)
        else:
            log_prior = np.log(self.priors[classes])
        x_test = self._rows(test).astype(np.float64) - self.centre
        spread = np.abs(x_train).max(axis=0).astype(np.float64)
        spread += np.abs(x_train.astype(np.float64) - self.centre).max(axis=0)
        return _Fold(
            train=train,
            test=test,
            classes=classes,
            counts=counts,
            log_prior=log_prior,
            eps_voxel=eps_voxel,
            eps_sphere=eps_raw,
            delta=eps_sphere - low + 1e-3 * eps_sphere,
            x_test=np.ascontiguousarray(np.vstack([x_test.T, np.zeros((1, len(test)))])),
            reach=np.abs(x_test).max(axis=0),
            spread=spread,
        )

    def observed_statistics(self, fold):
        """Class means and variances exactly as scikit-learn's GaussianNB computes them.

        Returns the centred float64 ``theta`` and ``var`` of shape
        ``(1, n_classes, n_voxels)`` used for scoring, and scikit-learn's own
        arrays (data precision, ``(n_classes, n_voxels)``) for re-predictions.
        """
        x_train = self._rows(fold.train)
        codes = self.codes[fold.train]
        shape = (len(fold.classes), x_train.shape[1])
        theta_raw, var_raw = np.empty(shape, x_train.dtype), np.empty(shape, x_train.dtype)
        for c, code in enumerate(fold.classes):
            # The same numpy reductions as GaussianNB._update_mean_variance, on
            # a C-ordered matrix: every column is summed in the same order as
            # in the sphere's own (volume x voxel) matrix.
            x_class = x_train[codes == code]
            var_raw[c] = np.var(x_class, axis=0)
            theta_raw[c] = np.mean(x_class, axis=0)
        theta = theta_raw.astype(np.float64)[None] - self.centre
        return theta, var_raw.astype(np.float64)[None], (theta_raw, var_raw)

    # -- scoring --------------------------------------------------------------

    def score(self, fold, theta, var, label_codes, exact_stats, designs=None):
        """Correct test predictions per labelling and sphere, and the uncertain ones.

        Parameters
        ----------
        fold : _Fold
        theta, var : numpy.ndarray, shape (n_labellings, n_classes, n_voxels)
            Centred class means and variances (without epsilon), for the
            fold's classes.
        label_codes : numpy.ndarray, shape (n_labellings, n_test)
            Class codes of the test volumes.
        exact_stats : bool
            True when ``theta`` and ``var`` are scikit-learn's own (the
            reference is then scikit-learn in the data's precision);
            otherwise they carry float64 rounding errors, which are bounded,
            and the reference is float64 arithmetic.
        designs : dict, optional
            Cache of the fold's per-chunk data matrices, kept between calls.

        Returns
        -------
        correct : numpy.ndarray of int, shape (n_labellings, n_centres)
        uncertain : numpy.ndarray of bool, shape (n_labellings, n_centres)
            Where a margin is within the error bound: scikit-learn decides.
        """
        n_lab, n_classes, _ = theta.shape
        coef, const, dprior, bound = self._per_voxel(fold, theta, var, exact_stats)
        position = np.full(len(self.classes), -1)
        position[fold.classes] = np.arange(n_classes)
        truth = position[label_codes].T  # (n_test, n_lab); -1: class absent from training
        n_test = len(fold.test)
        width = coef.shape[2] * n_test + 2 * self.index.shape[1] * (coef.shape[2] + n_test)
        chunk_size = max(8, int(CHUNK_BYTES // (8 * width)))
        if designs is not None:
            chunk_size = designs.setdefault("chunk_size", chunk_size)
        correct, uncertain = [], []
        for lo in range(0, self.spheres.n_centres, chunk_size):
            hi = min(lo + chunk_size, self.spheres.n_centres)
            if designs is None:
                design = self._design(fold, lo, hi)
            elif lo not in designs:
                design = designs[lo] = self._design(fold, lo, hi)
            else:
                design = designs[lo]
            c, u = self._chunk(fold, lo, hi, design, coef, const, dprior, bound, truth, n_classes)
            correct.append(c)
            uncertain.append(u)
        correct, uncertain = np.concatenate(correct, axis=1), np.concatenate(uncertain, axis=1)
        if exact_stats:
            # numpy sums a one-column matrix in another order than wider ones.
            uncertain[:, self.sizes == 1] = True
        if self.force_recheck:
            uncertain[:] = True
        return correct, uncertain

    def _per_voxel(self, fold, theta, var, exact_stats):
        """Coefficients and error bounds from the class statistics (``var`` is reused)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = var
            a += fold.eps_voxel
            w = 1.0 / a
            log_term = np.multiply(a, 2.0 * np.pi)
            np.log(log_term, out=log_term)
            # (|x| + |theta|)^2 / a bounds (x - theta)^2 / a for every test volume.
            big = np.abs(theta)
            big += fold.reach
            big *= big
            big *= w
            magnitude = np.abs(log_term)
            magnitude += 1.0
            magnitude += 2.0 * big
            magnitude = magnitude.sum(axis=1)  # (n_lab, n_voxels)
            bound = self._bound(fold, theta, a, w, log_term, big, magnitude, exact_stats)
            del big, magnitude
            coef, const, dprior = self._coefficients(fold, theta, w, log_term, exact_stats)
        return coef, const, dprior, bound

    def _coefficients(self, fold, theta, w, log_term, exact_stats):
        """Per-voxel coefficients of the log-likelihood differences to class 0.

        ``L_c - L_0 = dprior_c + sum_v [sq x^2 + lin x + const]`` with
        ``sq = -(w_c - w_0)/2``, ``lin = w_c theta_c - w_0 theta_0`` and
        ``const = -(w_c theta_c^2 - w_0 theta_0^2 + log_c - log_0)/2``,
        ``w = 1/a``. With ``exact_stats``, one more channel gives
        ``sum_c w_c (x - theta_c)^2`` (for the per-volume error bound).

        Returns
        -------
        coef : (n_voxels + 1, 2, n_channels)
            ``sq`` and ``lin``; channels are class-major ``(class, labelling)``.
        const : (n_voxels + 1, n_channels)
        dprior : (n_channels,)
        """
        dprior = np.repeat(fold.log_prior[1:] - fold.log_prior[0], theta.shape[0])
        if exact_stats:
            dprior = np.append(dprior, 0.0)
        n_voxels = theta.shape[2]
        coef = np.zeros((n_voxels + 1, 2, len(dprior)))
        const = np.zeros((n_voxels + 1, len(dprior)))
        n_diff = (theta.shape[1] - 1) * theta.shape[0]
        coef[:n_voxels, 0, :n_diff] = _channels(-0.5 * (w[:, 1:] - w[:, :1]))
        wt = w * theta
        coef[:n_voxels, 1, :n_diff] = _channels(wt[:, 1:] - wt[:, :1])
        if exact_stats:
            coef[:n_voxels, 0, n_diff] = w.sum(axis=1)[0]
            coef[:n_voxels, 1, n_diff] = -2.0 * wt.sum(axis=1)[0]
        wt *= theta
        cst = -0.5 * ((wt[:, 1:] - wt[:, :1]) + (log_term[:, 1:] - log_term[:, :1]))
        const[:n_voxels, :n_diff] = _channels(cst)
        if exact_stats:
            const[:n_voxels, n_diff] = wt.sum(axis=1)[0]
        return coef, const, dprior

    def _bound(self, fold, theta, a, w, log_term, big, magnitude, exact_stats):
        """Bound on the error of every log-likelihood difference, per sphere.

        The reference's rounding (a few units of its precision times the sum
        of absolute terms), ours (float64), the float64 statistics' errors
        and the eps approximation: a variance off by ``delta`` changes
        ``log a + q/a`` by at most ``delta/a (1 + q/a)``.
        """
        u_ref = float(np.finfo(self.dtype).eps) / 2 if exact_stats else _U64
        k_max = self.index.shape[1]
        fixed = np.abs(fold.log_prior).sum()
        sphere_magnitude = _gather(magnitude.max(axis=0), 0.0, self.index).sum(axis=1) + fixed
        smallest = _gather(a.min(axis=(0, 1)), np.inf, self.index).min(axis=1)
        rate = 2.0 * (self.sizes + 8) * u_ref + 0.5 * fold.delta / smallest
        ours = 2.0 * (2 * k_max + 8) * _U64
        if exact_stats:
            log_abs = np.sum(np.abs(log_term[0]) + 1.0, axis=0)
            log_abs = _gather(log_abs, 0.0, self.index).sum(axis=1) + fixed
            return rate, log_abs, ours * sphere_magnitude, 1e-9 * sphere_magnitude
        stats = self._stats_error(fold, theta, a, w, big)
        ratio = np.max(stats / magnitude) if stats.size else 0.0
        ratio = ratio if np.isfinite(ratio) else np.inf
        return (rate + ours + 0.5 * ratio) * sphere_magnitude

    def _stats_error(self, fold, theta, a, w, big):
        """Bound on the effect of the statistics' rounding, per labelling and voxel.

        Sums of ``n`` values carry at most ``n u`` times the sum of their
        magnitudes; divided by the class count, a mean is off by at most
        ``gamma * spread`` and a variance by ``4 gamma spread^2``, for ours and
        scikit-learn's (float64, uncentred) alike.
        """
        n = self.X.shape[0]
        gamma = 4.0 * n * (n / max(1, fold.counts.min())) * _U64
        d_theta = gamma * fold.spread
        d_var = 4.0 * gamma * fold.spread**2
        term = d_var / a * (1.0 + big) + (2.0 * (fold.reach + np.abs(theta)) * d_theta) * w
        return term.sum(axis=1) + d_theta**2 * w.sum(axis=1)

    def _design(self, fold, lo, hi):
        """Test data of spheres ``lo:hi``: ``(sphere, volume, [x_v^2, x_v for v])``."""
        index = self.index[lo:hi]
        values = np.swapaxes(fold.x_test[index], 1, 2)  # (n_spheres, n_test, k)
        design = np.empty(values.shape + (2,))
        np.multiply(values, values, out=design[..., 0])
        design[..., 1] = values
        return design.reshape(values.shape[0], values.shape[1], -1)

    def _chunk(self, fold, lo, hi, design, coef, const, dprior, bound, truth, n_classes):
        """Correct and uncertain predictions for spheres ``lo:hi``."""
        index = self.index[lo:hi]
        n_spheres, k = index.shape
        n_test, n_lab = truth.shape
        weights = coef[index].reshape(n_spheres, 2 * k, -1)
        with np.errstate(invalid="ignore", over="ignore"):
            sums = np.matmul(design, weights)
            sums += (const[index].sum(axis=1) + dprior)[:, None, :]
            n_diff = (n_classes - 1) * n_lab
            if isinstance(bound, tuple):
                rate, log_abs, ours, tiny = (b[lo:hi, None, None] for b in bound)
                q_sum = np.maximum(sums[:, :, n_diff:], 0.0)
                limit = 2.0 * (rate * (log_abs + 2.0 * q_sum + tiny) + ours)
            else:
                limit = 2.0 * bound[lo:hi, None, None]
            diff = sums[:, :, :n_diff]
            if n_classes == 2:
                sign = np.where(truth == 1, 1.0, np.where(truth == 0, -1.0, 0.0))
                if limit.shape[1] > 1 or not np.all(sign):
                    uncertain = ~np.all(np.abs(diff) > limit, axis=1)
                    correct = np.sum(diff * sign > 0, axis=1)
                else:
                    np.multiply(diff, sign, out=diff)
                    correct = np.count_nonzero(diff > 0, axis=1)
                    uncertain = ~(np.abs(diff, out=diff).min(axis=1) > limit[:, 0])
            else:
                full = diff.reshape(n_spheres, n_test, n_classes - 1, n_lab)
                full = np.concatenate([np.zeros((n_spheres, n_test, 1, n_lab)), full], axis=2)
                correct = np.sum(np.argmax(full, axis=2) == truth[None], axis=1)
                top = -np.partition(-full, 1, axis=2)
                uncertain = ~np.all(top[:, :, 0] - top[:, :, 1] > limit, axis=1)
        return correct.T.astype(np.int32), uncertain.T

    # -- scikit-learn for uncertain predictions ---------------------------------

    def _columns(self, sphere):
        matrix = self.spheres.matrix
        return matrix.indices[matrix.indptr[sphere] : matrix.indptr[sphere + 1]]

    def refit(self, fold, sphere, labels, float64):
        """Correct predictions of scikit-learn's GaussianNB fitted on one sphere and fold."""
        from sklearn.naive_bayes import GaussianNB

        x = self.X[:, self._columns(sphere)]
        if float64 or x.dtype.kind != "f":
            x = x.astype(np.float64)
        model = GaussianNB(var_smoothing=self.var_smoothing, priors=self.priors)
        model.fit(x[fold.train], labels[fold.train])
        return int(np.sum(model.predict(x[fold.test]) == labels[fold.test]))

    def repredict(self, fold, sphere, raw_stats, x_test, labels):
        """Correct predictions of scikit-learn's GaussianNB given its fitted statistics.

        ``raw_stats`` are the class means and variances scikit-learn's fit
        computes (bit for bit, see :meth:`observed_statistics`), so setting
        them and calling ``predict`` gives its predictions without refitting.
        One-voxel spheres, whose statistics numpy sums in another order, are
        refitted.
        """
        from sklearn.naive_bayes import GaussianNB

        if self.sizes[sphere] == 1:
            return self.refit(fold, sphere, labels, float64=False)
        columns = self._columns(sphere)
        theta_raw, var_raw = raw_stats
        dtype = theta_raw.dtype
        counts = fold.counts.astype(dtype)
        model = GaussianNB(var_smoothing=self.var_smoothing, priors=self.priors)
        model.classes_ = self.classes[fold.classes]
        model.n_features_in_ = len(columns)
        model.epsilon_ = fold.eps_sphere[sphere]
        model.theta_ = np.ascontiguousarray(theta_raw[:, columns])
        model.var_ = np.ascontiguousarray(var_raw[:, columns])
        model.var_ += model.epsilon_
        model.class_count_ = counts
        if self.priors is None:
            model.class_prior_ = counts / counts.sum()
        else:
            model.class_prior_ = np.asarray(self.priors, dtype=dtype)
        predicted = model.predict(np.ascontiguousarray(x_test[:, columns]))
        return int(np.sum(predicted == labels[fold.test]))


def _channels(values):
    """(n_lab, n_channels, n_voxels) -> (n_voxels, n_channels * n_lab), channel-major."""
    return np.moveaxis(values, 2, 0).transpose(0, 2, 1).reshape(values.shape[2], -1)


def _n_jobs(n_jobs):
    if n_jobs in (-1, None):
        return os.cpu_count() or 1
    return max(1, int(n_jobs))


def _map(function, items, n_jobs):
    """``list(map(function, items))``, in ``n_jobs`` threads."""
    if n_jobs > 1 and len(items) > 1:
        with ThreadPoolExecutor(min(n_jobs, len(items))) as executor:
            return list(executor.map(function, items))
    return [function(item) for item in items]


def _blas_limit(n_jobs):
    """One BLAS thread per worker when we run several workers."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1 if n_jobs > 1 else None, user_api="blas")


def _fold_accuracies(correct, n_test):
    """Fold accuracies and their mean, computed as scikit-learn and nilearn do."""
    fold_scores = correct / n_test[:, None]
    # np.mean over the last, contiguous axis: the sum np.mean(cross_val_score(...)) makes.
    return np.ascontiguousarray(fold_scores.T).mean(axis=1), fold_scores


def _observed(problem, labels, n_jobs):
    def run(fold):
        theta, var, raw_stats = problem.observed_statistics(fold)
        correct, uncertain = problem.score(fold, theta, var, problem.codes[fold.test][None], True)
        x_test = problem._rows(fold.test)
        for sphere in np.flatnonzero(uncertain[0]):
            correct[0, sphere] = problem.repredict(fold, sphere, raw_stats, x_test, labels)
        return correct[0], int(uncertain.sum())

    results = _map(run, problem.folds, n_jobs)
    n_test = np.array([len(fold.test) for fold in problem.folds])
    scores, fold_scores = _fold_accuracies(np.array([r[0] for r in results]), n_test)
    return SearchlightResult(scores, fold_scores, n_test, sum(r[1] for r in results))


def _gnb_setup(X, y, runs, spheres, cv, var_smoothing, priors):
    y, runs = _check_data(X, y, runs, spheres)
    cv, splits = _splits(cv, X, y, runs)
    return _GNBProblem(X, y, runs, spheres, splits, var_smoothing, priors), cv, y


def gnb_searchlight(X, y, runs, spheres, cv=None, var_smoothing=1e-9, priors=None, n_jobs=1):
    """Searchlight accuracies of Gaussian naive Bayes, computed for all spheres at once.

    The scores are identical to those of ``nilearn.decoding.SearchLight``
    with ``estimator=GaussianNB(var_smoothing=..., priors=...)``,
    ``scoring="accuracy"`` and the same cross-validation (see the module
    docstring for why).

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_voxels)
        Data matrix (may be a memory-mapped ``.npy``); columns are the data
        mask's voxels in C order.
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample (the CV groups).
    spheres : Spheres
        From :func:`make_spheres`.
    cv : splitter, optional
        From :func:`fmriflow.decoding.make_cv`; default leave-one-run-out.
    var_smoothing : float
        As in ``sklearn.naive_bayes.GaussianNB``.
    priors : array-like, optional
        Class priors (default: the training frequencies).
    n_jobs : int
        Threads (over folds); results do not depend on it.

    Returns
    -------
    SearchlightResult
    """
    n_jobs = _n_jobs(n_jobs)
    with _blas_limit(n_jobs):
        problem, _, y = _gnb_setup(X, y, runs, spheres, cv, var_smoothing, priors)
        return _observed(problem, y, n_jobs)


def gnb_permutation_test(
    X,
    y,
    runs,
    spheres,
    n_permutations,
    seed=0,
    cv=None,
    var_smoothing=1e-9,
    priors=None,
    alpha=0.05,
    n_jobs=1,
):
    """Naive Bayes searchlight with per-centre and family-wise permutation p-values.

    Labels are permuted within runs, in the order of
    ``sklearn.model_selection.permutation_test_score(groups=runs,
    random_state=seed)``; class statistics are recomputed for all voxels per
    permutation, and every sphere's null accuracy follows from them.

    Parameters
    ----------
    X, y, runs, spheres, cv, var_smoothing, priors
        As in :func:`gnb_searchlight`. The cross-validation must split by
        run (every fold's training and test sets unions of whole runs), so
        that permuting within runs leaves the folds unchanged.
    n_permutations : int
        Number of permutations.
    seed : int
        Seed of the permutations.
    alpha : float
        Family-wise error rate of the max-statistic threshold.
    n_jobs : int
        Threads (over folds); results do not depend on it.

    Returns
    -------
    PermutationResult
        For float64 data, ``null[:, i]`` and ``p_values[i]`` are those of
        ``permutation_test_score`` on sphere ``i``; for float32 data the null
        accuracies are those of float64 arithmetic (scikit-learn in float32
        could differ only on predictions tied to within float32 rounding).
    """
    if int(n_permutations) < 1:
        raise InputError(
            f"n_permutations {n_permutations}", "must be at least 1", "Ask for e.g. 100"
        )
    n_jobs = _n_jobs(n_jobs)
    with _blas_limit(n_jobs):
        problem, cv, y = _gnb_setup(X, y, runs, spheres, cv, var_smoothing, priors)
        permuted = permute_within_runs(y, problem.runs, int(n_permutations), seed)
        _check_folds_survive_permutation(problem, cv, permuted)
        observed = _observed(problem, y, n_jobs)
        null, n_rechecked = _null(problem, permuted, n_jobs)
    return summarize_permutations(observed.scores, null, alpha, n_rechecked + observed.n_rechecked)


def _check_folds_survive_permutation(problem, cv, permuted):
    runs = problem.runs
    for train, test in problem.splits:
        for rows in (train, test):
            inside = np.zeros(len(runs), dtype=bool)
            inside[rows] = True
            if not np.array_equal(np.isin(runs, runs[rows]), inside):
                raise InputError(
                    "searchlight permutations",
                    "the cross-validation puts volumes of one run in different sets, so "
                    "permuting labels within runs would change the folds",
                    "Use a cross-validation by run (leave_one_run_out, kfold_runs or "
                    "repeated_stratified_runs)",
                )
    reference = [(tuple(a), tuple(b)) for a, b in problem.splits]
    dummy = np.zeros((len(runs), 1))
    for labels in permuted[:3]:
        if [(tuple(a), tuple(b)) for a, b in cv.split(dummy, labels, runs)] != reference:
            raise InputError(
                "searchlight permutations",
                "the cross-validation folds change with the permuted labels",
                "Use a cross-validation whose folds depend on the runs only",
            )


def _null(problem, permuted, n_jobs):
    """Null accuracies (n_permutations, n_centres) and the number of re-predictions.

    Per batch of permutations, class sums of ``x`` and ``x**2`` over all
    volumes come from one matrix product; a fold's training sums are those
    minus its test volumes' (or, for folds that leave volumes out of both
    sets, the training volumes' own).
    """
    n_perm = len(permuted)
    n_voxels, n_centres = problem.spheres.n_voxels, problem.spheres.n_centres
    n_classes = len(problem.classes)
    x = np.empty((problem.X.shape[0], n_voxels))
    for start in range(0, len(x), 256):
        x[start : start + 256] = problem.X[start : start + 256]
    x -= problem.centre
    x2 = x * x
    codes_of = {label: code for code, label in enumerate(problem.classes)}
    permuted_codes = np.vectorize(codes_of.__getitem__, otypes=[np.intp])(permuted)
    every = np.arange(len(x))
    for fold in problem.folds:
        fold.covering = np.array_equal(np.sort(np.concatenate([fold.train, fold.test])), every)
        fold.all_sums = (x[fold.train].sum(axis=0), x2[fold.train].sum(axis=0))
    # About 10 arrays of (batch, classes, voxels) float64 per fold in flight.
    per_perm = 8.0 * n_voxels * n_classes * 10 * min(n_jobs, len(problem.folds))
    batch = int(max(1, min(n_perm, BATCH_BYTES // per_perm)))
    batches = [slice(start, min(start + batch, n_perm)) for start in range(0, n_perm, batch)]
    one_hot = (permuted_codes[:, None, :] == np.arange(n_classes - 1)[None, :, None]).astype(float)

    def class_sums(labellings, rows):
        flat = one_hot[labellings][:, :, rows].reshape(-1, len(rows))
        shape = (len(flat) // (n_classes - 1), n_classes - 1, n_voxels)
        return (flat @ x[rows]).reshape(shape), (flat @ x2[rows]).reshape(shape)

    # Class sums over all volumes, for folds whose training set is all but the test set.
    totals = None
    if all(fold.covering for fold in problem.folds):
        if 2 * n_perm * (n_classes - 1) * n_voxels * 8 <= BATCH_BYTES:
            totals = [class_sums(labellings, every) for labellings in batches]

    def statistics(fold, b):
        if totals is not None:
            tested = class_sums(batches[b], fold.test)
            sums = [t - s for t, s in zip(totals[b], tested, strict=True)]
        else:
            sums = list(class_sums(batches[b], fold.train))
        # The last class: all training volumes minus the others.
        s1, s2 = (
            np.concatenate([s, (a - s.sum(axis=1))[:, None]], axis=1)[:, fold.classes]
            for s, a in zip(sums, fold.all_sums, strict=True)
        )
        theta = s1 / fold.counts[:, None]
        s2 /= fold.counts[:, None]
        s2 -= theta**2
        return theta, np.maximum(s2, 0.0, out=s2)

    count_type = np.int16 if max(len(fold.test) for fold in problem.folds) < 2**15 else np.int32

    def run(fold):
        designs = {} if _design_bytes(problem, fold) <= BATCH_BYTES else None
        correct = np.empty((n_perm, n_centres), dtype=count_type)
        n_uncertain = 0
        for b, labellings in enumerate(batches):
            theta, var = statistics(fold, b)
            codes = permuted_codes[labellings]
            counts, uncertain = problem.score(
                fold, theta, var, codes[:, fold.test], False, designs
            )
            del theta, var
            for p, sphere in zip(*np.nonzero(uncertain), strict=True):
                labels = problem.classes[codes[p]]
                counts[p, sphere] = problem.refit(fold, sphere, labels, float64=True)
            n_uncertain += int(uncertain.sum())
            correct[labellings] = counts
        return correct, n_uncertain

    results = _map(run, problem.folds, n_jobs)
    n_rechecked = sum(r[1] for r in results)
    correct = np.stack([r[0] for r in results])  # (n_folds, n_perm, n_centres)
    del results
    n_test = np.array([len(fold.test) for fold in problem.folds])
    null = np.empty((n_perm, n_centres))
    for p in range(n_perm):
        null[p], _ = _fold_accuracies(correct[:, p], n_test)
    return null, n_rechecked


def _design_bytes(problem, fold):
    """Memory of a fold's cached per-chunk data matrices."""
    return 8 * problem.spheres.n_centres * len(fold.test) * 2 * problem.index.shape[1]


def summarize_permutations(scores, null, alpha=0.05, n_rechecked=0):
    """Per-centre and family-wise p-values from observed and null accuracies.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n_centres,)
        Accuracies on the true labels.
    null : numpy.ndarray, shape (n_permutations, n_centres)
        Accuracies on permuted labels.
    alpha : float
        Family-wise error rate of the threshold.
    n_rechecked : int
        Passed through to the result.

    Returns
    -------
    PermutationResult
    """
    n_perm = null.shape[0]
    p_values = (1.0 + np.sum(null >= scores, axis=0)) / (1.0 + n_perm)
    max_null = null.max(axis=1)
    fwe_p = (1.0 + np.sum(max_null[:, None] >= scores[None, :], axis=0)) / (1.0 + n_perm)
    return PermutationResult(
        scores=scores,
        null=null,
        p_values=p_values,
        max_null=max_null,
        fwe_threshold=float(np.quantile(max_null, 1.0 - alpha)),
        fwe_p_values=fwe_p,
        alpha=alpha,
        n_rechecked=n_rechecked,
    )


# --- any classifier ----------------------------------------------------------------


def searchlight(
    X, y, runs, spheres, estimator, cv=None, n_jobs=1, chunk_size=None, backend="processes"
):
    """Cross-validated accuracy of any classifier in every sphere.

    Every sphere and fold is fitted with a fresh clone of ``estimator`` on
    the sphere's columns, as nilearn's ``SearchLight`` does through
    ``cross_val_score``, so the scores are the same as nilearn's for the
    same estimator, CV and ``scoring="accuracy"``.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_voxels)
        Data matrix. A memory-mapped ``.npy`` (``np.load(path,
        mmap_mode="r")``) is shared by the workers through its file, never
        copied; an in-memory array is written once to a shared temporary
        memory map by joblib when it is large.
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample (the CV groups).
    spheres : Spheres
        From :func:`make_spheres`.
    estimator : sklearn classifier
        E.g. ``fmriflow.decoding.make_classifier("svc")``. A pipeline whose
        only step is the classifier is fitted as that classifier (the same
        fit, without the pipeline's overhead).
    cv : splitter, optional
        From :func:`fmriflow.decoding.make_cv`; default leave-one-run-out.
    n_jobs : int
        Workers, each fitting its own chunks of spheres.
    chunk_size : int, optional
        Spheres per task (default: about 16 tasks per worker).
    backend : {"processes", "threads"}
        joblib's ``loky`` processes (fitting is mostly Python, which threads
        would run one at a time) or threads.

    Returns
    -------
    SearchlightResult
    """
    y, runs = _check_data(X, y, runs, spheres)
    _, splits = _splits(cv, X, y, runs)
    n_centres = spheres.n_centres
    n_jobs = _n_jobs(n_jobs)
    if chunk_size is None:
        chunk_size = max(1, min(256, -(-n_centres // (16 * n_jobs))))
    if hasattr(estimator, "steps") and len(estimator.steps) == 1:
        estimator = estimator.steps[0][1]
    matrix = spheres.matrix
    tasks = [
        (matrix.indptr[start : start + chunk_size + 1], start)
        for start in range(0, n_centres, chunk_size)
    ]
    if n_jobs > 1 and len(tasks) > 1 and backend == "processes":
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs, backend="loky")(
            delayed(_fit_spheres)(X, y, splits, matrix.indices, indptr, estimator)
            for indptr, _ in tasks
        )
    else:
        parts = _map(
            lambda task: _fit_spheres(X, y, splits, matrix.indices, task[0], estimator),
            tasks,
            n_jobs,
        )
    n_test = np.array([len(test) for _, test in splits])
    scores, fold_scores = _fold_accuracies(np.concatenate(parts, axis=1), n_test)
    return SearchlightResult(scores, fold_scores, n_test)


def _fit_spheres(X, y, splits, indices, indptr, estimator):
    """Correct test predictions (fold, sphere) of consecutive spheres (CSR row pointers)."""
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    correct = np.zeros((len(splits), len(indptr) - 1), dtype=np.int64)
    with warnings.catch_warnings():
        # As nilearn: a classifier may not converge on some sphere.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(len(indptr) - 1):
            x = np.asarray(X[:, indices[indptr[i] : indptr[i + 1]]])
            for f, (train, test) in enumerate(splits):
                model = clone(estimator).fit(x[train], y[train])
                correct[f, i] = int(np.sum(model.predict(x[test]) == y[test]))
    return correct


def searchlight_scores(
    X, y, runs, spheres, classifier="gnb", cv=None, balance=False, seed=0, n_jobs=1
):
    """Searchlight accuracies of a registry classifier, by the fastest exact path.

    Parameters
    ----------
    X, y, runs, spheres, cv, n_jobs
        As in :func:`searchlight`.
    classifier : str
        A key of :data:`fmriflow.decoding.CLASSIFIERS`; ``"gnb"`` takes the
        fast naive Bayes path (:func:`gnb_searchlight`), any other is fitted
        sphere by sphere (:func:`searchlight`).
    balance : bool
        As in :func:`fmriflow.decoding.make_classifier`.
    seed : int
        Random state of estimators that use one.

    Returns
    -------
    SearchlightResult
    """
    from fmriflow.decoding import make_classifier

    n_classes = len(np.unique(np.asarray(y)))
    pipeline = make_classifier(
        classifier,
        seed=seed,
        balance=balance,
        n_classes=n_classes,
        n_features=int(spheres.sizes.min()),
    )
    if classifier == "gnb":
        gnb = pipeline.named_steps["clf"]
        return gnb_searchlight(
            X, y, runs, spheres, cv, gnb.var_smoothing, gnb.priors, n_jobs=n_jobs
        )
    return searchlight(X, y, runs, spheres, pipeline, cv, n_jobs=n_jobs)


# --- outputs ---------------------------------------------------------------------


def to_volume(values, spheres, fill=0.0):
    """Per-centre values as a float32 volume on the data grid.

    Parameters
    ----------
    values : array-like, shape (n_centres,)
        One value per sphere (accuracy, p-value, ...).
    spheres : Spheres
        Gives the centres and the grid.
    fill : float
        Value outside the centres.

    Returns
    -------
    numpy.ndarray of float32, shape (x, y, z)
        Accuracies are not rounded (unlike nilearn's ``scores_img_``, which
        takes the mask's integer dtype).
    """
    values = np.asarray(values)
    if values.shape != (spheres.n_centres,):
        raise ValueError(f"{values.shape[0]} values for {spheres.n_centres} centres")
    out = np.full(spheres.mask.shape, fill, dtype=np.float32)
    out[spheres.centre_mask] = values
    return out


def best_spheres(scores, spheres, n=20, **columns):
    """The spheres with the highest scores, as a table.

    Parameters
    ----------
    scores : array-like, shape (n_centres,)
        One score per sphere.
    spheres : Spheres
        Gives centres, coordinates and sizes.
    n : int or None
        Number of rows (None: all spheres).
    **columns : array-like, shape (n_centres,)
        Extra per-centre columns (e.g. ``p_value=...``).

    Returns
    -------
    pandas.DataFrame
        ``i``, ``j``, ``k`` (centre voxel), ``x``, ``y``, ``z`` (world, mm),
        ``score``, ``n_voxels`` and the extra columns, by decreasing score
        (ties by centre order).
    """
    import pandas as pd

    scores = np.asarray(scores, dtype=np.float64)
    world = spheres.world
    table = pd.DataFrame(
        {
            "i": spheres.centres[:, 0],
            "j": spheres.centres[:, 1],
            "k": spheres.centres[:, 2],
            "x": world[:, 0],
            "y": world[:, 1],
            "z": world[:, 2],
            "score": scores,
            "n_voxels": spheres.sizes,
        }
        | {name: np.asarray(values) for name, values in columns.items()}
    )
    order = np.argsort(-scores, kind="stable")
    return table.iloc[order[:n] if n is not None else order].reset_index(drop=True)
