"""Node decode_group: per-analysis table of all subjects and a test against chance.

Collects every subject's summary, tests mean accuracy against chance across
subjects (one-sided one-sample t-test, and Wilcoxon signed-rank with at
least 5 subjects) and, when every subject has a permutation test, the
population prevalence of above-chance decoding (Allefeld et al. 2016: the
t-test is about these subjects' mean, prevalence about how many people have
the effect), and plots per-subject accuracies with their chance level.
"""

import numpy as np
import pandas as pd

from fmriflow import figures
from fmriflow.decoding import group_test
from fmriflow.io import read_json, write_json, write_table
from fmriflow.node import Node, Param, run
from fmriflow.searchlight import group


def decode_group(inputs, outputs, params, threads):
    summaries = [read_json(path, "decoding summary") for path in inputs.summaries]
    table = pd.DataFrame(
        {
            "subject": [s["subject"] for s in summaries],
            "accuracy": [s["accuracy_mean"] for s in summaries],
            "accuracy_std": [s["accuracy_std"] for s in summaries],
            "balanced_accuracy": [s["balanced_accuracy_mean"] for s in summaries],
            "chance": [s["chance"] for s in summaries],
            "chance_balanced": [s["chance_balanced"] for s in summaries],
            "n_folds": [s["n_folds"] for s in summaries],
            "n_voxels": [s["n_voxels"] for s in summaries],
            "permutation_p_value": [s.get("permutation", {}).get("p_value") for s in summaries],
            # At its floor 1 / (1 + n) a subject's p-value is only an upper bound.
            "permutation_p_at_floor": [
                s.get("permutation", {}).get("p_value_at_floor") for s in summaries
            ],
        }
    )
    test = group_test(table["accuracy"], table["chance"])
    summary = test | {"analysis": params.analysis, "classes": summaries[0]["classes"]}
    prevalence = roi_prevalence(summaries, table)
    if prevalence is not None:
        summary["prevalence"] = prevalence
    write_table(table, outputs.table)
    write_json(summary, outputs.summary)
    if prevalence is not None:
        title_prevalence = (
            f"; prevalence: global null p={prevalence['p']:.3g}, "
            f"gamma0 >= {prevalence['gamma0']:.2f} (at most {prevalence['gamma_max']:.2f})"
        )
    else:
        title_prevalence = ""
    p_value = "n/a" if test["p_value"] is None else f"{test['p_value']:.3g}"
    t_value = "n/a" if test["t"] is None else f"{test['t']:.2f}"
    title = (
        f"{params.analysis}: mean accuracy {test['accuracy_mean']:.2f} vs chance "
        f"{test['chance_mean']:.3g} (t={t_value}, one-sided p={p_value}, "
        f"n={test['n_subjects']}){title_prevalence}"
    )
    figures.plot_group_accuracies(table, outputs.figure, title)


#: Second-level permutations of the ROI prevalence test.
PREVALENCE_DRAWS = 10_000


def roi_prevalence(summaries, table, alpha=0.05):
    """Prevalence inference on the ROI accuracies (Allefeld et al. 2016).

    Only when every subject has a permutation null of the same length; None otherwise.
    """
    nulls = [s.get("permutation", {}).get("null") for s in summaries]
    if len(summaries) < 2 or any(n is None for n in nulls) or len({len(n) for n in nulls}) > 1:
        return None
    result = group.prevalence_test(
        table["accuracy"].to_numpy(),
        np.array(nulls),
        chance=float(table["chance"].mean()),
        alpha=alpha,
        n_draws=PREVALENCE_DRAWS,
    )
    return {
        "method": "Allefeld et al. 2016: minimum accuracy over subjects against its "
        "permutation distribution",
        "min_accuracy": float(result.min_accuracy[0]),
        "p": float(result.p_uncorrected[0]),
        "gamma0": float(result.gamma_uncorrected[0]),
        "gamma_max": float(result.gamma_max),
        "alpha": alpha,
        "global_null_rejected": bool(result.reject_uncorrected[0]),
        "n_draws": PREVALENCE_DRAWS,
    }


NODE = Node(
    name="decode_group",
    description="Node decode_group: per-analysis table of all subjects and a test against chance.",
    function=decode_group,
    inputs={"summaries": "every subject's summary.json"},
    outputs={
        "table": "subjects.tsv to write",
        "summary": "summary.json to write",
        "figure": "accuracies.png to write",
    },
    params={"analysis": Param("analysis", "analysis name", type=str)},
    lists=("summaries",),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
