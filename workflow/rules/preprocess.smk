# Preprocess: mask each subject's 4D image into a (time x voxel) matrix, then
# clean it run by run. Outputs are the cached inputs of every analysis.


rule mask:
    input:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        description="data/{dataset}/dataset.json",
    output:
        mask="results/{dataset}/sub-{subject}/mask.nii.gz",
        matrix="results/{dataset}/sub-{subject}/masked.npy",
        mean="results/{dataset}/sub-{subject}/mean.nii.gz",
    params:
        mask_choice=mask_choice,
        include_roi=include_roi,
        smoothing_fwhm=smoothing_fwhm,
        bad_voxels=bad_voxels,
    threads: 1
    resources:
        # The image is streamed: memory is the output matrix plus a few volumes.
        mem_mb=mem_mb_from_input(500, 4),
        runtime=30,
    conda:
        "../../envs/preprocess.yaml"
    log:
        "logs/mask/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/mask/{dataset}_sub-{subject}.tsv"
    script:
        "../../scripts/mask.py"


rule clean:
    input:
        matrix="results/{dataset}/sub-{subject}/masked.npy",
        events="data/{dataset}/sub-{subject}/events.tsv",
        description="data/{dataset}/dataset.json",
    output:
        clean="results/{dataset}/sub-{subject}/clean.npy",
    params:
        detrend=clean_setting("detrend"),
        standardize=clean_setting("standardize"),
        high_pass=clean_setting("high_pass"),
        low_pass=clean_setting("low_pass"),
        confounds=clean_setting("confounds"),
    threads: 1
    resources:
        # Cleaned in voxel blocks: the matrix (memory-mapped) plus a block in float64.
        mem_mb=mem_mb_from_input(500, 1.5),
        runtime=30,
    conda:
        "../../envs/preprocess.yaml"
    log:
        "logs/clean/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/clean/{dataset}_sub-{subject}.tsv"
    script:
        "../../scripts/clean.py"
