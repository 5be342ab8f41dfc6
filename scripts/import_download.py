"""Node import_download: convert one fetched subject to the canonical layout.

Checks the sha256 of the subject's downloaded files against
``dataset.json``, links the BOLD image, and converts the rest: Haxby's
``labels.txt`` to ``events.tsv``, its ``mask4_vt`` to ``mask.nii.gz``;
ADHD's regressors to ``confounds.tsv``.
"""

from pathlib import Path

from fmriflow.dataset import read_description, rest_events, write_subject
from fmriflow.errors import InputError
from fmriflow.fetch import (
    haxby_events,
    link_or_copy,
    read_confound_table,
    verify_checksum,
)
from fmriflow.io import load_nifti
from fmriflow.node import Node, Param, run


def import_download(inputs, outputs, params, threads):
    description = read_description(inputs.description)
    subject = params.subject
    if subject not in description["files"]:
        raise InputError(
            inputs.description,
            f"subject {subject!r} is not among the downloaded subjects "
            f"{list(description['files'])}",
            "Give one of them",
        )
    files = description["files"][subject]
    for path in files.values():
        verify_checksum(path, description["sha256"][path])
    bold = load_nifti(files["bold"], "downloaded BOLD image", ndim=4)
    link_or_copy(files["bold"], outputs.bold)
    if "labels" in files:
        events = haxby_events(files["labels"])
    else:
        events = rest_events(bold.shape[3])
    return write_subject(
        Path(outputs.bold).parent.parent,
        subject,
        events,
        confounds=read_confound_table(files["confounds"]) if "confounds" in files else None,
        roi=load_nifti(files["roi"], "ROI mask", ndim=3) if "roi" in files else None,
        anat=load_nifti(files["anat"], "anatomical image", ndim=3) if "anat" in files else None,
    )


NODE = Node(
    name="import_download",
    description="Node import_download: convert one fetched subject to the canonical layout.",
    function=import_download,
    inputs={"description": "dataset.json written by the download rule"},
    outputs={"bold": "bold.nii.gz to write", "events": "events.tsv to write"},
    params={"subject": Param("1", "subject label", type=str)},
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
