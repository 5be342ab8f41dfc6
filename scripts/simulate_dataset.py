"""Node simulate_dataset: describe a simulated dataset and write its brain mask.

Writes ``dataset.json`` (TR, space, subjects, ground-truth files) and the
whole-brain mask; for rest data also the planted network maps
(``networks.nii.gz``), which every subject's simulation reads, and the
participants table (``participants.tsv``: the planted and the null grouping).
"""

import numpy as np

from fmriflow.dataset import write_description
from fmriflow.errors import InputError
from fmriflow.io import save_mask, save_nifti, write_table
from fmriflow.node import Node, Param, run
from fmriflow.simulate import describe_simulation, rest_participants


def simulate_dataset(inputs, outputs, params, threads):
    description, brain, affine, maps = describe_simulation(params.name, params.settings)
    rest = maps is not None
    if rest != ("networks" in outputs) or rest != ("participants" in outputs):
        raise InputError(
            "simulate_dataset outputs",
            "a rest simulation writes planted networks and a participants table (give "
            "--networks and --participants), other kinds do not",
            "Give --networks PATH and --participants PATH exactly for simulate.kind: rest",
        )
    save_mask(brain, affine, outputs.brain_mask)
    if rest:
        save_nifti(np.moveaxis(maps, 0, -1), affine, outputs.networks, dtype=np.float32)
        write_table(rest_participants(params.settings), outputs.participants)
    write_description(outputs.description, **description)


NODE = Node(
    name="simulate_dataset",
    description="Node simulate_dataset: describe a simulated dataset and write its brain mask.",
    function=simulate_dataset,
    outputs={
        "description": "dataset.json to write",
        "brain_mask": "brain mask to write",
        "networks": "networks.nii.gz to write (rest simulations: the planted networks)",
        "participants": "participants.tsv to write (rest simulations: the groups)",
    },
    params={
        "name": Param("simulated", "dataset name"),
        "settings": Param({}, "the dataset's 'simulate' config section", schema="simulate"),
    },
    optional_outputs=("networks", "participants"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
