"""A fix for Snakemake's job scheduler: a lone ready job's cores are taken.

Snakemake 9.10 to 9.16 start a job that is the only one ready without
subtracting its cores (and other resources) from those available, but add
them back when it finishes (``JobScheduler.job_selector`` returns early for
one job, before ``update_available_resources``). Each such job leaves one
core more than there is: with ``--cores 2`` the default run had up to 7
jobs at once, and a chain of 8 one-job steps leaves 11 cores "available"
(``tests/test_scheduling.py``). Later Snakemake versions count it, but
require a version of ``packaging`` that nilearn 0.14 does not accept. The
Snakefile applies :func:`count_lone_ready_jobs`, which does nothing on a
Snakemake without the early return.
"""

import functools
import inspect

#: The early return of the affected versions, in ``JobScheduler.job_selector``.
LONE_JOB_RETURN = "if len(jobs) == 1:"


def has_lone_job_leak(scheduler_class):
    """Whether ``scheduler_class.job_selector`` returns early for one job, uncounted."""
    selector = getattr(scheduler_class, "job_selector", None)
    if selector is None or getattr(selector, "counts_lone_jobs", False):
        return False
    try:
        source = inspect.getsource(selector)
    except (OSError, TypeError):
        return False
    return LONE_JOB_RETURN in source


def count_lone_ready_jobs():
    """Make Snakemake's scheduler take the resources of a job that was the only one ready.

    Returns
    -------
    bool
        Whether the scheduler was changed (False: this Snakemake counts them).
    """
    from snakemake.scheduling.job_scheduler import JobScheduler

    if not has_lone_job_leak(JobScheduler):
        return False
    select = JobScheduler.job_selector

    @functools.wraps(select)
    def job_selector(self, jobs):
        selected = select(self, jobs)
        if len(jobs) == 1 and selected:
            with self._lock:
                self.update_available_resources(selected)
        return selected

    job_selector.counts_lone_jobs = True
    JobScheduler.job_selector = job_selector
    return True
