"""Node simulate_dataset: describe a simulated dataset and write its brain mask.

Writes ``dataset.json`` (TR, space, subjects, ground-truth files) and the
whole-brain mask; for rest data also the planted network maps
(``networks.nii.gz``), which every subject's simulation reads.
"""

from pathlib import Path

import numpy as np

from fmriflow.dataset import write_description
from fmriflow.io import save_mask, save_nifti
from fmriflow.node import Node, Param, run
from fmriflow.simulate import describe_simulation


def simulate_dataset(inputs, outputs, params, threads):
    description, brain, affine, maps = describe_simulation(params.name, params.settings)
    save_mask(brain, affine, outputs.brain_mask)
    optional = []
    if maps is not None:
        networks = Path(outputs.brain_mask).parent / "networks.nii.gz"
        optional.append(save_nifti(np.moveaxis(maps, 0, -1), affine, networks, dtype=np.float32))
    write_description(outputs.description, **description)
    return optional


NODE = Node(
    name="simulate_dataset",
    description="Node simulate_dataset: describe a simulated dataset and write its brain mask.",
    function=simulate_dataset,
    outputs={
        "description": "dataset.json to write",
        "brain_mask": "brain mask to write",
    },
    params={
        "name": Param("simulated", "dataset name"),
        "settings": Param(None, "the dataset's 'simulate' config section (a mapping)"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
