"""The canonical dataset layout that every acquisition source ends in.

::

    data/{dataset}/dataset.json          TR, space, subjects, source, ground truth
    data/{dataset}/brainmask.nii.gz      optional whole-brain mask (common grid)
    data/{dataset}/sub-{subject}/
        bold.nii.gz      4D image, all runs concatenated in time
        events.tsv       one row per volume: label, run ('rest' for rest data)
        confounds.tsv    optional, one row per volume, one column per confound
        mask.nii.gz      optional subject ROI (e.g. Haxby's ventral temporal)
        anat.nii.gz      optional anatomical image, for figures

Nothing downstream of acquisition knows which source (simulate, fetch,
local) produced a dataset. Optional files exist or not; a source that does
not provide one removes any stale copy, so existence is the truth.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from fmriflow.errors import InputError
from fmriflow.io import (
    atomic_output,
    read_json,
    save_mask,
    write_json,
    write_table,
)

BOLD = "bold.nii.gz"
EVENTS = "events.tsv"
CONFOUNDS = "confounds.tsv"
ROI = "mask.nii.gz"
ANAT = "anat.nii.gz"
BRAIN_MASK = "brainmask.nii.gz"
DESCRIPTION = "dataset.json"
OPTIONAL_SUBJECT_FILES = (CONFOUNDS, ROI, ANAT)
REST_LABEL = "rest"

REQUIRED_KEYS = ("name", "source", "kind", "tr", "space", "subjects")


def subject_dir(dataset_dir, subject):
    """Folder of one subject's canonical files."""
    return Path(dataset_dir) / f"sub-{subject}"


def bold_header(tr, shape=None):
    """A NIfTI header carrying the TR in seconds and millimetre units."""
    header = nib.Nifti1Header()
    if shape is not None:
        header.set_data_shape(shape)
    header.set_xyzt_units("mm", "sec")
    return header


def save_bold(data, affine, tr, path):
    """Write a 4D BOLD array with its TR in the header, atomically."""
    header = bold_header(tr)
    img = nib.Nifti1Image(np.asarray(data), affine, header=header)
    zooms = list(img.header.get_zooms()[:3]) + [float(tr)]
    img.header.set_zooms(zooms)
    img.header.set_data_dtype(np.asarray(data).dtype)
    with atomic_output(path) as tmp:
        nib.save(img, tmp)
    return Path(path)


def write_subject(
    dataset_dir,
    subject,
    events,
    bold=None,
    affine=None,
    tr=None,
    confounds=None,
    roi=None,
    anat=None,
):
    """Write one subject's canonical files and remove stale optional ones.

    Parameters
    ----------
    dataset_dir : str or pathlib.Path
        ``data/{dataset}``.
    subject : str
        Subject label (without ``sub-``).
    events : pandas.DataFrame
        Columns ``label`` and ``run``, one row per volume.
    bold : numpy.ndarray, optional
        4D data to write with ``affine`` and ``tr``; None if the caller has
        already placed ``bold.nii.gz`` (link or copy).
    affine : numpy.ndarray, optional
        Voxel-to-world affine of ``bold``, ``roi`` and ``anat`` arrays.
    tr : float, optional
        Repetition time in seconds, for the header of ``bold``.
    confounds : pandas.DataFrame, optional
        One row per volume.
    roi : numpy.ndarray of bool or nibabel image, optional
        Subject ROI: an array on the grid of ``affine``, or an image with
        its own grid.
    anat : nibabel image, optional
        Anatomical image (any grid).

    Returns
    -------
    list of pathlib.Path
        The optional files written (confounds, ROI, anatomy), for provenance.
    """
    folder = subject_dir(dataset_dir, subject)
    folder.mkdir(parents=True, exist_ok=True)
    written = set()
    if confounds is not None:
        write_table(confounds, folder / CONFOUNDS)
        written.add(CONFOUNDS)
    if roi is not None:
        if hasattr(roi, "affine"):
            save_mask(np.asanyarray(roi.dataobj) != 0, roi.affine, folder / ROI)
        else:
            save_mask(roi, affine, folder / ROI)
        written.add(ROI)
    if anat is not None:
        with atomic_output(folder / ANAT) as tmp:
            nib.save(anat, tmp)
        written.add(ANAT)
    for name in OPTIONAL_SUBJECT_FILES:
        if name not in written and (folder / name).exists():
            (folder / name).unlink()
    if bold is not None:
        save_bold(bold, affine, tr, folder / BOLD)
    # The events table is the last file written: its presence, with the
    # BOLD image's, marks a complete subject.
    write_table(events[["label", "run"]], folder / EVENTS)
    return [folder / name for name in OPTIONAL_SUBJECT_FILES if name in written]


def optional_file(dataset_dir, subject, name):
    """Path of an optional subject file, or None if this subject lacks it."""
    path = subject_dir(dataset_dir, subject) / name
    return path if path.exists() else None


def read_description(path):
    """Read and check a ``dataset.json``.

    Parameters
    ----------
    path : str or pathlib.Path
        The description file.

    Returns
    -------
    dict
    """
    description = read_json(path, "dataset description")
    missing = [k for k in REQUIRED_KEYS if k not in description]
    if missing:
        raise InputError(
            path,
            f"dataset description lacks the key(s) {missing}",
            "Delete it and re-run the acquisition rule to regenerate it",
        )
    return description


def write_description(path, **fields):
    """Write ``dataset.json`` from keyword fields (see :data:`REQUIRED_KEYS`)."""
    missing = [k for k in REQUIRED_KEYS if k not in fields]
    if missing:
        raise ValueError(f"dataset description lacks {missing}")
    return write_json(fields, path)


def rest_events(n_volumes, runs=None):
    """Events table of a rest scan: label 'rest', one run unless given."""
    runs = np.ones(n_volumes, dtype=int) if runs is None else np.asarray(runs)
    return pd.DataFrame({"label": [REST_LABEL] * n_volumes, "run": runs})
