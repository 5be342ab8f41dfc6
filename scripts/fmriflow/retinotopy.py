"""A retinotopic fMRI simulator with known population receptive fields.

Written for fmriflow's encoding and reconstruction stages, which follow
Miyawaki et al. (2008): subjects see random 10 x 10 binary patterns in
training runs and geometric figures or letters in test runs, and the
analyses predict voxels from pixels (encoding) or pixels from voxels
(reconstruction). The simulator plants a population receptive field (pRF)
in every voxel of three V1-, V2- and V3-like areas, so that both
directions can be checked against the truth.

Generative model
----------------
For voxel ``v`` with a pRF, volume ``t`` of run ``r``::

    n[t, v] = sum_p s[t, p] * w[v, p]
    y[t, v] = b[v] + sigma * ( d_r[t, v] + g[v] * (h * n)[t, v] + e[t, v] )

* ``s[t]`` — the image shown during volume ``t`` (100 pixels, 0/1,
  row-major; all 0 on rest).
* ``w[v]`` — the pRF: an isotropic Gaussian on the pixel grid centred at
  ``(prf_row, prf_col)`` with SD ``prf_size`` pixels, normalised to sum 1,
  so ``n`` is the fraction of the pRF covered by "on" pixels.
* ``h`` — nilearn's Glover HRF, integrated over each TR (the stimulus is
  constant within a volume) and convolved within each run. It is shifted
  in time so that its peak falls at ``(lag_volumes - 0.5) * tr``: BOLD
  volume ``t`` is then best explained by stimulus row ``t - lag_volumes``.
  With the default ``lag_volumes=2`` (the 4 s shift of Miyawaki et al. and
  nilearn's examples) the peak is at 3 s for TR 2 s, earlier than Glover's
  5 s; ``lag_volumes=3`` gives the unshifted Glover HRF.
* ``g[v]`` — scales ``(h * n)[:, v]`` to standard deviation ``snr`` over
  the session, so every pRF voxel has signal SD / noise SD = ``snr``.
* ``d_r`` — slow drift (random linear + quadratic trend per run, voxel);
  ``e`` — noise, spatially smoothed and AR(1) in time, unit variance;
  ``b`` — a smooth positive baseline; ``sigma`` — scanner-like units
  (the helpers of :mod:`fmriflow.simulate`).

Voxels of the brain outside the visual areas have no pRF: pure noise.
``signal=False`` drops the ``g * (h * n)`` term and nothing else, so the
null simulation has the same noise as the one with signal.

Retinotopic map
---------------
The three areas are contiguous slabs in the posterior, inferior part of the
brain, stacked along the posterior-anterior axis (V1 most posterior). In
each area the pRF column follows the left-right axis (left voxels see the
right of the image, as each hemisphere sees the opposite visual field) and
the pRF row follows the inferior-superior axis (inferior voxels see the top
of the image), each spanning the whole grid; centres are jittered and kept
on the grid. pRF sizes grow from V1 to V3.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from fmriflow.dataset import REST_LABEL
from fmriflow.simulate import (
    NOISE_SIGMA,
    baseline_image,
    ellipsoid,
    grid_affine,
    run_drift,
    spatial_noise,
)
from fmriflow.stimuli import grid_columns, stimulus_table

#: Shape of the stimulus images (rows, columns), as in Miyawaki et al. (2008).
STIMULUS_SHAPE = (10, 10)
#: Names of the simulated visual areas, for the values 1, 2, 3 of :func:`visual_areas`.
AREA_NAMES = ("V1", "V2", "V3")
#: pRF size (Gaussian SD, pixels) of each area.
PRF_SIZES = (0.8, 1.3, 2.0)
#: The stimulus row that best explains a BOLD volume is this many volumes earlier.
LAG_VOLUMES = 2
#: Labels of the volumes in the events table.
RANDOM_LABEL = "random"
FIGURE_LABEL = "figure"
#: Columns of the per-voxel ground-truth table.
TRUTH_COLUMNS = ("i", "j", "k", "area", "prf_row", "prf_col", "prf_size")


def visual_areas(shape):
    """V1-, V2- and V3-like slabs in a brain mask.

    Axes: first left-right, second posterior-anterior, third
    inferior-superior. Each area is a box spanning the left-right axis
    (less a margin of ``n // 8`` voxels, at least 1, at each end) and the
    inferior-superior axis (same margins); along the posterior-anterior
    axis the three areas are consecutive slabs of ``max(1, n // 8)`` voxels
    starting one voxel from the back. For the 16 x 16 x 8 default: 12 x 2 x
    6 voxels per area, 432 in all.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape; at least 3 voxels along the first and third axes and 4
        along the second.

    Returns
    -------
    areas : numpy.ndarray of int8
        0 outside the visual areas, 1, 2, 3 for V1, V2, V3.
    brain : numpy.ndarray of bool
        An ellipsoid filling most of the grid, joined with the areas (so
        they are inside it); it also holds many voxels outside the areas.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or shape[0] < 3 or shape[2] < 3 or shape[1] < 4:
        raise ValueError(f"grid shape {shape} is too small for three visual areas")
    margin_x, margin_z = max(1, shape[0] // 8), max(1, shape[2] // 8)
    thickness = max(1, shape[1] // 8)
    if 1 + 3 * thickness > shape[1]:
        raise ValueError(f"grid shape {shape} is too short along the second axis")
    areas = np.zeros(shape, dtype=np.int8)
    for area in range(1, len(AREA_NAMES) + 1):
        start = 1 + (area - 1) * thickness
        areas[
            margin_x : shape[0] - margin_x,
            start : start + thickness,
            margin_z : shape[2] - margin_z,
        ] = area
    brain = ellipsoid(shape, (0.5, 0.5, 0.5), (0.46, 0.46, 0.46)) | (areas > 0)
    return areas, brain


def retinotopic_map(
    areas, shape_stimulus=STIMULUS_SHAPE, sizes=PRF_SIZES, rng=None, jitter=0.3, size_jitter=0.1
):
    """A pRF for every voxel of the visual areas.

    Parameters
    ----------
    areas : numpy.ndarray of int
        Visual areas (0 outside, 1.. inside), see :func:`visual_areas`.
    shape_stimulus : pair of int
        Stimulus grid (rows, columns).
    sizes : sequence of float
        pRF size (Gaussian SD, pixels) of areas 1, 2, ...
    rng : numpy.random.Generator, int or None
        Random draws (``numpy.random.default_rng`` semantics).
    jitter : float
        SD of the Gaussian jitter added to each centre coordinate (pixels);
        jittered centres are clipped to the grid.
    size_jitter : float
        SD of the log of the multiplicative jitter of the sizes.

    Returns
    -------
    dict
        ``prf_row``, ``prf_col``, ``prf_size``: float arrays of the grid's
        shape, NaN where there is no pRF; ``has_prf``: bool array, the
        visual areas. Row 0 is the top of the image, column 0 its left.
    """
    rng = np.random.default_rng(rng)
    areas = np.asarray(areas)
    n_rows, n_cols = shape_stimulus
    if areas.max() > len(sizes):
        raise ValueError(f"{int(areas.max())} areas but only {len(sizes)} pRF sizes")
    has_prf = areas > 0
    i, _, k = np.nonzero(has_prf)
    label = areas[has_prf]
    row, col = np.empty(i.size), np.empty(i.size)
    for area in np.unique(label):
        here = label == area
        i_lo, i_hi = i[here].min(), i[here].max()
        k_lo, k_hi = k[here].min(), k[here].max()
        col[here] = (i_hi - i[here]) / max(i_hi - i_lo, 1) * (n_cols - 1)
        row[here] = (k[here] - k_lo) / max(k_hi - k_lo, 1) * (n_rows - 1)
    row = np.clip(row + jitter * rng.standard_normal(i.size), 0, n_rows - 1)
    col = np.clip(col + jitter * rng.standard_normal(i.size), 0, n_cols - 1)
    size = np.asarray(sizes, dtype=float)[label - 1]
    size = size * np.exp(size_jitter * rng.standard_normal(i.size))
    truth = {"has_prf": has_prf}
    for name, values in (("prf_row", row), ("prf_col", col), ("prf_size", size)):
        volume = np.full(areas.shape, np.nan)
        volume[has_prf] = values
        truth[name] = volume
    return truth


def truth_table(areas, truth):
    """The ground truth as a table, one row per pRF voxel in C order.

    C order is the order of ``volume[mask]`` and of nilearn's maskers.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TRUTH_COLUMNS`.
    """
    has_prf = truth["has_prf"]
    i, j, k = np.nonzero(has_prf)
    columns = {"i": i, "j": j, "k": k, "area": np.asarray(areas)[has_prf].astype(int)}
    for name in ("prf_row", "prf_col", "prf_size"):
        columns[name] = truth[name][has_prf]
    return pd.DataFrame(columns, columns=list(TRUTH_COLUMNS))


def prf_weights(prf_row, prf_col, prf_size, shape_stimulus=STIMULUS_SHAPE):
    """Gaussian pRF weights on the pixels, normalised to sum 1 per voxel.

    Parameters
    ----------
    prf_row, prf_col, prf_size : array-like, shape (n_voxels,)
        pRF centres and sizes, in pixels.
    shape_stimulus : pair of int
        Stimulus grid (rows, columns).

    Returns
    -------
    numpy.ndarray, shape (n_voxels, rows * cols)
        Pixels in row-major order, as in :func:`fmriflow.stimuli.grid_columns`.
    """
    rows, cols = np.meshgrid(*[np.arange(n) for n in shape_stimulus], indexing="ij")
    prf_row, prf_col, prf_size = (
        np.atleast_1d(np.asarray(a, float)) for a in (prf_row, prf_col, prf_size)
    )
    distance2 = (rows.ravel() - prf_row[:, None]) ** 2 + (cols.ravel() - prf_col[:, None]) ** 2
    weights = np.exp(-distance2 / (2.0 * prf_size[:, None] ** 2))
    return weights / weights.sum(axis=1, keepdims=True)


def random_patterns(n, shape, rng):
    """``n`` random binary images, each pixel on with probability 0.5.

    Returns
    -------
    numpy.ndarray of uint8, shape (n, rows, cols)
    """
    return (rng.random((int(n),) + tuple(shape)) < 0.5).astype(np.uint8)


def _base_figures():
    """The test figures drawn on a 10 x 10 grid (row 0 at the top)."""
    size = 10
    figures = {}

    def canvas(name):
        figures[name] = np.zeros((size, size), dtype=np.uint8)
        return figures[name]

    frame = canvas("square")
    frame[1:9, 1:9] = 1
    frame[2:8, 2:8] = 0
    canvas("small_square")[3:7, 3:7] = 1
    plus = canvas("plus")
    plus[4:6, 1:9] = 1
    plus[1:9, 4:6] = 1
    cross = canvas("x")
    diagonal = np.arange(1, 9)
    cross[diagonal, diagonal] = 1
    cross[diagonal, size - 1 - diagonal] = 1
    letter = canvas("letter_l")
    letter[1:9, 2:4] = 1
    letter[7:9, 2:8] = 1
    letter = canvas("letter_t")
    letter[1:3, 1:9] = 1
    letter[1:9, 4:6] = 1
    letter = canvas("letter_h")
    letter[1:9, 1:3] = 1
    letter[1:9, 7:9] = 1
    letter[4:6, 1:9] = 1
    letter = canvas("letter_u")
    letter[1:9, 1:3] = 1
    letter[1:9, 7:9] = 1
    letter[7:9, 1:9] = 1
    return figures


def figure_images(shape=STIMULUS_SHAPE):
    """Named binary test figures: frames, a plus, an X and letter-like shapes.

    Drawn on a 10 x 10 grid (``square`` frame, ``small_square``, ``plus``,
    ``x``, ``letter_l``, ``letter_t``, ``letter_h``, ``letter_u``) and
    resampled to ``shape`` by nearest neighbour.

    Returns
    -------
    dict of str to numpy.ndarray of uint8, shape ``shape``
    """
    n_rows, n_cols = shape
    rows = np.arange(n_rows) * 10 // n_rows
    cols = np.arange(n_cols) * 10 // n_cols
    return {name: image[np.ix_(rows, cols)] for name, image in _base_figures().items()}


def _run_volumes(images, block_volumes, rest_volumes):
    """Per-volume image index of one run (-1 on rest): rest, then block, rest, ..."""
    index = [-1] * rest_volumes
    for image in images:
        index += [int(image)] * block_volumes + [-1] * rest_volumes
    return index


def stimulus_runs(
    n_train_runs,
    n_test_runs,
    block_volumes,
    rest_volumes,
    n_blocks_train,
    rng,
    shape=STIMULUS_SHAPE,
    n_blocks_test=None,
):
    """The per-volume stimulus design of a Miyawaki-like session.

    Runs ``1 .. n_train_runs`` show random patterns (a new one in every
    block); runs ``n_train_runs + 1 ..`` show the test figures, in a random
    order cycling through all of them. Each run starts with
    ``rest_volumes`` of rest, then alternates a block of one image for
    ``block_volumes`` and ``rest_volumes`` of rest.

    Parameters
    ----------
    n_train_runs, n_test_runs : int
        Numbers of random-pattern and figure runs.
    block_volumes, rest_volumes : int
        Lengths of a block and of a rest period, in volumes.
    n_blocks_train : int
        Blocks per random-pattern run.
    rng : numpy.random.Generator
        Random draws.
    shape : pair of int
        Stimulus grid.
    n_blocks_test : int, optional
        Blocks per figure run; ``n_blocks_train`` by default.

    Returns
    -------
    design : pandas.DataFrame
        One row per volume: ``run`` (1..), ``split`` (``'train'`` or
        ``'test'``, for the whole run), ``rest`` (0/1), ``label``
        (``'random'``, ``'figure'`` or ``'rest'``) and ``image`` (the figure
        name, ``random_NNNN`` numbering the random patterns of the session,
        or ``'rest'``).
    pixels : numpy.ndarray of uint8, shape (n_volumes, rows * cols)
        The image shown, row-major; all 0 on rest.
    """
    n_blocks_test = n_blocks_train if n_blocks_test is None else n_blocks_test
    figures = figure_images(shape)
    names = list(figures)
    patterns = random_patterns(n_train_runs * n_blocks_train, shape, rng)
    rows = []
    for run in range(1, n_train_runs + n_test_runs + 1):
        if run <= n_train_runs:
            first = (run - 1) * n_blocks_train
            blocks = _run_volumes(
                range(first, first + n_blocks_train), block_volumes, rest_volumes
            )
            rows += [(run, "train", RANDOM_LABEL, b) for b in blocks]
        else:
            n_cycles = -(-n_blocks_test // len(names))
            order = np.concatenate([rng.permutation(len(names)) for _ in range(n_cycles)])
            blocks = _run_volumes(order[:n_blocks_test], block_volumes, rest_volumes)
            rows += [(run, "test", FIGURE_LABEL, b) for b in blocks]
    runs, splits, kinds, index = (np.array(column) for column in zip(*rows, strict=True))
    rest = index < 0
    pixels = np.zeros((len(rows), shape[0] * shape[1]), dtype=np.uint8)
    random_rows = ~rest & (kinds == RANDOM_LABEL)
    figure_rows = ~rest & (kinds == FIGURE_LABEL)
    pixels[random_rows] = patterns.reshape(len(patterns), pixels.shape[1])[index[random_rows]]
    stack = np.stack([figures[name].ravel() for name in names])
    pixels[figure_rows] = stack[index[figure_rows]]
    image = np.array([f"random_{i:04d}" for i in index], dtype=object)
    image[figure_rows] = np.asarray(names)[index[figure_rows]]
    image[rest] = REST_LABEL
    design = pd.DataFrame(
        {
            "run": runs.astype(int),
            "split": splits,
            "rest": rest.astype(int),
            "label": np.where(rest, REST_LABEL, kinds),
            "image": image,
        }
    )
    return design, pixels


def table_pixels(stimuli, shape=STIMULUS_SHAPE):
    """The ``(n_volumes, rows * cols)`` pixel array of a canonical stimulus table."""
    return stimuli[grid_columns(shape)].to_numpy()


def hrf_kernel(tr, lag_volumes=LAG_VOLUMES, oversampling=50, time_length=32.0):
    """The Glover HRF integrated over each TR, peaking at ``(lag_volumes - 0.5) * tr``.

    ``kernel[j]`` is the response ``j`` volumes after one volume of
    stimulus (``kernel[0] == 0``): the integral of the HRF between
    ``(j - 1) * tr`` and ``j * tr``. The HRF is
    :func:`nilearn.glm.first_level.glover_hrf`, shifted in time (its
    ``onset``) so that its peak falls in the middle of volume
    ``lag_volumes``.

    Returns
    -------
    numpy.ndarray
        The kernel, summing to about 1 (the plateau of a sustained block).
    """
    from nilearn.glm.first_level import glover_hrf

    step = tr / oversampling
    peak = np.argmax(glover_hrf(tr, oversampling, time_length)) * step
    onset = (lag_volumes - 0.5) * tr - peak
    hrf = glover_hrf(tr, oversampling, time_length, onset=onset)
    n_volumes = hrf.size // oversampling
    per_volume = hrf[: n_volumes * oversampling].reshape(n_volumes, oversampling).sum(axis=1)
    return np.concatenate([[0.0], per_volume])


def prf_response(pixels, runs, weights, kernel):
    """The haemodynamic response of pRF voxels, run by run, before scaling.

    Parameters
    ----------
    pixels : numpy.ndarray, shape (n_volumes, n_pixels)
        Stimulus per volume.
    runs : array-like, shape (n_volumes,)
        Run of each volume; the response does not carry over between runs.
    weights : numpy.ndarray, shape (n_voxels, n_pixels)
        pRF weights (:func:`prf_weights`).
    kernel : numpy.ndarray
        HRF per volume (:func:`hrf_kernel`).

    Returns
    -------
    numpy.ndarray, shape (n_volumes, n_voxels)
    """
    neural = np.asarray(pixels, dtype=float) @ weights.T
    runs = np.asarray(runs)
    response = np.zeros_like(neural)
    for run in np.unique(runs):
        rows = runs == run
        response[rows] = lfilter(kernel, [1.0], neural[rows], axis=0)
    return response


def simulate_bold(
    pixels,
    runs,
    brain,
    truth,
    tr,
    snr,
    rng,
    signal=True,
    lag_volumes=LAG_VOLUMES,
    ar_coefficient=0.4,
    noise_smoothness=0.8,
    drift_amplitude=2.0,
    shape_stimulus=STIMULUS_SHAPE,
):
    """BOLD data for a stimulus sequence and a retinotopic map (module docstring).

    Parameters
    ----------
    pixels : numpy.ndarray, shape (n_volumes, n_pixels)
        Stimulus per volume, row-major pixels.
    runs : array-like, shape (n_volumes,)
        Run of each volume.
    brain : numpy.ndarray of bool
        Voxels with data (zero elsewhere).
    truth : dict
        The map (:func:`retinotopic_map`); its pRF voxels must be in ``brain``.
    tr : float
        Repetition time (s).
    snr : float
        Signal SD over noise SD in each pRF voxel.
    rng : numpy.random.Generator
        Draws of the baseline, drift and noise (the same with and without
        signal).
    signal : bool
        False: no stimulus-driven signal at all (the null simulation).
    lag_volumes : int
        The HRF peaks at ``(lag_volumes - 0.5) * tr`` (:func:`hrf_kernel`).
    ar_coefficient : float
        Lag-1 autocorrelation of the noise.
    noise_smoothness : float
        Spatial smoothness of the noise (Gaussian sigma, voxels).
    drift_amplitude : float
        Scale of the slow drift, in noise units.
    shape_stimulus : pair of int
        Stimulus grid.

    Returns
    -------
    numpy.ndarray of float32, shape brain.shape + (n_volumes,)
    """
    has_prf = truth["has_prf"]
    if np.any(has_prf & ~brain):
        raise ValueError("pRF voxels outside the brain mask")
    runs = np.asarray(runs)
    in_prf = has_prf[brain]
    values = np.zeros((runs.size, int(brain.sum())))
    if signal:
        weights = prf_weights(
            truth["prf_row"][has_prf],
            truth["prf_col"][has_prf],
            truth["prf_size"][has_prf],
            shape_stimulus,
        )
        response = prf_response(pixels, runs, weights, hrf_kernel(tr, lag_volumes))
        spread = response.std(axis=0)
        gain = np.divide(snr, spread, out=np.zeros_like(spread), where=spread > 0)
        values[:, in_prf] = response * gain
    baseline = baseline_image(brain, rng)
    for run in np.unique(runs):
        rows = runs == run
        n_volumes = int(rows.sum())
        values[rows] += run_drift(n_volumes, values.shape[1], drift_amplitude, rng)
        values[rows] += spatial_noise(brain, n_volumes, ar_coefficient, noise_smoothness, rng)
    bold = np.zeros(brain.shape + (runs.size,), dtype=np.float32)
    bold[brain] = (baseline + NOISE_SIGMA * values).T
    return bold


@dataclass
class RetinotopySubject:
    """One simulated retinotopy subject: data, design and ground truth.

    ``bold`` is float32 ``(x, y, z, t)``; ``brain``, ``roi`` (the visual
    areas, where ``truth['has_prf']``) bool and ``areas`` int ``(x, y, z)``;
    ``events`` has ``label`` and ``run`` per volume; ``stimuli`` ``run``,
    ``split``, ``rest`` and the ``px_{row}_{col}`` columns; ``truth`` the
    maps of :func:`retinotopic_map`; ``truth_table`` one row per ROI voxel
    (:data:`TRUTH_COLUMNS`, C order). ``tr``, ``snr``, ``signal`` and
    ``lag_volumes`` are the settings simulated (``snr`` as asked, even with
    ``signal=False``); ``design`` is :func:`stimulus_runs`'s table, with the
    ``image`` shown in each volume.
    """

    bold: np.ndarray
    affine: np.ndarray
    brain: np.ndarray
    roi: np.ndarray
    areas: np.ndarray
    events: pd.DataFrame
    stimuli: pd.DataFrame
    truth: dict
    truth_table: pd.DataFrame
    tr: float = 2.0
    snr: float = 1.0
    signal: bool = True
    lag_volumes: int = LAG_VOLUMES
    design: pd.DataFrame | None = field(default=None, repr=False)


def simulate_retinotopy_subject(
    shape=(16, 16, 8),
    voxel_size=(3.0, 3.0, 3.0),
    n_train_runs=8,
    n_test_runs=4,
    block_volumes=3,
    rest_volumes=3,
    n_blocks_train=16,
    tr=2.0,
    snr=1.0,
    rng=None,
    signal=True,
    n_blocks_test=None,
    lag_volumes=LAG_VOLUMES,
    ar_coefficient=0.4,
    noise_smoothness=0.8,
    drift_amplitude=2.0,
):
    """Simulate one subject of a Miyawaki-like retinotopy experiment.

    See the module docstring for the model. Draws, in order: the pRF
    jitter, the random patterns and figure orders, the baseline, then drift
    and noise run by run — so ``signal=False`` changes nothing but the
    signal.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape.
    voxel_size : tuple of 3 float
        Voxel size (mm).
    n_train_runs, n_test_runs : int
        Random-pattern runs (numbered first) and figure runs.
    block_volumes, rest_volumes : int
        Block and rest lengths (volumes); each run starts with rest.
    n_blocks_train : int
        Blocks per random-pattern run.
    tr : float
        Repetition time (s).
    snr : float
        Signal SD / noise SD in every ROI voxel.
    rng : numpy.random.Generator, int or None
        Random draws (``numpy.random.default_rng`` semantics: a seed gives
        the same subject every time).
    signal : bool
        False for the null simulation (no stimulus-driven signal).
    n_blocks_test : int, optional
        Blocks per figure run (default ``n_blocks_train``).
    lag_volumes : int
        Volumes between a stimulus and the BOLD volume it explains best.
    ar_coefficient, noise_smoothness, drift_amplitude : float
        Noise and drift settings (:func:`simulate_bold`).

    Returns
    -------
    RetinotopySubject
    """
    rng = np.random.default_rng(rng)
    areas, brain = visual_areas(shape)
    truth = retinotopic_map(areas, STIMULUS_SHAPE, rng=rng)
    design, pixels = stimulus_runs(
        n_train_runs,
        n_test_runs,
        block_volumes,
        rest_volumes,
        n_blocks_train,
        rng,
        STIMULUS_SHAPE,
        n_blocks_test=n_blocks_test,
    )
    bold = simulate_bold(
        pixels,
        design["run"].to_numpy(),
        brain,
        truth,
        tr,
        snr,
        rng,
        signal=signal,
        lag_volumes=lag_volumes,
        ar_coefficient=ar_coefficient,
        noise_smoothness=noise_smoothness,
        drift_amplitude=drift_amplitude,
    )
    return RetinotopySubject(
        bold=bold,
        affine=grid_affine(shape, voxel_size),
        brain=brain,
        roi=truth["has_prf"].copy(),
        areas=areas,
        events=design[["label", "run"]].copy(),
        stimuli=stimulus_table(
            np.asarray(pixels, dtype=int),
            design["run"],
            design["split"],
            design["rest"],
            grid_columns(STIMULUS_SHAPE),
        ),
        truth=truth,
        truth_table=truth_table(areas, truth),
        tr=float(tr),
        snr=float(snr),
        signal=bool(signal),
        lag_volumes=int(lag_volumes),
        design=design,
    )
