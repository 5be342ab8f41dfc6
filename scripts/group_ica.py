"""Node group_ica: group ICA or dictionary learning of a dataset, with stability.

Checks that every subject is on the same grid, keeps the voxels common to
all subjects' masks (logging any subject that loses some), decomposes the
subjects' per-subject PCAs (CanICA, dictionary learning) or their cleaned
data (concatenation ICA) once per seed — the group PCA streamed from the
files, or by MIGP for hundreds of subjects (``group_pca: migp``) —, reports
the first seed's maps with each component's stability across the other
seeds (each a bootstrap sample of the subjects, or with ``stability:
seeds`` the same subjects), matches them to the planted networks when they are given (simulated
data), and draws them.
"""

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from fmriflow import decomposition as dec
from fmriflow import figures
from fmriflow.dataset import read_description
from fmriflow.group_space import common_mask
from fmriflow.io import load_matrix, load_nifti, save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.group_ica")


def group_ica(inputs, outputs, params, threads):
    settings = params.analysis
    description = read_description(inputs.description)
    subjects = description["subjects"]
    common = common_mask(list(inputs.masks), names=subjects)
    affine, mask = common.affine, common.mask
    method = settings["method"]
    n_components = settings["n_components"]
    n_volumes = [load_matrix(path).shape[0] for path in inputs.clean]
    dec.check_dimensions(
        n_volumes,
        n_components,
        dec.subject_components(n_components, settings["n_subject_components"]),
        model="concat" if method == "concat" else "canica",
        names=subjects,
    )
    result = decompose(common.select(list(inputs.data)), settings)
    maps = result.reference if hasattr(result, "reference") else result
    reproducibility = getattr(result, "reproducibility", None)
    names, correlations, recovery = match_truth(maps, mask, inputs.get("networks"), description)
    table = dec.component_table(maps, mask, affine, reproducibility, names=names)
    if correlations is not None:
        table["truth_correlation"] = correlations
    components = unmask(maps.maps, mask)
    save_nifti(components, affine, outputs.components, dtype=np.float32)
    write_table(table, outputs.table)
    write_table(stability_table(result, n_components, settings["stability"]), outputs.stability)
    write_json(
        {
            "name": settings["name"],
            "method": method,
            "n_components": n_components,
            "n_subjects": len(subjects),
            "seeds": settings["seeds"],
            "converged": bool(maps.converged),
            "explained_variance_total": float(np.sum(maps.explained_variance)),
            "stability_mean": None if reproducibility is None else float(np.mean(reproducibility)),
            "recovery_mean_correlation": recovery,
        },
        outputs.summary,
    )
    heading = f"{METHOD_NAMES[method]}, {n_components} components"
    draw(components, affine, table, inputs.mean, description["space"], outputs, heading)


def decompose(data, settings):
    """The decomposition with the first seed, repeated with the others for stability."""
    options = {
        "threshold": settings["threshold"],
        "solver": settings["group_pca"],
        "migp_rows": settings["migp_rows"],
    }
    if settings["method"] == "dict_learning":
        options["alpha"] = settings["alpha"]
        function, method = dec.dict_learning, "dict_learning"
    else:
        options |= {"model": settings["method"], "n_init": settings["n_init"]}
        function, method = dec.group_ica, "ica"
    seeds = settings["seeds"]
    if len(seeds) == 1:
        return function(data, settings["n_components"], seed=seeds[0], **options)
    resample = settings["stability"] == "subjects"
    return dec.stability(
        data, settings["n_components"], seeds, method=method, resample_subjects=resample, **options
    )


def match_truth(maps, mask, networks_path, description):
    """Names and correlations of the planted networks matched to the components."""
    if networks_path is None:
        return None, None, None
    truth = description["ground_truth"]
    image = load_nifti(networks_path, "planted networks", ndim=4)
    networks = np.asarray(image.dataobj)[mask].T
    matching = dec.match_components(maps.raw_maps, networks)
    names = [""] * maps.maps.shape[0]
    correlations = np.full(maps.maps.shape[0], np.nan)
    for (component, network), r in zip(matching.pairs, matching.correlations, strict=True):
        names[component] = truth["names"][network]
        correlations[component] = r
    logger.info("recovery of the planted networks: mean correlation %.3f", matching.mean)
    return names, correlations, float(matching.mean)


def stability_table(result, n_components, repeated):
    """Per component: mean reproducibility and the best-match correlation with each repetition.

    The repetitions' columns are ``bootstrap_{seed}`` (``repeated="subjects"``)
    or ``seed_{seed}`` (``repeated="seeds"``).
    """
    table = pd.DataFrame({"component": np.arange(n_components)})
    if hasattr(result, "reproducibility"):
        table["reproducibility"] = result.reproducibility
        prefix = "bootstrap" if repeated == "subjects" else "seed"
        for seed, row in zip(result.seeds[1:], result.per_run, strict=True):
            table[f"{prefix}_{seed}"] = row
    return table


#: How the decomposition methods are named in figure titles.
METHOD_NAMES = {
    "canica": "CanICA",
    "concat": "concatenation ICA",
    "dict_learning": "dictionary learning",
}


def draw(components, affine, table, mean_path, space, outputs, heading):
    """The overlay of all components and one figure per component."""
    image = nib.Nifti1Image(components, affine)
    background = None if str(space).upper().startswith("MNI") else nib.load(mean_path)
    figures.plot_overlay(
        image, background, outputs.overlay, f"{heading}: each component in its own colour"
    )
    folder = Path(outputs.maps)
    folder.mkdir(parents=True, exist_ok=True)
    for row in table.itertuples():
        title = f"{heading}, #{row.component}: {100 * row.explained_variance:.1f}% of the variance"
        if "reproducibility" in table.columns:
            title += f", stability {row.reproducibility:.2f}"
        if "name" in table.columns and row.name:
            title += f", {row.name} r={row.truth_correlation:.2f}"
        volume = nib.Nifti1Image(components[..., row.component], affine)
        # Zero (thresholded away) voxels are left transparent over the anatomy.
        figures.plot_maps(
            volume,
            background,
            [title],
            folder / f"component_{row.component:02d}.png",
            threshold=1e-6,
            colorbar_label="component weight (arbitrary units)",
        )


NODE = Node(
    name="group_ica",
    description="Node group_ica: group ICA or dictionary learning of a dataset, with stability.",
    function=group_ica,
    inputs={
        "data": "per-subject PCAs (pca_{n}.npy), or clean.npy for concatenation ICA",
        "clean": "the subjects' clean.npy (their number of volumes is checked)",
        "masks": "the subjects' preprocessing masks (one grid; their intersection is used)",
        "mean": "the first subject's mean.nii.gz (figure background outside MNI space)",
        "description": "the dataset's dataset.json",
        "networks": "the planted networks.nii.gz (simulated data: ground truth)",
    },
    outputs={
        "components": "components.nii.gz to write",
        "table": "components.tsv to write",
        "stability": "stability.tsv to write",
        "summary": "summary.json to write",
        "overlay": "components.png to write",
        "maps": "folder of one figure per component to write",
    },
    params={
        "analysis": Param(None, "the ica config entry (a mapping, see $defs/ica)", schema="ica")
    },
    lists=("data", "clean", "masks"),
    optional_inputs=("networks",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
