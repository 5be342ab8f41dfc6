"""Node import_local_participants: a lab's BIDS participants.tsv, in the canonical layout.

Reads the table named by ``local.participants`` (tab-separated,
``participant_id`` ``sub-<label>``), checks that every subject of the
dataset has exactly one row, and writes the canonical ``participants.tsv``:
the dataset's subjects in their order, every phenotype column kept,
missing values as ``n/a``. The lab's file is only read.
"""

from fmriflow.node import Node, Param, run
from fmriflow.participants import import_participants, write_participants


def import_local_participants(inputs, outputs, params, threads):
    table = import_participants(inputs.source, params.subjects)
    write_participants(table, outputs.participants)


NODE = Node(
    name="import_local_participants",
    description="Node import_local_participants: a lab's participants.tsv, for its subjects.",
    function=import_local_participants,
    inputs={"source": "the participants table named by local.participants"},
    outputs={"participants": "participants.tsv to write"},
    params={"subjects": Param([], "the dataset's subject labels, e.g. ['01', '02']")},
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
