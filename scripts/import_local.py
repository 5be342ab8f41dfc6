"""Node import_local: bring one subject of a lab's own data into the canonical layout.

Copies the BOLD image when there is one file per subject, concatenates the
runs when the template has ``{run}``, converts events (per-volume or BIDS)
and confounds (e.g. fMRIPrep's) to one row per volume, and writes the ROI
and anatomical images. The lab's files are only read, never linked.
"""

from pathlib import Path

from fmriflow.dataset import rest_events, save_bold, write_subject
from fmriflow.errors import InputError
from fmriflow.io import load_nifti
from fmriflow.local import (
    check_source_file,
    concatenate_runs,
    confounds_table,
    copy_source,
    events_table,
    subject_files,
)
from fmriflow.node import Node, Param, run


def import_local(inputs, outputs, params, threads):
    settings = params.settings
    subject = check_subject(params.subject, settings)
    files = subject_files(settings, subject)
    for key, paths in files.items():
        for path in paths:
            check_source_file(path, key, settings[key])
    if len(files["bold"]) == 1:
        bold = load_nifti(files["bold"][0], "BOLD image", ndim=4)
        lengths = [bold.shape[3]]
        copy_source(files["bold"][0], outputs.bold)
    else:
        bold, lengths = concatenate_runs(files["bold"])
        save_bold(bold.dataobj, bold.affine, settings["tr"], outputs.bold)
    if "events" in files:
        events = events_table(
            files["events"],
            lengths,
            settings["tr"],
            settings["events_format"],
            settings["rest_label"],
        )
    else:
        runs = [run for run, n in enumerate(lengths) for _ in range(n)]
        events = rest_events(sum(lengths), runs)
    confounds = None
    if "confounds" in files:
        confounds = confounds_table(files["confounds"], lengths, settings["confound_columns"])
    one = {key: load_nifti(files[key][0], key, ndim=3) for key in ("mask", "anat") if key in files}
    return write_subject(
        Path(outputs.bold).parent.parent,
        subject,
        events,
        confounds=confounds,
        roi=one.get("mask"),
        anat=one.get("anat"),
    )


def check_subject(subject, settings):
    """The subject label as a string, checked against local.subjects."""
    subjects = [str(s) for s in settings.get("subjects") or []]
    if str(subject) not in subjects:
        raise InputError(
            f"parameter subject: {subject!r}",
            f"not one of the dataset's subjects {subjects} (local.subjects)",
            "Give one of the listed labels",
        )
    return str(subject)


NODE = Node(
    name="import_local",
    description="Node import_local: bring one subject of a lab's own data into the "
    "canonical layout.",
    function=import_local,
    inputs={"description": "dataset.json written by describe_local"},
    outputs={"bold": "bold.nii.gz to write", "events": "events.tsv to write"},
    params={
        "subject": Param("01", "subject label", type=str),
        "settings": Param(None, "the dataset's 'local' config section"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
