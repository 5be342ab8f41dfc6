"""Benchmark: fmriflow's run-by-run cleaning against nilearn.signal.clean(runs=...).

What is compared
    ``fmriflow.cleaning.clean_runs`` writing a float32 memory-mapped ``.npy``
    (as the workflow's ``clean`` node does) against
    ``nilearn.signal.clean(signals, runs=runs, ...)`` with the same settings:
    linear detrending, a Butterworth band-pass (0.01-0.1 Hz at TR 2 s),
    regression of 6 standardized confounds, and ``zscore_sample``, each run
    on its own.

Data
    One resting-state subject as in the issue's cohort: 28,144 voxels (MNI
    4 mm grey matter), 2 runs of 150 volumes, random walks plus noise;
    ``--quick`` uses 5,000 voxels.

How it is measured
    Each method runs in its own freshly spawned Python process, imports done
    first; wall time, CPU time and the peak resident memory of the process
    (``VmHWM``) as in the other benchmarks. ``--repeat N`` keeps the fastest
    of N interleaved runs (and the largest peak).

Checks
    nilearn's float64 result cast to float32 must equal fmriflow's matrix
    exactly (fmriflow calls nilearn's own per-run cleaning; only the filter
    runs on all columns at once). Target (issue 13): at least 10x faster.

Run ``.venv/bin/python benchmarks/bench_cleaning.py [--quick] [--repeat N]``.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from measuring import (
    add_run_options,
    best_runs,
    import_fmriflow,
    in_spawned_process,
    measure_call,
    print_table,
    thread_environment,
    verdict,
)

SETTINGS = {"detrend": True, "standardize": "zscore_sample", "high_pass": 0.01, "low_pass": 0.1}
TR = 2.0
TARGET_SPEEDUP = 10.0


def make_subject(folder, n_voxels, n_volumes=150, n_runs=2, seed=0):
    """Random walks with noise and confounds, saved as .npy files."""
    rng = np.random.default_rng(seed)
    n = n_volumes * n_runs
    data = rng.standard_normal((n, n_voxels)).astype(np.float32).cumsum(axis=0)
    data += rng.standard_normal((n, n_voxels)).astype(np.float32) * 5
    np.save(folder / "masked.npy", data)
    np.save(folder / "runs.npy", np.repeat(np.arange(n_runs), n_volumes))
    np.save(folder / "confounds.npy", rng.standard_normal((n, 6)).cumsum(axis=0))


def run_fmriflow(folder):
    import_fmriflow()
    from fmriflow.cleaning import clean_runs
    from fmriflow.io import npy_writer

    matrix = np.load(folder / "masked.npy", mmap_mode="r")
    runs, confounds = np.load(folder / "runs.npy"), np.load(folder / "confounds.npy")

    def run():
        with npy_writer(folder / "fmriflow.npy", matrix.shape, np.float32) as out:
            clean_runs(matrix, runs, TR, out, confounds=confounds, **SETTINGS)

    _, measurement = measure_call(run)
    return measurement


def run_nilearn(folder):
    import warnings

    from nilearn.signal import clean

    matrix = np.load(folder / "masked.npy")
    runs, confounds = np.load(folder / "runs.npy"), np.load(folder / "confounds.npy")

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return clean(
                matrix.astype(np.float64),
                runs=runs,
                confounds=confounds,
                standardize_confounds=True,
                filter="butterworth",
                t_r=TR,
                ensure_finite=False,
                **SETTINGS,
            )

    cleaned, measurement = measure_call(run)
    np.save(folder / "nilearn.npy", cleaned.astype(np.float32))
    return measurement


METHODS = {"fmriflow": run_fmriflow, "nilearn": run_nilearn}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 voxels instead of 28,144")
    add_run_options(parser, data_dir=False)
    args = parser.parse_args(argv)
    n_voxels = 5000 if args.quick else 28144
    with tempfile.TemporaryDirectory() as tmp, thread_environment(1):
        folder = Path(tmp)
        make_subject(folder, n_voxels)
        runs = {name: [] for name in METHODS}
        for _ in range(args.repeat):
            for name, method in METHODS.items():
                runs[name].append(in_spawned_process(method, folder))
        best = best_runs(runs)
        identical = np.array_equal(
            np.load(folder / "fmriflow.npy"), np.load(folder / "nilearn.npy")
        )
    rows = [
        {
            "method": name,
            "seconds": r["seconds"],
            "cpu": r["cpu"],
            "peak": r["peak"] / 1e6,
        }
        for name, r in best.items()
    ]
    print(f"one subject: {n_voxels} voxels, 2 runs x 150 volumes, band-pass + 6 confounds")
    print_table(
        rows,
        [("method", "method", ""), ("wall (s)", "seconds", ".2f"), ("cpu (s)", "cpu", ".2f"),
         ("peak (MB)", "peak", ".0f")],
    )  # fmt: skip
    speedup = best["nilearn"]["seconds"] / best["fmriflow"]["seconds"]
    memory = best["fmriflow"]["peak"] / best["nilearn"]["peak"]
    print(f"time nilearn/fmriflow: {speedup:.1f}x; memory fmriflow/nilearn: {memory:.2f}")
    print(f"values identical (float32): {verdict(identical)}")
    print(
        f"target: >= {TARGET_SPEEDUP:g}x faster with identical values: "
        f"{verdict(identical and speedup >= TARGET_SPEEDUP)}"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
