"""Node provenance_table: one table of the provenance of every result.

Gathers the provenance sidecars (``*.provenance.json``) written beside the
workflow's outputs into one row per result file: the node that wrote it,
its sha256, the workflow commit and the seeds used. The report shows it.
"""

import json
from pathlib import Path

import pandas as pd

from fmriflow.io import write_table
from fmriflow.node import Node, run


def provenance_table(inputs, outputs, params, threads):
    folders = sorted({Path(path).parent for path in inputs.results})
    rows = []
    for folder in folders:
        for sidecar in sorted(folder.glob("*.provenance.json")):
            record = json.loads(sidecar.read_text())
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
    inputs={"results": "the workflow's results (their folders hold the sidecars)"},
    outputs={"table": "provenance.tsv to write"},
    lists=("results",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
