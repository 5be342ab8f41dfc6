"""The retinotopy simulator plants its ground truth; the Miyawaki stand-in fetches offline.

Correlations are computed here, independently of the simulator's internals
except the pRF weights: BOLD is detrended run by run (quadratic), volume
``t`` is paired with stimulus row ``t - LAG`` within a run, and the
pixel-weighted stimulus of a pRF is ``pixels @ gaussian / sum(gaussian)``.
"""

import socket

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fmriflow import retinotopy
from fmriflow.retinotopy import STIMULUS_SHAPE

import standins

LAG = 2
SEED = 11


@pytest.fixture(scope="module")
def strong():
    """A subject with a strong signal, where the truth must show plainly."""
    return retinotopy.simulate_retinotopy_subject(rng=SEED, snr=8.0)


@pytest.fixture(scope="module")
def null():
    """The same subject with signal=False: the same noise, no signal."""
    return retinotopy.simulate_retinotopy_subject(rng=SEED, snr=8.0, signal=False)


def detrended(subject):
    """ROI BOLD (volumes x voxels), quadratic trend removed run by run."""
    y = subject.bold[subject.roi].T.astype(float)
    runs = subject.stimuli["run"].to_numpy()
    for run in np.unique(runs):
        rows = runs == run
        t = np.linspace(-1, 1, rows.sum())
        design = np.column_stack([np.ones_like(t), t, t**2])
        y[rows] -= design @ np.linalg.lstsq(design, y[rows], rcond=None)[0]
    return y


def weighted_stimulus(subject, prf_row, prf_col, prf_size):
    """Pixel-weighted stimulus (volumes x voxels) of the given pRFs."""
    pixels = retinotopy.table_pixels(subject.stimuli).astype(float)
    return pixels @ retinotopy.prf_weights(prf_row, prf_col, prf_size).T


def lagged(subject, y, x, lag=LAG, keep=None):
    """Pair y[t] with x[t - lag] inside each run; ``keep`` filters on the stimulus rows."""
    runs = subject.stimuli["run"].to_numpy()
    keep = np.ones(runs.size, dtype=bool) if keep is None else keep
    ys, xs = [], []
    for run in np.unique(runs):
        rows = np.flatnonzero(runs == run)
        target, source = rows[lag:], rows[: rows.size - lag]
        chosen = keep[source]
        ys.append(y[target[chosen]])
        xs.append(x[source[chosen]])
    return np.vstack(ys), np.vstack(xs)


def columnwise_r(a, b):
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    return (a * b).mean(0)


def true_prfs(subject):
    table = subject.truth_table
    return table["prf_row"], table["prf_col"], table["prf_size"]


def test_shapes_dtypes_and_columns(strong):
    n_volumes = 12 * (3 + 16 * (3 + 3))
    assert strong.bold.shape == (16, 16, 8, n_volumes) and strong.bold.dtype == np.float32
    assert strong.affine.shape == (4, 4)
    np.testing.assert_allclose(np.abs(np.diag(strong.affine))[:3], 3.0)
    for mask in (strong.brain, strong.roi, strong.truth["has_prf"]):
        assert mask.shape == (16, 16, 8) and mask.dtype == bool
    assert np.issubdtype(strong.areas.dtype, np.integer)
    assert set(np.unique(strong.areas)) == {0, 1, 2, 3}
    assert 300 <= strong.roi.sum() <= 500
    assert np.all(strong.bold[~strong.brain] == 0) and np.all(strong.bold[strong.brain] > 0)

    assert list(strong.events.columns) == ["label", "run"]
    assert len(strong.events) == n_volumes
    assert set(strong.events["label"]) == {"random", "figure", "rest"}
    pixels = [f"px_{r}_{c}" for r in range(10) for c in range(10)]
    assert list(strong.stimuli.columns) == ["run", "split", "rest", *pixels]
    assert len(strong.stimuli) == n_volumes
    assert set(np.unique(strong.stimuli[pixels])) == {0, 1}
    assert all(pd.api.types.is_integer_dtype(strong.stimuli[c]) for c in pixels[:3])

    columns = ["i", "j", "k", "area", "prf_row", "prf_col", "prf_size"]
    assert list(strong.truth_table.columns) == columns
    assert len(strong.truth_table) == strong.roi.sum()
    i, j, k = np.nonzero(strong.roi)  # C order, the order of bold[roi]
    np.testing.assert_array_equal(strong.truth_table[["i", "j", "k"]].to_numpy().T, [i, j, k])
    for name in ("prf_row", "prf_col", "prf_size"):
        assert strong.truth[name].shape == (16, 16, 8)
        np.testing.assert_array_equal(strong.truth[name][strong.roi], strong.truth_table[name])


def test_design_runs_blocks_and_rest(strong):
    stimuli, events = strong.stimuli, strong.events
    assert sorted(stimuli["run"].unique()) == list(range(1, 13))
    np.testing.assert_array_equal(stimuli["run"], events["run"])
    split = stimuli.groupby("run")["split"].agg(set)
    assert all(split[r] == {"train"} for r in range(1, 9))
    assert all(split[r] == {"test"} for r in range(9, 13))
    pixels = retinotopy.table_pixels(stimuli)
    rest = stimuli["rest"].to_numpy() == 1
    np.testing.assert_array_equal(rest, events["label"] == "rest")
    assert not pixels[rest].any() and pixels[~rest].any(axis=1).all()
    train = stimuli["split"].to_numpy() == "train"
    np.testing.assert_array_equal(events["label"][~rest & train], "random")
    np.testing.assert_array_equal(events["label"][~rest & ~train], "figure")
    figures = {img.tobytes() for img in retinotopy.figure_images().values()}
    assert all(row.astype(np.uint8).tobytes() in figures for row in pixels[~rest & ~train])
    for _, run in stimuli.groupby("run"):
        on = 1 - run["rest"].to_numpy()
        assert not on[:3].any()
        starts = np.flatnonzero(np.diff(np.r_[0, on]) == 1)
        assert len(starts) == 16
        run_pixels = retinotopy.table_pixels(run)
        for start in starts:
            assert on[start : start + 3].all() and not on[start + 3 : start + 6].any()
            # One image per block.
            assert (run_pixels[start : start + 3] == run_pixels[start]).all()
    # Random patterns: pixels on half the time, a new pattern in every block.
    random_rows = pixels[~rest & train]
    assert abs(random_rows.mean() - 0.5) < 0.03
    assert len(np.unique(random_rows, axis=0)) == 8 * 16


def test_roi_voxels_have_a_prf_and_no_other_voxel_has(strong):
    truth = strong.truth
    np.testing.assert_array_equal(truth["has_prf"], strong.areas > 0)
    np.testing.assert_array_equal(strong.roi, strong.areas > 0)
    assert not np.any(strong.roi & ~strong.brain)
    assert (strong.brain & ~strong.roi).sum() > strong.roi.sum()  # the brain has other voxels
    for name in ("prf_row", "prf_col", "prf_size"):
        assert np.isfinite(truth[name][strong.roi]).all()
        assert np.isnan(truth[name][~strong.roi]).all()


def test_visual_areas_are_contiguous_slabs():
    from scipy.ndimage import label

    areas, brain = retinotopy.visual_areas((16, 16, 8))
    for area in (1, 2, 3):
        voxels = areas == area
        assert label(voxels)[1] == 1
        i, j, k = np.nonzero(voxels)
        box = (np.ptp(i) + 1) * (np.ptp(j) + 1) * (np.ptp(k) + 1)
        assert box == voxels.sum()  # a full box
    # V1 is the most posterior (lowest second index), then V2, then V3.
    posterior = [np.nonzero(areas == a)[1].mean() for a in (1, 2, 3)]
    assert posterior == sorted(posterior)
    assert brain[areas > 0].all()


def test_prf_centres_cover_the_grid_smoothly(strong):
    table = strong.truth_table
    centres = table[["prf_row", "prf_col"]].to_numpy()
    assert centres.min() >= 0 and centres.max() <= 9
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2)
    for area, in_area in table.groupby("area"):
        points = in_area[["prf_row", "prf_col"]].to_numpy()
        distance = np.linalg.norm(grid[:, None] - points[None], axis=-1).min(axis=1)
        # Every pixel has a pRF centre of this area nearby, the corners included.
        assert distance.max() < 1.5, area
        for corner in ((0, 0), (0, 9), (9, 0), (9, 9)):
            assert np.linalg.norm(points - corner, axis=1).min() < 1.0, (area, corner)
        # The map is smooth: column follows the left-right axis (reversed), row the
        # inferior-superior axis.
        assert stats.spearmanr(in_area["i"], in_area["prf_col"])[0] < -0.9
        assert stats.spearmanr(in_area["k"], in_area["prf_row"])[0] > 0.9


def test_prf_sizes_grow_from_v1_to_v3(strong):
    sizes = strong.truth_table.groupby("area")["prf_size"]
    medians = sizes.median().to_numpy()
    assert np.all(np.diff(medians) > 0)
    np.testing.assert_allclose(medians, retinotopy.PRF_SIZES, rtol=0.1)
    assert sizes.max()[1] < sizes.min()[3]


def test_signal_follows_the_true_prf_two_volumes_later(strong):
    y = detrended(strong)
    truth_x = weighted_stimulus(strong, *true_prfs(strong))
    # Lag 2 is the best lag.
    median_r = {lag: np.median(columnwise_r(*lagged(strong, y, truth_x, lag))) for lag in range(5)}
    assert max(median_r, key=median_r.get) == LAG
    assert median_r[LAG] > 0.8
    # Within stimulus volumes of the random-pattern runs (the on/off response is
    # the same for every pRF), the true pRF explains the signal, a wrong one does
    # not: the pRF mirrored through the image centre sees independent pixels.
    row, col, size = true_prfs(strong)
    wrong_x = weighted_stimulus(strong, 9 - row, 9 - col, size)
    far = np.hypot(2 * row - 9, 2 * col - 9) > 3 * size  # mirror well outside the pRF
    keep = (strong.stimuli["rest"] == 0).to_numpy() & (
        strong.stimuli["split"] == "train"
    ).to_numpy()
    y_on, x_true = lagged(strong, y, truth_x, keep=keep)
    _, x_wrong = lagged(strong, y, wrong_x, keep=keep)
    r_true, r_wrong = columnwise_r(y_on, x_true)[far], columnwise_r(y_on, x_wrong)[far]
    assert far.sum() > 100
    assert np.median(r_true) > 0.65
    assert np.median(np.abs(r_wrong)) < 0.15
    assert np.all(r_true > r_wrong + 0.2)


def test_snr_is_signal_sd_over_noise_sd(strong, null):
    # Same draws: the difference is the planted signal, in noise units of 10.
    difference = (strong.bold[strong.roi] - null.bold[strong.roi]).astype(float) / 10.0
    np.testing.assert_allclose(difference.std(axis=1), 8.0, rtol=1e-3)
    assert np.all(strong.bold[~strong.roi] == null.bold[~strong.roi])


def test_null_simulation_is_independent_of_the_stimulus(strong, null):
    # Under the null, r between the detrended BOLD and the lagged pRF-weighted
    # stimulus is about N(0, 1 / n_eff): with 1164 paired volumes, AR(1) noise
    # (0.4) and a block-smooth stimulus n_eff is a few hundred, SD <= 0.06; the
    # mean over voxels shares noise between neighbours, SD about 0.01. Tolerances:
    # |mean r| < 0.05, every |r| < 0.25 (4 SD). With signal the same voxels give
    # r > 0.8 (previous test).
    r_null = columnwise_r(
        *lagged(null, detrended(null), weighted_stimulus(null, *true_prfs(null)))
    )
    assert abs(r_null.mean()) < 0.05
    assert np.abs(r_null).max() < 0.25
    low = retinotopy.simulate_retinotopy_subject(rng=SEED, snr=1.0)
    r_low = columnwise_r(*lagged(low, detrended(low), weighted_stimulus(low, *true_prfs(low))))
    assert np.median(r_low) > 0.4  # even at SNR 1, far above the null


def test_same_seed_same_subject():
    kwargs = dict(n_train_runs=2, n_test_runs=1, n_blocks_train=4)
    a = retinotopy.simulate_retinotopy_subject(rng=3, **kwargs)
    b = retinotopy.simulate_retinotopy_subject(rng=np.random.default_rng(3), **kwargs)
    c = retinotopy.simulate_retinotopy_subject(rng=4, **kwargs)
    np.testing.assert_array_equal(a.bold, b.bold)
    pd.testing.assert_frame_equal(a.stimuli, b.stimuli)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.truth_table, b.truth_table)
    for name in a.truth:
        np.testing.assert_array_equal(a.truth[name], b.truth[name])
    assert not np.array_equal(a.bold, c.bold)
    assert not a.stimuli.equals(c.stimuli)


def test_figure_images_are_binary_distinct_and_not_empty():
    figures = retinotopy.figure_images()
    assert len(figures) >= 6
    assert {"square", "small_square", "plus", "x"} <= set(figures)
    for name, image in figures.items():
        assert image.shape == STIMULUS_SHAPE, name
        assert set(np.unique(image)) == {0, 1}, name
        assert 0 < image.sum() < image.size, name
    assert len({image.tobytes() for image in figures.values()}) == len(figures)
    patterns = retinotopy.random_patterns(200, STIMULUS_SHAPE, np.random.default_rng(0))
    assert patterns.shape == (200, 10, 10) and set(np.unique(patterns)) == {0, 1}
    assert abs(patterns.mean() - 0.5) < 0.02


@pytest.fixture
def offline(monkeypatch):
    """Refuse every socket connection and name lookup; fail if one was tried."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access blocked in tests")

    for owner, name in (
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
    ):
        monkeypatch.setattr(owner, name, refuse)
    yield
    assert attempts == [], f"network access was attempted: {attempts}"


def test_miyawaki_standin_is_fetched_offline_by_nilearn(tmp_path, offline):
    from nilearn.datasets import fetch_miyawaki2008
    from nilearn.datasets.func import miyawaki2008_file_mask

    root = standins.make_miyawaki(tmp_path, n_volumes_random=33, n_volumes_figure=27, seed=1)
    bunch = fetch_miyawaki2008(data_dir=tmp_path, verbose=0)
    func = [root / "func" / f"data_figure_run{i:02d}.nii.gz" for i in range(1, 13)]
    func += [root / "func" / f"data_random_run{i:02d}.nii.gz" for i in range(1, 21)]
    label = [root / "label" / f"data_figure_run{i:02d}_label.csv" for i in range(1, 13)]
    label += [root / "label" / f"data_random_run{i:02d}_label.csv" for i in range(1, 21)]
    assert bunch.func == [str(p) for p in func] and len(bunch.func) == 32
    assert bunch.label == [str(p) for p in label] and len(bunch.label) == 32
    assert bunch.mask == str(root / "mask" / "mask.nii.gz")
    assert [p.split("/")[-1] for p in bunch.mask_roi] == miyawaki2008_file_mask()[1:]
    assert all((root / "mask" / name).is_file() for name in miyawaki2008_file_mask())
    assert bunch.background == str(root / "bg.nii.gz")

    # The formats: 4D float32 at TR 2 s, labels of 100 integers a volume, -1 on rest.
    mask = nib.load(bunch.mask)
    for path, n_volumes in ((bunch.func[0], 27), (bunch.func[12], 33)):
        img = nib.load(path)
        assert img.shape == standins.MIYAWAKI_SHAPE + (n_volumes,)
        assert img.get_data_dtype() == np.float32
        assert img.header.get_zooms()[3] == 2.0
        np.testing.assert_allclose(img.affine, mask.affine)
    for path, n_volumes in ((bunch.label[0], 27), (bunch.label[12], 33)):
        rows = np.loadtxt(path, dtype=int, delimiter=",")
        assert rows.shape == (n_volumes, 100)
        rest = rows[:, 0] == -1
        assert (rows[rest] == -1).all() and set(np.unique(rows[~rest])) == {0, 1}
        assert rest[:3].all() and (~rest).sum() >= 3
    figures = {img.tobytes() for img in retinotopy.figure_images().values()}
    figure_rows = np.loadtxt(bunch.label[0], dtype=int, delimiter=",")
    for row in figure_rows[figure_rows[:, 0] != -1]:
        assert np.reshape(row, (10, 10), order="F").astype(np.uint8).tobytes() in figures
    for path in bunch.mask_roi:
        roi = nib.load(path)
        assert roi.shape == standins.MIYAWAKI_SHAPE and np.allclose(roi.affine, mask.affine)
        assert set(np.unique(np.asanyarray(roi.dataobj))) == {0, 1}


def test_miyawaki_standin_has_a_retinotopic_signal(tmp_path):
    root = standins.make_miyawaki(tmp_path, seed=2)
    _, _, truth, _ = standins.miyawaki_truth(seed=2)
    roi = truth["has_prf"]
    bold, pixels = [], []
    for i in range(1, 21):
        data = nib.load(root / "func" / f"data_random_run{i:02d}.nii.gz").get_fdata()[roi].T
        rows = np.loadtxt(root / "label" / f"data_random_run{i:02d}_label.csv", delimiter=",")
        images = np.reshape(rows, (-1, 10, 10), order="F").reshape(len(rows), -1)
        on = rows[:, 0] != -1
        data = data - data.mean(axis=0)
        # Volume t with image t - 2, on stimulus volumes only.
        keep = on[:-LAG]
        bold.append(data[LAG:][keep])
        pixels.append(images[:-LAG][keep])
    y, x = np.vstack(bold), np.vstack(pixels)
    weights = retinotopy.prf_weights(
        truth["prf_row"][roi], truth["prf_col"][roi], truth["prf_size"][roi]
    )
    mirrored = retinotopy.prf_weights(
        9 - truth["prf_row"][roi], 9 - truth["prf_col"][roi], truth["prf_size"][roi]
    )
    r_true = columnwise_r(y, x @ weights.T)
    r_wrong = columnwise_r(y, x @ mirrored.T)
    # Weak (SNR 0.5) but there: positive for the true pRF, clearly above the mirrored one.
    assert np.median(r_true) > 0.1
    assert np.median(r_true) > np.median(r_wrong) + 0.1
