# Report: one table of the provenance of every result, for
#   snakemake --report report.html


localrules:
    provenance_table,


rule provenance_table:
    input:
        results=analysis_targets(),
    output:
        table=report(
            "results/provenance.tsv",
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"table": "provenance of every result"},
        ),
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    log:
        "logs/provenance_table/provenance_table.log",
    benchmark:
        "logs/benchmark/provenance_table/provenance_table.tsv"
    script:
        "../../scripts/provenance_table.py"
