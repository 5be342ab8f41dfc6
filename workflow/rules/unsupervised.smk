# Unsupervised: group ICA and clustering of datasets in a common space.
# The per-subject PCA is its own cached job (a wide, cheap first layer for a
# cohort of hundreds); the group jobs read the subjects' reductions.


rule reduce_subject:
    input:
        clean="results/{dataset}/sub-{subject}/clean.npy",
    output:
        reduced="results/{dataset}/sub-{subject}/pca_{n_components}.npy",
        provenance="results/{dataset}/sub-{subject}/reduce_subject.pca_{n_components}.provenance.json",
    log:
        "logs/reduce_subject/{dataset}_sub-{subject}_{n_components}.log",
    benchmark:
        "logs/benchmark/reduce_subject/{dataset}_sub-{subject}_{n_components}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(300, 1.5),
        runtime=30,
    params:
        n_components="{n_components}",
        seed=preprocess_setting("reduction_seed"),
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
        provenance="results/{dataset}/group/ica/{name}/group_ica.provenance.json",
    log:
        "logs/group_ica/{dataset}_{name}.log",
    benchmark:
        "logs/benchmark/group_ica/{dataset}_{name}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    # One thread: the node runs numerical libraries single-threaded (fmriflow.node),
    # so a second core would sit idle while parcellate waits for it.
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(1000, 3),
        runtime=120,
    params:
        analysis=ica_entry,
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
        provenance="results/{dataset}/group/clustering/{method}_{n_clusters}/parcellate.provenance.json",
    log:
        "logs/parcellate/{dataset}_{method}_{n_clusters}.log",
    benchmark:
        "logs/benchmark/parcellate/{dataset}_{method}_{n_clusters}.tsv"
    priority: 1
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(1000, 2),
        runtime=120,
    params:
        analysis=clustering_entry,
        method="{method}",
        n_clusters="{n_clusters}",
    script:
        "../../scripts/parcellate.py"
