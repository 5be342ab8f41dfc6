"""Node import_local: one subject of a lab's own BOLD image and events, in the canonical layout.

Links to the BOLD image when there is one compressed file per subject
(``link_bold``; copies it when the file is uncompressed, compressing it,
or with ``link_bold: false``), concatenates the
runs when the template has ``{run}``, and converts the events (per-volume or
BIDS) to one row per volume; rest data without events get one 'rest' label
per volume and one run per BOLD file. Runs are numbered by the lab's own
run labels (``local.runs``) when they are whole numbers, else 1, 2, ….
Where every subject of the dataset has confound tables, they are imported
by the same job (``confounds.tsv``, as ``import_local_file`` writes it: the
BOLD runs are already open, and a job of its own would mostly start
Python). The lab's files are only read. The ROI, anatomy, stimuli and the
confounds of datasets where only some subjects have them are imported by
``import_local_file``.
"""

import logging

import numpy as np

from fmriflow.dataset import rest_events, save_bold, write_events
from fmriflow.errors import InputError
from fmriflow.io import check_complete, load_nifti, write_table
from fmriflow.local import (
    TR_TOLERANCE,
    concatenate_runs,
    confounds_table,
    copy_source,
    events_table,
    header_tr,
    is_gzipped,
    link_source,
    run_numbers,
)
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.import_local")


def import_local(inputs, outputs, params, threads):
    if ("source_confounds" in inputs) != ("confounds" in outputs):
        raise InputError(
            "inputs source_confounds and output confounds",
            "one is given without the other",
            "Give both (to import the confound tables with the image) or neither",
        )
    if len(inputs.source_bold) == 1:
        source = load_nifti(inputs.source_bold[0], "BOLD image", ndim=4)
        check_complete(inputs.source_bold[0], "BOLD image")
        lengths = [source.shape[3]]
        recorded = header_tr(inputs.source_bold[0])
        if recorded is None or abs(recorded - params.tr) <= TR_TOLERANCE * params.tr:
            if params.link_bold and is_gzipped(inputs.source_bold[0]):
                link_source(inputs.source_bold[0], outputs.bold)
            else:
                copy_source(inputs.source_bold[0], outputs.bold)
        else:
            # The config overrides the header (checked before any job): record its TR.
            logger.warning(
                "%s records a TR of %g s; the imported image records the config's %g s",
                inputs.source_bold[0],
                recorded,
                params.tr,
            )
            save_bold(source.dataobj, source.affine, params.tr, outputs.bold)
    else:
        bold, lengths = concatenate_runs(list(inputs.source_bold))
        save_bold(bold.dataobj, bold.affine, params.tr, outputs.bold)
    if "source_events" in inputs:
        events = events_table(
            list(inputs.source_events),
            lengths,
            params.tr,
            params.events_format,
            params.rest_label,
            params.runs,
        )
    else:
        events = rest_events(
            sum(lengths), np.repeat(run_numbers(params.runs, len(lengths)), lengths)
        )
    write_events(events, outputs.events)
    if "source_confounds" in inputs:
        table = confounds_table(list(inputs.source_confounds), lengths, params.columns)
        write_table(table, outputs.confounds)


NODE = Node(
    name="import_local",
    description="Node import_local: one subject of a lab's own data, BOLD image and events.",
    function=import_local,
    inputs={
        "source_bold": "the subject's BOLD image, or its runs in order",
        "source_events": "the subject's events table(s): one per run, or one per-volume table",
        "source_confounds": "the subject's confound table(s), one per run or one for all runs",
    },
    outputs={
        "bold": "bold.nii.gz to write",
        "events": "events.tsv to write",
        "confounds": "confounds.tsv to write (with source_confounds)",
    },
    params={
        "tr": Param(2.0, "repetition time in seconds (BIDS events, the header of joined runs)"),
        "link_bold": Param(
            True, "link to a single compressed BOLD file instead of copying it (link_bold)"
        ),
        "events_format": Param("bids", "bids (onset, duration, trial_type) or per_volume"),
        "runs": Param(
            None,
            "the configured run labels (local.runs); events.tsv numbers runs by them when "
            "they are whole numbers, else 1, 2, …",
        ),
        "rest_label": Param("rest", "label of volumes no event covers", type=str),
        "columns": Param(None, "confound columns to keep; null keeps all"),
    },
    lists=("source_bold", "source_events", "source_confounds"),
    optional_inputs=("source_events", "source_confounds"),
    optional_outputs=("confounds",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
