"""Node searchlight: a cross-validated accuracy map of one subject for one analysis.

Gathers the parts (node ``searchlight_part``: nilearn's spheres around
every voxel of the preprocessing mask or of the subject ROI, the analysis'
labels decoded in each with cross-validation by run by the registry
classifier's searchlight engine) into the accuracy map (float32), the best
spheres, a summary and a figure; with permutations, per-voxel and
family-wise p-values and the null accuracy maps (one volume per
permutation, for the group stage).
"""

import logging

import nibabel as nib
import numpy as np

from fmriflow import entries, figures, permutations
from fmriflow import searchlight as sl
from fmriflow.errors import InputError
from fmriflow.io import save_nifti, write_json, write_table
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.searchlight")


def searchlight(inputs, outputs, params, threads):
    analysis = params.analysis
    if bool(analysis["permutations"]) != ("pvalues" in outputs) or ("pvalues" in outputs) != (
        "null" in outputs
    ):
        raise InputError(
            "searchlight outputs",
            "an analysis with permutations writes p-values, one without does not",
            "Give --pvalues PATH and --null PATH exactly when permutations > 0",
        )
    data = entries.subject_analysis(inputs, analysis)
    spheres = entries.searchlight_spheres(data, analysis, "roi" in inputs)
    y, runs = data.y, data.runs
    n_parts = sl.read_plan(inputs.plan) if "plan" in inputs else analysis["chunks"]
    if len(inputs.parts) != n_parts:
        split = f"a plan of {n_parts} parts" if "plan" in inputs else f"chunks: {n_parts}"
        raise InputError(
            "searchlight parts",
            f"{len(inputs.parts)} given for an analysis with {split}",
            "Give every part-<i>.npz of the analysis, in order",
        )
    # The parts' cross-validation: the gathering job imports no splitter.
    chance, n_folds = sl.part_design(inputs.parts)
    result = sl.gather_parts(inputs.parts, analysis["fwe_alpha"])
    if result.scores.shape != (spheres.n_centres,):
        raise InputError(
            str(inputs.parts[0]),
            f"holds {len(result.scores)} centres but the analysis has {spheres.n_centres}",
            "Re-run the searchlight parts of this analysis",
        )
    extra = {}
    if analysis["permutations"]:
        save_nifti(sl.to_volume(result.p_values, spheres, fill=1.0), data.affine, outputs.pvalues)
        null = np.zeros(spheres.mask.shape + (result.null.shape[0],), dtype=np.float32)
        null[spheres.centre_mask] = result.null.T
        save_nifti(null, data.affine, outputs.null)
        n_permutations = result.null.shape[0]
        extra = {
            "p_value": result.p_values,
            # At the floor 1 / (1 + n) the p-value is only an upper bound.
            "p_value_at_floor": permutations.at_floor(result.p_values, n_permutations),
            "fwe_p_value": result.fwe_p_values,
        }
    save_nifti(sl.to_volume(result.scores, spheres), data.affine, outputs.accuracy)
    write_table(sl.best_spheres(result.scores, spheres, n=20, **extra), outputs.spheres)
    summary = summarize(analysis, params.subject, spheres, result, chance, n_folds)
    if analysis["permutations"]:
        blocks = entries.permutation_blocks(data, analysis)
        summary |= {"permutation": permutations.describe(y, runs, blocks)}
    draw(summary, chance, params.subject, inputs, outputs)
    write_json(summary | {"dropped_runs": data.dropped}, outputs.summary)


def draw(summary, chance, subject, inputs, outputs):
    """The accuracy map above the FWE threshold, or, untested, above chance."""
    if "fwe_threshold" in summary:
        threshold = summary["fwe_threshold"]
        title = (
            f"sub-{subject}, {summary['analysis']}: accuracy > FWE threshold {threshold:.2f} "
            f"(p < {summary['fwe_alpha']:g}, {summary['n_permutations']} permutations; "
            f"chance {chance:.3g})"
        )
    else:
        threshold = chance
        title = (
            f"sub-{subject}, {summary['analysis']}: accuracy above chance {chance:.3g} — "
            "not tested (no permutations)"
        )
    figures.plot_maps(
        nib.load(outputs.accuracy),
        nib.load(inputs.background),
        [title],
        outputs.figure,
        symmetric=False,
        threshold=threshold,
        vmin=chance,
    )


def summarize(analysis, subject, spheres, result, chance, n_folds):
    """The numbers of a searchlight map, for ``summary.json``."""
    sizes = spheres.sizes
    summary = {
        "analysis": analysis["name"],
        "subject": subject,
        "classifier": analysis["classifier"],
        "radius_mm": float(analysis["radius"]),
        "n_centres": int(spheres.n_centres),
        "sphere_size": {
            "min": int(sizes.min()),
            "median": float(np.median(sizes)),
            "max": int(sizes.max()),
        },
        "accuracy_max": float(result.scores.max()),
        "accuracy_mean": float(result.scores.mean()),
        "chance": chance,
        "n_folds": int(n_folds),
        "n_rechecked_by_sklearn": int(result.n_rechecked),
    }
    if hasattr(result, "p_values"):
        summary |= {
            "n_permutations": int(result.null.shape[0]),
            "fwe_alpha": float(result.alpha),
            "fwe_threshold": float(result.fwe_threshold),
            "n_centres_above_fwe_threshold": int(np.sum(result.scores > result.fwe_threshold)),
            "n_centres_p_below_0.05": int(np.sum(result.p_values < 0.05)),
            "p_value_floor": permutations.p_value_floor(result.null.shape[0]),
            "n_centres_p_at_floor": int(
                np.sum(permutations.at_floor(result.p_values, result.null.shape[0]))
            ),
        }
    return summary


NODE = Node(
    name="searchlight",
    description="Node searchlight: a cross-validated accuracy map of one subject for one "
    "analysis.",
    function=searchlight,
    inputs={
        "parts": "the analysis' part-<i>.npz files, in order (node searchlight_part)",
        **entries.SEARCHLIGHT_DATA_INPUTS,
        "background": "the figure background: anat.nii.gz, or mean.nii.gz without anatomy",
        **entries.SEARCHLIGHT_PLAN_INPUT,
    },
    outputs={
        "accuracy": "accuracy.nii.gz to write",
        "pvalues": "pvalues.nii.gz to write (analyses with permutations)",
        "null": "null.nii.gz to write: the null accuracy maps, one volume per permutation "
        "(analyses with permutations)",
        "spheres": "spheres.tsv to write (best spheres)",
        "summary": "summary.json to write",
        "figure": "map.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the analysis' config entry (a mapping, see $defs/searchlight)",
            schema="searchlight",
        ),
        "subject": Param("01", "subject label", type=str),
    },
    lists=("parts",),
    optional_inputs=("roi", "plan"),
    optional_outputs=("pvalues", "null"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
