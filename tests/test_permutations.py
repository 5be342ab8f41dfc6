"""Permutations within runs: blocks of a block design, exact counts, calibrated p-values."""

import itertools

import numpy as np
import pytest

from fmriflow import decoding
from fmriflow import searchlight as sl
from fmriflow.errors import InputError
from fmriflow.permutations import (
    at_floor,
    describe,
    distinct_labellings,
    format_p,
    label_blocks,
    p_value_floor,
    permute_within_runs,
    too_few_warning,
    unit_blocks,
)


def small_design():
    """Two runs; a gap (a left-out volume) splits the second 'a' stretch of run 1."""
    volumes = np.array([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12])
    y = np.array(list("aabbaa" + "bbaabb"))
    runs = np.repeat([1, 2], 6)
    return y, runs, volumes


def test_blocks_are_stretches_of_consecutive_volumes_of_one_label_and_run():
    y, runs, volumes = small_design()
    blocks = label_blocks(y, runs, volumes)
    # aa | bb | a (gap after volume 4) | a | new run: bb | aa | bb
    np.testing.assert_array_equal(blocks, [0, 0, 1, 1, 2, 3, 4, 4, 5, 5, 6, 6])
    with pytest.raises(InputError, match="not increasing"):
        label_blocks(y, runs, volumes[::-1])


def test_block_permutations_keep_blocks_and_each_runs_labels():
    y, runs, volumes = small_design()
    blocks = label_blocks(y, runs, volumes)
    permuted = permute_within_runs(y, runs, 200, seed=0, blocks=blocks)
    assert len({tuple(p) for p in permuted}) > 1
    for labels in permuted:
        for block in np.unique(blocks):
            assert len(set(labels[blocks == block])) == 1
        for run in np.unique(runs):
            in_run = runs == run
            # The run's block labels are reshuffled among its blocks.
            original = sorted(y[in_run][np.unique(blocks[in_run], return_index=True)[1]])
            shuffled = sorted(labels[in_run][np.unique(blocks[in_run], return_index=True)[1]])
            assert original == shuffled


def test_one_volume_blocks_are_volume_permutations():
    y, runs, _ = small_design()
    np.testing.assert_array_equal(
        permute_within_runs(y, runs, 30, seed=4, blocks=np.arange(len(y))),
        permute_within_runs(y, runs, 30, seed=4),
    )


def test_distinct_labellings_counts_every_reachable_labelling():
    y, runs, volumes = small_design()
    blocks = label_blocks(y, runs, volumes)
    # Run 1: blocks a, b, a, a -> 4 arrangements; run 2: b, a, b -> 3.
    assert distinct_labellings(y, runs, blocks) == 12
    reached = {tuple(p) for p in permute_within_runs(y, runs, 2000, seed=1, blocks=blocks)}
    assert len(reached) == 12
    # Volume-wise: each run's multiset of 6 labels, arranged in every way.
    by_volume = {tuple(p) for p in permute_within_runs(y, runs, 20000, seed=1)}
    in_run = [len(set(itertools.permutations(y[runs == run]))) for run in np.unique(runs)]
    assert distinct_labellings(y, runs) == in_run[0] * in_run[1] == len(by_volume)
    assert describe(y, runs, blocks) == {
        "permute": "block",
        "n_units": 7,
        "distinct_labellings": "12",
    }


def test_blocks_that_mix_labels_or_units_that_do_not_exist_are_refused():
    y, runs, _ = small_design()
    with pytest.raises(InputError, match="two labels or two runs"):
        permute_within_runs(y, runs, 5, seed=0, blocks=np.zeros(len(y), dtype=int))
    with pytest.raises(InputError, match="not a permutation unit"):
        unit_blocks("trial", y, runs, np.arange(len(y)))


def block_noise_searchlight(seed):
    """Disjoint spheres on noise shared by the volumes of each block, labels unrelated to it."""
    rng = np.random.default_rng(seed)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    shape = (18, 18, 18)
    centres = np.zeros(shape, dtype=bool)
    centres[1::3, 1::3, 1::3] = True
    spheres = sl.make_spheres(np.ones(shape, dtype=bool), affine, 5.6, centres)
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(np.argwhere(np.ones(shape, dtype=bool))[spheres.matrix.indices].T)] = True
    spheres = sl.make_spheres(mask, affine, 5.6, centres)
    n_runs, n_blocks, block_volumes = 8, 4, 6
    runs = np.repeat(np.arange(n_runs), n_blocks * block_volumes)
    y = np.tile(np.repeat(["a", "b", "a", "b"], block_volumes), n_runs)
    block_patterns = rng.standard_normal((n_runs * n_blocks, int(mask.sum())))
    X = np.repeat(block_patterns, block_volumes, axis=0)
    X += 0.5 * rng.standard_normal(X.shape)
    blocks = label_blocks(y, runs, np.arange(len(y)))
    return X.astype(np.float32), y, runs, blocks, spheres


def test_block_permutations_are_calibrated_where_volume_permutations_are_not():
    """On block-correlated noise, 5% of block-permutation p-values fall below 0.05.

    Volume-wise permutations break the blocks, so their null is too narrow and
    far more than 5% of the (independent, disjoint) spheres look significant.
    """
    X, y, runs, blocks, spheres = block_noise_searchlight(0)
    n = spheres.n_centres
    low, high = decoding.binomial_chance_interval(n, 0.05, level=0.99)
    by_block = sl.gnb_permutation_test(X, y, runs, spheres, 99, seed=0, n_jobs=2, blocks=blocks)
    by_volume = sl.gnb_permutation_test(X, y, runs, spheres, 99, seed=0, n_jobs=2)
    np.testing.assert_array_equal(by_block.scores, by_volume.scores)
    assert low <= np.mean(by_block.p_values <= 0.05) <= high
    assert np.mean(by_volume.p_values <= 0.05) > 2 * high
    assert np.std(by_volume.null) < 0.7 * np.std(by_block.null)
    assert np.mean(by_block.fwe_p_values <= 0.05) <= 2 / n


def test_p_values_at_their_floor_are_written_as_bounds():
    """(1 + k) / (1 + n) with k = 0 is only an upper bound; any other value is exact."""
    null = np.array([0.4, 0.55, 0.5, 0.61, 0.45])
    p_values = [(1 + np.sum(null >= score)) / (1 + len(null)) for score in (0.9, 0.6, 0.3)]
    assert p_value_floor(5) == p_values[0] == 1 / 6
    np.testing.assert_array_equal(at_floor(p_values, 5), [True, False, False])
    assert format_p(p_values[0], 5) == "<= 0.17"
    assert format_p(p_values[1], 5) == "0.333"
    assert format_p(1 / 101, 100) == "<= 0.0099"


def test_too_few_permutations_for_the_level_are_named():
    message = too_few_warning(10, 0.05, "searchlight[0] (x)")
    assert message.startswith("searchlight[0] (x): with 10 permutations no p-value can be below")
    assert "0.0909" in message and "at least 19" in message
    assert too_few_warning(19, 0.05, "x") is None
    assert too_few_warning(0, 0.05, "x") is None
    assert "500 draws" in too_few_warning(500, 0.001, "g", "draws")
