"""Node template_mask: nilearn's MNI152 mask on a dataset's grid, computed once.

``preprocess.mask: mni_brain`` or ``mni_gm`` puts nilearn's template on the
grid of the BOLD images. That is the same work for every subject on one
grid (a few seconds: importing ``nilearn.datasets`` and resampling the
1 mm template), so it is done once per dataset, on the grid of its first
subject; each subject's mask job reads the result, and recomputes it only
for a subject whose grid differs.
"""

import logging

from fmriflow import masking
from fmriflow.dataset import read_description
from fmriflow.io import save_mask
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.template_mask")


def template_mask(inputs, outputs, params, threads):
    space = read_description(inputs.description)["space"]
    shape, affine, _ = masking.bold_geometry(inputs.bold)
    mask, note = masking.template_mask(params.mask_choice, space, affine, shape[:3])
    masking.check_mask_not_empty(
        mask, f"{params.mask_choice} mask for {inputs.bold}", params.mask_choice
    )
    if note:
        logger.info(note)
    save_mask(mask, affine, outputs.mask)
    logger.info("%s on the grid of %s: %d voxels", params.mask_choice, inputs.bold, mask.sum())


NODE = Node(
    name="template_mask",
    description="Node template_mask: nilearn's MNI152 mask on a dataset's grid.",
    function=template_mask,
    inputs={
        "bold": "a BOLD image on the dataset's grid (its first subject's bold.nii.gz)",
        "description": "the dataset's dataset.json (its space)",
    },
    outputs={"mask": "template_mask.nii.gz to write"},
    params={"mask_choice": Param("mni_gm", "mni_brain or mni_gm")},
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
