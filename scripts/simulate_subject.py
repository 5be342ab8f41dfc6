"""Node simulate_subject: simulate one subject into the canonical layout.

Reads the dataset description (and, for rest data, the planted networks),
simulates the subject with its own seed and writes ``bold.nii.gz``,
``events.tsv`` and the ground truth (``truth.json``); a task subject also
has its ROI (``roi.nii.gz``) and patterns (``truth.nii.gz``), a rest subject
its confounds (``confounds.tsv``), a stimulus (retinotopic) subject its
visual areas (``roi.nii.gz``), stimulus table (``stimuli.tsv``) and planted
receptive fields (``truth.nii.gz``: pRF row, column and size).
"""

import numpy as np

from fmriflow.dataset import read_description, save_bold, save_roi, write_events
from fmriflow.errors import InputError
from fmriflow.io import load_mask, load_nifti, save_nifti, write_json, write_table
from fmriflow.node import Node, Param, run
from fmriflow.simulate import simulate_stimulus_subject
from fmriflow.simulate import simulate_subject as simulate

#: The outputs of each kind of simulation, besides bold, events and truth.
KIND_OUTPUTS = {
    "task": ("roi", "truth_patterns"),
    "rest": ("confounds",),
    "stimulus": ("roi", "stimuli", "truth_prf"),
}


def simulate_subject(inputs, outputs, params, threads):
    description = read_description(inputs.description)
    kind = description["kind"]
    check_outputs(kind, outputs)
    if kind == "stimulus":
        write_stimulus_subject(description, params.subject, inputs, outputs)
        return
    brain, brain_img = load_mask(inputs.brain_mask, "brain mask")
    maps = None
    if kind == "rest":
        networks = load_nifti(inputs.networks, "planted networks", ndim=4)
        maps = np.moveaxis(np.asanyarray(networks.dataobj), -1, 0)
    settings = description["provenance"]["settings"]
    index = description["subjects"].index(params.subject)
    subject = simulate(settings, index, maps=maps, brain=brain)
    affine = brain_img.affine
    write_json({"snr": subject.snr}, outputs.truth)
    if kind == "task":
        save_nifti(subject.truth, affine, outputs.truth_patterns)
        save_roi(subject.roi, outputs.roi, affine)
    else:
        write_table(subject.confounds, outputs.confounds)
    save_bold(subject.bold, affine, description["tr"], outputs.bold)
    write_events(subject.events, outputs.events)


def write_stimulus_subject(description, subject_label, inputs, outputs):
    """Simulate a retinotopic subject and write its files."""
    _, brain_img = load_mask(inputs.brain_mask, "brain mask")
    settings = description["provenance"]["settings"]
    index = description["subjects"].index(subject_label)
    subject, snr = simulate_stimulus_subject(settings, index)
    affine = brain_img.affine
    truth = np.stack([subject.truth[k] for k in ("prf_row", "prf_col", "prf_size")], axis=-1)
    write_json({"snr": snr}, outputs.truth)
    save_nifti(truth.astype(np.float32), affine, outputs.truth_prf, dtype=np.float32)
    save_roi(subject.roi, outputs.roi, affine)
    write_table(subject.stimuli, outputs.stimuli)
    save_bold(subject.bold, affine, description["tr"], outputs.bold)
    write_events(subject.events, outputs.events)


def check_outputs(kind, outputs):
    """The outputs given are those of this kind of simulation."""
    expected = set(KIND_OUTPUTS[kind])
    given = {name for names in KIND_OUTPUTS.values() for name in names if name in outputs}
    if given != expected:
        raise InputError(
            "simulate_subject outputs",
            f"a {kind} simulation writes {sorted(expected)}, but {sorted(given)} were given",
            "Give the outputs of this kind of simulation (python scripts/simulate_subject.py "
            "--help)",
        )


NODE = Node(
    name="simulate_subject",
    description="Node simulate_subject: simulate one subject into the canonical layout.",
    function=simulate_subject,
    inputs={
        "description": "dataset.json",
        "brain_mask": "dataset brain mask",
        "networks": "networks.nii.gz (rest simulations)",
    },
    outputs={
        "bold": "bold.nii.gz to write",
        "events": "events.tsv to write",
        "truth": "truth.json to write (the subject's SNR)",
        "roi": "roi.nii.gz to write (task)",
        "truth_patterns": "truth.nii.gz to write (task: the category patterns)",
        "confounds": "confounds.tsv to write (rest: the artefact time courses)",
        "stimuli": "stimuli.tsv to write (stimulus: the image shown at each volume)",
        "truth_prf": "truth.nii.gz to write (stimulus: pRF row, column and size per voxel)",
    },
    params={"subject": Param("01", "subject label", type=str)},
    optional_inputs=("networks",),
    optional_outputs=("roi", "truth_patterns", "confounds", "stimuli", "truth_prf"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
