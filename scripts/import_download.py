"""Node import_download: one fetched subject's BOLD image and events, in the canonical layout.

Checks the sha256 of the subject's downloaded files against
``dataset.json``, links the BOLD image (Miyawaki's 32 run images are
concatenated in nilearn's order), and converts the labels to ``events.tsv``:
Haxby's ``labels.txt``, Miyawaki's per-run label files (``figure``,
``random`` or ``rest`` per volume); rest data get one 'rest' label per
volume. The ROI, anatomy, confounds and stimulus table are imported by
``import_download_file``.
"""

from fmriflow.dataset import read_description, rest_events, save_image, write_events
from fmriflow.fetch import checked_download, haxby_events, link_or_copy, miyawaki_tables
from fmriflow.io import load_nifti
from fmriflow.local import concatenate_runs
from fmriflow.node import Node, Param, run


def import_download(inputs, outputs, params, threads):
    description = read_description(inputs.description)
    bold_path = checked_download(description, inputs.description, params.subject, "bold")
    if isinstance(bold_path, list):
        image, lengths = concatenate_runs(bold_path)
        save_image(image, outputs.bold)
        labels = checked_download(description, inputs.description, params.subject, "labels")
        events, _ = miyawaki_tables(labels, lengths)
        write_events(events, outputs.events)
        return
    bold = load_nifti(bold_path, "downloaded BOLD image", ndim=4)
    link_or_copy(bold_path, outputs.bold)
    if "labels" in description["files"][params.subject]:
        labels = checked_download(description, inputs.description, params.subject, "labels")
        events = haxby_events(labels)
    else:
        events = rest_events(bold.shape[3])
    write_events(events, outputs.events)


NODE = Node(
    name="import_download",
    description="Node import_download: one fetched subject's BOLD image and events.",
    function=import_download,
    inputs={"description": "dataset.json written by the download rule"},
    outputs={"bold": "bold.nii.gz to write", "events": "events.tsv to write"},
    params={"subject": Param("1", "subject label", type=str)},
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
