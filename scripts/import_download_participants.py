"""Node import_download_participants: a fetched dataset's phenotypes as participants.tsv.

Checks the sha256 of the phenotypic table the download recorded in
``dataset.json`` (ADHD-200's
``ADHD200_40subs_motion_parameters_and_phenotypics.csv``) and converts it
to the canonical ``participants.tsv``: ``participant_id`` ``sub-<ID>`` with
the IDs spelled as the subject folders are (``sub-0010042``), every other
column kept, one row per subject of the dataset, in its order.
"""

from fmriflow.dataset import read_description
from fmriflow.fetch import checked_dataset_file
from fmriflow.node import Node, run
from fmriflow.participants import adhd_participants, write_participants


def import_download_participants(inputs, outputs, params, threads):
    description = read_description(inputs.description)
    phenotypic = checked_dataset_file(description, inputs.description, "phenotypic")
    table = adhd_participants(phenotypic, description["subjects"])
    write_participants(table, outputs.participants)


NODE = Node(
    name="import_download_participants",
    description="Node import_download_participants: a fetched dataset's phenotypes.",
    function=import_download_participants,
    inputs={"description": "dataset.json written by the download rule"},
    outputs={"participants": "participants.tsv to write"},
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
