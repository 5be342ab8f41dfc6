"""Simulated fMRI datasets with known ground truth.

Written for fmriflow: the field's libraries have no generator of whole
datasets with planted, recoverable structure, and the workflow's tests and
default run need one.

Task data (Haxby-like) — generative model
-----------------------------------------
For subject ``s``, voxel ``v`` in the brain mask and volume ``t``::

    y[t, v] = b[v] + sigma * ( d[t, v] + snr_s * sum_c x_c[t] * P[c, v]
                               + a[v] * sum_c x_c[t] + e[t, v] )

* ``x_c`` — the block design of category ``c`` (1 during its blocks)
  convolved with the Glover HRF (``nilearn.glm.first_level``), scaled so a
  block's plateau is 1. Each run shows the 8 Haxby categories once, in a
  random order, as blocks separated by rest.
* ``P[c]`` — category patterns, zero outside the ventral-temporal-like ROI.
  Each is a spatially smooth Gaussian field kept on a fraction (``density``)
  of the ROI's voxels, with unit root-mean-square. Categories of one family
  (face/cat, the four objects) share part of their field, so some pairs are
  harder than others, as in real data. The ``null_pair`` categories get the
  same pattern: they cannot be told apart (a built-in null contrast).
* ``a[v]`` — a response common to all categories inside the ROI (task vs
  rest), which carries no category information.
* ``d`` — slow drift: a random linear + quadratic trend per run and voxel.
* ``e`` — noise, spatially smoothed and AR(1) in time, unit variance.
* ``b`` — a smooth positive baseline; ``sigma`` scales everything to
  scanner-like units, and the image is stored as int16, like Haxby's.

Ground truth: ``P`` as a 4D image (one volume per category); the voxels
that carry a contrast ``a`` vs ``b`` are those where ``P[a] != P[b]``.

Rest data — generative model
----------------------------
On the MNI152 grid shipped with nilearn (no download), a few networks
``M[k]`` are planted as sums of Gaussian blobs (``blob_fwhm`` mm) at
published coordinates, restricted to the grey-matter mask. For subject
``s``::

    y[t, v] = b[v] + sigma * ( d[t, v] + snr_s * sum_k u_sk[t] * M[k, v]
                               + sum_j c_sj[t] * L[j, v] + e[t, v] )

with ``u_sk`` band-limited (0.01–0.1 Hz) random time courses of unit
variance, ``c_sj`` slow "motion" confounds with random voxel loadings
``L[j]`` (saved as ``confounds.tsv``, so confound regression can remove
them), and ``d``, ``e``, ``b``, ``sigma`` as above. Ground truth: ``M`` as a
4D image.

Every random draw comes from ``numpy.random.default_rng`` seeded with
``(seed, subject_index)``, so a subject is the same whichever other
subjects are simulated, and the same config gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fmriflow.dataset import REST_LABEL
from fmriflow.errors import InputError

# pandas and scipy are imported where used: the workflow reads this module's
# subject labels and constants when it parses, before any job.
if TYPE_CHECKING:
    import pandas as pd

HAXBY_CATEGORIES = (
    "face",
    "house",
    "cat",
    "shoe",
    "bottle",
    "scissors",
    "chair",
    "scrambledpix",
)

#: Category families sharing part of their response pattern.
CATEGORY_FAMILIES = {
    "face": "animate",
    "cat": "animate",
    "house": "place",
    "shoe": "object",
    "bottle": "object",
    "scissors": "object",
    "chair": "object",
    "scrambledpix": "texture",
}

#: Resting-state networks planted in the rest simulation: blob centres in
#: MNI millimetres (rounded from common meta-analytic peaks).
REST_NETWORKS = (
    ("default_mode", ((0, -54, 28), (0, 52, -6), (-46, -66, 32), (46, -66, 32))),
    ("visual", ((0, -84, 4), (-14, -90, 10), (14, -90, 10))),
    ("sensorimotor", ((-38, -24, 58), (38, -24, 58))),
    ("auditory", ((-54, -22, 8), (54, -22, 8))),
    ("salience", ((0, 20, 36), (-38, 14, -2), (38, 14, -2))),
    ("dorsal_attention", ((-26, -60, 56), (26, -60, 56))),
    ("left_frontoparietal", ((-46, -54, 42), (-44, 26, 30))),
    ("right_frontoparietal", ((46, -54, 42), (44, 26, 30))),
)

#: Scale of the noise in stored units, and of the baseline.
NOISE_SIGMA = 10.0
BASELINE = 1000.0


def subject_rng(seed, subject_index):
    """Random generator for one subject, independent of the others."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(subject_index)]))


def subject_labels(n_subjects):
    """Subject labels of a simulated dataset: ``'01'``, ``'02'`` and so on."""
    width = max(2, len(str(n_subjects)))
    return [f"{i:0{width}d}" for i in range(1, n_subjects + 1)]


def grid_affine(shape, voxel_size):
    """An affine with the given voxel sizes and the grid centred on 0 mm."""
    voxel_size = np.asarray(voxel_size, dtype=float)
    affine = np.diag(np.append(voxel_size, 1.0))
    affine[:3, 3] = -voxel_size * (np.asarray(shape) - 1) / 2.0
    return affine


def ellipsoid(shape, centre, radii):
    """Boolean ellipsoid on a grid; centre and radii as fractions of the shape."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    distance = np.zeros(shape)
    for grid, n, c, r in zip(grids, shape, centre, radii, strict=True):
        distance += ((grid - c * (n - 1)) / (r * n)) ** 2
    return distance <= 1.0


def task_masks(shape):
    """Whole-brain mask and a bilateral ventral-temporal-like ROI.

    The brain is an ellipsoid filling most of the grid; the ROI is two
    ellipsoids, left and right, in its lower posterior part (first axis:
    left-right, second: posterior-anterior, third: inferior-superior).

    Returns
    -------
    brain, roi : numpy.ndarray of bool
    """
    brain = ellipsoid(shape, (0.5, 0.5, 0.5), (0.46, 0.46, 0.46))
    left = ellipsoid(shape, (0.3, 0.35, 0.3), (0.15, 0.25, 0.12))
    right = ellipsoid(shape, (0.7, 0.35, 0.3), (0.15, 0.25, 0.12))
    return brain, (left | right) & brain


def block_design(n_runs, categories, block_volumes, rest_volumes, rng):
    """Per-volume labels of a Haxby-style block design.

    Each run starts with rest, then shows every category once, in a random
    order, each block followed by rest.

    Returns
    -------
    pandas.DataFrame
        Columns ``label`` and ``run`` (runs numbered from 0), one row per volume.
    """
    import pandas as pd

    labels, runs = [], []
    for run in range(n_runs):
        run_labels = [REST_LABEL] * rest_volumes
        for category in rng.permutation(list(categories)):
            run_labels += [str(category)] * block_volumes + [REST_LABEL] * rest_volumes
        labels += run_labels
        runs += [run] * len(run_labels)
    return pd.DataFrame({"label": labels, "run": runs})


def convolved_regressors(events, categories, tr):
    """HRF-convolved block regressors, one column per category, run by run.

    Scaled so that the plateau of a sustained block is 1.
    """
    from nilearn.glm.first_level import compute_regressor

    columns = np.zeros((len(events), len(categories)))
    for run in np.unique(events["run"]):
        rows = np.flatnonzero(events["run"].to_numpy() == run)
        frame_times = np.arange(rows.size) * tr
        labels = events["label"].to_numpy()[rows]
        for k, category in enumerate(categories):
            on = (labels == category).astype(float)
            if not on.any():
                continue
            onsets = frame_times[on > 0]
            condition = np.vstack([onsets, np.full(onsets.size, tr), np.ones(onsets.size)])
            regressor, _ = compute_regressor(condition, "glover", frame_times)
            columns[rows, k] = regressor[:, 0]
    plateau = _glover_plateau(tr)
    return columns / plateau


def _glover_plateau(tr, n=60):
    """Height of the Glover HRF response to a long block (for scaling)."""
    from nilearn.glm.first_level import compute_regressor

    frame_times = np.arange(n) * tr
    condition = np.array([[0.0], [n * tr], [1.0]])
    regressor, _ = compute_regressor(condition, "glover", frame_times)
    return float(regressor[n // 2 :, 0].max())


def smooth_field(shape, sigma, rng):
    """Gaussian white noise smoothed with ``sigma`` voxels, unit variance."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field / field.std()


def category_patterns(roi, categories, null_pair, density, smoothness, rng):
    """Category response patterns on the ROI voxels.

    Parameters
    ----------
    roi : numpy.ndarray of bool
        The ROI.
    categories : sequence of str
        Category names.
    null_pair : pair of str
        Two categories that get identical patterns.
    density : float
        Fraction of ROI voxels responding to each category.
    smoothness : float
        Spatial smoothness (sigma, voxels) of the underlying fields.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray, shape (n_categories, n_roi_voxels)
        Patterns, zero where a category does not respond; unit root mean
        square on the voxels that do.
    """
    families = sorted({CATEGORY_FAMILIES.get(c, c) for c in categories})
    family_fields = {f: smooth_field(roi.shape, smoothness, rng)[roi] for f in families}
    patterns = np.zeros((len(categories), int(roi.sum())))
    for k, category in enumerate(categories):
        own = smooth_field(roi.shape, smoothness, rng)[roi]
        family = CATEGORY_FAMILIES.get(category, category)
        shared = 0.5 if sum(CATEGORY_FAMILIES.get(c, c) == family for c in categories) > 1 else 0.0
        field = np.sqrt(shared) * family_fields[family] + np.sqrt(1 - shared) * own
        keep = np.abs(field) >= np.quantile(np.abs(field), 1.0 - density)
        pattern = np.where(keep, field, 0.0)
        patterns[k] = pattern / np.sqrt(np.mean(pattern[keep] ** 2))
    if null_pair:
        a, b = (list(categories).index(c) for c in null_pair)
        patterns[b] = patterns[a]
    return patterns


def ar1_noise(n_volumes, n_voxels, rho, rng, burn_in=50):
    """Stationary AR(1) noise with unit variance, one column per voxel."""
    from scipy.signal import lfilter

    white = rng.standard_normal((n_volumes + burn_in, n_voxels))
    noise = lfilter([np.sqrt(1.0 - rho**2)], [1.0, -rho], white, axis=0)
    return noise[burn_in:]


def spatial_noise(mask, n_volumes, rho, smoothness, rng):
    """Unit-variance noise on the mask's voxels, smooth in space, AR(1) in time."""
    from scipy.ndimage import gaussian_filter

    if smoothness > 0:
        impulse = np.zeros((9, 9, 9))
        impulse[4, 4, 4] = 1.0
        gain = np.sqrt(np.sum(gaussian_filter(impulse, smoothness) ** 2))
    noise = ar1_noise(n_volumes, int(mask.sum()), rho, rng)
    if smoothness > 0:
        volume = np.zeros(mask.shape)
        for t in range(n_volumes):
            volume[mask] = noise[t]
            noise[t] = gaussian_filter(volume, smoothness)[mask] / gain
    return noise


def run_drift(n_volumes, n_voxels, amplitude, rng):
    """Random linear + quadratic drift per voxel over one run."""
    t = np.linspace(-1.0, 1.0, n_volumes)[:, None]
    linear = rng.normal(0.0, amplitude, n_voxels)
    quadratic = rng.normal(0.0, amplitude / 2.0, n_voxels)
    return t * linear + (t**2 - np.mean(t**2)) * quadratic


def baseline_image(mask, rng):
    """A smooth, positive baseline intensity on the mask's voxels."""
    return BASELINE * (1.0 + 0.1 * smooth_field(mask.shape, 3.0, rng)[mask])


@dataclass
class SimulatedSubject:
    """One simulated subject: data on a grid, labels and ground truth."""

    bold: np.ndarray
    events: pd.DataFrame
    snr: float
    truth: np.ndarray
    confounds: pd.DataFrame | None = None
    roi: np.ndarray | None = None


def check_null_pair(categories, null_pair):
    """Check that the null pair names two distinct simulated categories."""
    if null_pair and (len(set(null_pair)) != 2 or not set(null_pair) <= set(categories)):
        raise InputError(
            "config key simulate.task.null_pair",
            f"{list(null_pair)} must be two different categories among {list(categories)}",
            "Name two of the simulated categories, or [] for no null pair",
        )


def simulate_task_subject(
    subject_index,
    seed,
    shape,
    n_runs,
    tr,
    snr_range,
    categories=HAXBY_CATEGORIES,
    null_pair=("bottle", "scissors"),
    block_volumes=9,
    rest_volumes=6,
    density=0.4,
    pattern_smoothness=1.0,
    noise_smoothness=0.8,
    ar_coefficient=0.4,
    drift_amplitude=2.0,
):
    """Simulate one Haxby-like subject (see the module docstring).

    Parameters
    ----------
    subject_index : int
        Position of the subject (0-based); seeds its random draws.
    seed : int
        Dataset seed.
    shape : tuple of 3 int
        Grid shape.
    n_runs : int
        Number of runs.
    tr : float
        Repetition time (s).
    snr_range : pair of float
        The subject's SNR is drawn uniformly in this range.
    categories : sequence of str
        Stimulus categories.
    null_pair : pair of str or empty
        Two categories with identical patterns.
    block_volumes, rest_volumes : int
        Block and rest lengths in volumes.
    density : float
        Fraction of ROI voxels responding to each category.
    pattern_smoothness, noise_smoothness : float
        Spatial smoothness (Gaussian sigma in voxels).
    ar_coefficient : float
        Lag-1 autocorrelation of the noise.
    drift_amplitude : float
        Scale of the slow drift, in noise units.

    Returns
    -------
    SimulatedSubject
        ``bold`` is int16 ``(x, y, z, t)``; ``truth`` the patterns as
        float32 ``(x, y, z, n_categories)``.
    """
    check_null_pair(categories, null_pair)
    rng = subject_rng(seed, subject_index)
    brain, roi = task_masks(shape)
    snr = float(rng.uniform(*snr_range))
    events = block_design(n_runs, categories, block_volumes, rest_volumes, rng)
    regressors = convolved_regressors(events, categories, tr)
    patterns = category_patterns(roi, categories, null_pair, density, pattern_smoothness, rng)
    in_roi = roi[brain]
    common = np.zeros(int(brain.sum()))
    common[in_roi] = rng.uniform(0.3, 0.7, int(in_roi.sum()))
    baseline = baseline_image(brain, rng)
    bold = np.zeros(tuple(shape) + (len(events),), dtype=np.int16)
    runs = events["run"].to_numpy()
    for run in np.unique(runs):
        rows = np.flatnonzero(runs == run)
        signal = np.zeros((rows.size, common.size))
        signal[:, in_roi] = snr * regressors[rows] @ patterns
        signal += regressors[rows].sum(axis=1, keepdims=True) * common
        values = baseline + NOISE_SIGMA * (
            run_drift(rows.size, common.size, drift_amplitude, rng)
            + signal
            + spatial_noise(brain, rows.size, ar_coefficient, noise_smoothness, rng)
        )
        bold[brain, rows[0] : rows[-1] + 1] = np.round(values.T).astype(np.int16)
    truth = np.zeros(tuple(shape) + (len(categories),), dtype=np.float32)
    truth[roi] = patterns.T
    return SimulatedSubject(bold=bold, events=events, snr=snr, truth=truth, roi=roi)


def informative_voxels(truth, category_a, category_b, categories=HAXBY_CATEGORIES):
    """Voxels whose true patterns differ between two categories.

    Parameters
    ----------
    truth : numpy.ndarray, shape (x, y, z, n_categories)
        Ground-truth patterns of a simulated subject.
    category_a, category_b : str
        The contrast.
    categories : sequence of str
        Category order of ``truth``'s last axis.

    Returns
    -------
    numpy.ndarray of bool, shape (x, y, z)
    """
    a, b = list(categories).index(category_a), list(categories).index(category_b)
    return truth[..., a] != truth[..., b]


def rest_grid(resolution):
    """The MNI152 brain and grey-matter masks at a resolution, from nilearn.

    Returns
    -------
    brain, grey : numpy.ndarray of bool
    affine : numpy.ndarray
    """
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_mask

    grey_img = load_mni152_gm_mask(resolution=resolution)
    brain_img = load_mni152_brain_mask(resolution=resolution)
    grey = np.asanyarray(grey_img.dataobj) > 0
    brain = (np.asanyarray(brain_img.dataobj) > 0) | grey
    return brain, grey, grey_img.affine


def network_maps(grey, affine, n_networks, blob_fwhm):
    """Planted network maps: Gaussian blobs at MNI coordinates, on grey matter.

    Returns
    -------
    maps : numpy.ndarray, shape (n_networks, x, y, z)
        Peak 1, zero outside grey matter and where below 0.05.
    names : list of str
    """
    if not 1 <= n_networks <= len(REST_NETWORKS):
        raise InputError(
            "config key simulate.rest.n_networks",
            f"{n_networks} is outside 1..{len(REST_NETWORKS)}",
            f"The simulator knows {len(REST_NETWORKS)} networks",
        )
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grey.shape], indexing="ij"), -1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    sigma = blob_fwhm / np.sqrt(8 * np.log(2))
    maps = np.zeros((n_networks,) + grey.shape)
    names = []
    for k, (name, centres) in enumerate(REST_NETWORKS[:n_networks]):
        for centre in centres:
            distance2 = np.sum((xyz - np.asarray(centre)) ** 2, axis=-1)
            maps[k] += np.exp(-distance2 / (2 * sigma**2))
        maps[k] = np.where(grey, np.minimum(maps[k], 1.0), 0.0)
        maps[k][maps[k] < 0.05] = 0.0
        names.append(name)
    return maps, names


def band_limited(n_volumes, n_series, tr, rng, band=(0.01, 0.1)):
    """Random time courses filtered to a frequency band, unit variance."""
    from scipy.signal import butter, sosfiltfilt

    nyquist = 0.5 / tr
    high = min(band[1], 0.9 * nyquist)
    sos = butter(3, [band[0] / nyquist, high / nyquist], btype="band", output="sos")
    pad = 100
    series = sosfiltfilt(sos, rng.standard_normal((n_volumes + 2 * pad, n_series)), axis=0)
    series = series[pad:-pad]
    return (series - series.mean(0)) / series.std(0)


#: The two groups of a simulated rest cohort, and the null grouping's labels.
REST_GROUPS = ("control", "coupled")
NULL_GROUPS = ("A", "B")
#: The phenotype columns of a simulated rest cohort's participants table.
PARTICIPANT_COLUMNS = ("group", "null_group")


def rest_groups(n_subjects, seed):
    """The planted and the null grouping of a simulated rest cohort.

    Subjects alternate between ``control`` (even positions) and ``coupled``
    (odd positions), so the groups are balanced. The null grouping splits
    each planted group in two halves at random (seeded), so it is balanced
    against the planted one and carries no information about it.

    Parameters
    ----------
    n_subjects : int
        Cohort size.
    seed : int
        Dataset seed.

    Returns
    -------
    group, null_group : list of str
        One label per subject, in subject order.
    """
    group = [REST_GROUPS[i % 2] for i in range(n_subjects)]
    rng = np.random.default_rng([seed, 7919])
    null_group = [""] * n_subjects
    for name in REST_GROUPS:
        members = [i for i in range(n_subjects) if group[i] == name]
        halves = rng.permutation(len(members)) % 2
        for member, half in zip(members, halves, strict=True):
            null_group[member] = NULL_GROUPS[half]
    return group, null_group


def couple_time_courses(time_courses, pairs, coupling):
    """Mix network time courses so that each named pair correlates by ``coupling``.

    The second network of a pair becomes ``coupling * first + sqrt(1 -
    coupling**2) * second``: unit variance kept, correlation ``coupling``
    with the first (in expectation).

    Parameters
    ----------
    time_courses : numpy.ndarray, shape (n_volumes, n_networks)
        Independent unit-variance time courses.
    pairs : list of (int, int)
        Network indices to couple.
    coupling : float
        Correlation to plant, in [-1, 1].

    Returns
    -------
    numpy.ndarray
        A coupled copy.
    """
    coupled = time_courses.copy()
    for first, second in pairs:
        coupled[:, second] = (
            coupling * coupled[:, first] + np.sqrt(1 - coupling**2) * coupled[:, second]
        )
    return coupled


def simulate_rest_subject(
    subject_index,
    seed,
    maps,
    brain,
    n_volumes,
    tr,
    snr_range,
    n_confounds=2,
    coupled_pairs=(),
    coupling=0.0,
    noise_smoothness=0.8,
    ar_coefficient=0.3,
    drift_amplitude=2.0,
):
    """Simulate one resting-state subject from planted network maps.

    Parameters
    ----------
    subject_index : int
        Position of the subject (0-based); seeds its random draws.
    seed : int
        Dataset seed.
    maps : numpy.ndarray, shape (n_networks, x, y, z)
        Ground-truth network maps (see :func:`network_maps`).
    brain : numpy.ndarray of bool
        Voxels with signal.
    n_volumes : int
        Scan length.
    tr : float
        Repetition time (s).
    snr_range : pair of float
        Network amplitude relative to noise, drawn per subject.
    n_confounds : int
        Number of slow artefact time courses (saved as confounds).
    noise_smoothness : float
        Spatial smoothness of the noise (sigma, voxels).
    ar_coefficient : float
        Lag-1 autocorrelation of the noise.
    drift_amplitude : float
        Scale of the slow drift, in noise units.
    coupled_pairs : sequence of (int, int)
        Pairs of networks whose time courses are coupled in this subject.
    coupling : float
        Their planted correlation (see :func:`couple_time_courses`).

    Returns
    -------
    SimulatedSubject
        ``bold`` float32 ``(x, y, z, t)``; ``confounds`` a table with columns
        ``artefact_1``, …; ``truth`` the maps as ``(x, y, z, n_networks)``.
    """
    rng = subject_rng(seed, subject_index)
    snr = float(rng.uniform(*snr_range))
    time_courses = band_limited(n_volumes, maps.shape[0], tr, rng)
    if coupled_pairs and coupling:
        time_courses = couple_time_courses(time_courses, coupled_pairs, coupling)
    amplitude = snr * rng.uniform(0.8, 1.2, maps.shape[0])
    on_brain = maps[:, brain]
    signal = (time_courses * amplitude) @ on_brain
    artefacts = band_limited(n_volumes, n_confounds, tr, rng, band=(0.005, 0.05))
    loadings = rng.normal(0.0, 1.0, (n_confounds, int(brain.sum())))
    values = (
        baseline_image(brain, rng)
        + NOISE_SIGMA
        * (
            run_drift(n_volumes, int(brain.sum()), drift_amplitude, rng)
            + signal
            + artefacts @ loadings
            + spatial_noise(brain, n_volumes, ar_coefficient, noise_smoothness, rng)
        )
    ).astype(np.float32)
    bold = np.zeros(brain.shape + (n_volumes,), dtype=np.float32)
    bold[brain] = values.T
    import pandas as pd

    confounds = pd.DataFrame(artefacts, columns=[f"artefact_{j + 1}" for j in range(n_confounds)])
    events = pd.DataFrame({"label": [REST_LABEL] * n_volumes, "run": 0})
    truth = np.moveaxis(maps, 0, -1).astype(np.float32)
    return SimulatedSubject(bold=bold, events=events, snr=snr, truth=truth, confounds=confounds)


def describe_simulation(name, settings):
    """The ``dataset.json`` fields and dataset-level images of a simulation.

    Parameters
    ----------
    name : str
        Dataset name.
    settings : dict
        The dataset's ``simulate`` config section.

    Returns
    -------
    description : dict
        Fields for ``dataset.json``.
    brain : numpy.ndarray of bool
        Whole-brain mask.
    affine : numpy.ndarray
        Grid affine.
    maps : numpy.ndarray or None
        Network maps ``(n_networks, x, y, z)`` for rest data.
    """
    kind = settings["kind"]
    subjects = subject_labels(settings["n_subjects"])
    common = {
        "name": name,
        "source": "simulate",
        "kind": kind,
        "subjects": subjects,
        "provenance": {"generator": "fmriflow.simulate", "settings": settings},
    }
    if kind == "task":
        task = settings["task"]
        check_null_pair(HAXBY_CATEGORIES, task["null_pair"])
        brain, _ = task_masks(tuple(task["shape"]))
        affine = grid_affine(task["shape"], task["voxel_size"])
        description = common | {
            "tr": task["tr"],
            "space": "native",
            "labels": list(HAXBY_CATEGORIES),
            "ground_truth": {
                "patterns": "sub-{subject}/truth.nii.gz",
                "snr": "sub-{subject}/truth.json",
                "categories": list(HAXBY_CATEGORIES),
                "null_pair": list(task["null_pair"]),
                "informative_voxels": "where the patterns of two categories differ",
            },
        }
        return description, brain, affine, None
    if kind == "stimulus":
        return _describe_stimulus_simulation(common, settings["stimulus"])
    rest = settings["rest"]
    brain, grey, affine = rest_grid(rest["resolution"])
    maps, names = network_maps(grey, affine, rest["n_networks"], rest["blob_fwhm"])
    coupled = rest["groups"]["coupled_networks"]
    check_coupled_networks(coupled, names)
    description = common | {
        "tr": rest["tr"],
        "space": "MNI152",
        "labels": [],
        "ground_truth": {
            "networks": "networks.nii.gz",
            "names": names,
            "groups": "participants.tsv",
            "coupled_group": REST_GROUPS[1],
            "coupled_networks": list(coupled),
            "coupling": rest["groups"]["coupling"],
        },
    }
    return description, brain, affine, maps


def check_coupled_networks(coupled, names):
    """The networks whose coupling differs between groups are planted ones."""
    unknown = [name for name in coupled if name not in names]
    if unknown or len(coupled) % 2:
        raise InputError(
            "config key simulate.rest.groups.coupled_networks",
            f"unknown network(s) {unknown}"
            if unknown
            else f"{len(coupled)} names, which do not make pairs",
            f"Give pairs of the planted networks {names} (raise n_networks to plant more)",
        )


def rest_participants(settings):
    """The participants table of a simulated rest cohort (see :func:`rest_groups`)."""
    from fmriflow.participants import participants_frame

    group, null_group = rest_groups(settings["n_subjects"], settings["seed"])
    columns = dict(zip(PARTICIPANT_COLUMNS, (group, null_group), strict=True))
    return participants_frame(subject_labels(settings["n_subjects"]), columns)


def _describe_stimulus_simulation(common, stimulus):
    from fmriflow.retinotopy import STIMULUS_SHAPE, visual_areas

    _, brain = visual_areas(tuple(stimulus["shape"]))
    affine = grid_affine(stimulus["shape"], stimulus["voxel_size"])
    description = common | {
        "tr": stimulus["tr"],
        "space": "native",
        "labels": ["random", "figure"],
        "stimulus": {"shape": list(STIMULUS_SHAPE), "features": "pixels"},
        "ground_truth": {
            "receptive_fields": "sub-{subject}/truth.nii.gz",
            "volumes": ["prf_row", "prf_col", "prf_size"],
            "snr": "sub-{subject}/truth.json",
        },
    }
    return description, brain, affine, None


def simulate_stimulus_subject(settings, subject_index):
    """Simulate one retinotopic subject (see :mod:`fmriflow.retinotopy`).

    Returns
    -------
    retinotopy.RetinotopySubject, float
        The subject and its SNR, drawn in ``settings["snr"]``.
    """
    from fmriflow.retinotopy import simulate_retinotopy_subject

    stimulus = settings["stimulus"]
    rng = subject_rng(settings["seed"], subject_index)
    snr = float(rng.uniform(*settings["snr"]))
    subject = simulate_retinotopy_subject(
        shape=tuple(stimulus["shape"]),
        voxel_size=tuple(stimulus["voxel_size"]),
        n_train_runs=stimulus["n_train_runs"],
        n_test_runs=stimulus["n_test_runs"],
        block_volumes=stimulus["block_volumes"],
        rest_volumes=stimulus["rest_volumes"],
        n_blocks_train=stimulus["n_blocks"],
        tr=stimulus["tr"],
        snr=snr,
        rng=rng,
        signal=stimulus["signal"],
    )
    return subject, snr


def simulate_subject(settings, subject_index, maps=None, brain=None):
    """Simulate one subject of a dataset described by its ``simulate`` settings.

    Parameters
    ----------
    settings : dict
        The dataset's ``simulate`` config section.
    subject_index : int
        0-based position of the subject.
    maps, brain : numpy.ndarray, optional
        For rest data: the planted network maps and brain mask.

    Returns
    -------
    SimulatedSubject
    """
    if settings["kind"] == "task":
        task = settings["task"]
        return simulate_task_subject(
            subject_index,
            settings["seed"],
            tuple(task["shape"]),
            task["n_runs"],
            task["tr"],
            settings["snr"],
            null_pair=tuple(task["null_pair"]),
            block_volumes=task["block_volumes"],
            rest_volumes=task["rest_volumes"],
            density=task["density"],
        )
    rest = settings["rest"]
    group, _ = rest_groups(settings["n_subjects"], settings["seed"])
    names = [name for name, _ in REST_NETWORKS[: rest["n_networks"]]]
    coupled = rest["groups"]["coupled_networks"]
    pairs = [
        (names.index(coupled[k]), names.index(coupled[k + 1])) for k in range(0, len(coupled), 2)
    ]
    return simulate_rest_subject(
        subject_index,
        settings["seed"],
        maps,
        brain,
        rest["n_volumes"],
        rest["tr"],
        settings["snr"],
        n_confounds=rest["n_confounds"],
        coupled_pairs=pairs if group[subject_index] == REST_GROUPS[1] else (),
        coupling=rest["groups"]["coupling"],
    )
