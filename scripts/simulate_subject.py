"""Node simulate_subject: simulate one subject into the canonical layout.

Reads the dataset description (and, for rest data, the planted networks),
simulates the subject with its own seed and writes ``bold.nii.gz``,
``events.tsv`` and, depending on the kind, ``mask.nii.gz`` (ROI),
``confounds.tsv`` and the ground truth (``truth.nii.gz``, ``truth.json``).
"""

from pathlib import Path

import numpy as np

from fmriflow.dataset import read_description, write_subject
from fmriflow.io import load_mask, save_nifti, write_json
from fmriflow.node import Node, Param, run
from fmriflow.simulate import simulate_subject as simulate


def simulate_subject(inputs, outputs, params, threads):
    description = read_description(inputs.description)
    brain, brain_img = load_mask(inputs.brain_mask, "brain mask")
    settings = description["provenance"]["settings"]
    index = description["subjects"].index(params.subject)
    maps = None
    if description["kind"] == "rest":
        networks = Path(inputs.description).parent / description["ground_truth"]["networks"]
        maps = np.moveaxis(load_nifti_data(networks), -1, 0)
    subject = simulate(settings, index, maps=maps, brain=brain)
    folder = Path(outputs.bold).parent
    truth = [write_json({"snr": subject.snr}, folder / "truth.json")]
    if description["kind"] == "task":
        truth.append(save_nifti(subject.truth, brain_img.affine, folder / "truth.nii.gz"))
    return truth + write_subject(
        folder.parent,
        params.subject,
        subject.events,
        bold=subject.bold,
        affine=brain_img.affine,
        tr=description["tr"],
        confounds=subject.confounds,
        roi=subject.roi,
    )


def load_nifti_data(path):
    import nibabel as nib

    return np.asanyarray(nib.load(path).dataobj)


NODE = Node(
    name="simulate_subject",
    description="Node simulate_subject: simulate one subject into the canonical layout.",
    function=simulate_subject,
    inputs={"description": "dataset.json", "brain_mask": "dataset brain mask"},
    outputs={"bold": "bold.nii.gz to write", "events": "events.tsv to write"},
    params={"subject": Param("01", "subject label", type=str)},
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
