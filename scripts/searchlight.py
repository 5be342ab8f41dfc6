"""Node searchlight: a cross-validated accuracy map of one subject for one analysis.

Builds nilearn's spheres (radius in mm, from the affine) around every voxel
of the preprocessing mask or of the subject ROI, decodes the analysis'
labels in each with cross-validation by run (by the registry classifier's
searchlight engine: the exact naive Bayes path, or scikit-learn sphere by
sphere), and writes the accuracy map (float32), the best spheres, a summary
and a figure; with permutations, per-voxel and family-wise p-values.
"""

import logging

import nibabel as nib
import numpy as np

from fmriflow import decoding, entries, figures
from fmriflow import searchlight as sl
from fmriflow.errors import InputError
from fmriflow.io import save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.searchlight")


def searchlight(inputs, outputs, params, threads):
    analysis = params.analysis
    if bool(analysis["permutations"]) != ("pvalues" in outputs):
        raise InputError(
            "searchlight outputs",
            "an analysis with permutations writes p-values, one without does not",
            "Give --pvalues PATH exactly when permutations > 0",
        )
    data = entries.subject_analysis(inputs, analysis)
    centres = unmask(data.columns, data.mask) if "roi" in inputs else data.mask
    spheres = sl.make_spheres(data.mask, data.affine, analysis["radius"], centres)
    cv = entries.cross_validation(analysis)
    X, y, runs = data.matrix[data.rows], data.y, data.runs
    splits = list(cv.split(X, y, runs))
    chance = float(np.mean([decoding.chance_accuracy(y[tr], y[te]) for tr, te in splits]))
    result = sl.searchlight_scores(
        X,
        y,
        runs,
        spheres,
        analysis["classifier"],
        cv=cv,
        balance=analysis["balance"],
        seed=analysis["seed"],
        n_permutations=analysis["permutations"],
        alpha=analysis["fwe_alpha"],
        n_jobs=threads,
    )
    extra = {}
    if analysis["permutations"]:
        save_nifti(sl.to_volume(result.p_values, spheres, fill=1.0), data.affine, outputs.pvalues)
        extra = {"p_value": result.p_values, "fwe_p_value": result.fwe_p_values}
    save_nifti(sl.to_volume(result.scores, spheres), data.affine, outputs.accuracy)
    write_table(sl.best_spheres(result.scores, spheres, n=20, **extra), outputs.spheres)
    summary = summarize(analysis, params.subject, spheres, result, chance, len(splits))
    draw(summary, chance, params.subject, inputs, outputs)
    write_json(summary | {"dropped_runs": data.dropped}, outputs.summary)


def draw(summary, chance, subject, inputs, outputs):
    """The accuracy map above the FWE threshold, or above chance without permutations."""
    threshold = summary.get("fwe_threshold", chance)
    above = "FWE threshold" if "fwe_threshold" in summary else "chance"
    figures.plot_maps(
        nib.load(outputs.accuracy),
        nib.load(inputs.background),
        [f"sub-{subject}, {summary['analysis']}: accuracy > {above} {threshold:.2f}"],
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
        }
    return summary


NODE = Node(
    name="searchlight",
    description="Node searchlight: a cross-validated accuracy map of one subject for one "
    "analysis.",
    function=searchlight,
    inputs={
        "clean": "clean.npy (time x voxel)",
        "mask": "the preprocessing mask.nii.gz (matrix columns)",
        "events": "the subject's events.tsv",
        "roi": "the subject's roi.nii.gz (spheres centred in the ROI)",
        "background": "the figure background: anat.nii.gz, or mean.nii.gz without anatomy",
    },
    outputs={
        "accuracy": "accuracy.nii.gz to write",
        "pvalues": "pvalues.nii.gz to write (analyses with permutations)",
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
    optional_inputs=("roi",),
    optional_outputs=("pvalues",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
