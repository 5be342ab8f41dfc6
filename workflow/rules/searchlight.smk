# Searchlight: per subject and analysis, a cross-validated accuracy map (and,
# with permutations, a p-value map and the null maps). The centres are split
# into `chunks` parts (or as many as keep each within `chunk_minutes`), one job
# each (spread over a cluster), gathered into the map. Analyses with permutations have more outputs, so they use a second
# gathering rule that differs only in its outputs.


# With chunk_minutes, the number of parts comes from a plan: the analysis timed on
# a sample of centres (a checkpoint, so the parts are planned once it has run).
checkpoint searchlight_plan:
    input:
        unpack(searchlight_plan_inputs),
    output:
        plan="results/{dataset}/sub-{subject}/searchlight/{analysis}/plan.json",
        provenance="results/{dataset}/sub-{subject}/searchlight/{analysis}/searchlight_plan.provenance.json",
    log:
        "logs/searchlight_plan/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/searchlight_plan/{dataset}_sub-{subject}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(1500, 8),
        runtime=30,
    params:
        analysis=searchlight_entry,
    script:
        "../../scripts/searchlight_plan.py"


rule searchlight_part:
    input:
        unpack(searchlight_part_inputs),
    output:
        scores="results/{dataset}/sub-{subject}/searchlight/{analysis}/parts/part-{part}.npz",
        provenance="results/{dataset}/sub-{subject}/searchlight/{analysis}/parts/part-{part}.provenance.json",
    log:
        "logs/searchlight_part/{dataset}_sub-{subject}_{analysis}_part-{part}.log",
    benchmark:
        "logs/benchmark/searchlight_part/{dataset}_sub-{subject}_{analysis}_part-{part}.tsv"
    wildcard_constraints:
        part=r"\d+",
    conda:
        "../../envs/fmriflow.yaml"
    threads: searchlight_threads
    resources:
        # A batch of permutations holds per-voxel statistics for many labellings.
        mem_mb=mem_mb_from_input(1500, 8),
        runtime=120,
    params:
        analysis=searchlight_entry,
        part=lambda wildcards: int(wildcards.part),
    script:
        "../../scripts/searchlight_part.py"


rule searchlight:
    input:
        unpack(searchlight_inputs),
    output:
        accuracy="results/{dataset}/sub-{subject}/searchlight/{analysis}/accuracy.nii.gz",
        spheres=report(
            "results/{dataset}/sub-{subject}/searchlight/{analysis}/spheres.tsv",
            caption="../report/searchlight_spheres.rst",
            category="Searchlight",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "best spheres"},
        ),
        summary="results/{dataset}/sub-{subject}/searchlight/{analysis}/summary.json",
        figure=report(
            "results/{dataset}/sub-{subject}/searchlight/{analysis}/map.png",
            caption="../report/searchlight_map.rst",
            category="Searchlight",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "accuracy map"},
        ),
        provenance="results/{dataset}/sub-{subject}/searchlight/{analysis}/searchlight.provenance.json",
    log:
        "logs/searchlight/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/searchlight/{dataset}_sub-{subject}_{analysis}.tsv"
    wildcard_constraints:
        analysis=searchlights_with_permutations(False),
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(1000, 4),
        runtime=30,
    params:
        analysis=searchlight_entry,
        subject="{subject}",
    script:
        "../../scripts/searchlight.py"


use rule searchlight as searchlight_permutations with:
    output:
        accuracy="results/{dataset}/sub-{subject}/searchlight/{analysis}/accuracy.nii.gz",
        pvalues="results/{dataset}/sub-{subject}/searchlight/{analysis}/pvalues.nii.gz",
        null="results/{dataset}/sub-{subject}/searchlight/{analysis}/null.nii.gz",
        spheres=report(
            "results/{dataset}/sub-{subject}/searchlight/{analysis}/spheres.tsv",
            caption="../report/searchlight_spheres.rst",
            category="Searchlight",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "best spheres"},
        ),
        summary="results/{dataset}/sub-{subject}/searchlight/{analysis}/summary.json",
        figure=report(
            "results/{dataset}/sub-{subject}/searchlight/{analysis}/map.png",
            caption="../report/searchlight_map.rst",
            category="Searchlight",
            subcategory="{analysis}",
            labels={"subject": "{subject}", "figure": "accuracy map"},
        ),
        provenance="results/{dataset}/sub-{subject}/searchlight/{analysis}/searchlight.provenance.json",
    log:
        "logs/searchlight_permutations/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/searchlight_permutations/{dataset}_sub-{subject}_{analysis}.tsv"
    wildcard_constraints:
        analysis=searchlights_with_permutations(True),
    resources:
        # The gathered null accuracies: one map per permutation.
        mem_mb=mem_mb_from_input(1000, 8),
        runtime=30,


# Group inference over the subjects' maps (subjects on one grid): cluster
# inference (Stelzer et al. 2013) and prevalence inference (Allefeld et al.
# 2016), from every subject's permutation maps.
rule searchlight_group:
    input:
        unpack(searchlight_group_inputs),
    output:
        mean_accuracy="results/{dataset}/group/searchlight/{analysis}/mean_accuracy.nii.gz",
        cluster_labels="results/{dataset}/group/searchlight/{analysis}/clusters.nii.gz",
        cluster_fwe_p="results/{dataset}/group/searchlight/{analysis}/cluster_fwe_p.nii.gz",
        prevalence="results/{dataset}/group/searchlight/{analysis}/prevalence.nii.gz",
        t_map="results/{dataset}/group/searchlight/{analysis}/t.nii.gz",
        clusters=report(
            "results/{dataset}/group/searchlight/{analysis}/clusters.tsv",
            caption="../report/searchlight_clusters.rst",
            category="Searchlight",
            subcategory="{analysis}",
            labels={"subject": "group", "figure": "cluster table"},
        ),
        summary="results/{dataset}/group/searchlight/{analysis}/summary.json",
        cluster_figure=report(
            "results/{dataset}/group/searchlight/{analysis}/clusters.png",
            caption="../report/searchlight_group.rst",
            category="Searchlight",
            subcategory="{analysis}",
            labels={"subject": "group", "figure": "clusters (FWE)"},
        ),
        prevalence_figure=report(
            "results/{dataset}/group/searchlight/{analysis}/prevalence.png",
            caption="../report/searchlight_prevalence.rst",
            category="Searchlight",
            subcategory="{analysis}",
            labels={"subject": "group", "figure": "prevalence bound"},
        ),
        provenance="results/{dataset}/group/searchlight/{analysis}/searchlight_group.provenance.json",
    log:
        "logs/searchlight_group/{dataset}_{analysis}.log",
    benchmark:
        "logs/benchmark/searchlight_group/{dataset}_{analysis}.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        # Every subject's null maps, uncompressed, and batches of group draws.
        mem_mb=mem_mb_from_input(600, 12),
        runtime=120,
    params:
        analysis=searchlight_entry,
        subjects=lambda wildcards: dataset_subjects(wildcards.dataset),
    script:
        "../../scripts/searchlight_group.py"
