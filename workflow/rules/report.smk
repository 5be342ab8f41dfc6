# Report: one table of the provenance of every result, for
#   snakemake --report report.html


localrules:
    provenance_table,


rule provenance_table:
    input:
        sidecars=provenance_sidecars,
    output:
        table=report(
            "results/provenance.tsv",
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"table": "provenance of every result"},
        ),
        provenance="results/provenance_table.provenance.json",
    log:
        "logs/provenance_table/provenance_table.log",
    benchmark:
        "logs/benchmark/provenance_table/provenance_table.tsv"
    conda:
        "../../envs/fmriflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    script:
        "../../scripts/provenance_table.py"
