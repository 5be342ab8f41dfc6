# Decoding: per subject and analysis, cross-validated by run; then a group
# summary per analysis. Classifiers come from a registry by name.


localrules:
    decode_group,


rule decode:
    input:
        clean="results/{dataset}/sub-{subject}/clean.npy",
        mask="results/{dataset}/sub-{subject}/mask.nii.gz",
        mean="results/{dataset}/sub-{subject}/mean.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
    output:
        folds="results/{dataset}/sub-{subject}/decoding/{analysis}/folds.tsv",
        predictions="results/{dataset}/sub-{subject}/decoding/{analysis}/predictions.tsv",
        confusion="results/{dataset}/sub-{subject}/decoding/{analysis}/confusion.tsv",
        confusion_png=report(
            "results/{dataset}/sub-{subject}/decoding/{analysis}/confusion.png",
            caption="../report/decoding_confusion.rst",
            category="Decoding",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "confusion matrix"},
        ),
        summary="results/{dataset}/sub-{subject}/decoding/{analysis}/summary.json",
        weights="results/{dataset}/sub-{subject}/decoding/{analysis}/weights.nii.gz",
        weights_png=report(
            "results/{dataset}/sub-{subject}/decoding/{analysis}/weights.png",
            caption="../report/decoding_weights.rst",
            category="Decoding",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "weight map"},
        ),
    params:
        analysis=analysis_settings,
        subject="{subject}",
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(800, 3),
        runtime=60,
    conda:
        "../../envs/decoding.yaml"
    log:
        "logs/decode/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/decode/{dataset}_sub-{subject}_{analysis}.tsv"
    script:
        "../../scripts/decode.py"


rule decode_group:
    input:
        summaries=analysis_summaries,
    output:
        table=report(
            "results/{dataset}/group/decoding/{analysis}/subjects.tsv",
            caption="../report/decoding_table.rst",
            category="Decoding",
            subcategory="{analysis}",
            labels={"subject": "group", "figure": "table of subjects"},
        ),
        summary="results/{dataset}/group/decoding/{analysis}/summary.json",
        figure=report(
            "results/{dataset}/group/decoding/{analysis}/accuracies.png",
            caption="../report/decoding_group.rst",
            category="Decoding",
            subcategory="{analysis}",
            labels={"subject": "group", "figure": "accuracies"},
        ),
    params:
        analysis="{analysis}",
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    conda:
        "../../envs/decoding.yaml"
    log:
        "logs/decode_group/{dataset}_{analysis}.log",
    benchmark:
        "logs/benchmark/decode_group/{dataset}_{analysis}.tsv"
    script:
        "../../scripts/decode_group.py"
