"""Node searchlight_plan: how many parts a searchlight map is split into, from its run time.

For an analysis with ``chunk_minutes: M``, times the analysis' own engine
(classifier, folds and permutations) on a sample of centres spread over
the map, and splits the map into as many parts as keep each part's
estimated run time within M minutes. The parts' scores do not depend on
the split, so the gathered map is the same whatever the plan chose; only
the number of jobs follows the measured time.
"""

import logging
import time

from fmriflow import entries
from fmriflow import searchlight as sl
from fmriflow.io import write_json
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.searchlight")


def searchlight_plan(inputs, outputs, params, threads):
    analysis = params.analysis
    data = entries.subject_analysis(inputs, analysis)
    spheres = entries.searchlight_spheres(data, analysis, "roi" in inputs)
    sample = sl.plan_sample(spheres.n_centres)
    seconds = 0.0
    if len(sample):
        cv = entries.cross_validation(analysis)
        start = time.perf_counter()
        entries.score_searchlight_rows(data, analysis, spheres, sample, cv)
        seconds = time.perf_counter() - start
    per_centre = seconds / max(len(sample), 1)
    n_parts = sl.plan_parts(spheres.n_centres, per_centre, analysis["chunk_minutes"])
    total = spheres.n_centres * per_centre
    plan = {
        "n_centres": int(spheres.n_centres),
        "sample_centres": int(len(sample)),
        "sample_seconds": round(seconds, 3),
        "seconds_per_centre": per_centre,
        "estimated_seconds": round(total, 3),
        "chunk_minutes": analysis["chunk_minutes"],
        "n_parts": n_parts,
        "seconds_per_part": round(total / n_parts, 3),
    }
    write_json(plan, outputs.plan)
    logger.info(
        "%d centres at %.3g s each (timed on %d, one thread): about %s in all, "
        "%d part(s) of at most %s min",
        spheres.n_centres,
        per_centre,
        len(sample),
        duration(total),
        n_parts,
        analysis["chunk_minutes"],
    )


def duration(seconds):
    """'42 s', '3.5 min' or '2.1 h'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


NODE = Node(
    name="searchlight_plan",
    description="Node searchlight_plan: how many parts a searchlight map is split into, "
    "from its run time.",
    function=searchlight_plan,
    inputs=entries.SEARCHLIGHT_DATA_INPUTS,
    outputs={"plan": "plan.json to write: centres, measured time per centre, parts"},
    params={
        "analysis": Param(
            None,
            "the analysis' config entry (a mapping, see $defs/searchlight)",
            schema="searchlight",
        ),
    },
    optional_inputs=("roi",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
