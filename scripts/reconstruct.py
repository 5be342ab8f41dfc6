"""Node reconstruct: the images of the test runs, reconstructed from one subject's voxels.

Pairs every volume with the image shown ``lag_volumes`` before it (rest
left out), fits one decoder per pixel and per multi-scale patch on the
training runs (Miyawaki et al. 2008), predicts the test runs, and combines
the scales with non-negative weights fitted on cross-validated predictions
of the training runs. Writes the reconstructed images, the accuracy of
each scale and of the combination with chance (0.5) and the accuracy of
guessing each pixel's training majority beside it, the accuracy of every
pixel, and figures.
"""

import logging

import numpy as np
import pandas as pd

from fmriflow import entries, reconstruction, stimulus_figures
from fmriflow.dataset import read_description
from fmriflow.io import write_json, write_table
from fmriflow.node import Node, Param, run
from fmriflow.stimuli import grid_columns, stimulus_grid

logger = logging.getLogger("fmriflow.reconstruct")


def reconstruct(inputs, outputs, params, threads):
    entry = params.analysis
    shape = stimulus_grid(read_description(inputs.description))
    train, test = entries.reconstruction_data(inputs, entry, shape)
    layout = reconstruction.patch_layout(shape, scales=[tuple(s) for s in entry["scales"]])
    model = entries.pixel_model(entry, entry["classifier"], entry["C"], train.X.shape[1])
    result = reconstruction.reconstruct(
        train.X, train.images, train.runs, test.X, model, entries.cross_validation(entry), layout
    )
    scores, per_pixel = reconstruction.score_reconstruction(result, test.images)
    constant = reconstruction.constant_guess_accuracy(train.images, test.images)
    scores["chance"] = 0.5
    scores["constant_guess"] = constant
    scores["weight"] = [*result.weights, np.nan]
    names = list(scores["scale"])
    write_table(scores, outputs.accuracy)
    write_table(pixel_table(per_pixel, names, shape), outputs.pixel_accuracy)
    write_table(image_table(test, result, shape), outputs.images)
    title = f"{entry['name']}, sub-{params.subject}, {entry['classifier']} (C = {entry['C']})"
    shown = distinct_images(test.images)
    stimulus_figures.plot_reconstructions(
        test.images[shown],
        [result.combined[shown], result.binary[shown]],
        ["combined", "thresholded"],
        f"{title}: test images and their reconstruction (accuracy "
        f"{scores['accuracy'].iloc[-1]:.2f}, chance 0.50, majority guess {constant:.2f})",
        outputs.images_png,
    )
    stimulus_figures.plot_pixel_accuracy(
        per_pixel,
        names,
        0.5,
        f"{title}: accuracy of each pixel on the test runs",
        outputs.pixel_accuracy_png,
    )
    summary = {
        "analysis": entry["name"],
        "subject": params.subject,
        "classifier": entry["classifier"],
        "C": entry["C"],
        "n_train": int(len(train.X)),
        "n_test": int(len(test.X)),
        "n_voxels": int(train.X.shape[1]),
        "lag_volumes": entry["lag_volumes"],
        "accuracy": dict(zip(names, scores["accuracy"].astype(float), strict=True)),
        "scale_weights": dict(zip(result.scales, result.weights.astype(float), strict=True)),
        "chance": 0.5,
        "constant_guess": constant,
        "n_constant_patches": int(result.constant.sum()),
    }
    write_json(summary, outputs.summary)
    logger.info(
        "combined accuracy %.3f (chance 0.5, majority guess %.3f)",
        summary["accuracy"]["combined"],
        constant,
    )


def pixel_table(per_pixel, names, shape):
    """Accuracy of every pixel, one row per estimate and pixel."""
    rows, cols = np.indices(shape)
    return pd.concat(
        [
            pd.DataFrame(
                {"scale": name, "row": rows.ravel(), "col": cols.ravel(), "accuracy": acc.ravel()}
            )
            for name, acc in zip(names, per_pixel, strict=True)
        ],
        ignore_index=True,
    )


def image_table(test, result, shape):
    """Every test volume's image: shown, per scale, combined and thresholded."""
    estimates = {"shown": test.images, "combined": result.combined, "binary": result.binary}
    estimates |= {name: result.estimates[:, s] for s, name in enumerate(result.scales)}
    frames = []
    for name, images in estimates.items():
        frame = pd.DataFrame(images.reshape(len(images), -1), columns=grid_columns(shape))
        frame.insert(0, "image", name)
        frame.insert(0, "run", test.runs)
        frame.insert(0, "volume", test.bold_rows)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def distinct_images(images, at_most=12):
    """The first sample of each distinct image, at most ``at_most`` of them."""
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    return np.sort(first)[:at_most]


NODE = Node(
    name="reconstruct",
    description="Node reconstruct: the test images, reconstructed from one subject's voxels.",
    function=reconstruct,
    inputs=entries.STIMULUS_NODE_INPUTS,
    outputs={
        "images": "images.tsv to write",
        "accuracy": "accuracy.tsv to write",
        "pixel_accuracy": "pixel_accuracy.tsv to write",
        "summary": "summary.json to write",
        "images_png": "images.png to write",
        "pixel_accuracy_png": "pixel_accuracy.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the analysis' config entry (a mapping, see $defs/reconstruction)",
            schema="reconstruction",
        ),
        "subject": Param("01", "subject label", type=str),
    },
    optional_inputs=("roi",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
