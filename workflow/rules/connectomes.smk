# Connectomes (nilearn's connectivity chapter; Dadi et al. 2019), per analysis:
#   regions on the voxels all subjects share (group ICA regions, a parcellation or an atlas)
#   → per subject: region signals and connectivity matrices (a wide layer of small jobs)
#   → group: mean matrices and tangent space; with `compare`, an edge-wise test of two
#     groups; with `sparse`, graphical lasso and the group-sparse model; with `predict`,
#     one cross-validated prediction per phenotype.
# The group jobs read only the per-subject matrices (and signals for the sparse models).


rule connectome_regions:
    input:
        unpack(connectome_regions_inputs),
    output:
        regions="results/{dataset}/group/connectomes/{analysis}/regions.nii.gz",
        table=report(
            "results/{dataset}/group/connectomes/{analysis}/regions.tsv",
            caption="../report/connectome_regions_table.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "region table"},
        ),
        summary="results/{dataset}/group/connectomes/{analysis}/regions.json",
        figure=report(
            "results/{dataset}/group/connectomes/{analysis}/regions.png",
            caption="../report/connectome_regions.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "regions"},
        ),
        provenance="results/{dataset}/group/connectomes/{analysis}/connectome_regions.provenance.json",
    log:
        "logs/connectome_regions/{dataset}_{analysis}.log",
    benchmark:
        "logs/benchmark/connectome_regions/{dataset}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(800, 4),
        runtime=30,
    params:
        analysis=connectome_entry,
    script:
        "../../scripts/connectome_regions.py"


rule connectome_subject:
    input:
        unpack(connectome_subject_inputs),
    output:
        signals="results/{dataset}/sub-{subject}/connectomes/{analysis}/signals.tsv",
        covariance="results/{dataset}/sub-{subject}/connectomes/{analysis}/covariance.tsv",
        correlation="results/{dataset}/sub-{subject}/connectomes/{analysis}/correlation.tsv",
        partial_correlation="results/{dataset}/sub-{subject}/connectomes/{analysis}/partial_correlation.tsv",
        summary="results/{dataset}/sub-{subject}/connectomes/{analysis}/summary.json",
        provenance="results/{dataset}/sub-{subject}/connectomes/{analysis}/connectome_subject.provenance.json",
    log:
        "logs/connectome_subject/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/connectome_subject/{dataset}_sub-{subject}_{analysis}.tsv"
    wildcard_constraints:
        analysis=connectomes_where("sparse", False),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(500, 1.5),
        runtime=20,
    params:
        analysis=connectome_entry,
        subject="{subject}",
    script:
        "../../scripts/connectome_subject.py"


use rule connectome_subject as connectome_subject_sparse with:
    output:
        signals="results/{dataset}/sub-{subject}/connectomes/{analysis}/signals.tsv",
        covariance="results/{dataset}/sub-{subject}/connectomes/{analysis}/covariance.tsv",
        correlation="results/{dataset}/sub-{subject}/connectomes/{analysis}/correlation.tsv",
        partial_correlation="results/{dataset}/sub-{subject}/connectomes/{analysis}/partial_correlation.tsv",
        graphical_lasso="results/{dataset}/sub-{subject}/connectomes/{analysis}/graphical_lasso.tsv",
        summary="results/{dataset}/sub-{subject}/connectomes/{analysis}/summary.json",
        provenance="results/{dataset}/sub-{subject}/connectomes/{analysis}/connectome_subject.provenance.json",
    log:
        "logs/connectome_subject_sparse/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/connectome_subject_sparse/{dataset}_sub-{subject}_{analysis}.tsv"
    wildcard_constraints:
        analysis=connectomes_where("sparse", True),


rule connectome_group:
    input:
        unpack(connectome_group_inputs),
    output:
        mean_correlation="results/{dataset}/group/connectomes/{analysis}/mean_correlation.tsv",
        mean_partial_correlation="results/{dataset}/group/connectomes/{analysis}/mean_partial_correlation.tsv",
        geometric_mean="results/{dataset}/group/connectomes/{analysis}/geometric_mean.tsv",
        tangent="results/{dataset}/group/connectomes/{analysis}/tangent.npy",
        summary="results/{dataset}/group/connectomes/{analysis}/summary.json",
        matrices=report(
            "results/{dataset}/group/connectomes/{analysis}/matrices.png",
            caption="../report/connectome_matrices.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "mean matrices"},
        ),
        connectome=report(
            "results/{dataset}/group/connectomes/{analysis}/connectome.png",
            caption="../report/connectome_glass.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "mean connectome"},
        ),
        provenance="results/{dataset}/group/connectomes/{analysis}/connectome_group.provenance.json",
    log:
        "logs/connectome_group/{dataset}_{analysis}.log",
    benchmark:
        "logs/benchmark/connectome_group/{dataset}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(800, 4),
        runtime=30,
    params:
        analysis=connectome_entry,
    script:
        "../../scripts/connectome_group.py"


rule connectome_compare:
    input:
        unpack(connectome_compare_inputs),
    output:
        edges=report(
            "results/{dataset}/group/connectomes/{analysis}/edges.tsv",
            caption="../report/connectome_edges.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "edge-wise comparison"},
        ),
        summary="results/{dataset}/group/connectomes/{analysis}/comparison.json",
        figure=report(
            "results/{dataset}/group/connectomes/{analysis}/difference.png",
            caption="../report/connectome_difference.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "group difference"},
        ),
        provenance="results/{dataset}/group/connectomes/{analysis}/connectome_compare.provenance.json",
    log:
        "logs/connectome_compare/{dataset}_{analysis}.log",
    benchmark:
        "logs/benchmark/connectome_compare/{dataset}_{analysis}.tsv"
    wildcard_constraints:
        analysis=connectomes_where("compare", True),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(800, 4),
        runtime=30,
    params:
        analysis=connectome_entry,
        subjects=connectome_subjects,
    script:
        "../../scripts/connectome_compare.py"


rule connectome_sparse:
    input:
        unpack(connectome_sparse_inputs),
    output:
        mean_graphical_lasso="results/{dataset}/group/connectomes/{analysis}/mean_graphical_lasso.tsv",
        group_sparse="results/{dataset}/group/connectomes/{analysis}/group_sparse.npy",
        mean_group_sparse="results/{dataset}/group/connectomes/{analysis}/mean_group_sparse.tsv",
        summary="results/{dataset}/group/connectomes/{analysis}/sparse.json",
        figure=report(
            "results/{dataset}/group/connectomes/{analysis}/sparse.png",
            caption="../report/connectome_sparse.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "sparse models"},
        ),
        provenance="results/{dataset}/group/connectomes/{analysis}/connectome_sparse.provenance.json",
    log:
        "logs/connectome_sparse/{dataset}_{analysis}.log",
    benchmark:
        "logs/benchmark/connectome_sparse/{dataset}_{analysis}.tsv"
    wildcard_constraints:
        analysis=connectomes_where("sparse", True),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(1000, 8),
        runtime=120,
    params:
        analysis=connectome_entry,
    script:
        "../../scripts/connectome_sparse.py"


rule connectome_predict:
    input:
        unpack(connectome_predict_inputs),
    output:
        accuracy=report(
            "results/{dataset}/group/connectomes/{analysis}/prediction/{target}/accuracy.tsv",
            caption="../report/connectome_prediction_table.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "prediction of {target}: table"},
        ),
        folds="results/{dataset}/group/connectomes/{analysis}/prediction/{target}/folds.tsv",
        summary="results/{dataset}/group/connectomes/{analysis}/prediction/{target}/summary.json",
        figure=report(
            "results/{dataset}/group/connectomes/{analysis}/prediction/{target}/accuracy.png",
            caption="../report/connectome_prediction.rst",
            category="Connectomes",
            subcategory="{analysis}",
            labels={"figure": "prediction of {target}"},
        ),
        provenance="results/{dataset}/group/connectomes/{analysis}/prediction/{target}/connectome_predict.provenance.json",
    log:
        "logs/connectome_predict/{dataset}_{analysis}_{target}.log",
    benchmark:
        "logs/benchmark/connectome_predict/{dataset}_{analysis}_{target}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(800, 6),
        runtime=60,
    params:
        analysis=connectome_entry,
        subjects=connectome_subjects,
        target="{target}",
    script:
        "../../scripts/connectome_predict.py"
