# fmriflow: fMRI decoding, searchlight, encoding, reconstruction, group ICA,
# clustering and connectomes as a workflow.
#
#   snakemake --cores 2                         default config (simulated data)
#   snakemake --cores 2 --configfile config/haxby.yaml
#
# This file only loads and validates the config, includes one rule file per
# stage and names the final targets. See README.md for the architecture.

from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The default config applies only when none is given with --configfile, so
# that `--configfile config/haxby.yaml` runs Haxby alone instead of adding it
# to the simulated datasets.
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/validation.smk"
include: "workflow/rules/common.smk"


# Defaults filled in, keys in canonical order, cross-references checked:
# before any rule reads the config.
validate_config(config)


include: "workflow/rules/acquire.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/decoding.smk"
include: "workflow/rules/searchlight.smk"
include: "workflow/rules/unsupervised.smk"
include: "workflow/rules/encoding.smk"
include: "workflow/rules/reconstruction.smk"
include: "workflow/rules/connectomes.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
