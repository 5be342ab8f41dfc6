# Unsupervised: group ICA and clustering of datasets in a common space.
# The per-subject PCA is its own cached job (a wide, cheap first layer for a
# cohort of hundreds); the group jobs read the subjects' reductions.


rule reduce_subject:
    input:
        clean="results/{dataset}/sub-{subject}/clean.npy",
    output:
        reduced="results/{dataset}/sub-{subject}/pca_{n_components}.npy",
    params:
        n_components="{n_components}",
        seed=reduction_seed,
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(300, 1.5),
        runtime=30,
    conda:
        "../../envs/unsupervised.yaml"
    log:
        "logs/reduce_subject/{dataset}_sub-{subject}_{n_components}.log",
    benchmark:
        "logs/benchmark/reduce_subject/{dataset}_sub-{subject}_{n_components}.tsv"
    script:
        "../../scripts/reduce_subject.py"


rule group_ica:
    input:
        unpack(ica_inputs),
    output:
        components="results/{dataset}/group/ica/{name}/components.nii.gz",
        table=report(
            "results/{dataset}/group/ica/{name}/components.tsv",
            caption="../report/ica_table.rst",
            category="Group ICA",
            subcategory="{name}",
            labels={"figure": "component table"},
        ),
        stability="results/{dataset}/group/ica/{name}/stability.tsv",
        summary="results/{dataset}/group/ica/{name}/summary.json",
        overlay=report(
            "results/{dataset}/group/ica/{name}/components.png",
            caption="../report/ica_overlay.rst",
            category="Group ICA",
            subcategory="{name}",
            labels={"figure": "all components"},
        ),
        maps=report(
            directory("results/{dataset}/group/ica/{name}/maps"),
            patterns=["component_{index}.png"],
            caption="../report/ica_component.rst",
            category="Group ICA",
            subcategory="{name}",
            labels={"figure": "component {index}"},
        ),
    params:
        analysis=ica_settings,
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(1000, 3),
        runtime=120,
    conda:
        "../../envs/unsupervised.yaml"
    log:
        "logs/group_ica/{dataset}_{name}.log",
    benchmark:
        "logs/benchmark/group_ica/{dataset}_{name}.tsv"
    script:
        "../../scripts/group_ica.py"


rule parcellate:
    input:
        unpack(clustering_inputs),
    output:
        labels="results/{dataset}/group/clustering/{method}_{n_clusters}/labels.nii.gz",
        stats=report(
            "results/{dataset}/group/clustering/{method}_{n_clusters}/stats.tsv",
            caption="../report/clustering_stats.rst",
            category="Clustering",
            subcategory="{method}",
            labels={"clusters": "{n_clusters}", "figure": "statistics"},
        ),
        summary="results/{dataset}/group/clustering/{method}_{n_clusters}/summary.json",
        figure=report(
            "results/{dataset}/group/clustering/{method}_{n_clusters}/labels.png",
            caption="../report/clustering_labels.rst",
            category="Clustering",
            subcategory="{method}",
            labels={"clusters": "{n_clusters}", "figure": "parcels"},
        ),
    params:
        analysis=clustering_settings,
        method="{method}",
        n_clusters="{n_clusters}",
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(1000, 2),
        runtime=120,
    conda:
        "../../envs/unsupervised.yaml"
    log:
        "logs/parcellate/{dataset}_{method}_{n_clusters}.log",
    benchmark:
        "logs/benchmark/parcellate/{dataset}_{method}_{n_clusters}.tsv"
    script:
        "../../scripts/parcellate.py"
