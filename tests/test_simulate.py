"""The simulator produces what its ground truth says."""

import numpy as np
import pytest
from scipy import stats

from fmriflow import simulate
from fmriflow.simulate import HAXBY_CATEGORIES

SHAPE = (12, 14, 12)


@pytest.fixture(scope="module")
def task_subject():
    return simulate.simulate_task_subject(
        0, 3, SHAPE, n_runs=6, tr=2.5, snr_range=(3.0, 3.0), block_volumes=8, rest_volumes=4
    )


def glm_betas(subject, tr=2.5):
    """Category betas per voxel by least squares, with per-run intercepts and trends.

    A reference estimate computed independently of the simulator's internals:
    the design is rebuilt here from the events with nilearn's HRF.
    """
    from nilearn.glm.first_level import compute_regressor

    events = subject.events
    brain = subject.bold.any(axis=-1)
    y = subject.bold[brain].T.astype(float)
    columns = []
    for category in HAXBY_CATEGORIES:
        regressor = np.zeros(len(events))
        for run in np.unique(events["run"]):
            rows = np.flatnonzero(events["run"] == run)
            times = np.arange(rows.size) * tr
            on = events["label"].to_numpy()[rows] == category
            condition = np.vstack([times[on], np.full(on.sum(), tr), np.ones(on.sum())])
            regressor[rows] = compute_regressor(condition, "glover", times)[0][:, 0]
        columns.append(regressor)
    nuisance = []
    for run in np.unique(events["run"]):
        rows = (events["run"] == run).to_numpy()
        t = np.where(rows, np.linspace(-1, 1, len(events)), 0)
        nuisance += [rows.astype(float), t, t**2]
    design = np.column_stack(columns + nuisance)
    betas = np.linalg.lstsq(design, y, rcond=None)[0][: len(HAXBY_CATEGORIES)]
    return betas, brain


def test_same_seed_same_subject_and_subjects_independent():
    a = simulate.simulate_task_subject(1, 7, SHAPE, 2, 2.5, (1, 2))
    b = simulate.simulate_task_subject(1, 7, SHAPE, 2, 2.5, (1, 2))
    c = simulate.simulate_task_subject(0, 7, SHAPE, 2, 2.5, (1, 2))
    np.testing.assert_array_equal(a.bold, b.bold)
    assert a.events.equals(b.events) and a.snr == b.snr
    assert not np.array_equal(a.bold, c.bold)


def test_block_design_shows_each_category_once_per_run():
    rng = np.random.default_rng(0)
    events = simulate.block_design(4, HAXBY_CATEGORIES, 9, 6, rng)
    assert len(events) == 4 * (6 + 8 * (9 + 6))
    for _, run in events.groupby("run"):
        counts = run["label"].value_counts()
        assert counts["rest"] == 6 + 8 * 6
        assert all(counts[c] == 9 for c in HAXBY_CATEGORIES)
        # Blocks are contiguous.
        labels = run["label"].to_numpy()
        starts = labels[1:] != labels[:-1]
        assert starts.sum() == 2 * 8


def test_bold_is_int16_with_signal_only_in_the_brain(task_subject):
    brain, roi = simulate.task_masks(SHAPE)
    assert task_subject.bold.dtype == np.int16
    assert np.all(task_subject.bold[~brain] == 0)
    assert np.all(task_subject.bold[brain] > 500)
    np.testing.assert_array_equal(task_subject.roi, roi)
    assert not np.any(task_subject.truth[~roi])


def test_planted_voxels_respond_to_their_category(task_subject):
    betas, brain = glm_betas(task_subject)
    truth = task_subject.truth[brain].T  # categories x voxels
    in_roi = task_subject.roi[brain]
    snr, sigma = task_subject.snr, simulate.NOISE_SIGMA
    for k, category in enumerate(HAXBY_CATEGORIES):
        # Remove the response shared by all categories before comparing.
        contrast = betas[k] - betas.mean(0)
        expected = sigma * snr * (truth[k] - truth.mean(0))
        r = np.corrcoef(contrast[in_roi], expected[in_roi])[0, 1]
        assert r > 0.85, (category, r)
    # Outside the ROI, category contrasts are noise only.
    outside = betas[:, ~in_roi] - betas[:, ~in_roi].mean(0)
    inside = betas[:, in_roi] - betas[:, in_roi].mean(0)
    assert np.abs(outside).mean() < 0.25 * np.abs(inside).mean()


def test_null_pair_is_identical_in_expectation(task_subject):
    a, b = (HAXBY_CATEGORIES.index(c) for c in ("bottle", "scissors"))
    face, house = HAXBY_CATEGORIES.index("face"), HAXBY_CATEGORIES.index("house")
    np.testing.assert_array_equal(task_subject.truth[..., a], task_subject.truth[..., b])
    # Across independent subjects, the estimated null difference averages to
    # zero, and it is much smaller than an informative pair's difference.
    null_means, null_sizes, real_sizes = [], [], []
    for index in range(8):
        subject = simulate.simulate_task_subject(
            index, 11, SHAPE, 4, 2.5, (3.0, 3.0), block_volumes=8, rest_volumes=4
        )
        betas, brain = glm_betas(subject)
        in_roi = subject.roi[brain]
        null_means.append((betas[a] - betas[b])[in_roi].mean())
        null_sizes.append(np.abs(betas[a] - betas[b])[in_roi].mean())
        real_sizes.append(np.abs(betas[face] - betas[house])[in_roi].mean())
    assert stats.ttest_1samp(null_means, 0.0).pvalue > 0.001
    assert np.mean(null_sizes) < 0.35 * np.mean(real_sizes)


def test_informative_voxels_are_where_patterns_differ(task_subject):
    informative = simulate.informative_voxels(task_subject.truth, "face", "house")
    null = simulate.informative_voxels(task_subject.truth, "bottle", "scissors")
    assert not null.any()
    assert informative.any() and not informative[~task_subject.roi].any()


def test_noise_has_the_requested_autocorrelation():
    rng = np.random.default_rng(0)
    noise = simulate.ar1_noise(4000, 50, 0.4, rng)
    lag1 = np.mean([np.corrcoef(n[1:], n[:-1])[0, 1] for n in noise.T])
    assert abs(lag1 - 0.4) < 0.03
    assert abs(noise.std() - 1.0) < 0.03


def test_snr_is_drawn_in_range():
    snrs = [
        simulate.simulate_task_subject(i, 0, (8, 8, 8), 2, 2.5, (0.5, 0.7)).snr for i in range(3)
    ]
    assert all(0.5 <= s <= 0.7 for s in snrs) and len(set(snrs)) == 3


def test_null_pair_must_name_two_categories():
    from fmriflow.errors import InputError

    with pytest.raises(InputError, match="null_pair"):
        simulate.simulate_task_subject(
            0, 0, (8, 8, 8), 2, 2.5, (1, 1), null_pair=("bottle", "spoon")
        )


@pytest.fixture(scope="module")
def rest_setup():
    brain, grey, affine = simulate.rest_grid(8)
    maps, names = simulate.network_maps(grey, affine, 4, 14)
    subject = simulate.simulate_rest_subject(0, 1, maps, brain, 200, 2.0, (2.0, 2.0))
    return brain, grey, affine, maps, names, subject


def test_networks_sit_at_their_coordinates(rest_setup):
    _, grey, affine, maps, names, _ = rest_setup
    for k, (name, centres) in enumerate(simulate.REST_NETWORKS[: len(names)]):
        assert names[k] == name
        assert not maps[k][~grey].any()
        for centre in centres:
            ijk = np.round(np.linalg.solve(affine[:3, :3], np.subtract(centre, affine[:3, 3])))
            i, j, k2 = ijk.astype(int)
            neighbourhood = maps[k][i - 1 : i + 2, j - 1 : j + 2, k2 - 1 : k2 + 2]
            assert neighbourhood.max() > 0.5, (name, centre)


def test_voxels_of_one_network_share_a_time_course(rest_setup):
    brain, _, _, maps, names, subject = rest_setup
    data = subject.bold[brain].T
    # Regress out the known confounds and trends, then average each network's core.
    design = np.column_stack(
        [np.ones(len(data)), np.linspace(-1, 1, len(data)), np.linspace(-1, 1, len(data)) ** 2]
        + [subject.confounds.to_numpy()]
    )
    residual = data - design @ np.linalg.lstsq(design, data, rcond=None)[0]
    cores = maps[:, brain] > 0.7
    signals = np.array([residual[:, core].mean(1) for core in cores])
    # Two halves of one network agree; different networks do not.
    for k, core in enumerate(cores):
        voxels = np.flatnonzero(core)
        half_a = residual[:, voxels[::2]].mean(1)
        half_b = residual[:, voxels[1::2]].mean(1)
        assert np.corrcoef(half_a, half_b)[0, 1] > 0.8, names[k]
    off_diagonal = np.corrcoef(signals)[~np.eye(len(signals), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.5


def test_rest_confounds_are_in_the_data(rest_setup):
    brain, _, _, maps, _, subject = rest_setup
    data = subject.bold[brain].T.astype(float)
    data -= data.mean(0)
    confounds = subject.confounds.to_numpy()
    explained = confounds @ np.linalg.lstsq(confounds, data, rcond=None)[0]
    # The artefacts explain a substantial share of the variance outside the networks.
    quiet = ~(maps[:, brain] > 0).any(0)
    share = (explained[:, quiet] ** 2).sum() / (data[:, quiet] ** 2).sum()
    assert share > 0.2
