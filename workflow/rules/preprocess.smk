# Preprocess: mask each subject's 4D image into a (time x voxel) matrix, then
# clean it run by run. Outputs are the cached inputs of every analysis.


rule template_mask:
    input:
        unpack(template_mask_inputs),
    output:
        mask="results/{dataset}/template_mask.nii.gz",
        provenance="results/{dataset}/template_mask.provenance.json",
    log:
        "logs/template_mask/{dataset}.log",
    benchmark:
        "logs/benchmark/template_mask/{dataset}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    params:
        mask_choice=preprocess_setting("mask"),
    script:
        "../../scripts/template_mask.py"


rule mask:
    input:
        unpack(mask_inputs),
    output:
        mask="results/{dataset}/sub-{subject}/mask.nii.gz",
        matrix="results/{dataset}/sub-{subject}/masked.npy",
        mean="results/{dataset}/sub-{subject}/mean.nii.gz",
        provenance="results/{dataset}/sub-{subject}/mask.provenance.json",
    log:
        "logs/mask/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/mask/{dataset}_sub-{subject}.tsv"
    priority: 1
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        # The image is streamed: memory is the output matrix plus a few volumes.
        mem_mb=mem_mb_from_input(500, 4),
        runtime=30,
    params:
        mask_choice=preprocess_setting("mask"),
        include_roi=preprocess_setting("include_roi"),
        resample_masks=preprocess_setting("resample_masks"),
        smoothing_fwhm=preprocess_setting("smoothing_fwhm"),
        bad_voxels=preprocess_setting("bad_voxels"),
    script:
        "../../scripts/mask.py"


rule clean:
    input:
        unpack(clean_inputs),
    output:
        clean="results/{dataset}/sub-{subject}/clean.npy",
        provenance="results/{dataset}/sub-{subject}/clean.provenance.json",
    log:
        "logs/clean/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/clean/{dataset}_sub-{subject}.tsv"
    priority: 1
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        # Cleaned in voxel blocks: the matrix (memory-mapped) plus a block in float64.
        mem_mb=mem_mb_from_input(500, 1.5),
        runtime=30,
    params:
        detrend=preprocess_setting("clean", "detrend"),
        standardize=preprocess_setting("clean", "standardize"),
        high_pass=preprocess_setting("clean", "high_pass"),
        low_pass=preprocess_setting("clean", "low_pass"),
        confounds=preprocess_setting("clean", "confounds"),
    script:
        "../../scripts/clean.py"
