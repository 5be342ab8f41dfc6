"""Node searchlight_group: group inference on the subjects' searchlight maps.

For a searchlight analysis with permutations on a dataset whose subjects
share a grid: the group mean accuracy, permutation-based cluster inference
(Stelzer et al. 2013: group null maps from one permutation map per subject,
a voxel-wise threshold from them, family-wise p-values from the largest
null cluster) and prevalence inference (Allefeld et al. 2016: the minimum
accuracy over subjects and the largest population prevalence it supports),
next to a one-sample t-test of accuracies against chance — which speaks of
the mean accuracy of these subjects, not of how many people in the
population have the effect. Voxels are those every subject has as centres.
"""

import logging

import nibabel as nib
import numpy as np

from fmriflow import figures, permutations
from fmriflow.errors import InputError
from fmriflow.io import load_nifti, load_volume, read_json, save_nifti, write_json, write_table
from fmriflow.node import Node, Param, run
from fmriflow.searchlight import group

logger = logging.getLogger("fmriflow.searchlight")


def searchlight_group(inputs, outputs, params, threads):
    settings = params.analysis["group"]
    subjects = params.subjects
    check_counts(inputs, subjects)
    reference = load_nifti(inputs.accuracy[0], "searchlight accuracy map", ndim=3)
    centres = np.ones(reference.shape, dtype=bool)
    for index, path in enumerate(inputs.masks):
        centres &= same_grid(load_volume(path, "mask")[0] > 0, path, reference, inputs)
        if inputs.get("rois"):
            roi_path = inputs.rois[index]
            centres &= same_grid(load_volume(roi_path, "ROI")[0] > 0, roi_path, reference, inputs)
    if not centres.any():
        raise InputError(
            inputs.masks[0],
            "the subjects' searchlight centres have no voxel in common",
            "Run the group stage on subjects in one space (simulated, or normalised to MNI)",
        )
    accuracy = np.stack(
        [subject_map(path, reference, inputs)[centres] for path in inputs.accuracy]
    )
    null = np.stack([null_maps(path, reference, inputs, centres) for path in inputs.null])
    chance = float(
        np.mean([read_json(p, "searchlight summary")["chance"] for p in inputs.summaries])
    )
    logger.info(
        "%d subjects, %d common centres, %d permutations each; %d group draws",
        len(subjects),
        int(centres.sum()),
        null.shape[1],
        settings["draws"],
    )
    clusters = group.cluster_test(
        accuracy,
        null,
        centres,
        n_draws=settings["draws"],
        voxel_p=settings["voxel_p"],
        connectivity=settings["connectivity"],
        seed=params.analysis["seed"],
    )
    prevalence = group.prevalence_test(
        accuracy,
        null,
        chance=chance,
        alpha=settings["alpha"],
        n_draws=settings["draws"],
        seed=params.analysis["seed"],
    )
    affine = reference.affine
    write_maps(clusters, prevalence, centres, affine, outputs)
    table = cluster_table(clusters, prevalence, centres, affine, settings["alpha"])
    write_table(table, outputs.clusters)
    summary = summarize(params, subjects, centres, null, clusters, prevalence, chance, table)
    write_json(summary, outputs.summary)
    draw(summary, clusters, prevalence, centres, affine, inputs, outputs)


def check_counts(inputs, subjects):
    """One accuracy map, null maps, mask and summary per subject, and at least two subjects."""
    for name in ("accuracy", "null", "masks", "summaries"):
        if len(inputs[name]) != len(subjects):
            raise InputError(
                f"searchlight group {name}",
                f"{len(inputs[name])} files for {len(subjects)} subjects",
                "Give one file per subject, in the order of --subjects",
            )
    if len(subjects) < 2:
        raise InputError(
            "searchlight group",
            f"has {len(subjects)} subject",
            "Group inference needs at least 2 subjects (prevalence bounds grow with more)",
        )


def same_grid(data, path, reference, inputs):
    """``data`` if it is on the grid of the first subject's map, else a clear error."""
    if data.shape[:3] != reference.shape[:3]:
        raise InputError(
            path,
            f"has grid {data.shape[:3]} but {inputs.accuracy[0]} has {reference.shape[:3]}",
            "The group stage needs subjects on one grid (e.g. normalised to MNI); "
            "set group: null for data in subject space",
        )
    return data


def subject_map(path, reference, inputs):
    img = load_nifti(path, "searchlight accuracy map", ndim=3)
    check_affine(img, path, reference, inputs)
    return same_grid(np.asanyarray(img.dataobj), path, reference, inputs)


def null_maps(path, reference, inputs, centres):
    """A subject's null accuracy maps over the common centres, (n_permutations, n_voxels)."""
    img = load_nifti(path, "searchlight null maps", ndim=4)
    check_affine(img, path, reference, inputs)
    data = same_grid(np.asanyarray(img.dataobj), path, reference, inputs)
    return np.ascontiguousarray(data[centres].T)


def check_affine(img, path, reference, inputs):
    if not np.allclose(img.affine, reference.affine, atol=1e-4):
        raise InputError(
            path,
            f"has another affine than {inputs.accuracy[0]}: the subjects are not on one grid",
            "The group stage needs subjects on one grid (e.g. normalised to MNI); "
            "set group: null for data in subject space",
        )


def to_volume(values, centres, fill=0.0, dtype=np.float32):
    out = np.full(centres.shape, fill, dtype=dtype)
    out[centres] = values
    return out


def write_maps(clusters, prevalence, centres, affine, outputs):
    """The group's NIfTI maps (0 outside the common centres; p-values 1)."""
    save_nifti(to_volume(clusters.mean_accuracy, centres), affine, outputs.mean_accuracy)
    labels = to_volume(clusters.cluster_labels, centres, dtype=np.int32)
    save_nifti(labels, affine, outputs.cluster_labels)
    save_nifti(to_volume(clusters.fwe_p, centres, fill=1.0), affine, outputs.cluster_fwe_p)
    save_nifti(to_volume(prevalence.gamma_corrected, centres), affine, outputs.prevalence)
    save_nifti(to_volume(prevalence.t, centres), affine, outputs.t_map)


def cluster_table(clusters, prevalence, centres, affine, alpha):
    """The cluster table: size, peak (voxel and mm), accuracy, FWE p, prevalence at the peak."""
    table = clusters.clusters.copy()
    xyz = group.peaks_mm(table, affine)
    table["x"], table["y"], table["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    table["size_mm3"] = table["size_voxels"] * float(abs(np.linalg.det(affine[:3, :3])))
    table["significant"] = table["fwe_p"] <= alpha
    # At its floor 1 / (1 + draws) a cluster's p-value is only an upper bound.
    table["fwe_p_at_floor"] = permutations.at_floor(table["fwe_p"], clusters.n_draws)
    position = np.full(centres.shape, -1)
    position[centres] = np.arange(int(centres.sum()))
    peaks = position[table["i"].to_numpy(int), table["j"].to_numpy(int), table["k"].to_numpy(int)]
    table["prevalence_at_peak"] = prevalence.gamma_corrected[peaks]
    columns = ["cluster", "size_voxels", "size_mm3", "i", "j", "k", "x", "y", "z"]
    columns += ["peak_accuracy", "fwe_p", "fwe_p_at_floor", "significant", "prevalence_at_peak"]
    return table[columns]


def summarize(params, subjects, centres, null, clusters, prevalence, chance, table):
    settings = params.analysis["group"]
    significant = table[table["significant"]]
    return {
        "analysis": params.analysis["name"],
        "subjects": list(subjects),
        "n_subjects": len(subjects),
        "n_voxels": int(centres.sum()),
        "n_permutations_per_subject": int(null.shape[1]),
        "chance": chance,
        "mean_accuracy_max": float(clusters.mean_accuracy.max()),
        "cluster_inference": {
            "method": "Stelzer et al. 2013: group null maps from one permutation map per "
            "subject; voxel-wise threshold; largest null cluster per draw",
            "n_draws": int(clusters.n_draws),
            "voxel_p": float(clusters.voxel_p),
            "connectivity": int(clusters.connectivity),
            "voxel_threshold_min": float(clusters.voxel_thresholds.min()),
            "voxel_threshold_max": float(clusters.voxel_thresholds.max()),
            "n_clusters": int(len(table)),
            "n_significant_clusters": int(len(significant)),
            "fwe_alpha": float(settings["alpha"]),
            "fwe_p_floor": permutations.p_value_floor(clusters.n_draws),
            "significant_voxels": int(significant["size_voxels"].sum()),
        },
        "prevalence_inference": {
            "method": "Allefeld et al. 2016: minimum accuracy over subjects, spatially "
            "corrected with the maximum over voxels",
            "alpha": float(prevalence.alpha),
            "gamma_max": float(prevalence.gamma_max),
            "gamma_corrected_max": float(prevalence.gamma_corrected.max()),
            "n_voxels_global_null_rejected": int(prevalence.reject_corrected.sum()),
            "n_voxels_majority": int(np.sum(prevalence.gamma_corrected > 0.5)),
        },
        "t_test": {
            "what": "one-sided one-sample t-test of the accuracies against chance, per voxel, "
            "uncorrected: the mean of these subjects, not a population prevalence",
            "n_voxels_p_below_0.001": int(np.sum(prevalence.t_p < 0.001)),
        },
    }


def draw(summary, clusters, prevalence, centres, affine, inputs, outputs):
    """Group mean accuracy in the significant clusters, and the prevalence bound map."""
    backgrounds = [load_volume(path, "figure background")[0] for path in inputs.backgrounds]
    background = nib.Nifti1Image(np.mean(backgrounds, axis=0).astype(np.float32), affine)
    cluster = summary["cluster_inference"]
    alpha = cluster["fwe_alpha"]
    shown = np.where(clusters.fwe_p <= alpha, clusters.mean_accuracy, 0.0)
    title = (
        f"{summary['analysis']}, {summary['n_subjects']} subjects: group mean accuracy in "
        f"clusters with FWE p <= {alpha:g} (voxel p < {cluster['voxel_p']:g}, "
        f"{cluster['n_draws']} draws; chance {summary['chance']:.3g}; "
        f"{cluster['n_significant_clusters']} significant "
        f"cluster{'' if cluster['n_significant_clusters'] == 1 else 's'})"
    )
    figures.plot_maps(
        nib.Nifti1Image(to_volume(shown, centres), affine),
        background,
        [title],
        outputs.cluster_figure,
        symmetric=False,
        threshold=summary["chance"],
        vmin=summary["chance"],
        colorbar_label="group mean accuracy",
    )
    prevalence_info = summary["prevalence_inference"]
    title = (
        f"{summary['analysis']}: prevalence lower bound gamma0 (alpha {prevalence.alpha:g}, "
        f"corrected over voxels; at most {prevalence_info['gamma_max']:.2f} with "
        f"{summary['n_subjects']} subjects)"
    )
    figures.plot_maps(
        nib.Nifti1Image(to_volume(prevalence.gamma_corrected, centres), affine),
        background,
        [title],
        outputs.prevalence_figure,
        symmetric=False,
        threshold=1e-6,
        vmin=0.0,
        colorbar_label="prevalence bound γ0",
    )


NODE = Node(
    name="searchlight_group",
    description="Node searchlight_group: group inference on the subjects' searchlight maps.",
    function=searchlight_group,
    inputs={
        "accuracy": "every subject's accuracy.nii.gz",
        "null": "every subject's null.nii.gz (one volume per permutation)",
        "summaries": "every subject's searchlight summary.json (chance)",
        "masks": "every subject's preprocessing mask.nii.gz",
        "rois": "every subject's roi.nii.gz (analyses centred in the ROI)",
        "backgrounds": "every subject's anat.nii.gz or mean.nii.gz (figure background)",
    },
    outputs={
        "mean_accuracy": "mean_accuracy.nii.gz to write",
        "cluster_labels": "clusters.nii.gz to write (cluster numbers)",
        "cluster_fwe_p": "cluster_fwe_p.nii.gz to write (each voxel's cluster FWE p)",
        "prevalence": "prevalence.nii.gz to write (prevalence bound gamma0, corrected)",
        "t_map": "t.nii.gz to write (t statistic against chance)",
        "clusters": "clusters.tsv to write",
        "summary": "summary.json to write",
        "cluster_figure": "clusters.png to write",
        "prevalence_figure": "prevalence.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the analysis' config entry (a mapping, see $defs/searchlight)",
            schema="searchlight",
        ),
        "subjects": Param(None, "the subjects' labels, in the order of the inputs", type=list),
    },
    lists=("accuracy", "null", "summaries", "masks", "rois", "backgrounds"),
    optional_inputs=("rois",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
