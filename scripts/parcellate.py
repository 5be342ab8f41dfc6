"""Node parcellate: a parcellation of a dataset into regions, with its statistics.

Builds every voxel's features from the subjects' cached PCAs, or their
cleaned data (``subject_pca: false``), by a group PCA of their time
courses, optionally smooths them, clusters the voxels (Ward with spatial
connectivity, K-means or ReNA), and reports the number of connected
regions, the parcel sizes and how much of the data's variance the parcel
means keep.
"""

import nibabel as nib
import numpy as np

from fmriflow import parcellation as parc
from fmriflow.dataset import read_description
from fmriflow.group_space import common_mask
from fmriflow.io import save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run


def parcellate(inputs, outputs, params, threads):
    settings = params.analysis
    description = read_description(inputs.description)
    common = common_mask(list(inputs.masks), names=description["subjects"])
    affine, mask = common.affine, common.mask
    # Cleaned data (subject_pca false) are centred per subject, as the subject PCA does.
    features = parc.voxel_features(
        common.select(list(inputs.data)),
        settings["n_features"],
        seed=settings["seed"],
        center=not settings["subject_pca"],
    )
    if settings["smoothing_fwhm"]:
        features = parc.smooth_features_in_place(
            features, mask, affine, settings["smoothing_fwhm"]
        )
    labels = parc.parcellate(
        features,
        mask,
        int(params.n_clusters),
        params.method,
        seed=settings["seed"],
        affine=affine,
        n_init=settings["n_init"],
    )
    # pandas and matplotlib (60 MB) are imported once the group SVD has
    # freed its memory, so that its peak does not carry them.
    import pandas as pd

    from fmriflow import figures

    summary = parc.summarize_parcellation(labels, mask, subjects=common.select(list(inputs.clean)))
    summary |= {"method": params.method, "n_clusters": int(params.n_clusters)}
    volume = unmask(labels.astype(np.int32), mask)
    save_nifti(volume, affine, outputs.labels, dtype=np.int32)
    write_table(pd.DataFrame([summary]), outputs.stats)
    write_json(summary, outputs.summary)
    background = (
        None if str(description["space"]).upper().startswith("MNI") else nib.load(inputs.mean)
    )
    figures.plot_parcels(
        nib.Nifti1Image(volume, affine),
        background,
        f"{params.method}, {params.n_clusters} clusters: {summary['n_regions']} connected "
        f"regions, R² {summary['r2']:.3f}",
        outputs.figure,
        seed=settings["seed"],
    )


NODE = Node(
    name="parcellate",
    description="Node parcellate: a parcellation of a dataset into regions, with its statistics.",
    function=parcellate,
    inputs={
        "data": "per-subject PCAs (pca_{n}.npy), or the clean.npy themselves (subject_pca false)",
        "clean": "the subjects' clean.npy (for the variance kept)",
        "masks": "the subjects' preprocessing masks (one grid; their intersection is used)",
        "mean": "the first subject's mean.nii.gz (figure background outside MNI space)",
        "description": "the dataset's dataset.json",
    },
    outputs={
        "labels": "labels.nii.gz to write",
        "stats": "stats.tsv to write",
        "summary": "summary.json to write",
        "figure": "labels.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the clustering config entry (a mapping, see $defs/clustering)",
            schema="clustering",
        ),
        "method": Param("ward", "ward, kmeans or rena", type=str),
        "n_clusters": Param(50, "number of clusters"),
    },
    lists=("data", "clean", "masks"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
