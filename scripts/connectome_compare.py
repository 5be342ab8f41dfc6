"""Node connectome_compare: an edge-wise comparison of two groups of subjects.

For each measure — the Fisher z of the correlations, the partial
correlations and the tangent-space values (around the whole group's
geometric mean, which uses no label) — a Welch t-test per edge between the
two groups of a participants column, corrected over the edges for multiple
comparisons (Benjamini–Hochberg false discovery rate, or Bonferroni
family-wise error rate, as configured). Figure: the tangent-space t of every
edge, and the significant edges on the glass brain.
"""

import logging

import numpy as np
import pandas as pd

from fmriflow import connectivity
from fmriflow import connectome_figures as cfig
from fmriflow.connectome_files import read_region_table, read_subject_matrices
from fmriflow.errors import InputError
from fmriflow.io import load_matrix, write_json, write_table
from fmriflow.node import Node, Param, run
from fmriflow.participants import check_target, read_participants

logger = logging.getLogger("fmriflow.connectome_compare")

#: What the test compares, per measure.
COMPARED = {
    "correlation": "Fisher z of the correlation",
    "partial_correlation": "partial correlation",
    "tangent": "tangent-space value",
}
CORRECTION_NAMES = {
    "fdr_bh": "Benjamini-Hochberg FDR",
    "bonferroni": "Bonferroni FWER",
}


def connectome_compare(inputs, outputs, params, threads):
    settings = params.analysis["compare"]
    table = read_region_table(inputs.table)
    names = table["name"].tolist()
    participants = read_participants(inputs.participants, params.subjects)
    groups = check_target(participants, settings["column"], inputs.participants)
    stacks = read_subject_matrices(inputs, ("correlation", "partial_correlation"), names)
    tangent = load_matrix(inputs.tangent, "tangent-space matrices")
    if tangent.shape != (len(groups), len(names), len(names)):
        raise InputError(
            inputs.tangent,
            f"has shape {tangent.shape}, not (subjects, regions, regions) = "
            f"({len(groups)}, {len(names)}, {len(names)})",
            "Re-run the connectome_group rule of this analysis",
        )
    measures = {
        "correlation": connectivity.fisher_z(stacks["correlation"]),
        "partial_correlation": stacks["partial_correlation"],
        "tangent": np.asarray(tangent, dtype=np.float64),
    }
    edges, summary = compare_measures(measures, groups, names, settings)
    write_table(edges, outputs.edges)
    write_json(summary, outputs.summary)
    plot_difference(edges, summary, table, params.analysis["name"], outputs.figure)


def compare_measures(measures, groups, names, settings):
    """The edge-wise test of every measure, as one long table and a summary."""
    frames = []
    summary = {
        "column": settings["column"],
        "correction": settings["correction"],
        "alpha": settings["alpha"],
        "measures": {},
    }
    for measure, matrices in measures.items():
        result = connectivity.compare_groups(
            matrices, groups, settings["correction"], settings["alpha"]
        )
        first, second = result["names"]
        frame = pd.DataFrame(
            {
                "measure": measure,
                "region_a": [names[i] for i in result["i"]],
                "region_b": [names[j] for j in result["j"]],
                f"mean_{first}": result["means"][0],
                f"mean_{second}": result["means"][1],
                "t": result["t"],
                "p": result["p"],
                "p_corrected": result["p_corrected"],
                "significant": result["significant"],
            }
        )
        frames.append(frame)
        n_significant = int(frame["significant"].sum())
        summary["groups"] = {str(name): int(np.sum(groups == name)) for name in result["names"]}
        summary["measures"][measure] = {
            "tested": COMPARED[measure],
            "n_edges": int(len(frame)),
            "n_significant": n_significant,
        }
        logger.info(
            "%s: %d of %d edges differ between %s and %s (%s, alpha %.3g)",
            measure,
            n_significant,
            len(frame),
            first,
            second,
            CORRECTION_NAMES[settings["correction"]],
            settings["alpha"],
        )
    return pd.concat(frames, ignore_index=True), summary


def plot_difference(edges, summary, table, name, path):
    """The tangent-space t of every edge, and its significant edges on the brain."""
    names = table["name"].tolist()
    n = len(names)
    index = {region: k for k, region in enumerate(names)}
    tangent = edges[edges["measure"] == "tangent"]
    i = tangent["region_a"].map(index).to_numpy()
    j = tangent["region_b"].map(index).to_numpy()
    t, significant = np.zeros((n, n)), np.zeros((n, n), dtype=bool)
    t[i, j] = t[j, i] = tangent["t"].to_numpy()
    significant[i, j] = significant[j, i] = tangent["significant"].to_numpy(dtype=bool)
    first, second = list(summary["groups"])
    cfig.plot_group_difference(
        t,
        significant,
        names,
        table[["x", "y", "z"]].to_numpy(dtype=float),
        f"{name}: tangent space, {second} vs {first} (Welch t per edge, "
        f"{CORRECTION_NAMES[summary['correction']]} at {summary['alpha']})",
        path,
        label=f"Welch t ({second} − {first})",
    )


NODE = Node(
    name="connectome_compare",
    description="Node connectome_compare: edge-wise comparison of two groups of subjects.",
    function=connectome_compare,
    inputs={
        "correlation": "every subject's correlation.tsv",
        "partial_correlation": "every subject's partial_correlation.tsv",
        "tangent": "tangent.npy of the group (subjects x regions x regions)",
        "table": "regions.tsv of the analysis",
        "participants": "the dataset's participants.tsv",
    },
    outputs={
        "edges": "edges.tsv to write (one row per measure and edge)",
        "summary": "comparison.json to write",
        "figure": "difference.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the connectome config entry (a mapping, see $defs/connectome)",
            schema="connectome",
        ),
        "subjects": Param(
            [], "the subjects in the order of the matrices, as YAML (quote labels: ['01', '02'])"
        ),
    },
    lists=("correlation", "partial_correlation"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
