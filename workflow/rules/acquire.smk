# Acquire: every source (simulate, fetch, local) ends in the canonical layout
#   data/{dataset}/dataset.json, data/{dataset}/sub-{subject}/{bold.nii.gz, events.tsv, …}
# Which rule produces a dataset is decided by its source in the config.


localrules:
    download,
    describe_local,


rule simulate_dataset:
    output:
        description="data/{dataset}/dataset.json",
        brain_mask="data/{dataset}/brainmask.nii.gz",
    wildcard_constraints:
        dataset=datasets_from("simulate"),
    params:
        name="{dataset}",
        settings=simulate_settings,
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    conda:
        "../../envs/acquire.yaml"
    log:
        "logs/simulate_dataset/{dataset}.log",
    benchmark:
        "logs/benchmark/simulate_dataset/{dataset}.tsv"
    script:
        "../../scripts/simulate_dataset.py"


rule simulate_subject:
    input:
        description="data/{dataset}/dataset.json",
        brain_mask="data/{dataset}/brainmask.nii.gz",
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
    wildcard_constraints:
        dataset=datasets_from("simulate"),
    params:
        subject="{subject}",
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(1500),
        runtime=20,
    conda:
        "../../envs/acquire.yaml"
    log:
        "logs/simulate_subject/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/simulate_subject/{dataset}_sub-{subject}.tsv"
    script:
        "../../scripts/simulate_subject.py"


rule download:
    output:
        description="data/{dataset}/dataset.json",
    wildcard_constraints:
        dataset=datasets_from("fetch"),
    params:
        name="{dataset}",
        settings=fetch_settings,
        download_dir=config["download_dir"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
    conda:
        "../../envs/acquire.yaml"
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmark/download/{dataset}.tsv"
    script:
        "../../scripts/download.py"


rule import_download:
    input:
        description="data/{dataset}/dataset.json",
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
    wildcard_constraints:
        dataset=datasets_from("fetch"),
    params:
        subject="{subject}",
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(1000),
        runtime=20,
    conda:
        "../../envs/acquire.yaml"
    log:
        "logs/import_download/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_download/{dataset}_sub-{subject}.tsv"
    script:
        "../../scripts/import_download.py"


rule describe_local:
    output:
        description="data/{dataset}/dataset.json",
    wildcard_constraints:
        dataset=datasets_from("local"),
    params:
        name="{dataset}",
        settings=local_settings,
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        "../../envs/acquire.yaml"
    log:
        "logs/describe_local/{dataset}.log",
    benchmark:
        "logs/benchmark/describe_local/{dataset}.tsv"
    script:
        "../../scripts/describe_local.py"


rule import_local:
    input:
        unpack(local_source_files),
        description="data/{dataset}/dataset.json",
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
    wildcard_constraints:
        dataset=datasets_from("local"),
    params:
        subject="{subject}",
        settings=local_settings,
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(3500),
        runtime=30,
    conda:
        "../../envs/acquire.yaml"
    log:
        "logs/import_local/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_local/{dataset}_sub-{subject}.tsv"
    script:
        "../../scripts/import_local.py"
