"""Node reconstruct_models: the paper's Table 1 for one subject.

Pixel-averaged accuracy of each classifier at each C (Abraham et al. 2014,
Table 1: L1 and L2 logistic regression and linear SVC), every pixel
decoded from the voxels and cross-validated by run on the training runs
(chance 0.5; the accuracy of guessing each pixel's training majority
beside it).
"""

from fmriflow import entries, reconstruction, stimulus_figures
from fmriflow.dataset import read_description
from fmriflow.io import write_table
from fmriflow.node import Node, Param, run
from fmriflow.stimuli import stimulus_grid


def reconstruct_models(inputs, outputs, params, threads):
    entry = params.analysis
    shape = stimulus_grid(read_description(inputs.description))
    train, _ = entries.reconstruction_data(inputs, entry, shape)
    selection = entries.selection(entry)
    folds = reconstruction.model_table(
        train.X,
        train.images,
        train.runs,
        entry["models"]["classifiers"],
        entry["models"]["C"],
        entries.cross_validation(entry),
        seed=entry["seed"],
        selection=selection,
    )
    table = reconstruction.summarize_model_table(folds)
    write_table(folds, outputs.folds)
    write_table(table, outputs.table)
    stimulus_figures.plot_model_table(
        table,
        f"{entry['name']}, sub-{params.subject}: pixel decoders cross-validated by run on the "
        f"training runs ({folds['fold'].nunique()} folds)",
        outputs.figure,
    )


NODE = Node(
    name="reconstruct_models",
    description="Node reconstruct_models: the paper's Table 1 for one subject.",
    function=reconstruct_models,
    inputs=entries.STIMULUS_NODE_INPUTS,
    outputs={
        "table": "models.tsv to write (mean and spread over folds)",
        "folds": "models_folds.tsv to write (every classifier, C and fold)",
        "figure": "models.png to write",
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
