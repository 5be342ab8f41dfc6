"""Node searchlight: a cross-validated accuracy map of one subject for one analysis.

Builds nilearn's spheres (radius in mm, from the affine) around every voxel
of the preprocessing mask or of the subject ROI, decodes the analysis'
labels in each (Gaussian naive Bayes by the fast exact path, other
classifiers sphere by sphere) with cross-validation by run, and writes the
accuracy map (float32), the best spheres, a summary and a figure; with
permutations (naive Bayes only), per-voxel and family-wise p-values.
"""

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from fmriflow import decoding, figures
from fmriflow import searchlight as sl
from fmriflow.errors import InputError
from fmriflow.io import save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.searchlight")


def searchlight(inputs, outputs, params, threads):
    settings = params.analysis
    data = decoding.load_subject_analysis(
        inputs.clean, inputs.events, inputs.mask, settings, roi=settings["centres"] == "roi"
    )
    y, runs, dropped, mask = data.y, data.runs, data.dropped, data.mask
    centres = unmask(data.columns, mask) if settings["centres"] == "roi" else mask
    spheres = sl.make_spheres(mask, data.affine, settings["radius"], centres)
    cv = decoding.cv_from_settings(settings)
    X = data.matrix[data.rows]
    splits = list(cv.split(X, y, runs))
    chance = float(np.mean([decoding.chance_accuracy(y[tr], y[te]) for tr, te in splits]))
    extra = {}
    if settings["permutations"]:
        if "pvalues" not in outputs:
            raise InputError(
                "searchlight outputs",
                "permutations were asked for but no pvalues output was given",
                "Give --pvalues PATH (the workflow's searchlight_permutations rule does)",
            )
        result = sl.gnb_permutation_test(
            X,
            y,
            runs,
            spheres,
            settings["permutations"],
            seed=settings["seed"],
            cv=cv,
            priors=balanced_priors(y) if settings["balance"] else None,
            alpha=settings["fwe_alpha"],
            n_jobs=threads,
        )
        save_nifti(sl.to_volume(result.p_values, spheres, fill=1.0), data.affine, outputs.pvalues)
        extra = {"p_value": result.p_values, "fwe_p_value": result.fwe_p_values}
    else:
        result = sl.searchlight_scores(
            X,
            y,
            runs,
            spheres,
            settings["classifier"],
            cv=cv,
            balance=settings["balance"],
            seed=settings["seed"],
            n_jobs=threads,
        )
    accuracy = sl.to_volume(result.scores, spheres)
    save_nifti(accuracy, data.affine, outputs.accuracy)
    write_table(sl.best_spheres(result.scores, spheres, n=20, **extra), outputs.spheres)
    summary = summarize(settings, params.subject, spheres, result, chance, len(splits), dropped)
    threshold = summary.get("fwe_threshold", chance)
    figures.plot_maps(
        nib.load(outputs.accuracy),
        figures.background_image(Path(inputs.events).parent, inputs.mean),
        [
            f"sub-{params.subject}, {settings['name']}: accuracy > "
            f"{'FWE threshold' if 'fwe_threshold' in summary else 'chance'} {threshold:.2f}"
        ],
        outputs.figure,
        symmetric=False,
        threshold=threshold,
        vmin=chance,
    )
    write_json(summary, outputs.summary)


def balanced_priors(y):
    """Uniform class priors (what ``balance: true`` means for naive Bayes)."""
    n_classes = len(np.unique(y))
    return np.full(n_classes, 1.0 / n_classes)


def summarize(settings, subject, spheres, result, chance, n_folds, dropped):
    """The numbers of a searchlight map, for ``summary.json``."""
    sizes = spheres.sizes
    summary = {
        "analysis": settings["name"],
        "subject": subject,
        "classifier": settings["classifier"],
        "radius_mm": float(settings["radius"]),
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
        "dropped_runs": dropped,
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
        "mean": "mean.nii.gz (figure background when there is no anatomy)",
        "events": "the subject's events.tsv",
    },
    outputs={
        "accuracy": "accuracy.nii.gz to write",
        "pvalues": "pvalues.nii.gz to write (analyses with permutations)",
        "spheres": "spheres.tsv to write (best spheres)",
        "summary": "summary.json to write",
        "figure": "map.png to write",
    },
    params={
        "analysis": Param(None, "the analysis' config entry (a mapping)"),
        "subject": Param("01", "subject label", type=str),
    },
    optional_outputs=("pvalues",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
