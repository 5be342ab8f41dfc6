"""Node import_local_file: one optional file of a lab's subject, in the canonical layout.

By role: the subject ROI becomes ``roi.nii.gz`` (non-zero voxels), the
anatomical image ``anat.nii.gz``, and the confound tables (one per run, or
one for all runs; e.g. fMRIPrep's ``desc-confounds_timeseries.tsv``, with
chosen columns and their leading n/a set to 0) ``confounds.tsv``, and the
stimulus tables (one per run, or one for all runs) ``stimuli.tsv``, both
checked against the number of volumes of each BOLD run.
"""

from fmriflow.dataset import save_image, save_roi
from fmriflow.errors import InputError
from fmriflow.io import load_nifti, write_table
from fmriflow.local import confounds_table, run_lengths, stimuli_table
from fmriflow.node import Node, Param, run

ROLES = ("roi", "anat", "confounds", "stimuli")


def import_local_file(inputs, outputs, params, threads):
    if params.role not in ROLES or f"source_{params.role}" not in inputs:
        raise InputError(
            f"parameter role: {params.role!r}",
            f"expected one of {ROLES}, with the input of that name",
            "Give --role and the matching --source-<role> file(s)",
        )
    if params.role == "confounds":
        lengths = run_lengths(list(inputs.source_bold))
        write_table(
            confounds_table(list(inputs.source_confounds), lengths, params.columns), outputs.file
        )
    elif params.role == "stimuli":
        lengths = run_lengths(list(inputs.source_bold))
        table = stimuli_table(list(inputs.source_stimuli), lengths, params.shape, params.runs)
        write_table(table, outputs.file)
    elif params.role == "roi":
        save_roi(load_nifti(inputs.source_roi[0], "roi", ndim=3), outputs.file)
    else:
        save_image(load_nifti(inputs.source_anat[0], "anat", ndim=3), outputs.file)


NODE = Node(
    name="import_local_file",
    description="Node import_local_file: one optional file of a lab's subject.",
    function=import_local_file,
    inputs={
        "source_roi": "the subject ROI image",
        "source_anat": "the subject's anatomical image",
        "source_confounds": "the subject's confound table(s), one per run or one for all runs",
        "source_stimuli": "the subject's stimulus table(s), one per run or one for all runs",
        "source_bold": "the subject's BOLD run(s), for their number of volumes",
    },
    outputs={"file": "roi.nii.gz, anat.nii.gz, confounds.tsv or stimuli.tsv to write"},
    params={
        "role": Param("roi", f"which file, one of {ROLES}", type=str),
        "columns": Param(None, "confound columns to keep; null keeps all"),
        "shape": Param(None, "image grid [rows, columns] of pixel features (stimuli)"),
        "runs": Param(
            None, "the configured run labels (local.runs), numbering the stimuli's runs"
        ),
    },
    lists=("source_roi", "source_anat", "source_confounds", "source_stimuli", "source_bold"),
    optional_inputs=(
        "source_roi",
        "source_anat",
        "source_confounds",
        "source_stimuli",
        "source_bold",
    ),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
