"""Tiny stand-ins for the datasets nilearn downloads, in nilearn's exact layout.

The workflow fetches Haxby et al. (2001) with
:func:`nilearn.datasets.fetch_haxby`, the 40-subject ADHD-200 rest sample
with :func:`nilearn.datasets.fetch_adhd` and Miyawaki et al. (2008) with
:func:`nilearn.datasets.fetch_miyawaki2008`. These fetchers look for their
files under ``<data_dir>/<dataset>/`` first and only download what is
missing, so writing small files with the real names into that folder lets
the real fetchers run offline: nothing is mocked in nilearn or in fmriflow.

What is real: the folder and file names, the file formats (NIfTI-1 gzip,
space-separated ``labels.txt`` with its ``labels chunks`` header, the
``MD5SUMS`` format nilearn parses, the comma-separated phenotypic table with
a numeric ``Subject`` column, the tab-separated ADHD regressors with their
header, Miyawaki's header-less comma-separated label files with one row of
100 integers per volume, -1 on rest, the 10 x 10 image in Fortran order),
data types (Haxby int16, ADHD float32), the Haxby category names and block
structure, what differs between subjects (subject 6 of Haxby has no
anatomical image; all ADHD subjects share one MNI grid), and for Miyawaki
the 12 figure and 20 random-pattern runs, the TR of 2 s and 3 mm voxels,
and the 39 mask files (``mask.nii.gz`` and the 38 hemisphere / area /
``lag`` ROIs) on the functional grid (TR and voxel size as published, not
checked against the real files).

What is simplified: grids are about 10 x 12 x 10 voxels instead of
40 x 64 x 64 (Haxby), 61 x 73 x 61 (ADHD) or the much larger Miyawaki
scans; there are a few short runs instead of 12 runs of 121 volumes (Haxby)
or much longer runs (Miyawaki); intensities, masks and regressors are
synthetic (a weak category signal inside the VT mask, a weak retinotopic
signal from :mod:`fmriflow.retinotopy` in the Miyawaki visual areas, so
that downstream analyses are not degenerate); Miyawaki's blocks are 3
volumes of image and 3 of rest, its figures are fmriflow's own bitmaps, its
ROIs are carved out of three simulated areas (V3A and V4v from the V3-like
one; the ``lag`` masks are bands of pRF eccentricity), its float32 data
type is an assumption; the phenotypic table has only the ``Subject``
column; the ``MD5SUMS`` hashes are those of archives of the stand-in files
built in memory (never written), not of the real archives.
"""

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.ndimage import binary_dilation

from fmriflow import retinotopy
from fmriflow.simulate import grid_affine

#: Haxby's eight object categories, as spelled in ``labels.txt``.
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
#: Files of one Haxby subject, in the order of ``nilearn.datasets.fetch_haxby``.
HAXBY_SUBJECT_FILES = (
    "bold.nii.gz",
    "labels.txt",
    "mask4_vt.nii.gz",
    "mask8b_face_vt.nii.gz",
    "mask8b_house_vt.nii.gz",
    "mask8_face_vt.nii.gz",
    "mask8_house_vt.nii.gz",
    "anat.nii.gz",
)
#: Subject of Haxby whose anatomical image is not distributed.
HAXBY_NO_ANAT = 6
HAXBY_SHAPE = (10, 12, 10)
# Haxby's voxels are 3.5 x 3.75 x 3.75 mm, stored left-right flipped.
HAXBY_AFFINE = np.array(
    [
        [-3.5, 0.0, 0.0, 15.75],
        [0.0, 3.75, 0.0, -20.625],
        [0.0, 0.0, 3.75, -16.875],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
HAXBY_TR = 2.5

ADHD_PHENOTYPIC = "ADHD200_40subs_motion_parameters_and_phenotypics.csv"
#: Columns of the ADHD ``<id>_regressors.csv`` files, in their order.
ADHD_REGRESSORS = (
    "csf",
    "constant",
    "linearTrend",
    "wm",
    "global",
    "motion-pitch",
    "motion-roll",
    "motion-yaw",
    "motion-x",
    "motion-y",
    "motion-z",
    "gm",
    "compcor1",
    "compcor2",
    "compcor3",
    "compcor4",
    "compcor5",
)
ADHD_SHAPE = (10, 12, 10)
# A coarse (20 mm) grid covering the MNI152 brain, RPI-oriented like the
# real ``*_rest_tshift_RPI_voreg_mni`` images; one grid for every subject.
ADHD_AFFINE = np.array(
    [
        [-20.0, 0.0, 0.0, 90.0],
        [0.0, 20.0, 0.0, -126.0],
        [0.0, 0.0, 20.0, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
ADHD_TR = 2.0

#: Miyawaki's runs: 12 figure runs, then 20 random-pattern runs (nilearn's order).
MIYAWAKI_RUNS = (("figure", 12), ("random", 20))
MIYAWAKI_SHAPE = (10, 12, 8)
MIYAWAKI_VOXEL_SIZE = (3.0, 3.0, 3.0)
MIYAWAKI_AFFINE = grid_affine(MIYAWAKI_SHAPE, MIYAWAKI_VOXEL_SIZE)
MIYAWAKI_TR = 2.0
#: Stand-in design: each run starts with rest, then image blocks alternate with rest.
MIYAWAKI_BLOCK_VOLUMES = 3
MIYAWAKI_REST_VOLUMES = 3
#: Areas of the ``mask/`` ROIs: (simulated area, dorsal, band of the inferior-superior axis).
MIYAWAKI_AREAS = {
    "V1d": (1, True, None),
    "V1v": (1, False, None),
    "V2d": (2, True, None),
    "V2v": (2, False, None),
    "V3": (3, True, "inner"),
    "V3A": (3, True, "outer"),
    "VP": (3, False, "inner"),
    "V4v": (3, False, "outer"),
}


def _save(data, affine, path, tr=None):
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (float(tr),))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def _ellipsoid(shape, center, radii):
    grid = np.indices(shape, dtype=float)
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True))
    return distance <= 1.0


def haxby_brain():
    """The stand-in whole-brain mask of Haxby (an ellipsoid on the BOLD grid)."""
    center = [(n - 1) / 2 for n in HAXBY_SHAPE]
    radii = [n / 2 - 0.3 for n in HAXBY_SHAPE]
    return _ellipsoid(HAXBY_SHAPE, center, radii)


def haxby_vt():
    """The stand-in ventral-temporal mask: bilateral, inferior and posterior."""
    box = np.zeros(HAXBY_SHAPE, dtype=bool)
    box[1:4, 3:7, 2:4] = True
    box[6:9, 3:7, 2:4] = True
    return box & haxby_brain()


def haxby_labels(n_runs=3, block_volumes=3, rest_volumes=2, seed=0):
    """Per-volume labels of a Haxby-like block design, as ``labels.txt`` rows.

    Each run starts with ``rest_volumes`` of rest, then shows the eight
    categories in a random order, each for ``block_volumes`` volumes
    followed by ``rest_volumes`` of rest (the real runs use 9 and 6).

    Returns
    -------
    pandas.DataFrame
        Columns ``labels`` (category or ``rest``) and ``chunks`` (run, 0..).
    """
    rng = np.random.default_rng(seed)
    labels, chunks = [], []
    for run in range(n_runs):
        run_labels = ["rest"] * rest_volumes
        for k in rng.permutation(len(HAXBY_CATEGORIES)):
            run_labels += [HAXBY_CATEGORIES[k]] * block_volumes + ["rest"] * rest_volumes
        labels += run_labels
        chunks += [run] * len(run_labels)
    return pd.DataFrame({"labels": labels, "chunks": chunks})


def _tar_gz_md5(folder, arcname):
    """MD5 of a deterministic ``.tar.gz`` of ``folder``, built in memory only."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            info = tarfile.TarInfo(f"{arcname}/{path.name}")
            data = path.read_bytes()
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(gzip.compress(raw.getvalue(), mtime=0)).hexdigest()


def make_haxby(download_dir, subjects=(1, 2), n_runs=3, signal=8.0, noise=10.0, seed=0):
    """Write stand-ins of Haxby (2001) where ``fetch_haxby`` looks for them.

    Mimics the layout ``nilearn.datasets.fetch_haxby`` leaves after a
    download: ``<download_dir>/haxby2001/mask.nii.gz`` (whole-brain mask),
    ``MD5SUMS`` (``<md5>  subjN-2010.01.14.tar.gz`` lines, as parsed by
    ``nilearn.datasets._utils.read_md5_sum_file``) and per subject
    ``subjN/`` with ``bold.nii.gz`` (4D int16), ``labels.txt`` (header
    ``labels chunks``, one ``<category> <run>`` row per volume),
    ``mask4_vt.nii.gz``, ``mask8b_face_vt.nii.gz``,
    ``mask8b_house_vt.nii.gz``, ``mask8_face_vt.nii.gz``,
    ``mask8_house_vt.nii.gz`` and ``anat.nii.gz`` (not for subject 6, as in
    the real dataset). Masks are uint8 on the BOLD grid.

    Simplified: a 10 x 12 x 10 grid, ``n_runs`` runs of 42 volumes, an
    ellipsoid "brain" (bright, with a dim noisy background, so an EPI mask
    can be computed), and inside the VT mask a fixed random pattern per
    category added, with amplitude ``signal``, to Gaussian noise of SD
    ``noise``. The face/house masks are the VT voxels where that
    category's pattern is highest. The anatomy is a smooth ellipsoid on a
    grid twice as fine.

    Parameters
    ----------
    download_dir : str or pathlib.Path
        The folder given to the fetcher as ``data_dir``.
    subjects : iterable of int or str
        Subjects (1-6) to write; others already there are kept.
    n_runs : int, default=3
        Number of runs (``chunks`` 0 .. n_runs - 1).
    signal, noise : float
        Category signal amplitude and noise SD, in stored units.
    seed : int, default=0
        Base seed; each subject adds its number.

    Returns
    -------
    pathlib.Path
        ``<download_dir>/haxby2001``.
    """
    root = Path(download_dir) / "haxby2001"
    root.mkdir(parents=True, exist_ok=True)
    brain = haxby_brain()
    vt = haxby_vt()
    _save(brain.astype(np.uint8), HAXBY_AFFINE, root / "mask.nii.gz")
    for subject in (int(s) for s in subjects):
        rng = np.random.default_rng(seed + subject)
        folder = root / f"subj{subject}"
        folder.mkdir(exist_ok=True)
        labels = haxby_labels(n_runs=n_runs, seed=seed + subject)
        labels.to_csv(folder / "labels.txt", sep=" ", index=False, lineterminator="\n")

        n_volumes = len(labels)
        patterns = rng.standard_normal((len(HAXBY_CATEGORIES), int(vt.sum())))
        baseline = np.where(brain, 800.0 + 50 * rng.standard_normal(HAXBY_SHAPE), 20.0)
        data = baseline[..., None] + np.where(brain[..., None], noise, 3.0) * rng.standard_normal(
            HAXBY_SHAPE + (n_volumes,)
        )
        in_vt = data[vt]  # (VT voxels in C order, volumes)
        for k, category in enumerate(HAXBY_CATEGORIES):
            volumes = labels["labels"].to_numpy() == category
            in_vt[:, volumes] += signal * patterns[k][:, None]
        data[vt] = in_vt
        bold = np.clip(np.round(data), 0, None).astype(np.int16)
        _save(bold, HAXBY_AFFINE, folder / "bold.nii.gz", tr=HAXBY_TR)

        _save(vt.astype(np.uint8), HAXBY_AFFINE, folder / "mask4_vt.nii.gz")
        for name, k in (("face", 0), ("house", 1)):
            for prefix, fraction in (("mask8b", 0.5), ("mask8", 0.25)):
                selected = np.zeros(HAXBY_SHAPE, dtype=np.uint8)
                threshold = np.quantile(patterns[k], 1 - fraction)
                selected[vt] = patterns[k] >= threshold
                _save(selected, HAXBY_AFFINE, folder / f"{prefix}_{name}_vt.nii.gz")

        anat_path = folder / "anat.nii.gz"
        if subject == HAXBY_NO_ANAT:
            anat_path.unlink(missing_ok=True)
        else:
            fine = tuple(2 * n for n in HAXBY_SHAPE)
            head = _ellipsoid(fine, [(n - 1) / 2 for n in fine], [n / 2 - 0.5 for n in fine])
            anat = np.where(head, 300 + 20 * rng.standard_normal(fine), 0).astype(np.int16)
            affine = HAXBY_AFFINE.copy()
            affine[:3, :3] /= 2
            _save(anat, affine, anat_path)

    archives = sorted(p for p in root.glob("subj*") if p.is_dir())
    lines = [
        f"{_tar_gz_md5(p, p.name)}  {p.name}-2010.01.14.tar.gz\n"
        for p in sorted(archives, key=lambda p: int(p.name[4:]))
    ]
    (root / "MD5SUMS").write_text("".join(lines))
    return root


def adhd_regressors(n_volumes, rng):
    """A stand-in of one ADHD ``<id>_regressors.csv`` table.

    Same columns, in the same order, as the real files: physiological and
    global signals, ``constant`` (all ones), ``linearTrend`` (0, 1, 2, ...),
    six motion parameters and five CompCor components. Values are smooth
    random walks, not real regressors.
    """
    columns = {}
    for name in ADHD_REGRESSORS:
        if name == "constant":
            columns[name] = np.ones(n_volumes)
        elif name == "linearTrend":
            columns[name] = np.arange(n_volumes, dtype=float)
        else:
            columns[name] = np.cumsum(rng.standard_normal(n_volumes)) * 0.1
    return pd.DataFrame(columns)


def make_adhd(download_dir, subjects=2, n_volumes=40, seed=0):
    """Write stand-ins of nilearn's ADHD-200 rest sample where ``fetch_adhd`` looks.

    Mimics the layout ``nilearn.datasets.fetch_adhd`` leaves after a
    download: ``<download_dir>/adhd/ADHD200_40subs_motion_parameters_and_phenotypics.csv``
    (comma-separated, a numeric ``Subject`` column listing all 40 IDs
    without their leading zeros, as nilearn's own test fixture does) and
    per subject ``adhd/data/<id>/<id>_rest_tshift_RPI_voreg_mni.nii.gz``
    (4D float32, zero outside the brain, TR 2 s, the same MNI grid for
    every subject) and ``adhd/data/<id>/<id>_regressors.csv`` (tab-separated
    despite its extension, header ``csf constant linearTrend wm global
    motion-pitch motion-roll motion-yaw motion-x motion-y motion-z gm
    compcor1 .. compcor5``, one row per volume).

    Simplified: a 10 x 12 x 10 grid of 20 mm voxels over the MNI152 brain
    instead of 61 x 73 x 61 at 3 mm; ``n_volumes`` volumes instead of 176;
    the phenotypic table has only the ``Subject`` column; the BOLD signal is
    noise plus two "networks" with their own time courses and a small
    contribution of the ``global`` regressor.

    Parameters
    ----------
    download_dir : str or pathlib.Path
        The folder given to the fetcher as ``data_dir``.
    subjects : int or list of str, default=2
        The first n subjects in nilearn's order, or explicit IDs (as in
        ``nilearn.datasets.func.adhd_ids``).
    n_volumes : int, default=40
        Volumes per subject.
    seed : int, default=0
        Base seed; each subject adds its position in nilearn's list.

    Returns
    -------
    pathlib.Path
        ``<download_dir>/adhd``.
    """
    from nilearn.datasets.func import adhd_ids

    ids = list(adhd_ids())
    chosen = ids[:subjects] if isinstance(subjects, int) else [str(s) for s in subjects]
    unknown = sorted(set(chosen) - set(ids))
    if unknown:
        raise ValueError(f"not ADHD subject IDs: {unknown}")
    root = Path(download_dir) / "adhd"
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"Subject": [int(i) for i in ids]}).to_csv(root / ADHD_PHENOTYPIC, index=False)

    world = np.einsum(
        "ij,j...->i...",
        ADHD_AFFINE[:3],
        np.concatenate([np.indices(ADHD_SHAPE), np.ones((1,) + ADHD_SHAPE)]),
    )
    brain = _ellipsoid(world.shape[1:], (0.0, -18.0, 15.0), (70.0, 95.0, 70.0))
    networks = [
        _ellipsoid(world.shape[1:], center, (45.0, 45.0, 45.0)) & brain
        for center in ((0.0, -60.0, 30.0), (0.0, 30.0, 10.0))
    ]
    for subject in chosen:
        rng = np.random.default_rng(seed + ids.index(subject))
        folder = root / "data" / subject
        folder.mkdir(parents=True, exist_ok=True)
        regressors = adhd_regressors(n_volumes, rng)
        regressors.to_csv(
            folder / f"{subject}_regressors.csv",
            sep="\t",
            index=False,
            float_format="%.6f",
            lineterminator="\n",
        )
        data = 1000.0 + 10.0 * rng.standard_normal(ADHD_SHAPE + (n_volumes,))
        for network in networks:
            data[network] += 5.0 * np.cumsum(rng.standard_normal(n_volumes)) / 3
        data += 20.0 * regressors["global"].to_numpy()
        data[~brain] = 0.0
        _save(
            data.astype(np.float32),
            ADHD_AFFINE,
            folder / f"{subject}_rest_tshift_RPI_voreg_mni.nii.gz",
            tr=ADHD_TR,
        )
    return root


def miyawaki_truth(seed=0, shape=MIYAWAKI_SHAPE):
    """The visual areas, brain and pRF map of the Miyawaki stand-in of ``seed``.

    The same draws as :func:`make_miyawaki` makes first, so a test can
    compare what it recovers from the stand-in with the truth.

    Returns
    -------
    areas : numpy.ndarray of int8
    brain : numpy.ndarray of bool
    truth : dict
        See :func:`fmriflow.retinotopy.retinotopic_map`.
    rng : numpy.random.Generator
        The generator after the map's draws.
    """
    rng = np.random.default_rng(seed)
    areas, brain = retinotopy.visual_areas(shape)
    truth = retinotopy.retinotopic_map(areas, retinotopy.STIMULUS_SHAPE, rng=rng)
    return areas, brain, truth, rng


def miyawaki_roi_masks(areas, truth):
    """The stand-in ROI masks of ``mask/``, by file name (without ``mask.nii.gz``).

    Hemispheres split the first axis (left: low indices, as in the RAS
    affine); dorsal is the upper half of each area along the third axis.
    V3 and V3A split the dorsal half of the V3-like area (V3A its topmost
    slice), VP and V4v its ventral half (V4v its lowest slice). The
    ``lagAtoB`` masks are eccentricity bands: each hemisphere's pRF voxels,
    sorted by the distance of their pRF centre from the image centre, cut
    into 11 bands of (nearly) equal size, ``lag0to1`` the most central, so
    that none is empty.
    """
    from nilearn.datasets.func import miyawaki2008_file_mask

    n_x = areas.shape[0]
    left = np.zeros(areas.shape, dtype=bool)
    left[: n_x // 2] = True
    k = np.indices(areas.shape)[2]
    has_prf = truth["has_prf"]
    centre = [(n - 1) / 2 for n in retinotopy.STIMULUS_SHAPE]
    eccentricity = np.hypot(truth["prf_row"] - centre[0], truth["prf_col"] - centre[1])
    n_bands = 11
    band = np.full(areas.shape, -1)
    for hemisphere in (left, ~left):
        voxels = np.flatnonzero(has_prf & hemisphere)
        order = np.argsort(eccentricity.flat[voxels], kind="stable")
        band.flat[voxels[order]] = np.arange(voxels.size) * n_bands // voxels.size
    masks = {}
    for name in miyawaki2008_file_mask()[1:]:
        hemisphere = left if name.startswith("LH") else ~left
        region = name[2:].removesuffix(".nii.gz")
        if region.startswith("lag"):
            low = int(region[3:].split("to")[0])
            masks[name] = (band == low) & hemisphere
            continue
        area, dorsal, part = MIYAWAKI_AREAS[region]
        voxels = areas == area
        k_lo, k_hi = k[voxels].min(), k[voxels].max()
        middle = (k_lo + k_hi) / 2
        half = voxels & ((k > middle) if dorsal else (k <= middle))
        if part is not None:
            k_half = k[half]
            edge = k_half.max() if dorsal else k_half.min()
            outer = half & (k == edge)
            half = outer if part == "outer" else half & ~outer
        masks[name] = half & hemisphere
    return masks


def _pad_runs(design, pixels, n_volumes):
    """Pad each run of a stimulus design with rest up to ``n_volumes``."""
    designs, blocks = [], []
    for _, run in design.groupby("run", sort=True):
        rows = run.index.to_numpy()
        extra = n_volumes - rows.size
        first = run.iloc[0]
        tail = pd.DataFrame(
            {
                "run": first["run"],
                "split": first["split"],
                "rest": 1,
                "label": "rest",
                "image": "rest",
            },
            index=range(extra),
        )
        designs.append(pd.concat([run, tail], ignore_index=True))
        blocks.append(np.vstack([pixels[rows], np.zeros((extra, pixels.shape[1]), np.uint8)]))
    return pd.concat(designs, ignore_index=True), np.vstack(blocks)


def make_miyawaki(download_dir, n_volumes_random=45, n_volumes_figure=45, seed=0, snr=0.5):
    """Write stand-ins of Miyawaki et al. (2008) where ``fetch_miyawaki2008`` looks.

    Mimics the layout ``nilearn.datasets.fetch_miyawaki2008`` leaves after
    extracting its archive, under ``<download_dir>/miyawaki2008/``:

    * ``func/data_figure_run01.nii.gz`` .. ``run12`` and
      ``func/data_random_run01.nii.gz`` .. ``run20``: 4D float32 images,
      3 mm voxels, TR 2 s (in the header's fourth zoom, units mm and s);
    * ``label/data_{figure,random}_runNN_label.csv``: one row per volume of
      100 comma-separated integers, no header; ``-1`` everywhere on rest,
      else the 0/1 image shown, flattened in Fortran order (so
      ``np.reshape(row, (10, 10), order="F")`` is the image, row 0 on top);
    * ``mask/``: every file of ``nilearn.datasets.func.miyawaki2008_file_mask()``
      as a uint8 0/1 image on the functional grid: ``mask.nii.gz`` (the
      visual areas grown by one voxel inside the brain) and the 38 ROIs of
      :func:`miyawaki_roi_masks`;
    * ``bg.nii.gz``: an int16 "anatomy" (a smooth ellipsoid) on a grid twice
      as fine.

    Simplified: a 10 x 12 x 8 grid; the signal is that of
    :func:`fmriflow.retinotopy.simulate_bold` (a pRF in each voxel of three
    V1-, V2-, V3-like areas; HRF peaking two volumes after the image, the
    lag of nilearn's examples) at signal/noise ``snr``; every run starts
    with 3 volumes of rest, then blocks of 3 volumes of one image alternate
    with 3 of rest (random runs: a new random pattern per block; figure
    runs: fmriflow's test figures in random order), padded with rest to the
    run length.

    Parameters
    ----------
    download_dir : str or pathlib.Path
        The folder given to the fetcher as ``data_dir``.
    n_volumes_random, n_volumes_figure : int
        Volumes per random-pattern and per figure run (at least 9).
    seed : int
        Seed of every random draw (:func:`miyawaki_truth` gives the map).
    snr : float
        Signal/noise of the pRF voxels.

    Returns
    -------
    pathlib.Path
        ``<download_dir>/miyawaki2008``.
    """
    from nilearn.datasets.func import miyawaki2008_file_mask

    period = MIYAWAKI_BLOCK_VOLUMES + MIYAWAKI_REST_VOLUMES
    lengths = {"random": int(n_volumes_random), "figure": int(n_volumes_figure)}
    if min(lengths.values()) < MIYAWAKI_REST_VOLUMES + period:
        raise ValueError(f"runs of {lengths} volumes are too short for one block")
    areas, brain, truth, rng = miyawaki_truth(seed)
    designs, stimuli = [], []
    for kind, n_runs in MIYAWAKI_RUNS:
        n_blocks = (lengths[kind] - MIYAWAKI_REST_VOLUMES) // period
        design, pixels = retinotopy.stimulus_runs(
            n_runs if kind == "random" else 0,
            n_runs if kind == "figure" else 0,
            MIYAWAKI_BLOCK_VOLUMES,
            MIYAWAKI_REST_VOLUMES,
            n_blocks,
            rng,
            retinotopy.STIMULUS_SHAPE,
        )
        design, pixels = _pad_runs(design, pixels, lengths[kind])
        design["kind"] = kind
        designs.append(design)
        stimuli.append(pixels)
    design = pd.concat(designs, ignore_index=True)
    pixels = np.vstack(stimuli)
    session_run = design["kind"] + design["run"].astype(str)
    runs = pd.factorize(session_run)[0]
    bold = retinotopy.simulate_bold(pixels, runs, brain, truth, MIYAWAKI_TR, snr, rng)

    root = Path(download_dir) / "miyawaki2008"
    shape = retinotopy.STIMULUS_SHAPE
    for run in np.unique(runs):
        rows = np.flatnonzero(runs == run)
        kind = design["kind"].iloc[rows[0]]
        number = design["run"].iloc[rows[0]]
        _save(
            np.ascontiguousarray(bold[..., rows]),
            MIYAWAKI_AFFINE,
            root / "func" / f"data_{kind}_run{number:02d}.nii.gz",
            tr=MIYAWAKI_TR,
        )
        images = pixels[rows].reshape((rows.size,) + shape)
        labels = images.transpose(0, 2, 1).reshape(rows.size, -1).astype(int)
        labels[design["rest"].to_numpy()[rows] == 1] = -1
        path = root / "label" / f"data_{kind}_run{number:02d}_label.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, labels, fmt="%d", delimiter=",", newline="\n")

    names = miyawaki2008_file_mask()
    mask = binary_dilation(truth["has_prf"]) & brain
    _save(mask.astype(np.uint8), MIYAWAKI_AFFINE, root / "mask" / names[0])
    for name, roi in miyawaki_roi_masks(areas, truth).items():
        _save(roi.astype(np.uint8), MIYAWAKI_AFFINE, root / "mask" / name)

    fine = tuple(2 * n for n in MIYAWAKI_SHAPE)
    head = _ellipsoid(fine, [(n - 1) / 2 for n in fine], [n / 2 - 0.5 for n in fine])
    anat = np.where(head, 300 + 20 * rng.standard_normal(fine), 0).astype(np.int16)
    affine = MIYAWAKI_AFFINE.copy()
    affine[:3, :3] /= 2
    affine[:3, 3] -= np.diag(affine)[:3] / 2
    _save(anat, affine, root / "bg.nii.gz")
    return root
