# fmriflow: fMRI decoding, searchlight, encoding, reconstruction, group ICA,
# clustering and connectomes as a workflow.
#
#   snakemake --cores 2                         default config (simulated data)
#   snakemake --cores 2 --configfile config/haxby.yaml
#
# This file only loads and validates the config, includes one rule file per
# stage and names the final targets. See README.md for the architecture.

import atexit
import gc
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# Planning a cohort makes millions of Python objects (1,000 + 1,000 subjects:
# 20,000 jobs, 1 GB) that all live until Snakemake exits. At its default
# thresholds Python's cycle collector walks through them over and over while
# the DAG grows, and once more at exit to free what the system reclaims anyway:
# a fifth of the time of such a dry-run (benchmarks/bench_dag.py). Collect less
# often, and leave the heap to the system at exit (objects are still freed by
# reference counting; buffered files are flushed by their own exit handlers).
gc.set_threshold(100_000, 50, 100)
atexit.register(gc.freeze)


# The workflow's own library (scripts/fmriflow) comes before any installed
# copy, here for the checks at parse time and, through PYTHONPATH, in every
# job: results are made, and credited in the provenance, by this checkout.
LIBRARY = str(Path(workflow.basedir) / "scripts")
sys.path.insert(0, LIBRARY)
# (An optional variable the workflow extends, not one the user must set:
# hence no envvars directive.)
os.environ.update(
    PYTHONPATH=os.pathsep.join([LIBRARY, *filter(None, [os.environ.get("PYTHONPATH")])])
)

# Snakemake 9.10-9.16 run more jobs at once than --cores allows (a lone ready
# job's cores are never taken): fmriflow.scheduling counts them.
from fmriflow.scheduling import count_lone_ready_jobs

count_lone_ready_jobs()

# Planning a cohort looks up, for every input file, the rules that can make it,
# parses every job's script path and the signatures of its functions, sorts
# every output path and computes every job's params to find its software
# environment: fmriflow.planning indexes the outputs by file name, keeps parsed
# paths and signatures, sorts paths as tuples and leaves params alone where the
# environment does not use them (the same answers, sooner).
from fmriflow.planning import (
    check_nested_outputs_by_parts,
    index_outputs_by_file_name,
    memoize_function_parameters,
    memoize_uri_parsing,
    skip_unused_params,
)

index_outputs_by_file_name()
memoize_uri_parsing()
memoize_function_parameters()
check_nested_outputs_by_parts()
skip_unused_params()


report: "workflow/report/workflow.rst"


include: "workflow/rules/validation.smk"
include: "workflow/rules/common.smk"


# The default config applies only when none is given with --configfile, so
# that `--configfile config/haxby.yaml` runs Haxby alone instead of adding it
# to the simulated datasets. It is read by the workflow (a YAML mistake is
# one message with its file and line); --config values still win.
if not workflow.overwrite_configfiles:
    use_default_config(Path(workflow.basedir) / "config" / "config.yaml", config)


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
