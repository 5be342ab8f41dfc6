"""Tiny stand-ins for the datasets nilearn downloads, in nilearn's exact layout.

The workflow fetches Haxby et al. (2001) with
:func:`nilearn.datasets.fetch_haxby`, the 40-subject ADHD-200 rest sample
with :func:`nilearn.datasets.fetch_adhd`, Miyawaki et al. (2008) with
:func:`nilearn.datasets.fetch_miyawaki2008`, and the MSDL and Schaefer
(2018) atlases with :func:`nilearn.datasets.fetch_atlas_msdl` and
:func:`nilearn.datasets.fetch_atlas_schaefer_2018`. These fetchers look for
their files under ``<data_dir>/<dataset>/`` first and only download what is
missing, so writing small files with the real names into that folder lets
the real fetchers run offline: nothing is mocked in nilearn or in fmriflow.
The atlases' stand-ins are described in :func:`make_msdl` and
:func:`make_schaefer`.

What is real: the folder and file names, the file formats (NIfTI-1 gzip,
space-separated ``labels.txt`` with its ``labels chunks`` header, the
``MD5SUMS`` format nilearn parses, the comma-separated phenotypic table with
a numeric ``Subject`` column and phenotype columns, the tab-separated ADHD
regressors with their header, Miyawaki's header-less comma-separated label files with one row of
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
type is an assumption; the phenotypic table has a few of the real columns
(``Subject``, ``MeanFD``, ``site``, ``sex``, ``age``, ``handedness``,
``adhd``) with synthetic values; the ``MD5SUMS`` hashes are those of archives of the stand-in files
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
from scipy.spatial import cKDTree

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
#: Columns of the stand-in phenotypic table (a subset of the real ones).
ADHD_PHENOTYPE_COLUMNS = ("Subject", "MeanFD", "site", "sex", "age", "handedness", "adhd")
#: Sites of the stand-in phenotypic table (synthetic assignment to subjects).
ADHD_SITES = ("NYU", "Peking", "OHSU", "NeuroIMAGE")
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

    The phenotypic table (:func:`adhd_phenotypic`) has a row for each of the
    40 subjects and, besides ``Subject``, the real table's ``MeanFD``,
    ``site``, ``sex``, ``age``, ``handedness`` and ``adhd`` (the diagnosis,
    0 or 1) columns, with synthetic values.

    Simplified: a 10 x 12 x 10 grid of 20 mm voxels over the MNI152 brain
    instead of 61 x 73 x 61 at 3 mm; ``n_volumes`` volumes instead of 176;
    the phenotypic table has only some of the real columns, and its values
    are drawn, not the cohort's (``adhd`` is balanced, 20 and 20); the BOLD
    signal is noise plus two "networks" with their own time courses and a
    small contribution of the ``global`` regressor.

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
    adhd_phenotypic(ids, seed).to_csv(root / ADHD_PHENOTYPIC, index=False, lineterminator="\n")

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


def adhd_phenotypic(ids, seed=0):
    """The stand-in of ADHD's phenotypic table: one row per subject, synthetic values.

    ``Subject`` is the ID as a number (no leading zeros, as in the real
    file); ``MeanFD`` (mm), ``site``, ``sex`` (``M``/``F``), ``age``
    (years, 7-21), ``handedness`` (``R``/``L``) and ``adhd`` (0/1, half
    of the subjects each, in a seeded random order).
    """
    rng = np.random.default_rng([seed, 40])
    n = len(ids)
    return pd.DataFrame(
        {
            "Subject": [int(i) for i in ids],
            "MeanFD": np.round(rng.uniform(0.04, 0.3, n), 4),
            "site": [ADHD_SITES[k % len(ADHD_SITES)] for k in range(n)],
            "sex": rng.choice(["M", "F"], n, p=[0.65, 0.35]),
            "age": np.round(rng.uniform(7.0, 21.0, n), 2),
            "handedness": rng.choice(["R", "L"], n, p=[0.9, 0.1]),
            "adhd": rng.permutation(np.arange(n) % 2),
        },
        columns=list(ADHD_PHENOTYPE_COLUMNS),
    )


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


# --- standard atlases ---------------------------------------------------------------

#: The 39 MSDL regions: name and network (as published), and the stand-in's
#: own MNI coordinates (mm), not the published ones.
MSDL_REGIONS = (
    ("L Aud", "Aud", (-52, -18, 8)),
    ("R Aud", "Aud", (52, -16, 8)),
    ("Striate", "Striate", (0, -84, 4)),
    ("L DMN", "DMN", (-44, -66, 32)),
    ("Med DMN", "DMN", (0, -56, 28)),
    ("Front DMN", "DMN", (0, 54, 12)),
    ("R DMN", "DMN", (48, -64, 32)),
    ("Occ post", "Occ post", (0, -96, 12)),
    ("Motor", "Motor", (0, -22, 62)),
    ("R DLPFC", "R V Att", (44, 32, 30)),
    ("R Front pol", "R V Att", (28, 56, 4)),
    ("R Par", "R V Att", (50, -50, 44)),
    ("R Post Temp", "R V Att", (60, -44, -8)),
    ("Basal", "Basal", (0, 4, 2)),
    ("L Par", "L V Att", (-46, -56, 44)),
    ("L DLPFC", "L V Att", (-44, 30, 30)),
    ("L Front pol", "L V Att", (-28, 56, 4)),
    ("L IPS", "D Att", (-30, -60, 50)),
    ("R IPS", "D Att", (32, -60, 50)),
    ("L LOC", "Vis Sec", (-44, -76, -2)),
    ("Vis", "Vis Sec", (0, -78, -10)),
    ("R LOC", "Vis Sec", (44, -76, -2)),
    ("D ACC", "Salience", (0, 20, 40)),
    ("V ACC", "Salience", (0, 34, 0)),
    ("R A Ins", "Salience", (38, 18, 0)),
    ("L STS", "Temporal", (-56, -28, -6)),
    ("R STS", "Temporal", (56, -28, -6)),
    ("L TPJ", "Language", (-54, -52, 22)),
    ("Broca", "Language", (-48, 18, 8)),
    ("Sup Front S", "Language", (-24, 20, 52)),
    ("R TPJ", "Language", (54, -50, 22)),
    ("R Pars Op", "Language", (50, 14, 14)),
    ("Cereb", "Cereb", (0, -62, -36)),
    ("Dors PCC", "Dors PCC", (0, -32, 40)),
    ("L Ins", "Cing-Ins", (-38, 0, 6)),
    ("Cing", "Cing-Ins", (0, 2, 36)),
    ("R Ins", "Cing-Ins", (38, 0, 6)),
    ("L Ant IPS", "Ant IPS", (-40, -40, 44)),
    ("R Ant IPS", "Ant IPS", (40, -40, 44)),
)
#: A coarse grid over the MNI152 brain (8 mm voxels, RAS) for the MSDL maps.
MSDL_SHAPE = (21, 25, 21)
MSDL_AFFINE = np.array(
    [
        [8.0, 0.0, 0.0, -80.0],
        [0.0, 8.0, 0.0, -116.0],
        [0.0, 0.0, 8.0, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
#: A coarse grid over the MNI152 brain (6 mm voxels, RAS) for the Schaefer labels.
SCHAEFER_SHAPE = (28, 33, 28)
SCHAEFER_AFFINE = np.array(
    [
        [6.0, 0.0, 0.0, -81.0],
        [0.0, 6.0, 0.0, -117.0],
        [0.0, 0.0, 6.0, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
#: Schaefer's network names, in the order of its labels, for 7 and 17 networks.
SCHAEFER_NETWORKS = {
    7: ("Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default"),
    17: (
        "VisCent",
        "VisPeri",
        "SomMotA",
        "SomMotB",
        "DorsAttnA",
        "DorsAttnB",
        "SalVentAttnA",
        "SalVentAttnB",
        "LimbicA",
        "LimbicB",
        "ContA",
        "ContB",
        "ContC",
        "DefaultA",
        "DefaultB",
        "DefaultC",
        "TempPar",
    ),
}
#: Parts of a network named between it and the region number (the stand-in's
#: choice of parts; some networks' regions have none, as in the real names).
SCHAEFER_PARTS = {
    "DorsAttn": ("Post", "FEF", "PrCv"),
    "SalVentAttn": ("ParOper", "FrOperIns", "Med"),
    "Limbic": ("OFC", "TempPole"),
    "Cont": ("Par", "PFCl", "pCun"),
    "Default": ("Temp", "Par", "PFC", "pCunPCC"),
}


def _world(shape, affine):
    """World coordinates (mm) of every voxel, shape (3,) + shape."""
    ijk = np.concatenate([np.indices(shape), np.ones((1,) + tuple(shape))])
    return np.einsum("ij,j...->i...", affine[:3], ijk)


def mni_brain(shape, affine, scale=1.0):
    """A stand-in brain: an ellipsoid roughly the size of the MNI152 brain (times ``scale``)."""
    world = _world(shape, affine)
    centre, radii = (0.0, -18.0, 8.0), scale * np.array([72.0, 98.0, 76.0])
    return sum(((w - c) / r) ** 2 for w, c, r in zip(world, centre, radii, strict=True)) <= 1.0


def make_msdl(download_dir, seed=0):
    """Write a stand-in of the MSDL atlas where ``fetch_atlas_msdl`` looks for it.

    Mimics the layout ``nilearn.datasets.fetch_atlas_msdl`` leaves after
    extracting ``MSDL_rois.zip``, under ``<download_dir>/msdl_atlas/MSDL_rois/``:

    * ``msdl_rois.nii`` — uncompressed NIfTI-1, 4D, one probabilistic map
      per region along the 4th axis, float weights that are mostly positive
      with weaker negative lobes (as the real maps, which come from a
      dictionary learning, have), zero outside the brain;
    * ``msdl_rois_labels.csv`` — comma-separated with the header
      ``x,y,z,name,net name``, one row per map in the order of the 4th axis.

    What is real: the file names and formats, the 39 region names and
    their 17 networks. Simplified: a 21 x 25 x 21 grid of 8 mm voxels
    (RAS) instead of 40 x 48 x 35; the maps are Gaussian blobs (8 mm SD)
    at the stand-in's own coordinates (:data:`MSDL_REGIONS`, not the
    published ones) minus a third of a wider blob beside them, plus a
    little noise; the data type is float64 (the real file's float width is
    an assumption here; the workflow writes float32 whatever it is).

    Parameters
    ----------
    download_dir : str or pathlib.Path
        The folder given to the fetcher as ``data_dir``.
    seed : int
        Seed of the noise and of the side of each negative lobe.

    Returns
    -------
    pathlib.Path
        ``<download_dir>/msdl_atlas/MSDL_rois``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(download_dir) / "msdl_atlas" / "MSDL_rois"
    folder.mkdir(parents=True, exist_ok=True)
    world = _world(MSDL_SHAPE, MSDL_AFFINE)
    brain = mni_brain(MSDL_SHAPE, MSDL_AFFINE)

    def blob(centre, sd):
        distance = sum((w - c) ** 2 for w, c in zip(world, centre, strict=True))
        return np.exp(-distance / (2 * sd**2))

    maps = np.zeros(MSDL_SHAPE + (len(MSDL_REGIONS),))
    for k, (_, _, centre) in enumerate(MSDL_REGIONS):
        side = rng.choice([-1.0, 1.0], 3) * 16.0
        weights = blob(centre, 8.0) - blob(np.add(centre, side), 14.0) / 3
        weights += 0.01 * rng.standard_normal(MSDL_SHAPE)
        weights[np.abs(weights) < 0.02] = 0.0
        maps[..., k] = np.where(brain, weights, 0.0)
    _save(maps.astype(np.float64), MSDL_AFFINE, folder / "msdl_rois.nii")
    labels = pd.DataFrame(
        {
            "x": [float(c[0]) for _, _, c in MSDL_REGIONS],
            "y": [float(c[1]) for _, _, c in MSDL_REGIONS],
            "z": [float(c[2]) for _, _, c in MSDL_REGIONS],
            "name": [name for name, _, _ in MSDL_REGIONS],
            "net name": [network for _, network, _ in MSDL_REGIONS],
        }
    )
    labels.to_csv(folder / "msdl_rois_labels.csv", index=False, lineterminator="\n")
    return folder


def schaefer_names(n_rois, yeo_networks):
    """Region names in Schaefer's form, label 1 first: left hemisphere, then right.

    Each hemisphere's ``n_rois / 2`` labels go to the networks in
    :data:`SCHAEFER_NETWORKS` order, in nearly equal contiguous blocks;
    names are ``{k}Networks_{LH|RH}_{network}[_{part}]_{number}``.
    """
    names = []
    for hemisphere in ("LH", "RH"):
        blocks = np.array_split(np.arange(n_rois // 2), len(SCHAEFER_NETWORKS[yeo_networks]))
        for network, block in zip(SCHAEFER_NETWORKS[yeo_networks], blocks, strict=True):
            parts = SCHAEFER_PARTS.get(network.rstrip("ABC"), (None,))
            counts = {}
            for k in range(block.size):
                part = parts[k * len(parts) // block.size]
                counts[part] = counts.get(part, 0) + 1
                middle = f"{network}_{part}" if part else network
                names.append(f"{yeo_networks}Networks_{hemisphere}_{middle}_{counts[part]}")
    return names


def make_schaefer(download_dir, n_rois=400, yeo_networks=7, resolution_mm=2, seed=0):
    """Write a stand-in of a Schaefer (2018) parcellation where nilearn's fetcher looks.

    Mimics the files ``nilearn.datasets.fetch_atlas_schaefer_2018`` leaves
    in ``<download_dir>/schaefer_2018/``:

    * ``Schaefer2018_{n_rois}Parcels_{yeo_networks}Networks_order.txt`` —
      tab-separated, no header, one row per region: label (1..n_rois),
      name (``7Networks_LH_Vis_1``, ``7Networks_RH_Default_PFC_3``: the
      third ``_``-field is the network), r, g, b and 0;
    * ``..._order_FSLMNI152_{resolution_mm}mm.nii.gz`` — gzip NIfTI-1, 3D,
      int32 labels (the data type of the released files as we know them;
      not checked against a download), 0 outside the regions.

    What is real: the names of the files and the form of their contents,
    labels 1..n_rois all present (so there are labels above 127 and 255
    from 300 regions on), the left hemisphere's labels first, the network
    names (the 7 in their order).  Simplified: a 28 x 33 x 28 grid of 6 mm voxels
    (RAS) whatever ``resolution_mm`` says, instead of 91 x 109 x 91 at
    2 mm; the regions are the Voronoi cells of random seeds within a shell
    of an ellipsoid "brain" (a stand-in cortex), numbered from posterior to
    anterior in each hemisphere; parts of names and colours are the
    stand-in's own.

    Parameters
    ----------
    download_dir : str or pathlib.Path
        The folder given to the fetcher as ``data_dir``.
    n_rois : int
        Regions (100 to 1000 by 100).
    yeo_networks : {7, 17}
        Network annotation.
    resolution_mm : {1, 2}
        Only names the image file.
    seed : int
        Seed of the regions' seeds.

    Returns
    -------
    pathlib.Path
        ``<download_dir>/schaefer_2018``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(download_dir) / "schaefer_2018"
    folder.mkdir(parents=True, exist_ok=True)
    world = _world(SCHAEFER_SHAPE, SCHAEFER_AFFINE)
    outer = mni_brain(SCHAEFER_SHAPE, SCHAEFER_AFFINE)
    inner = mni_brain(SCHAEFER_SHAPE, SCHAEFER_AFFINE, scale=0.7)
    cortex = outer & ~inner
    labels = np.zeros(SCHAEFER_SHAPE, dtype=np.int32)
    half = n_rois // 2
    for h, hemisphere in enumerate((world[0] < 0, world[0] >= 0)):
        voxels = np.flatnonzero(cortex & hemisphere)
        points = world.reshape(3, -1)[:, voxels].T
        seeds = rng.choice(voxels.size, half, replace=False)
        seeds = seeds[np.argsort(points[seeds, 1], kind="stable")]
        _, nearest = cKDTree(points[seeds]).query(points)
        labels.flat[voxels] = 1 + h * half + nearest
    stem = f"Schaefer2018_{n_rois}Parcels_{yeo_networks}Networks_order"
    _save(labels, SCHAEFER_AFFINE, folder / f"{stem}_FSLMNI152_{resolution_mm}mm.nii.gz")
    names = schaefer_names(n_rois, yeo_networks)
    colours = rng.integers(0, 256, (n_rois, 3))
    rows = [
        f"{k}\t{name}\t{r}\t{g}\t{b}\t0\n"
        for k, (name, (r, g, b)) in enumerate(zip(names, colours, strict=True), start=1)
    ]
    (folder / f"{stem}.txt").write_text("".join(rows))
    return folder
