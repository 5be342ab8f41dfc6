# Reconstruction, for every subject and analysis of a stimulus dataset with an
# image grid: the images of the test runs predicted pixel by pixel and patch by
# patch from the voxels (Miyawaki et al. 2008); and the paper's Table 1, the
# accuracy of several classifiers over a grid of C on the training runs.


rule reconstruct:
    input:
        unpack(reconstruct_inputs),
    output:
        images="results/{dataset}/sub-{subject}/reconstruction/{analysis}/images.tsv",
        accuracy="results/{dataset}/sub-{subject}/reconstruction/{analysis}/accuracy.tsv",
        pixel_accuracy="results/{dataset}/sub-{subject}/reconstruction/{analysis}/pixel_accuracy.tsv",
        summary="results/{dataset}/sub-{subject}/reconstruction/{analysis}/summary.json",
        images_png=report(
            "results/{dataset}/sub-{subject}/reconstruction/{analysis}/images.png",
            caption="../report/reconstruction_images.rst",
            category="Reconstruction",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "true and reconstructed images"},
        ),
        pixel_accuracy_png=report(
            "results/{dataset}/sub-{subject}/reconstruction/{analysis}/pixel_accuracy.png",
            caption="../report/reconstruction_pixel_accuracy.rst",
            category="Reconstruction",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "accuracy per pixel"},
        ),
        provenance="results/{dataset}/sub-{subject}/reconstruction/{analysis}/reconstruct.provenance.json",
    log:
        "logs/reconstruct/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/reconstruct/{dataset}_sub-{subject}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(800, 3),
        runtime=120,
    params:
        analysis=reconstruction_entry,
        subject="{subject}",
    script:
        "../../scripts/reconstruct.py"


rule reconstruct_models:
    input:
        unpack(reconstruct_inputs),
    output:
        table=report(
            "results/{dataset}/sub-{subject}/reconstruction/{analysis}/models.tsv",
            caption="../report/reconstruction_models.rst",
            category="Reconstruction",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "Table 1 (accuracy by model and C)"},
        ),
        folds="results/{dataset}/sub-{subject}/reconstruction/{analysis}/models_folds.tsv",
        figure=report(
            "results/{dataset}/sub-{subject}/reconstruction/{analysis}/models.png",
            caption="../report/reconstruction_models.rst",
            category="Reconstruction",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "accuracy by model and C"},
        ),
        provenance="results/{dataset}/sub-{subject}/reconstruction/{analysis}/reconstruct_models.provenance.json",
    log:
        "logs/reconstruct_models/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/reconstruct_models/{dataset}_sub-{subject}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(800, 3),
        runtime=240,
    params:
        analysis=reconstruction_entry,
        subject="{subject}",
    script:
        "../../scripts/reconstruct_models.py"
