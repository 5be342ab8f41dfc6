"""Label permutations within runs that respect the design.

A permutation test is valid only if the permuted units are exchangeable
under the null hypothesis. Within a run of a block design, the volumes of
a block share their label and, through the haemodynamic response and slow
noise, much of their signal: permuting single volumes breaks that
structure and gives too narrow a null, so accuracies that are chance
level look significant. Permuting the labels of whole blocks within runs
keeps it. Volume-wise permutation (each volume a unit, the sequence of
``sklearn.model_selection.permutation_test_score(groups=runs)``) remains
for event-related designs whose volumes are far enough apart.
"""

import logging
import math

import numpy as np

from fmriflow.errors import InputError

logger = logging.getLogger("fmriflow.permutations")

#: How permutations exchange labels within runs (the config's ``permute``).
UNITS = ("block", "volume")


def label_blocks(y, runs, volumes):
    """Block of each sample: a stretch of consecutive volumes of one run with one label.

    In a block design, neighbouring volumes of a block share their label and,
    through the haemodynamic response and slow noise, much of their signal:
    they are not exchangeable one by one. Their blocks are.

    Parameters
    ----------
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample.
    volumes : array-like of int, shape (n_samples,)
        Each sample's volume in the run's time series (increasing); a gap
        (a volume of another condition that the analysis leaves out) ends a
        block.

    Returns
    -------
    numpy.ndarray of int, shape (n_samples,)
        Block number of each sample, from 0 in time order.
    """
    y, runs, volumes = np.asarray(y), np.asarray(runs), np.asarray(volumes)
    if len(volumes) > 1 and not np.all(np.diff(volumes) > 0):
        raise InputError(
            "volume indices of the samples",
            "are not increasing, so blocks of consecutive volumes are undefined",
            "Pass the samples in time order",
        )
    starts = np.ones(len(y), dtype=bool)
    starts[1:] = (np.diff(volumes) != 1) | (y[1:] != y[:-1]) | (runs[1:] != runs[:-1])
    return np.cumsum(starts) - 1


def exchangeable_units(y, runs, blocks):
    """Label, run and sample-to-unit map of the units that a permutation exchanges."""
    y, runs = np.asarray(y), np.asarray(runs)
    if blocks is None:
        return y, runs, np.arange(len(y))
    _, first, unit_of_sample = np.unique(
        np.asarray(blocks), return_index=True, return_inverse=True
    )
    if not (
        np.array_equal(y, y[first][unit_of_sample])
        and np.array_equal(runs, runs[first][unit_of_sample])
    ):
        raise InputError(
            "permutation blocks",
            "a block holds volumes of two labels or two runs",
            "Build the blocks with label_blocks(y, runs, volumes)",
        )
    return y[first], runs[first], unit_of_sample


def permute_within_runs(y, runs, n_permutations, seed, blocks=None):
    """Labels permuted within runs, volume by volume or block by block.

    Parameters
    ----------
    y : array-like, shape (n_samples,)
        Labels.
    runs : array-like, shape (n_samples,)
        Run of each sample.
    n_permutations : int
        Number of permutations.
    seed : int
        Seed of a ``numpy.random.RandomState``.
    blocks : array-like of int, shape (n_samples,), optional
        Block of each sample (:func:`label_blocks`): the blocks of a run
        exchange their labels, every volume keeping its block's. Without
        blocks every volume is a unit of its own, and the ``p``-th row is the
        ``p``-th shuffle scikit-learn's ``permutation_test_score(groups=runs,
        random_state=seed)`` makes.

    Returns
    -------
    numpy.ndarray, shape (n_permutations, n_samples)
        Permuted labels; every run keeps its own labels (and, with blocks,
        its block lengths).
    """
    unit_y, unit_runs, unit_of_sample = exchangeable_units(y, runs, blocks)
    random_state = np.random.RandomState(seed)
    out = np.empty((n_permutations, len(unit_of_sample)), dtype=unit_y.dtype)
    groups = [unit_runs == run for run in np.unique(unit_runs)]
    for p in range(n_permutations):
        order = np.arange(len(unit_y))
        for in_run in groups:
            order[in_run] = random_state.permutation(order[in_run])
        out[p] = unit_y[order][unit_of_sample]
    return out


def distinct_labellings(y, runs, blocks=None):
    """How many different labellings permuting within runs can give (an exact integer).

    Parameters
    ----------
    y, runs, blocks
        As in :func:`permute_within_runs`.

    Returns
    -------
    int
        The product over runs of the multinomial coefficient of the run's
        unit labels. With few blocks per run it is small (2 blocks per run
        in 12 runs: 4096), which bounds how fine the permutation p-values
        can be.
    """
    unit_y, unit_runs, _ = exchangeable_units(y, runs, blocks)
    total = 1
    for run in np.unique(unit_runs):
        _, counts = np.unique(unit_y[unit_runs == run], return_counts=True)
        total *= math.factorial(int(counts.sum()))
        for count in counts:
            total //= math.factorial(int(count))
    return total


def describe(y, runs, blocks=None):
    """What a permutation test exchanged, for a summary: unit, units and distinct labellings.

    Parameters
    ----------
    y, runs, blocks
        As in :func:`permute_within_runs`.

    Returns
    -------
    dict
        ``permute`` (``"block"`` or ``"volume"``), ``n_units`` and
        ``distinct_labellings`` (a string: the exact number, or its order of
        magnitude when it has more than 12 digits).
    """
    n_distinct = distinct_labellings(y, runs, blocks)
    digits = len(str(n_distinct))
    return {
        "permute": "volume" if blocks is None else "block",
        "n_units": int(len(y) if blocks is None else len(np.unique(blocks))),
        "distinct_labellings": str(n_distinct) if digits <= 12 else f"about 1e{digits - 1}",
    }


def permutation_labels(y, runs, n_permutations, seed, blocks=None):
    """:func:`permute_within_runs`, logging the unit and how many labellings exist."""
    labels = permute_within_runs(y, runs, n_permutations, seed, blocks)
    n_distinct = distinct_labellings(y, runs, blocks)
    described = describe(y, runs, blocks)
    logger.info(
        "%d permutations of the labels of %d %ss within runs (%s distinct labellings)",
        n_permutations,
        described["n_units"],
        described["permute"],
        described["distinct_labellings"],
    )
    if n_distinct < 20 * n_permutations:
        logger.warning(
            "only %d distinct labellings: with %d permutations drawn from them "
            "(with repetition) p-values are coarse; more blocks per run give a finer null",
            n_distinct,
            n_permutations,
        )
    return labels


def unit_blocks(unit, y, runs, volumes):
    """The ``blocks`` argument of :func:`permute_within_runs` for a config's ``permute`` unit.

    Parameters
    ----------
    unit : {"block", "volume"}
        Exchange blocks (:func:`label_blocks`) or single volumes.
    y, runs, volumes
        As in :func:`label_blocks`.

    Returns
    -------
    numpy.ndarray of int or None
        Block of each sample, or None for volume-wise permutations.
    """
    if unit not in UNITS:
        raise InputError(
            f"permute {unit!r}", "is not a permutation unit", f"Use one of {list(UNITS)}"
        )
    return label_blocks(y, runs, volumes) if unit == "block" else None


def p_value_floor(n_permutations):
    """The smallest permutation p-value ``(1 + k) / (1 + n)`` can take: ``1 / (1 + n)``."""
    return 1.0 / (1.0 + int(n_permutations))


def at_floor(p_values, n_permutations):
    """Where a permutation p-value is its floor: no permuted score reached the observed one.

    There the p-value is only an upper bound (``p <= 1 / (1 + n)``): more
    permutations could give a smaller one.
    """
    floor = p_value_floor(n_permutations)
    return np.asarray(p_values, dtype=np.float64) <= floor * (1 + 1e-9)


def format_p(p_value, n_permutations):
    """A permutation p-value as text: ``"<= 0.0099"`` at its floor, else its value."""
    if at_floor(p_value, n_permutations):
        return f"<= {p_value_floor(n_permutations):.2g}"
    return f"{float(p_value):.3g}"


def too_few_warning(n_permutations, alpha, what, unit="permutations"):
    """A warning when no permutation p-value can reach ``alpha`` (None otherwise).

    Parameters
    ----------
    n_permutations : int
        Permutations (or group draws) asked for; 0 for none.
    alpha : float
        The significance level the p-values are read against.
    what : str
        The config entry, for the message.
    unit : str
        What is counted (``"permutations"``, ``"draws"``).
    """
    if not n_permutations or p_value_floor(n_permutations) <= alpha:
        return None
    needed = int(np.ceil(1.0 / alpha - 1.0))
    return (
        f"{what}: with {n_permutations} {unit} no p-value can be below "
        f"{p_value_floor(n_permutations):.3g}, so nothing can reach {alpha:g}; "
        f"ask for at least {needed} (the usual choice is 1000 or more)"
    )
