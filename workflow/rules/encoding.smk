# Encoding, for every subject and analysis of a stimulus dataset: voxel-wise
# ridge regression from the stimulus to the cleaned signal, cross-validated by
# run with a per-voxel penalty from an inner cross-validation, tested against a
# null of shifted stimuli; receptive fields of the best voxels and a pRF fit.


rule encode:
    input:
        unpack(encode_inputs),
    output:
        voxels="results/{dataset}/sub-{subject}/encoding/{analysis}/voxels.tsv",
        folds="results/{dataset}/sub-{subject}/encoding/{analysis}/folds.tsv",
        summary="results/{dataset}/sub-{subject}/encoding/{analysis}/summary.json",
        r2="results/{dataset}/sub-{subject}/encoding/{analysis}/r2.nii.gz",
        correlation="results/{dataset}/sub-{subject}/encoding/{analysis}/correlation.nii.gz",
        pvalues="results/{dataset}/sub-{subject}/encoding/{analysis}/pvalues.nii.gz",
        prf="results/{dataset}/sub-{subject}/encoding/{analysis}/prf.nii.gz",
        receptive_fields="results/{dataset}/sub-{subject}/encoding/{analysis}/receptive_fields.tsv",
        r2_png=report(
            "results/{dataset}/sub-{subject}/encoding/{analysis}/r2.png",
            caption="../report/encoding_r2.rst",
            category="Encoding",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "R² map"},
        ),
        receptive_fields_png=report(
            "results/{dataset}/sub-{subject}/encoding/{analysis}/receptive_fields.png",
            caption="../report/encoding_receptive_fields.rst",
            category="Encoding",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "receptive fields"},
        ),
        provenance="results/{dataset}/sub-{subject}/encoding/{analysis}/encode.provenance.json",
    log:
        "logs/encode/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/encode/{dataset}_sub-{subject}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    # One thread: the node runs numerical libraries single-threaded (fmriflow.node).
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(800, 6),
        runtime=120,
    params:
        analysis=encoding_entry,
        subject="{subject}",
    script:
        "../../scripts/encode.py"
