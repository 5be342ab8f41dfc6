"""Node searchlight_part: the accuracies (and null accuracies) of one part of a searchlight map.

A searchlight analysis with ``chunks: N`` (or as many parts as its plan
chose, with ``chunk_minutes``) is N jobs of this node, each
scoring a consecutive part of the centres (nilearn's spheres around every
voxel of the preprocessing mask or of the subject ROI) with the registry
classifier's searchlight engine, and logging its progress; the node
``searchlight`` gathers the parts into the map.
"""

import logging

import numpy as np

from fmriflow import decoding, entries
from fmriflow import searchlight as sl
from fmriflow.node import Node, Param, run
from fmriflow.searchlight.scores import PermutationResult, SearchlightResult

logger = logging.getLogger("fmriflow.searchlight")


def searchlight_part(inputs, outputs, params, threads):
    analysis = params.analysis
    data = entries.subject_analysis(inputs, analysis)
    spheres = entries.searchlight_spheres(data, analysis, "roi" in inputs)
    part = int(params.part)
    n_parts = sl.read_plan(inputs.plan) if "plan" in inputs else analysis["chunks"]
    rows = sl.part_rows(spheres.n_centres, n_parts, part)
    cv = entries.cross_validation(analysis)
    X, y, runs = data.matrix[data.rows], data.y, data.runs
    logger.info(
        "part %d of %d: centres %s of %d, classifier %s, %d permutations, %d threads",
        part + 1,
        n_parts,
        f"{rows[0]}-{rows[-1]}" if len(rows) else "none",
        spheres.n_centres,
        analysis["classifier"],
        analysis["permutations"],
        threads,
    )
    if len(rows):
        result = entries.score_searchlight_rows(
            data, analysis, spheres, rows, cv, threads, sl.Progress(len(rows))
        )
    else:
        result = empty_result(cv, X, y, runs, analysis["permutations"])
    splits = list(cv.split(X, y, runs))
    chance = np.mean([decoding.chance_accuracy(y[train], y[test]) for train, test in splits])
    sl.save_part(result, rows, spheres.n_centres, outputs.scores, chance, len(splits))


def empty_result(cv, X, y, runs, n_permutations):
    """The result of a part without centres (more parts than centres)."""
    if not n_permutations:
        n_test = np.array([len(test) for _, test in cv.split(X, y, runs)])
        return SearchlightResult(np.empty(0), np.empty((len(n_test), 0)), n_test)
    empty = np.empty(0)
    return PermutationResult(empty, np.empty((n_permutations, 0)), empty, empty, 0.0, empty, 0.05)


NODE = Node(
    name="searchlight_part",
    description="Node searchlight_part: the accuracies (and null accuracies) of one part of "
    "a searchlight map.",
    function=searchlight_part,
    inputs=entries.SEARCHLIGHT_DATA_INPUTS | entries.SEARCHLIGHT_PLAN_INPUT,
    outputs={"scores": "part-<i>.npz to write: the part's accuracies (and null accuracies)"},
    params={
        "analysis": Param(
            None,
            "the analysis' config entry (a mapping, see $defs/searchlight)",
            schema="searchlight",
        ),
        "part": Param(0, "which part of the centres, from 0", type=int),
    },
    optional_inputs=("roi", "plan"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
