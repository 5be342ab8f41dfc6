"""fmriflow: the library behind the fmriflow Snakemake workflow.

Plain functions on arrays and images, with no Snakemake inside. Each
workflow node (``scripts/<node>.py``) loads its inputs, calls one or two
functions from here and writes its outputs.
"""

__version__ = "0.1.0"
