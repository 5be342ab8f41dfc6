"""Scoring every sphere's naive Bayes predictions at once, and certifying them.

The joint log-likelihood of a test volume ``x`` for class ``c`` in sphere
``s`` is a sum over the sphere's voxels::

    L_c(x) = log prior_c - 1/2 sum_{v in s} [ log(2 pi a_cv) + (x_v - theta_cv)**2 / a_cv ]

with ``theta_cv`` and ``a_cv = var_cv + eps_s`` the class mean and variance
(``np.var``, ``ddof=0``) of voxel ``v`` over the training volumes. With the
square expanded (on data centred voxel by voxel), the differences
``L_c - L_0`` of all test volumes of a sphere are one small matrix product:
the sphere's ``x**2`` and ``x`` against per-voxel coefficients
``-(1/a_c - 1/a_0)/2`` and ``theta_c/a_c - theta_0/a_0``, plus summed
constants; ``numpy.matmul`` does all spheres at once, and all permutations
at once (as extra columns).

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
  scikit-learn uses, so they are scikit-learn's bit for bit
  (:meth:`~fmriflow.searchlight.gnb.GNBProblem.observed_statistics`);
  one-voxel spheres, whose single column numpy sums in another order,
  always go to scikit-learn.

A prediction is the class of largest log-likelihood (the first one on a
tie, as ``np.argmax``). When the winning margin exceeds twice the bound,
scikit-learn necessarily predicts the same class; :func:`score_in_place`
marks every (sphere, labelling) with a test volume whose margin does not
as uncertain, and the caller has scikit-learn predict those.
"""

import numpy as np

#: Working memory (bytes) aimed at for one chunk of spheres.
CHUNK_BYTES = 4e6
#: The unit roundoff of float64.
U64 = float(np.finfo(np.float64).eps) / 2


def gather(values, fill, index):
    """``values[index]`` with ``fill`` at the padding index ``len(values)``."""
    return np.append(values, np.asarray(fill, dtype=values.dtype))[index]


class DesignCache:
    """The test data of one fold's chunks of spheres, built once for many labellings."""

    def __init__(self):
        self._designs = {}
        self._chunk_size = None

    def chunk_size(self, proposed):
        """The chunk size of the cached designs: the first one proposed."""
        if self._chunk_size is None:
            self._chunk_size = proposed
        return self._chunk_size

    def design(self, problem, fold, lo, hi):
        """The test data of spheres ``lo:hi`` (built on first use)."""
        if lo not in self._designs:
            self._designs[lo] = _design(problem, fold, lo, hi)
        return self._designs[lo]


def score_in_place(problem, fold, theta, var, label_codes, exact_stats, designs=None):
    """Correct test predictions per labelling and sphere, and the uncertain ones.

    ``var`` is overwritten (its memory holds the smoothed variances), so
    that a batch of permutations needs no second array of that size.

    Parameters
    ----------
    problem : GNBProblem
    fold : Fold
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
    designs : DesignCache, optional
        The fold's per-chunk test data, kept between calls (permutations).

    Returns
    -------
    correct : numpy.ndarray of int, shape (n_labellings, n_centres)
    uncertain : numpy.ndarray of bool, shape (n_labellings, n_centres)
        Where a margin is within the error bound: scikit-learn decides.
    """
    n_lab, n_classes, _ = theta.shape
    coef, const, dprior, bound = _per_voxel_in_place(problem, fold, theta, var, exact_stats)
    position = np.full(len(problem.classes), -1)
    position[fold.classes] = np.arange(n_classes)
    truth = position[label_codes].T  # (n_test, n_lab); -1: class absent from training
    n_test = len(fold.test)
    width = coef.shape[2] * n_test + 2 * problem.index.shape[1] * (coef.shape[2] + n_test)
    chunk_size = max(8, int(CHUNK_BYTES // (8 * width)))
    if designs is not None:
        chunk_size = designs.chunk_size(chunk_size)
    correct, uncertain = [], []
    for lo in range(0, problem.spheres.n_centres, chunk_size):
        hi = min(lo + chunk_size, problem.spheres.n_centres)
        if designs is None:
            design = _design(problem, fold, lo, hi)
        else:
            design = designs.design(problem, fold, lo, hi)
        c, u = _chunk(problem, fold, lo, hi, design, coef, const, dprior, bound, truth, n_classes)
        correct.append(c)
        uncertain.append(u)
    correct, uncertain = np.concatenate(correct, axis=1), np.concatenate(uncertain, axis=1)
    if exact_stats:
        # numpy sums a one-column matrix in another order than wider ones.
        uncertain[:, problem.sizes == 1] = True
    return correct, uncertain


def _per_voxel_in_place(problem, fold, theta, var, exact_stats):
    """Coefficients and error bounds from the class statistics (``var`` is overwritten)."""
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
        bound = _bound(problem, fold, theta, a, w, log_term, big, magnitude, exact_stats)
        del big, magnitude
        coef, const, dprior = _coefficients(problem, fold, theta, w, log_term, exact_stats)
    return coef, const, dprior, bound


def _coefficients(problem, fold, theta, w, log_term, exact_stats):
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


def _bound(problem, fold, theta, a, w, log_term, big, magnitude, exact_stats):
    """Bound on the error of every log-likelihood difference, per sphere.

    The reference's rounding (a few units of its precision times the sum
    of absolute terms), ours (float64), the float64 statistics' errors
    and the eps approximation: a variance off by ``delta`` changes
    ``log a + q/a`` by at most ``delta/a (1 + q/a)``.
    """
    u_ref = float(np.finfo(problem.dtype).eps) / 2 if exact_stats else U64
    k_max = problem.index.shape[1]
    fixed = np.abs(fold.log_prior).sum()
    sphere_magnitude = gather(magnitude.max(axis=0), 0.0, problem.index).sum(axis=1) + fixed
    smallest = gather(a.min(axis=(0, 1)), np.inf, problem.index).min(axis=1)
    rate = 2.0 * (problem.sizes + 8) * u_ref + 0.5 * fold.delta / smallest
    ours = 2.0 * (2 * k_max + 8) * U64
    if exact_stats:
        log_abs = np.sum(np.abs(log_term[0]) + 1.0, axis=0)
        log_abs = gather(log_abs, 0.0, problem.index).sum(axis=1) + fixed
        return rate, log_abs, ours * sphere_magnitude, 1e-9 * sphere_magnitude
    stats = _stats_error(problem, fold, theta, a, w, big)
    ratio = np.max(stats / magnitude) if stats.size else 0.0
    ratio = ratio if np.isfinite(ratio) else np.inf
    return (rate + ours + 0.5 * ratio) * sphere_magnitude


def _stats_error(problem, fold, theta, a, w, big):
    """Bound on the effect of the statistics' rounding, per labelling and voxel.

    Sums of ``n`` values carry at most ``n u`` times the sum of their
    magnitudes; divided by the class count, a mean is off by at most
    ``gamma * spread`` and a variance by ``4 gamma spread^2``, for ours and
    scikit-learn's (float64, uncentred) alike.
    """
    n = problem.X.shape[0]
    gamma = 4.0 * n * (n / max(1, fold.counts.min())) * U64
    d_theta = gamma * fold.spread
    d_var = 4.0 * gamma * fold.spread**2
    term = d_var / a * (1.0 + big) + (2.0 * (fold.reach + np.abs(theta)) * d_theta) * w
    return term.sum(axis=1) + d_theta**2 * w.sum(axis=1)


def _design(problem, fold, lo, hi):
    """Test data of spheres ``lo:hi``: ``(sphere, volume, [x_v^2, x_v for v])``."""
    index = problem.index[lo:hi]
    values = np.swapaxes(fold.x_test[index], 1, 2)  # (n_spheres, n_test, k)
    design = np.empty(values.shape + (2,))
    np.multiply(values, values, out=design[..., 0])
    design[..., 1] = values
    return design.reshape(values.shape[0], values.shape[1], -1)


def _chunk(problem, fold, lo, hi, design, coef, const, dprior, bound, truth, n_classes):
    """Correct and uncertain predictions for spheres ``lo:hi``."""
    index = problem.index[lo:hi]
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


def _channels(values):
    """(n_lab, n_channels, n_voxels) -> (n_voxels, n_channels * n_lab), channel-major."""
    return np.moveaxis(values, 2, 0).transpose(0, 2, 1).reshape(values.shape[2], -1)
