"""Node decode: cross-validated decoding of one subject for one analysis.

Selects the analysis' volumes and voxels (the subject ROI or the whole
mask), cross-validates the registry classifier by run (with a nested
search and a within-run permutation test when asked), and writes the fold
table, the predictions, the confusion matrix, a summary with chance levels,
and weight maps from a model refitted on all data, for display only.
"""

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from fmriflow import decoding, figures
from fmriflow.io import save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.decode")


def decode(inputs, outputs, params, threads):
    settings = params.analysis
    data = decoding.load_subject_analysis(
        inputs.clean, inputs.events, inputs.mask, settings, roi=settings["mask"] == "roi"
    )
    rows, y, runs, dropped = data.rows, data.y, data.runs, data.dropped
    mask, columns = data.mask, data.columns
    X = np.asarray(data.matrix[rows][:, columns], dtype=np.float64)
    classes = np.unique(y)
    pipeline = decoding.make_classifier(
        settings["classifier"],
        seed=settings["seed"],
        balance=settings["balance"],
        feature_selection=settings["feature_selection"],
        n_classes=len(classes),
        n_features=X.shape[1],
    )
    cv = decoding.cv_from_settings(settings)
    search = bool(settings["search"])
    estimator = (
        decoding.with_search(pipeline, settings["classifier"], settings["search"])
        if search
        else pipeline
    )
    folds, predictions = decoding.cross_validate(X, y, runs, estimator, cv, search, threads)
    permutation = None
    if settings["permutations"]:
        permutation = decoding.permutation_test(
            X, y, runs, estimator, cv, settings["permutations"], settings["seed"], search, threads
        )
    predictions["sample"] = rows[predictions["sample"].to_numpy()]
    predictions = predictions.rename(columns={"sample": "volume"})
    summary = decoding.summarize(folds, classes, permutation)
    summary |= {
        "analysis": settings["name"],
        "subject": params.subject,
        "classifier": settings["classifier"],
        "mask": settings["mask"],
        "n_voxels": int(columns.sum()),
        "dropped_runs": dropped,
    }
    confusion = confusion_table(predictions, classes)
    maps, names = decoding.display_weights(pipeline, X, y, settings["classifier"])
    full = np.zeros((maps.shape[0], int(mask.sum())), dtype=np.float32)
    full[:, columns] = maps
    # One 3D map for a binary contrast, a 4D image (one volume per class) otherwise.
    weights = unmask(full[0] if len(full) == 1 else full, mask)
    write_table(folds, outputs.folds)
    write_table(predictions, outputs.predictions)
    write_table(confusion.reset_index(names="true"), outputs.confusion)
    save_nifti(weights, data.affine, outputs.weights, dtype=np.float32)
    figures.plot_confusion(
        confusion.to_numpy(),
        list(classes),
        outputs.confusion_png,
        f"{settings['name']}, sub-{params.subject}",
    )
    figures.plot_maps(
        nib.load(outputs.weights),
        figures.background_image(Path(inputs.events).parent, inputs.mean),
        [f"sub-{params.subject}: {name} (refit on all data, display only)" for name in names],
        outputs.weights_png,
    )
    write_json(summary, outputs.summary)
    logger.info(
        "accuracy %.3f (chance %.3f) over %d folds",
        summary["accuracy_mean"],
        summary["chance"],
        summary["n_folds"],
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
        "mean": "mean.nii.gz (figure background when there is no anatomy)",
        "events": "the subject's events.tsv",
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
        "analysis": Param(None, "the analysis' config entry (a mapping)"),
        "subject": Param("01", "subject label", type=str),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
