# Searchlight: per subject and analysis, a cross-validated accuracy map (and,
# with permutations, a p-value map). Analyses with permutations have one more
# output, so they use a second rule that differs only in its outputs.


rule searchlight:
    input:
        clean="results/{dataset}/sub-{subject}/clean.npy",
        mask="results/{dataset}/sub-{subject}/mask.nii.gz",
        mean="results/{dataset}/sub-{subject}/mean.nii.gz",
        events="data/{dataset}/sub-{subject}/events.tsv",
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
    wildcard_constraints:
        analysis=searchlights_with_permutations(False),
    params:
        analysis=searchlight_settings,
        subject="{subject}",
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(1000, 4),
        runtime=120,
    conda:
        "../../envs/decoding.yaml"
    log:
        "logs/searchlight/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/searchlight/{dataset}_sub-{subject}_{analysis}.tsv"
    script:
        "../../scripts/searchlight.py"


use rule searchlight as searchlight_permutations with:
    output:
        accuracy="results/{dataset}/sub-{subject}/searchlight/{analysis}/accuracy.nii.gz",
        pvalues="results/{dataset}/sub-{subject}/searchlight/{analysis}/pvalues.nii.gz",
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
    wildcard_constraints:
        analysis=searchlights_with_permutations(True),
    resources:
        # A batch of permutations holds per-voxel statistics for many labellings.
        mem_mb=mem_mb_from_input(1500, 8),
        runtime=120,
    log:
        "logs/searchlight_permutations/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/searchlight_permutations/{dataset}_sub-{subject}_{analysis}.tsv"
