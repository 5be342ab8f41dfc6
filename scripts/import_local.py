"""Node import_local: one subject of a lab's own BOLD image and events, in the canonical layout.

Copies the BOLD image when there is one file per subject, concatenates the
runs when the template has ``{run}``, and converts the events (per-volume or
BIDS) to one row per volume; rest data without events get one 'rest' label
per volume and one run per BOLD file. The lab's files are only read, never
linked. The ROI, anatomy and confounds are imported by ``import_local_file``.
"""

from fmriflow.dataset import rest_events, save_bold, write_events
from fmriflow.io import load_nifti
from fmriflow.local import concatenate_runs, copy_source, events_table
from fmriflow.node import Node, Param, run


def import_local(inputs, outputs, params, threads):
    if len(inputs.source_bold) == 1:
        lengths = [load_nifti(inputs.source_bold[0], "BOLD image", ndim=4).shape[3]]
        copy_source(inputs.source_bold[0], outputs.bold)
    else:
        bold, lengths = concatenate_runs(list(inputs.source_bold))
        save_bold(bold.dataobj, bold.affine, params.tr, outputs.bold)
    if "source_events" in inputs:
        events = events_table(
            list(inputs.source_events), lengths, params.tr, params.events_format, params.rest_label
        )
    else:
        runs = [run for run, n in enumerate(lengths) for _ in range(n)]
        events = rest_events(sum(lengths), runs)
    write_events(events, outputs.events)


NODE = Node(
    name="import_local",
    description="Node import_local: one subject of a lab's own data, BOLD image and events.",
    function=import_local,
    inputs={
        "source_bold": "the subject's BOLD image, or its runs in order",
        "source_events": "the subject's events table(s): one per run, or one per-volume table",
    },
    outputs={"bold": "bold.nii.gz to write", "events": "events.tsv to write"},
    params={
        "tr": Param(2.0, "repetition time in seconds (BIDS events, the header of joined runs)"),
        "events_format": Param("bids", "bids (onset, duration, trial_type) or per_volume"),
        "rest_label": Param("rest", "label of volumes no event covers", type=str),
    },
    lists=("source_bold", "source_events"),
    optional_inputs=("source_events",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
