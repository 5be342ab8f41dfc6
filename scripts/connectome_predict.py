"""Node connectome_predict: a phenotype predicted from the subjects' connectomes.

For each measure — correlation, partial correlation and the tangent space
(Dadi et al. 2019 found the tangent space with a non-sparse l2 linear model
best on average over six cohorts) — a registry classifier predicts one
participants column from the connectome vectors, cross-validated by
subject (repeated stratified K-fold, the same folds for every measure).
Everything fitted on the group — the tangent space's reference mean, any
scaling or selection of the classifier — is fitted on each fold's training
subjects only. Each accuracy has its chance level (the majority class) and
a permutation p-value beside it.
"""

import logging

import numpy as np
import pandas as pd

from fmriflow import connectome_figures as cfig
from fmriflow import connectome_prediction as prediction
from fmriflow.connectome_files import read_region_table, read_subject_matrices
from fmriflow.io import write_json, write_table
from fmriflow.node import Node, Param, run
from fmriflow.participants import check_target, read_participants

logger = logging.getLogger("fmriflow.connectome_predict")


def connectome_predict(inputs, outputs, params, threads):
    settings = params.analysis["predict"]
    names = read_region_table(inputs.table)["name"].tolist()
    participants = read_participants(inputs.participants, params.subjects)
    y = check_target(participants, params.target, inputs.participants)
    stacks = read_subject_matrices(inputs, sorted(set(prediction.MEASURE_INPUT.values())), names)
    rows, folds = [], []
    for measure, source in prediction.MEASURE_INPUT.items():
        result = prediction.predict_from_connectomes(
            stacks[source],
            y,
            measure,
            classifier=settings["classifier"],
            n_splits=settings["n_splits"],
            n_repeats=settings["n_repeats"],
            n_permutations=settings["permutations"],
            seed=settings["seed"],
            balance=settings["balance"],
        )
        logger.info(
            "%s: accuracy %.3f ± %.3f (chance %.3f, permutation p %s)",
            measure,
            result["accuracy"],
            result["std"],
            result["chance"],
            result["p_value"],
        )
        rows.append(
            {
                "measure": measure,
                "accuracy": result["accuracy"],
                "std": result["std"],
                "chance": result["chance"],
                "chance_majority": result["chance_majority"],
                "p_value": result["p_value"],
                "n_permutations": settings["permutations"],
                "null_mean": float(np.mean(result["null"])) if len(result["null"]) else None,
                "n_folds": len(result["accuracies"]),
            }
        )
        n_splits = result["n_splits"]
        index = np.arange(len(result["accuracies"]))
        folds.append(
            pd.DataFrame(
                {
                    "measure": measure,
                    "repeat": index // n_splits,
                    "fold": index % n_splits,
                    "n_train": result["folds"]["n_train"],
                    "n_test": result["folds"]["n_test"],
                    "accuracy": result["accuracies"],
                    "chance": result["folds"]["chance"],
                }
            )
        )
    table = pd.DataFrame(rows)
    write_table(table, outputs.accuracy)
    write_table(pd.concat(folds, ignore_index=True), outputs.folds)
    classes, counts = np.unique(y, return_counts=True)
    write_json(
        {
            "target": params.target,
            "classes": {str(c): int(n) for c, n in zip(classes, counts, strict=True)},
            "classifier": settings["classifier"],
            "n_subjects": len(y),
            "n_regions": len(names),
            "n_splits": n_splits,
            "n_repeats": settings["n_repeats"],
            "chance": float(table["chance"].iloc[0]),
            "chance_majority": float(table["chance_majority"].iloc[0]),
            "measures": {row["measure"]: row for row in rows},
            "best_measure": str(table.loc[table["accuracy"].idxmax(), "measure"]),
        },
        outputs.summary,
    )
    cfig.plot_prediction(
        table,
        f"{params.analysis['name']}: {params.target} predicted from connectomes "
        f"({settings['classifier']}, {len(y)} subjects, {n_splits}-fold x "
        f"{settings['n_repeats']} by subject)",
        outputs.figure,
    )


NODE = Node(
    name="connectome_predict",
    description="Node connectome_predict: a phenotype predicted from connectomes, by subject.",
    function=connectome_predict,
    inputs={
        "covariance": "every subject's covariance.tsv (the tangent space's input)",
        "correlation": "every subject's correlation.tsv",
        "partial_correlation": "every subject's partial_correlation.tsv",
        "table": "regions.tsv of the analysis",
        "participants": "the dataset's participants.tsv",
    },
    outputs={
        "accuracy": "accuracy.tsv to write (one row per measure)",
        "folds": "folds.tsv to write (one row per measure and fold)",
        "summary": "summary.json to write",
        "figure": "accuracy.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the connectome config entry (a mapping, see $defs/connectome)",
            schema="connectome",
        ),
        "subjects": Param(
            [], "the subjects in the order of the matrices, as YAML (quote labels: ['01', '02'])"
        ),
        "target": Param("group", "the participants column to predict", type=str),
    },
    lists=("covariance", "correlation", "partial_correlation"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
