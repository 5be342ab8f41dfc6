"""The canonical dataset layout that every acquisition source ends in.

::

    data/{dataset}/dataset.json          TR, space, subjects, source, ground truth
    data/{dataset}/brainmask.nii.gz      whole-brain mask (simulated data; local.brain_mask)
    data/{dataset}/networks.nii.gz       planted networks (simulated rest)
    data/{dataset}/sub-{subject}/
        bold.nii.gz      4D image, all runs concatenated in time
        events.tsv       one row per volume: label, run ('rest' for rest data)
        roi.nii.gz       subject ROI (e.g. Haxby's ventral temporal mask)
        anat.nii.gz      anatomical image, for figures
        confounds.tsv    one row per volume, one column per confound
        truth.nii.gz, truth.json    simulated data: ground truth

Nothing downstream of acquisition knows which source (simulate, fetch,
local) produced a dataset. Which of the optional files (ROI, anatomy,
confounds, ground truth) a subject has is decided by the config before any
job runs (the workflow's ``subject_files``), and every job that reads one
declares it as an input: files are never found by looking next to others.
"""

import numpy as np

from fmriflow.errors import InputError
from fmriflow.io import atomic_output, read_json, save_mask, write_json, write_table

REST_LABEL = "rest"

REQUIRED_KEYS = ("name", "source", "kind", "tr", "space", "subjects")


def bold_header(tr, shape=None):
    """A NIfTI header carrying the TR in seconds and millimetre units."""
    import nibabel as nib

    header = nib.Nifti1Header()
    if shape is not None:
        header.set_data_shape(shape)
    header.set_xyzt_units("mm", "sec")
    return header


def save_bold(data, affine, tr, path):
    """Write a 4D BOLD array with its TR in the header, atomically."""
    import nibabel as nib

    header = bold_header(tr)
    img = nib.Nifti1Image(np.asarray(data), affine, header=header)
    zooms = list(img.header.get_zooms()[:3]) + [float(tr)]
    img.header.set_zooms(zooms)
    img.header.set_data_dtype(np.asarray(data).dtype)
    with atomic_output(path) as tmp:
        nib.save(img, tmp)
    return path


def write_events(events, path):
    """Write the canonical events table (``label``, ``run``; one row per volume)."""
    return write_table(events[["label", "run"]], path)


def save_roi(roi, path, affine=None):
    """Write a subject ROI as a uint8 mask.

    Parameters
    ----------
    roi : numpy.ndarray of bool or nibabel image
        An array on the grid of ``affine``, or an image with its own grid
        (non-zero voxels are in the ROI).
    path : str or pathlib.Path
        ``roi.nii.gz`` to write.
    affine : numpy.ndarray, optional
        The grid of an array ``roi``.
    """
    if hasattr(roi, "affine"):
        return save_mask(np.asanyarray(roi.dataobj) != 0, roi.affine, path)
    return save_mask(roi, affine, path)


def save_image(img, path):
    """Write a nibabel image as it is (e.g. an anatomical image), atomically."""
    import nibabel as nib

    with atomic_output(path) as tmp:
        nib.save(img, tmp)
    return path


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
    import pandas as pd

    runs = np.ones(n_volumes, dtype=int) if runs is None else np.asarray(runs)
    return pd.DataFrame({"label": [REST_LABEL] * n_volumes, "run": runs})
