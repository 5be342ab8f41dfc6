"""Node connectome_group: a group's connectomes, from the subjects' matrices only.

The mean correlation and partial correlation over subjects, and the tangent
space of the group (Varoquaux et al. 2010): each subject's covariance
whitened by the group's geometric mean and mapped through the matrix
logarithm — descriptive here, and the input of group comparisons (the
prediction refits the reference mean on each fold's training subjects).
Figures: the mean matrices with region names (the tangent matrices average
to zero around the geometric mean by construction, so the reference itself
is shown), and the mean connectome on the glass brain at the regions'
centres.
"""

import numpy as np

from fmriflow import connectivity
from fmriflow import connectome_figures as cfig
from fmriflow.connectome_files import read_region_table, read_subject_matrices
from fmriflow.io import save_npy, write_json, write_matrix
from fmriflow.node import Node, Param, run


def connectome_group(inputs, outputs, params, threads):
    table = read_region_table(inputs.table)
    names = table["name"].tolist()
    stacks = read_subject_matrices(inputs, connectivity.SUBJECT_MEASURES, names)
    tangent, reference = connectivity.tangent_matrices(stacks["covariance"])
    save_npy(tangent, outputs.tangent)
    write_matrix(reference, names, outputs.geometric_mean)
    means = {m: stacks[m].mean(axis=0) for m in ("correlation", "partial_correlation")}
    for measure, matrix in means.items():
        write_matrix(matrix, names, outputs[f"mean_{measure}"])
    n_subjects = len(inputs.correlation)
    title = f"{params.analysis['name']}: {len(names)} regions, {n_subjects} subjects"
    cfig.plot_matrices(
        [
            ("mean correlation", means["correlation"], "correlation"),
            ("mean partial correlation", means["partial_correlation"], "partial correlation"),
            (
                "geometric mean covariance (the tangent space's reference), as correlation",
                connectivity.covariance_to_correlation(reference),
                "correlation",
            ),
        ],
        names,
        title,
        outputs.matrices,
    )
    cfig.plot_connectome_glass(
        means["partial_correlation"],
        table[["x", "y", "z"]].to_numpy(dtype=float),
        f"{title}: mean partial correlation, strongest 10% of edges",
        outputs.connectome,
        label="partial correlation",
    )
    off_diagonal = ~np.eye(len(names), dtype=bool)
    write_json(
        {
            "n_subjects": n_subjects,
            "n_regions": len(names),
            "mean_abs_correlation": float(np.abs(means["correlation"][off_diagonal]).mean()),
            "mean_abs_partial_correlation": float(
                np.abs(means["partial_correlation"][off_diagonal]).mean()
            ),
        },
        outputs.summary,
    )


NODE = Node(
    name="connectome_group",
    description="Node connectome_group: mean connectomes and the tangent space of a group.",
    function=connectome_group,
    inputs={
        "covariance": "every subject's covariance.tsv",
        "correlation": "every subject's correlation.tsv",
        "partial_correlation": "every subject's partial_correlation.tsv",
        "table": "regions.tsv of the analysis",
    },
    outputs={
        "mean_correlation": "mean_correlation.tsv to write",
        "mean_partial_correlation": "mean_partial_correlation.tsv to write",
        "geometric_mean": "geometric_mean.tsv to write (the tangent space's reference)",
        "tangent": "tangent.npy to write (subjects x regions x regions)",
        "summary": "summary.json to write",
        "matrices": "matrices.png to write",
        "connectome": "connectome.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the connectome config entry (a mapping, see $defs/connectome)",
            schema="connectome",
        ),
    },
    lists=("covariance", "correlation", "partial_correlation"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
