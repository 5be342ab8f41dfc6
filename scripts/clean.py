"""Node clean: detrend, band-pass, regress confounds and standardize, run by run.

Reads the masked matrix, the events table (for the runs; it must have one
row per volume) and, when it is given (the dataset has them and the config
asks for them), the confounds; writes ``clean.npy`` (float32, same shape).
"""

import logging

import numpy as np

from fmriflow.cleaning import check_runs, clean_runs, select_confounds
from fmriflow.dataset import read_description
from fmriflow.errors import InputError
from fmriflow.io import load_matrix, npy_writer, read_events, read_table
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.clean")


def clean(inputs, outputs, params, threads):
    description = read_description(inputs.description)
    matrix = load_matrix(inputs.matrix, "masked data")
    events = read_events(inputs.events, n_volumes=matrix.shape[0])
    check_runs(events["run"].to_numpy(), inputs.events)
    confounds = load_confounds(inputs.get("confounds_table"), params.confounds, matrix.shape[0])
    with npy_writer(outputs.clean, matrix.shape, np.float32) as out:
        clean_runs(
            matrix,
            events["run"].to_numpy(),
            float(description["tr"]),
            out,
            detrend=params.detrend,
            standardize=params.standardize,
            high_pass=params.high_pass,
            low_pass=params.low_pass,
            confounds=confounds,
        )
    logger.info("cleaned %d volumes x %d voxels", *matrix.shape)


def load_confounds(path, wanted, n_volumes):
    """Confounds to regress: none, all columns (true) or the listed ones."""
    if not wanted:
        return None
    if path is None:
        if wanted is True:
            logger.info("no confounds.tsv for this subject; none regressed")
            return None
        raise InputError(
            "preprocess.clean.confounds",
            f"confounds {wanted} requested but this subject has no confounds table",
            "Set preprocess.clean.confounds: false, or provide confounds (--confounds-table)",
        )
    frame = read_table(path, "confounds table")
    if len(frame) != n_volumes:
        raise InputError(
            path,
            f"confounds table has {len(frame)} rows but the BOLD image has {n_volumes} volumes",
            "Give one row per volume",
        )
    return select_confounds(frame, None if wanted is True else list(wanted), path)


NODE = Node(
    name="clean",
    description="Node clean: detrend, band-pass, regress confounds and standardize, run by run.",
    function=clean,
    inputs={
        "matrix": "masked.npy from the mask rule",
        "events": "the subject's events.tsv",
        "description": "the dataset's dataset.json",
        "confounds_table": "the subject's confounds.tsv",
    },
    outputs={"clean": "clean.npy to write"},
    params={
        "detrend": Param(True, "remove a linear trend per run"),
        "standardize": Param("zscore_sample", "per-run standardization, or false"),
        "high_pass": Param(None, "high-pass cut-off in Hz, or null"),
        "low_pass": Param(None, "low-pass cut-off in Hz, or null"),
        "confounds": Param(True, "regress confounds: true (all), false, or a list of columns"),
    },
    optional_inputs=("confounds_table",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
