"""Node connectome_sparse: sparse inverse covariances, per subject and as a group.

The mean of the subjects' graphical-lasso partial correlations (each
subject's penalty chosen by its own cross-validation, GraphicalLassoCV), and
the group-sparse model (GroupSparseCovarianceCV, Varoquaux et al. 2010):
one precision matrix per subject with a sparsity pattern shared by all,
its penalty chosen by cross-validation. The group model needs the subjects'
region signals, which are small (volumes x regions). Figure: both mean
matrices side by side, with the number of edges each keeps.
"""

import logging

import numpy as np

from fmriflow import connectivity
from fmriflow import connectome_figures as cfig
from fmriflow.connectome_files import (
    read_region_table,
    read_subject_matrices,
    read_subject_signals,
)
from fmriflow.io import save_npy, write_json, write_matrix
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.connectome_sparse")


def connectome_sparse(inputs, outputs, params, threads):
    names = read_region_table(inputs.table)["name"].tolist()
    lasso = read_subject_matrices(inputs, ("graphical_lasso",), names)["graphical_lasso"]
    signals = read_subject_signals(inputs.signals, names)
    for path, subject_signals in zip(inputs.signals, signals, strict=True):
        connectivity.check_signals(subject_signals, path)
    group_sparse, alpha = connectivity.group_sparse_partial_correlations(signals)
    logger.info("GroupSparseCovarianceCV chose alpha %.4g", alpha)
    mean_lasso, mean_group = lasso.mean(axis=0), group_sparse.mean(axis=0)
    write_matrix(mean_lasso, names, outputs.mean_graphical_lasso)
    save_npy(group_sparse, outputs.group_sparse)
    write_matrix(mean_group, names, outputs.mean_group_sparse)
    n_possible = len(names) * (len(names) - 1) // 2
    upper = np.triu_indices(len(names), k=1)
    shared = int(np.count_nonzero(np.abs(group_sparse[:, upper[0], upper[1]]).max(axis=0)))
    per_subject = [int(np.count_nonzero(m[upper])) for m in lasso]
    write_json(
        {
            "n_subjects": len(signals),
            "n_regions": len(names),
            "n_possible_edges": n_possible,
            "group_sparse_alpha": alpha,
            "group_sparse_edges": shared,
            "graphical_lasso_edges_per_subject": per_subject,
        },
        outputs.summary,
    )
    cfig.plot_matrices(
        [
            (
                "mean graphical-lasso partial correlation "
                f"(median {int(np.median(per_subject))} of {n_possible} edges per subject)",
                mean_lasso,
                "partial correlation",
            ),
            (
                f"mean group-sparse partial correlation ({shared} edges shared by all, "
                f"alpha {alpha:.3g})",
                mean_group,
                "partial correlation",
            ),
        ],
        names,
        f"{params.analysis['name']}: sparse inverse covariance, {len(signals)} subjects",
        outputs.figure,
    )


NODE = Node(
    name="connectome_sparse",
    description="Node connectome_sparse: graphical lasso means and the group-sparse model.",
    function=connectome_sparse,
    inputs={
        "signals": "every subject's signals.tsv",
        "graphical_lasso": "every subject's graphical_lasso.tsv",
        "table": "regions.tsv of the analysis",
    },
    outputs={
        "mean_graphical_lasso": "mean_graphical_lasso.tsv to write",
        "group_sparse": "group_sparse.npy to write (subjects x regions x regions)",
        "mean_group_sparse": "mean_group_sparse.tsv to write",
        "summary": "sparse.json to write",
        "figure": "sparse.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the connectome config entry (a mapping, see $defs/connectome)",
            schema="connectome",
        )
    },
    lists=("signals", "graphical_lasso"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
