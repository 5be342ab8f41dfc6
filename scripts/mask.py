"""Node mask: one subject's 4D BOLD image to a (time x voxel) float32 matrix.

Chooses the mask (subject ROI, dataset brain mask, EPI-based or MNI
template; resampled to the BOLD grid with nearest neighbour if needed),
adds the subject ROI's voxels when it is given (``include_roi``),
streams the image into ``masked.npy`` (optionally smoothed), checks for
NaN or constant voxels, and writes the exact mask used and the mean image.
"""

import logging

import numpy as np

from fmriflow import masking
from fmriflow.dataset import read_description
from fmriflow.errors import InputError
from fmriflow.io import load_matrix, npy_writer, save_mask, save_nifti
from fmriflow.node import Node, Param, notify, run

logger = logging.getLogger("fmriflow.mask")


def mask(inputs, outputs, params, threads):
    description = read_description(inputs.description)
    voxels, notes, resampled = masking.build_mask(
        params.mask_choice,
        inputs.bold,
        roi_path=inputs.get("roi"),
        brain_mask_path=inputs.get("brain_mask"),
        space=description["space"],
        include_roi=params.include_roi,
        resample_masks=params.resample_masks,
        template_path=inputs.get("template"),
    )
    for note in notes:
        logger.info(note)
    for note in resampled:
        notify(note)
    shape, affine, _ = masking.bold_geometry(inputs.bold)
    with npy_writer(outputs.matrix, (shape[3], int(voxels.sum())), np.float32) as out:
        mean = masking.extract_masked(inputs.bold, voxels, out, params.smoothing_fwhm)
        bad = check_bad_voxels(out, voxels, inputs.bold, params.bad_voxels)
    if bad.any():
        keep = ~bad
        matrix = load_matrix(outputs.matrix)
        with npy_writer(outputs.matrix, (shape[3], int(keep.sum())), np.float32) as out:
            out[:] = matrix[:, keep]
        voxels[tuple(c[bad] for c in np.nonzero(voxels))] = False
    save_mask(voxels, affine, outputs.mask)
    save_nifti(mean, affine, outputs.mean, dtype=np.float32)
    logger.info("mask %s: %d voxels, %d volumes", params.mask_choice, voxels.sum(), shape[3])


def check_bad_voxels(matrix, voxels, bold, policy):
    """Report NaN/constant voxels (policy 'error') or return them (policy 'drop')."""
    nonfinite, constant = masking.find_bad_voxels(matrix)
    bad = nonfinite | constant
    if bad.any():
        first = tuple(int(c[np.flatnonzero(bad)[0]]) for c in np.nonzero(voxels))
        summary = (
            f"{int(nonfinite.sum())} voxel(s) inside the mask have NaN or infinite "
            f"values and {int(constant.sum())} are constant over time (first at "
            f"voxel {first})"
        )
        if policy == "error":
            raise InputError(
                bold,
                summary,
                "Set preprocess.bad_voxels: drop to leave them out of the mask, "
                "or use a tighter mask",
            )
        logger.warning("%s; dropped from the mask", summary)
    return bad


NODE = Node(
    name="mask",
    description="Node mask: one subject's 4D BOLD image to a (time x voxel) float32 matrix.",
    function=mask,
    inputs={
        "bold": "the subject's bold.nii.gz",
        "description": "the dataset's dataset.json",
        "roi": "the subject's roi.nii.gz (mask choice roi, or include_roi)",
        "brain_mask": "the dataset's brainmask.nii.gz (mask choice dataset)",
        "template": "the dataset's template_mask.nii.gz (mask choice mni_brain or mni_gm)",
    },
    outputs={
        "mask": "mask.nii.gz to write (the exact mask used)",
        "matrix": "masked.npy to write",
        "mean": "mean.nii.gz to write (temporal mean image)",
    },
    params={
        "mask_choice": Param("epi", f"mask choice, one of {masking.MASK_CHOICES}"),
        "include_roi": Param(True, "add the subject ROI's voxels to the mask"),
        "smoothing_fwhm": Param(None, "Gaussian smoothing FWHM in mm, or null"),
        "resample_masks": Param(
            False, "resample a subject ROI or brain mask not on the BOLD grid (else an error)"
        ),
        "bad_voxels": Param("error", "NaN or constant voxels: 'error' or 'drop'"),
    },
    optional_inputs=("roi", "brain_mask", "template"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
