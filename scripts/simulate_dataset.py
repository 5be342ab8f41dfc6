"""Node simulate_dataset: describe a simulated dataset and write its brain mask.

Writes ``dataset.json`` (TR, space, subjects, ground-truth files) and the
whole-brain mask; for rest data also the planted network maps
(``networks.nii.gz``), which every subject's simulation reads.
"""

import numpy as np

from fmriflow.dataset import write_description
from fmriflow.errors import InputError
from fmriflow.io import save_mask, save_nifti
from fmriflow.node import Node, Param, run
from fmriflow.simulate import describe_simulation


def simulate_dataset(inputs, outputs, params, threads):
    description, brain, affine, maps = describe_simulation(params.name, params.settings)
    if (maps is not None) != ("networks" in outputs):
        raise InputError(
            "simulate_dataset outputs",
            "a rest simulation writes planted networks (give --networks), a task one does not",
            "Give --networks PATH exactly for simulate.kind: rest",
        )
    save_mask(brain, affine, outputs.brain_mask)
    if maps is not None:
        save_nifti(np.moveaxis(maps, 0, -1), affine, outputs.networks, dtype=np.float32)
    write_description(outputs.description, **description)


NODE = Node(
    name="simulate_dataset",
    description="Node simulate_dataset: describe a simulated dataset and write its brain mask.",
    function=simulate_dataset,
    outputs={
        "description": "dataset.json to write",
        "brain_mask": "brain mask to write",
        "networks": "networks.nii.gz to write (rest simulations: the planted networks)",
    },
    params={
        "name": Param("simulated", "dataset name"),
        "settings": Param({}, "the dataset's 'simulate' config section", schema="simulate"),
    },
    optional_outputs=("networks",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
