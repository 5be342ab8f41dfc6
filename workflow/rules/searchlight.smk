# Searchlight: per subject and analysis, a cross-validated accuracy map (and,
# with permutations, a p-value map). Analyses with permutations have one more
# output, so they use a second rule that differs only in its outputs.


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
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(1000, 4),
        runtime=120,
    params:
        analysis=searchlight_entry,
        subject="{subject}",
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
        provenance="results/{dataset}/sub-{subject}/searchlight/{analysis}/searchlight.provenance.json",
    log:
        "logs/searchlight_permutations/{dataset}_sub-{subject}_{analysis}.log",
    benchmark:
        "logs/benchmark/searchlight_permutations/{dataset}_sub-{subject}_{analysis}.tsv"
    wildcard_constraints:
        analysis=searchlights_with_permutations(True),
    resources:
        # A batch of permutations holds per-voxel statistics for many labellings.
        mem_mb=mem_mb_from_input(1500, 8),
        runtime=120,
