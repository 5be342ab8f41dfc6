"""Node decode_group: per-analysis table of all subjects and a test against chance.

Collects every subject's summary, tests mean accuracy against chance across
subjects (one-sided one-sample t-test, and Wilcoxon signed-rank with at
least 5 subjects), and plots per-subject accuracies with their chance level.
"""

import pandas as pd

from fmriflow import figures
from fmriflow.decoding import group_test
from fmriflow.io import read_json, write_json, write_table
from fmriflow.node import Node, Param, run


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
        }
    )
    test = group_test(table["accuracy"], table["chance"])
    summary = test | {"analysis": params.analysis, "classes": summaries[0]["classes"]}
    write_table(table, outputs.table)
    write_json(summary, outputs.summary)
    p_value = "n/a" if test["p_value"] is None else f"{test['p_value']:.3g}"
    t_value = "n/a" if test["t"] is None else f"{test['t']:.2f}"
    title = (
        f"{params.analysis}: mean accuracy {test['accuracy_mean']:.2f} vs chance "
        f"{test['chance_mean']:.2f} (t={t_value}, one-sided p={p_value}, "
        f"n={test['n_subjects']})"
    )
    figures.plot_group_accuracies(table, outputs.figure, title)


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
