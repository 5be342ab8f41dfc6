"""Node connectome_subject: one subject's region signals and connectivity matrices.

Extracts each region's signal from the cleaned data (mean over a label, or
least-squares fit of the maps; the confounds, filtering and detrending were
applied per run by the clean step) and computes the Ledoit-Wolf covariance,
the correlation and the partial correlation, as nilearn's
ConnectivityMeasure does. Optionally also the sparse inverse covariance by
GraphicalLassoCV, as partial correlations.
"""

import logging

import numpy as np
import pandas as pd

from fmriflow import connectivity
from fmriflow.connectome_files import read_region_table
from fmriflow.errors import InputError
from fmriflow.io import load_mask, load_matrix, load_nifti, write_json, write_matrix, write_table
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.connectome_subject")


def connectome_subject(inputs, outputs, params, threads):
    signals, names = subject_signals(inputs)
    connectivity.check_signals(signals, f"region signals of sub-{params.subject}")
    write_table(pd.DataFrame(signals, columns=names), outputs.signals)
    matrices = connectivity.subject_matrices(signals)
    for measure in connectivity.SUBJECT_MEASURES:
        write_matrix(matrices[measure], names, outputs[measure])
    summary = {"subject": params.subject, "n_volumes": len(signals), "n_regions": len(names)}
    if "graphical_lasso" in outputs:
        partial, alpha = connectivity.sparse_inverse_covariance(
            signals, seed=params.analysis["seed"]
        )
        write_matrix(partial, names, outputs.graphical_lasso)
        summary |= {
            "graphical_lasso_alpha": alpha,
            "graphical_lasso_edges": int(np.count_nonzero(np.triu(partial, 1))),
        }
        logger.info("GraphicalLassoCV chose alpha %.4g", alpha)
    write_json(summary, outputs.summary)


def subject_signals(inputs):
    """The region signals of the subject, and the region names."""
    mask, mask_img = load_mask(inputs.mask, "subject mask")
    regions_img = load_nifti(inputs.regions, "connectome regions")
    if regions_img.shape[:3] != mask.shape or not np.allclose(
        regions_img.affine, mask_img.affine, atol=1e-3
    ):
        raise InputError(
            inputs.regions,
            f"regions are on a {regions_img.shape[:3]} grid, the subject's mask "
            f"({inputs.mask}) on {mask.shape}",
            "Build the regions from the same dataset (the connectome_regions rule)",
        )
    table = read_region_table(inputs.table)
    data = load_matrix(inputs.clean, "cleaned data")
    if data.shape[1] != int(mask.sum()):
        raise InputError(
            inputs.clean,
            f"has {data.shape[1]} columns but the mask {inputs.mask} has {int(mask.sum())} voxels",
            "Re-run the mask and clean steps",
        )
    values = np.asanyarray(regions_img.dataobj)[mask]
    kind = "maps" if regions_img.ndim == 4 else "labels"
    signals = connectivity.region_signals(
        np.asarray(data), kind, values, table["index"].astype(int).tolist()
    )
    return signals, table["name"].tolist()


NODE = Node(
    name="connectome_subject",
    description="Node connectome_subject: region signals and connectivity of one subject.",
    function=connectome_subject,
    inputs={
        "clean": "the subject's clean.npy",
        "mask": "the subject's mask.nii.gz",
        "regions": "regions.nii.gz of the analysis",
        "table": "regions.tsv of the analysis",
    },
    outputs={
        "signals": "signals.tsv to write (volumes x regions)",
        "covariance": "covariance.tsv to write",
        "correlation": "correlation.tsv to write",
        "partial_correlation": "partial_correlation.tsv to write",
        "graphical_lasso": "graphical_lasso.tsv to write (sparse partial correlations)",
        "summary": "summary.json to write",
    },
    params={
        "analysis": Param(
            None,
            "the connectome config entry (a mapping, see $defs/connectome)",
            schema="connectome",
        ),
        "subject": Param("01", "subject label", type=str),
    },
    optional_outputs=("graphical_lasso",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
