"""Node import_download_file: one optional file of a fetched subject, in the canonical layout.

By role: Haxby's ventral temporal mask (``mask4_vt``) becomes ``roi.nii.gz``,
its anatomical image ``anat.nii.gz``, and ADHD's nuisance regressors
``confounds.tsv`` (non-numeric and constant columns dropped). Miyawaki's
visual-cortex mask (``mask/mask.nii.gz``) becomes ``roi.nii.gz``, its
``bg.nii.gz`` ``anat.nii.gz``, and its 32 label files ``stimuli.tsv`` (the
pixels row-major, figure runs as the test split). The downloaded files'
sha256 are checked against ``dataset.json`` first.
"""

from fmriflow.dataset import read_description, save_image, save_roi
from fmriflow.errors import InputError
from fmriflow.fetch import checked_download, miyawaki_tables, read_confound_table
from fmriflow.io import load_nifti, write_table
from fmriflow.local import run_lengths
from fmriflow.node import Node, Param, run

ROLES = ("roi", "anat", "confounds", "stimuli")


def import_download_file(inputs, outputs, params, threads):
    if params.role not in ROLES:
        raise InputError(
            f"parameter role: {params.role!r}", "unknown role", f"Choose one of {ROLES}"
        )
    description = read_description(inputs.description)
    if params.role == "stimuli":
        labels = checked_download(description, inputs.description, params.subject, "labels")
        bold = checked_download(description, inputs.description, params.subject, "bold")
        _, stimuli = miyawaki_tables(labels, run_lengths(bold))
        write_table(stimuli, outputs.file)
        return
    source = checked_download(description, inputs.description, params.subject, params.role)
    if params.role == "roi":
        save_roi(load_nifti(source, "ROI mask", ndim=3), outputs.file)
    elif params.role == "anat":
        save_image(load_nifti(source, "anatomical image", ndim=3), outputs.file)
    else:
        write_table(read_confound_table(source), outputs.file)


NODE = Node(
    name="import_download_file",
    description="Node import_download_file: one optional file of a fetched subject.",
    function=import_download_file,
    inputs={"description": "dataset.json written by the download rule"},
    outputs={"file": "roi.nii.gz, anat.nii.gz, confounds.tsv or stimuli.tsv to write"},
    params={
        "subject": Param("1", "subject label", type=str),
        "role": Param("roi", f"which file, one of {ROLES}", type=str),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
