"""Node provenance_table: one table of the provenance of every result.

Reads the provenance sidecar of every job of the workflow (its inputs) and
writes one row per file the jobs wrote: the node that wrote it, its sha256,
the workflow commit and the seeds used. The report shows it.
"""

import json
from pathlib import Path

import pandas as pd

from fmriflow.io import write_table
from fmriflow.node import Node, run


def provenance_table(inputs, outputs, params, threads):
    rows = []
    for sidecar in sorted(inputs.sidecars):
        record = json.loads(Path(sidecar).read_text())
        for files in record["outputs"].values():
            for path, sha256 in files.items():
                rows.append(
                    {
                        "file": path,
                        "node": record["node"],
                        "sha256": sha256,
                        "git_commit": record["workflow"]["git_commit"],
                        "git_dirty": record["workflow"]["git_dirty"],
                        "seeds": json.dumps(record["seeds"], sort_keys=True),
                        "provenance": str(sidecar),
                    }
                )
    table = pd.DataFrame(rows).drop_duplicates("file").sort_values("file")
    write_table(table, outputs.table)


NODE = Node(
    name="provenance_table",
    description="Node provenance_table: one table of the provenance of every result.",
    function=provenance_table,
    inputs={"sidecars": "the provenance sidecar of every job"},
    outputs={"table": "provenance.tsv to write"},
    lists=("sidecars",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
