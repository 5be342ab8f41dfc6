"""What the benchmarks share: timing and memory of one call in a spawned process.

Each benchmark runs every measured method in a freshly spawned Python
interpreter (so imports and memory of one method do not count for another),
and reads wall time (``perf_counter``), the CPU time of the process's
threads (``getrusage``) and its resident memory (``VmRSS`` after imports,
``VmHWM`` peak) from ``/proc/self/status``.
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
import resource
import time
from pathlib import Path


def memory_status():
    """Current and peak resident memory of this process, in bytes."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def cpu_seconds():
    """User plus system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_call(run, *args):
    """Call ``run(*args)``; return its result and the call's time and memory.

    Returns
    -------
    result : object
        What ``run`` returned.
    measurement : dict
        ``seconds`` (wall), ``cpu`` (seconds), ``peak`` (bytes, the
        process's high-water mark) and ``after_imports`` (resident bytes
        before the call).
    """
    after_imports = memory_status()["VmRSS"]
    cpu = cpu_seconds()
    start = time.perf_counter()
    result = run(*args)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    peak = memory_status()["VmHWM"]
    return result, {"seconds": seconds, "cpu": cpu, "peak": peak, "after_imports": after_imports}


def spawn_pool(workers, fresh=False):
    """A process pool of spawned interpreters (a new one per task if ``fresh``)."""
    context = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, max_tasks_per_child=1 if fresh else None
    )


def in_spawned_process(function, *args):
    """Run ``function(*args)`` in a freshly spawned Python process; return its result."""
    with spawn_pool(1) as pool:
        return pool.submit(function, *args).result()


def warm_page_cache(paths):
    """Read files once so that every method finds them in the page cache."""
    for path in paths:
        with open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass


def verdict(ok):
    """'yes' or 'NO'."""
    return "yes" if ok else "NO"


def add_run_options(parser, data_dir=True):
    """The options every benchmark has: ``--repeat`` and (optionally) ``--data-dir``."""
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement, interleaved (fastest kept)"
    )
    if data_dir:
        parser.add_argument(
            "--data-dir",
            type=Path,
            help="keep the generated data here and reuse it (default: temp)",
        )


#: Environment variables that set the thread count of numerical libraries.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def thread_environment(n_threads=1, active=True):
    """Spawn children with ``n_threads`` BLAS/OpenMP threads (1: as the workflow's jobs run)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    if active:
        os.environ.update({name: str(n_threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def best_runs(runs):
    """Of repeated measurements (name -> list of results), the fastest, with the largest peak."""
    best = {}
    for name, results in runs.items():
        fastest = min(results, key=lambda r: r["seconds"])
        best[name] = {**fastest, "peak": max(r["peak"] for r in results)}
    return best


#: The project's node library (``scripts/fmriflow``).
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def import_fmriflow():
    """Make ``fmriflow`` importable in this process."""
    import sys

    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))


def print_table(rows, columns, left=1):
    """Print rows of dicts as an aligned text table (blank where a value is missing).

    ``columns`` are ``(title, key, format)``; the first ``left`` columns are
    aligned left, the others right.
    """
    cells = [
        ["" if row.get(key) is None else format(row[key], fmt) for _, key, fmt in columns]
        for row in rows
    ]
    widths = [
        max([len(title)] + [len(line[i]) for line in cells])
        for i, (title, _, _) in enumerate(columns)
    ]

    def line(texts):
        return "  ".join(
            f"{t:<{w}}" if i < left else f"{t:>{w}}"
            for i, (t, w) in enumerate(zip(texts, widths, strict=True))
        )

    header = line([title for title, _, _ in columns])
    print(header)
    print("-" * len(header))
    for texts in cells:
        print(line(texts))
