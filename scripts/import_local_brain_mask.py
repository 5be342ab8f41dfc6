"""Node import_local_brain_mask: a local dataset's whole-brain mask, in the canonical layout.

Checks that the configured mask (``local.brain_mask``) is a readable 3D
image and copies it to ``data/{dataset}/brainmask.nii.gz`` (never a link:
the lab's file is only read).
"""

from fmriflow.io import load_volume
from fmriflow.local import copy_source
from fmriflow.node import Node, run


def import_local_brain_mask(inputs, outputs, params, threads):
    load_volume(inputs.source, "dataset brain mask (local.brain_mask)")
    copy_source(inputs.source, outputs.brain_mask)


NODE = Node(
    name="import_local_brain_mask",
    description="Node import_local_brain_mask: a local dataset's whole-brain mask.",
    function=import_local_brain_mask,
    inputs={"source": "the brain mask named by local.brain_mask"},
    outputs={"brain_mask": "brainmask.nii.gz to write"},
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
