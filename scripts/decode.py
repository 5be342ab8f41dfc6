"""Node decode: cross-validated decoding of one subject for one analysis.

Selects the analysis' volumes and voxels (the subject ROI, or every voxel
of the preprocessing mask), cross-validates the registry classifier by run
(with a nested search and a within-run permutation test when asked), and
writes the fold table, the predictions, the confusion matrix, a summary
with chance levels, and weight maps from a model refitted on all data, for
display only.
"""

import logging

import nibabel as nib
import numpy as np
import pandas as pd

from fmriflow import classifiers, decoding, entries, figures
from fmriflow.io import save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run
from fmriflow.permutations import describe, format_p

logger = logging.getLogger("fmriflow.decode")


def decode(inputs, outputs, params, threads):
    analysis = params.analysis
    data = entries.subject_analysis(inputs, analysis)
    X = np.asarray(data.matrix[data.rows][:, data.columns], dtype=np.float64)
    classes = np.unique(data.y)
    pipeline = classifiers.make_classifier(
        analysis["classifier"],
        seed=analysis["seed"],
        balance=analysis["balance"],
        n_classes=len(classes),
        n_features=X.shape[1],
        selection_method=analysis["feature_selection"]["method"],
        selection_value=analysis["feature_selection"]["value"],
    )
    folds, predictions, permutation = cross_validate(X, data, pipeline, analysis, threads)
    predictions["sample"] = data.rows[predictions["sample"].to_numpy()]
    predictions = predictions.rename(columns={"sample": "volume"})
    summary = decoding.summarize(folds, classes, permutation) | {
        "analysis": analysis["name"],
        "subject": params.subject,
        "classifier": analysis["classifier"],
        "voxels": analysis["voxels"],
        "n_voxels": int(data.columns.sum()),
        "dropped_runs": data.dropped,
    }
    confusion = confusion_table(predictions, classes)
    write_table(folds, outputs.folds)
    write_table(predictions, outputs.predictions)
    write_table(confusion.reset_index(names="true"), outputs.confusion)
    title = f"{analysis['name']}, sub-{params.subject}"
    figures.plot_confusion(confusion.to_numpy(), list(classes), outputs.confusion_png, title)
    write_weights(pipeline, X, data, analysis["classifier"], params.subject, inputs, outputs)
    write_json(summary, outputs.summary)
    logger.info(
        "accuracy %.3f (chance %.3f) over %d folds%s",
        summary["accuracy_mean"],
        summary["chance"],
        summary["n_folds"],
        permutation_text(summary.get("permutation")),
    )


def permutation_text(permutation):
    """', permutation p <= 0.0099 (100 block permutations)' for the log; '' without."""
    if permutation is None:
        return ""
    n = permutation["n_permutations"]
    return (
        f", permutation p {'' if permutation['p_value_at_floor'] else '= '}"
        f"{format_p(permutation['p_value'], n)} ({n} {permutation.get('permute', 'volume')} "
        "permutations)"
    )


def cross_validate(X, data, pipeline, analysis, threads):
    """Fold scores, predictions and (if asked for) the permutation test of one analysis."""
    cv = entries.cross_validation(analysis)
    search = bool(analysis["search"])
    estimator = pipeline
    if search:
        estimator = classifiers.with_search(pipeline, analysis["classifier"], analysis["search"])
    folds, predictions = decoding.cross_validate(
        X, data.y, data.runs, estimator, cv, search, threads
    )
    permutation = None
    if analysis["permutations"]:
        blocks = entries.permutation_blocks(data, analysis)
        permutation = decoding.permutation_test(
            X,
            data.y,
            data.runs,
            estimator,
            cv,
            analysis["permutations"],
            analysis["seed"],
            search,
            threads,
            blocks=blocks,
        )
        permutation += (describe(data.y, data.runs, blocks),)
    return folds, predictions, permutation


def write_weights(pipeline, X, data, classifier, subject, inputs, outputs):
    """Display-only weight maps: one 3D map for a binary contrast, one volume per class."""
    maps, names = classifiers.display_weights(pipeline, X, data.y, classifier)
    full = np.zeros((maps.shape[0], int(data.mask.sum())), dtype=np.float32)
    full[:, data.columns] = maps
    weights = unmask(full[0] if len(full) == 1 else full, data.mask)
    save_nifti(weights, data.affine, outputs.weights, dtype=np.float32)
    figures.plot_maps(
        nib.load(outputs.weights),
        nib.load(inputs.background),
        [f"sub-{subject}: {name} (refit on all data, display only)" for name in names],
        outputs.weights_png,
        colorbar_label=classifiers.weight_units(classifier),
    )


def confusion_table(predictions, classes):
    """Counts of (true, predicted) pairs over all test folds."""
    table = pd.crosstab(
        pd.Categorical(predictions["true"], categories=classes),
        pd.Categorical(predictions["predicted"], categories=classes),
        dropna=False,
    )
    table.index.name, table.columns.name = "true", None
    return table


NODE = Node(
    name="decode",
    description="Node decode: cross-validated decoding of one subject for one analysis.",
    function=decode,
    inputs={
        "clean": "clean.npy (time x voxel)",
        "mask": "the preprocessing mask.nii.gz (matrix columns)",
        "events": "the subject's events.tsv",
        "roi": "the subject's roi.nii.gz (analyses on the ROI's voxels)",
        "background": "the figure background: anat.nii.gz, or mean.nii.gz without anatomy",
    },
    outputs={
        "folds": "folds.tsv to write",
        "predictions": "predictions.tsv to write",
        "confusion": "confusion.tsv to write",
        "confusion_png": "confusion.png to write",
        "summary": "summary.json to write",
        "weights": "weights.nii.gz to write",
        "weights_png": "weights.png to write",
    },
    params={
        "analysis": Param(
            None, "the analysis' config entry (a mapping, see $defs/decoding)", schema="decoding"
        ),
        "subject": Param("01", "subject label", type=str),
    },
    optional_inputs=("roi",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
