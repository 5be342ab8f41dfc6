# Acquire: every source (simulate, fetch, local) ends in the canonical layout
#   data/{dataset}/dataset.json, data/{dataset}/sub-{subject}/{bold.nii.gz, events.tsv, …}
#   [data/{dataset}/participants.tsv], and standard atlases in data/atlases/{atlas}/
# Which rule produces a dataset is decided by its source (and kind) in the
# config, through wildcard constraints. A rule's outputs are fixed: the
# optional files of a subject (ROI, anatomy, confounds) each have a rule of
# their own for fetched and local data, asked for only where the config says
# the dataset has them (common.smk: subject_files); a local dataset whose
# subjects all have confounds imports them with the BOLD image instead.


localrules:
    download,
    download_atlas,
    describe_local,


# --- simulate: a task or rest simulation writes all of its files at once ---------


rule simulate_dataset:
    output:
        description="data/{dataset}/dataset.json",
        brain_mask="data/{dataset}/brainmask.nii.gz",
        provenance="data/{dataset}/simulate_dataset.provenance.json",
    log:
        "logs/simulate_dataset/{dataset}.log",
    benchmark:
        "logs/benchmark/simulate_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("simulate", "task")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    params:
        name="{dataset}",
        settings=dataset_section("simulate"),
    script:
        "../../scripts/simulate_dataset.py"


use rule simulate_dataset as simulate_rest_dataset with:
    output:
        description="data/{dataset}/dataset.json",
        brain_mask="data/{dataset}/brainmask.nii.gz",
        networks="data/{dataset}/networks.nii.gz",
        participants="data/{dataset}/participants.tsv",
        provenance="data/{dataset}/simulate_dataset.provenance.json",
    log:
        "logs/simulate_rest_dataset/{dataset}.log",
    benchmark:
        "logs/benchmark/simulate_rest_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("simulate", "rest")),


rule simulate_subject:
    input:
        description="data/{dataset}/dataset.json",
        brain_mask="data/{dataset}/brainmask.nii.gz",
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
        roi="data/{dataset}/sub-{subject}/roi.nii.gz",
        truth_patterns="data/{dataset}/sub-{subject}/truth.nii.gz",
        truth="data/{dataset}/sub-{subject}/truth.json",
        provenance="data/{dataset}/sub-{subject}/simulate_subject.provenance.json",
    log:
        "logs/simulate_subject/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/simulate_subject/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("simulate", "task")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(1500),
        runtime=20,
    params:
        subject="{subject}",
    script:
        "../../scripts/simulate_subject.py"


use rule simulate_subject as simulate_rest_subject with:
    input:
        description="data/{dataset}/dataset.json",
        brain_mask="data/{dataset}/brainmask.nii.gz",
        networks="data/{dataset}/networks.nii.gz",
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
        confounds="data/{dataset}/sub-{subject}/confounds.tsv",
        truth="data/{dataset}/sub-{subject}/truth.json",
        provenance="data/{dataset}/sub-{subject}/simulate_subject.provenance.json",
    log:
        "logs/simulate_rest_subject/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/simulate_rest_subject/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("simulate", "rest")),


use rule simulate_dataset as simulate_stimulus_dataset with:
    output:
        description="data/{dataset}/dataset.json",
        brain_mask="data/{dataset}/brainmask.nii.gz",
        provenance="data/{dataset}/simulate_dataset.provenance.json",
    log:
        "logs/simulate_stimulus_dataset/{dataset}.log",
    benchmark:
        "logs/benchmark/simulate_stimulus_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("simulate", "stimulus")),


use rule simulate_subject as simulate_stimulus_subject with:
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
        stimuli="data/{dataset}/sub-{subject}/stimuli.tsv",
        roi="data/{dataset}/sub-{subject}/roi.nii.gz",
        truth_prf="data/{dataset}/sub-{subject}/truth.nii.gz",
        truth="data/{dataset}/sub-{subject}/truth.json",
        provenance="data/{dataset}/sub-{subject}/simulate_subject.provenance.json",
    log:
        "logs/simulate_stimulus_subject/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/simulate_stimulus_subject/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("simulate", "stimulus")),


# --- fetch: nilearn's fetchers, then one job per canonical file ------------------


rule download:
    output:
        description="data/{dataset}/dataset.json",
        provenance="data/{dataset}/download.provenance.json",
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmark/download/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("fetch")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
    params:
        name="{dataset}",
        settings=dataset_section("fetch"),
        download_dir=config["download_dir"],
    script:
        "../../scripts/download.py"


rule import_download:
    input:
        description="data/{dataset}/dataset.json",
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
        provenance="data/{dataset}/sub-{subject}/import_download.provenance.json",
    log:
        "logs/import_download/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_download/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("fetch")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(1000),
        runtime=20,
    params:
        subject="{subject}",
    script:
        "../../scripts/import_download.py"


rule import_download_roi:
    input:
        description="data/{dataset}/dataset.json",
    output:
        file="data/{dataset}/sub-{subject}/roi.nii.gz",
        provenance="data/{dataset}/sub-{subject}/import_download_file.roi.provenance.json",
    log:
        "logs/import_download_roi/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_download_roi/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("fetch")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    params:
        subject="{subject}",
        role="roi",
    script:
        "../../scripts/import_download_file.py"


use rule import_download_roi as import_download_anat with:
    output:
        file="data/{dataset}/sub-{subject}/anat.nii.gz",
        provenance="data/{dataset}/sub-{subject}/import_download_file.anat.provenance.json",
    log:
        "logs/import_download_anat/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_download_anat/{dataset}_sub-{subject}.tsv"
    params:
        subject="{subject}",
        role="anat",


use rule import_download_roi as import_download_confounds with:
    output:
        file="data/{dataset}/sub-{subject}/confounds.tsv",
        provenance="data/{dataset}/sub-{subject}/import_download_file.confounds.provenance.json",
    log:
        "logs/import_download_confounds/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_download_confounds/{dataset}_sub-{subject}.tsv"
    params:
        subject="{subject}",
        role="confounds",


use rule import_download_roi as import_download_stimuli with:
    output:
        file="data/{dataset}/sub-{subject}/stimuli.tsv",
        provenance="data/{dataset}/sub-{subject}/import_download_file.stimuli.provenance.json",
    log:
        "logs/import_download_stimuli/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_download_stimuli/{dataset}_sub-{subject}.tsv"
    params:
        subject="{subject}",
        role="stimuli",


rule import_download_participants:
    input:
        description="data/{dataset}/dataset.json",
    output:
        participants="data/{dataset}/participants.tsv",
        provenance="data/{dataset}/import_download_participants.provenance.json",
    log:
        "logs/import_download_participants/{dataset}.log",
    benchmark:
        "logs/benchmark/import_download_participants/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_with_participants("fetch")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    script:
        "../../scripts/import_download_participants.py"


# --- standard atlases: nilearn's atlas fetchers, one folder per atlas ---------------


rule download_atlas:
    output:
        image="data/atlases/{atlas}/atlas.nii.gz",
        regions="data/atlases/{atlas}/regions.tsv",
        description="data/atlases/{atlas}/atlas.json",
        provenance="data/atlases/{atlas}/download_atlas.provenance.json",
    log:
        "logs/download_atlas/{atlas}.log",
    benchmark:
        "logs/benchmark/download_atlas/{atlas}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(1500),
        runtime=60,
    params:
        settings=atlas_download_settings,
        download_dir=config["download_dir"],
    script:
        "../../scripts/download_atlas.py"


# --- local: a lab's own files, by path templates ------------------------------


rule describe_local:
    output:
        description="data/{dataset}/dataset.json",
        provenance="data/{dataset}/describe_local.provenance.json",
    log:
        "logs/describe_local/{dataset}.log",
    benchmark:
        "logs/benchmark/describe_local/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("local")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    params:
        name="{dataset}",
        settings=dataset_section("local"),
        source=dataset_source,
        query=bids_query,
    script:
        "../../scripts/describe_local.py"


rule import_local_brain_mask:
    input:
        source=local_brain_mask_source,
    output:
        brain_mask="data/{dataset}/brainmask.nii.gz",
        provenance="data/{dataset}/import_local_brain_mask.provenance.json",
    log:
        "logs/import_local_brain_mask/{dataset}.log",
    benchmark:
        "logs/benchmark/import_local_brain_mask/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("local")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    script:
        "../../scripts/import_local_brain_mask.py"


rule import_local_participants:
    input:
        source=local_participants_source,
    output:
        participants="data/{dataset}/participants.tsv",
        provenance="data/{dataset}/import_local_participants.provenance.json",
    log:
        "logs/import_local_participants/{dataset}.log",
    benchmark:
        "logs/benchmark/import_local_participants/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_with_participants("local")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    params:
        subjects=dataset_subject_list,
    script:
        "../../scripts/import_local_participants.py"


rule import_local:
    input:
        unpack(local_sources("bold", "events")),
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
        provenance="data/{dataset}/sub-{subject}/import_local.provenance.json",
    log:
        "logs/import_local/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_local/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(local_datasets_by_confounds(every_subject=False)),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(3500),
        runtime=30,
    params:
        tr=local_setting("tr"),
        link_bold=local_setting("link_bold"),
        events_format=local_setting("events_format"),
        rest_label=local_setting("rest_label"),
        runs=local_subject_runs,
    script:
        "../../scripts/import_local.py"


rule import_local_roi:
    input:
        unpack(local_sources("roi")),
    output:
        file="data/{dataset}/sub-{subject}/roi.nii.gz",
        provenance="data/{dataset}/sub-{subject}/import_local_file.roi.provenance.json",
    log:
        "logs/import_local_roi/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_local_roi/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(datasets_where("local")),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_fixed(500),
        runtime=10,
    params:
        role="roi",
    script:
        "../../scripts/import_local_file.py"


# Where every subject has confound tables, the BOLD job imports them too: one
# Python start-up per subject instead of two (the others keep a job for them).
use rule import_local as import_local_with_confounds with:
    input:
        unpack(local_sources("bold", "events", "confounds")),
    output:
        bold="data/{dataset}/sub-{subject}/bold.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
        confounds="data/{dataset}/sub-{subject}/confounds.tsv",
        provenance="data/{dataset}/sub-{subject}/import_local.provenance.json",
    log:
        "logs/import_local/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_local/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(local_datasets_by_confounds(every_subject=True)),
    params:
        columns=local_setting("confound_columns"),


use rule import_local_roi as import_local_anat with:
    input:
        unpack(local_sources("anat")),
    output:
        file="data/{dataset}/sub-{subject}/anat.nii.gz",
        provenance="data/{dataset}/sub-{subject}/import_local_file.anat.provenance.json",
    log:
        "logs/import_local_anat/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_local_anat/{dataset}_sub-{subject}.tsv"
    params:
        role="anat",


use rule import_local_roi as import_local_confounds with:
    input:
        # The BOLD runs give the number of volumes each confounds table must have.
        unpack(local_sources("confounds", "bold")),
    output:
        file="data/{dataset}/sub-{subject}/confounds.tsv",
        provenance="data/{dataset}/sub-{subject}/import_local_file.confounds.provenance.json",
    log:
        "logs/import_local_confounds/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_local_confounds/{dataset}_sub-{subject}.tsv"
    wildcard_constraints:
        dataset=names_pattern(local_datasets_by_confounds(every_subject=False)),
    params:
        role="confounds",
        columns=local_setting("confound_columns"),


use rule import_local_roi as import_local_stimuli with:
    input:
        # The BOLD runs give the number of rows each stimulus table must have.
        unpack(local_sources("stimuli", "bold")),
    output:
        file="data/{dataset}/sub-{subject}/stimuli.tsv",
        provenance="data/{dataset}/sub-{subject}/import_local_file.stimuli.provenance.json",
    log:
        "logs/import_local_stimuli/{dataset}_sub-{subject}.log",
    benchmark:
        "logs/benchmark/import_local_stimuli/{dataset}_sub-{subject}.tsv"
    params:
        role="stimuli",
        shape=local_setting("stimulus_shape"),
        runs=local_subject_runs,
