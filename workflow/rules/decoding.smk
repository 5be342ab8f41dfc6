# Decoding, for every subject and analysis: cross-validated by run; then a group
# summary per analysis. Classifiers come from the registry by name.


localrules:
    decode_group,


rule decode:
    input:
        unpack(decode_inputs),
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
        provenance="results/{dataset}/sub-{subject}/decoding/{analysis}/decode.provenance.json",
    log:
        "logs/decode/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/decode/{dataset}_sub-{subject}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: decode_threads
    resources:
        mem_mb=mem_mb_from_input(800, 3),
        runtime=60,
    params:
        analysis=decoding_entry,
        subject="{subject}",
    script:
        "../../scripts/decode.py"


rule decode_group:
    input:
        summaries=decoding_summaries,
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
        provenance="results/{dataset}/group/decoding/{analysis}/decode_group.provenance.json",
    log:
        "logs/decode_group/{dataset}_{analysis}.log",
    benchmark:
        "logs/benchmark/decode_group/{dataset}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    params:
        analysis="{analysis}",
    script:
        "../../scripts/decode_group.py"
