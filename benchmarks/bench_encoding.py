"""Benchmark: fmriflow's voxel-wise ridge encoding against scikit-learn's per-voxel search.

What is compared
    ``fmriflow.encoding.cross_validated_encoding(X, Y, runs, alphas,
    GroupKFold(5), GroupKFold(4))`` over all voxels at once (one SVD per
    inner or outer fold for every voxel and penalty) against scikit-learn
    fitted voxel by voxel: for every outer fold of the same ``GroupKFold(5)``
    by run, ``GridSearchCV(Ridge(), {"alpha": alphas}, cv=GroupKFold(4),
    scoring="r2").fit(X[train], y[train], groups=runs[train])`` (its inner
    folds by run too, refitted with the chosen penalty) predicts the test
    runs; R^2 of the pooled out-of-fold predictions. This is what
    ``cross_val_predict(GridSearchCV(...), X, y, groups=runs,
    params={"groups": runs})`` computes, with the chosen penalties kept.

Data
    Miyawaki-sized (Miyawaki et al., 2008): 20 runs of 145 volumes (2,900),
    random binary 10 x 10 images each held 3 volumes (100 pixel features),
    2,000 voxels: a quarter with Gaussian receptive fields (random centre,
    size 0.75-2.5 pixels, gain 0.2-1.5), all with AR(1) noise (phi 0.5, unit
    variance). Ten penalties ``numpy.logspace(-1, 4, 10)``.

How it is measured
    As in ``bench_searchlight.py``: each method in a freshly spawned Python
    process, data loaded and imports done before the clock starts, wall time
    (``perf_counter``), CPU time (``getrusage``) and peak resident memory
    (``VmHWM``). Both with ``--blas-threads`` BLAS threads (default 1, as the
    workflow's nodes run; scikit-learn's small per-voxel fits gain nothing
    from more). scikit-learn on all voxels would take most of an hour, so it
    is timed on a random subset of voxels (40; 10 with ``--quick``) and its
    time extrapolated linearly in the number of voxels (``n_voxels x`` its
    time per voxel: each voxel is an independent search). With ``--repeat
    N`` each measurement runs N times, interleaved, and the fastest is kept.

Checks
    On the subset's voxels: the chosen penalty of every voxel in every outer
    fold identical, and the R^2 equal to 1e-8. The target: fmriflow at least
    20x faster than the extrapolated scikit-learn. Exits non-zero if the
    penalties or scores differ.

Run ``.venv/bin/python benchmarks/bench_encoding.py [--quick] [--repeat N]``.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from measuring import (
    add_run_options,
    best_runs,
    in_spawned_process,
    measure_call,
    thread_environment,
    verdict,
)

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SEED = 0
SHAPE = (10, 10)
N_RUNS, RUN_VOLUMES, IMAGE_VOLUMES = 20, 145, 3
N_VOXELS = 2000
RF_FRACTION = 0.25
AR, NOISE_SD = 0.5, 1.0
ALPHAS = np.logspace(-1, 4, 10)
OUTER_SPLITS, INNER_SPLITS = 5, 4
#: Random voxels scikit-learn is timed on.
SUBSET = {"full": 40, "quick": 10}
TARGET_SPEEDUP = 20.0
R2_TOLERANCE = 1e-8
MB = 1e6


# --- data ------------------------------------------------------------------


def simulate(path):
    """Images in blocks, receptive-field and noise voxels; saved as ``.npz``."""
    rng = np.random.default_rng(SEED)
    n_pixels = SHAPE[0] * SHAPE[1]
    per_run = -(-RUN_VOLUMES // IMAGE_VOLUMES)
    runs = []
    for _ in range(N_RUNS):
        images = (rng.random((per_run, n_pixels)) < 0.5).astype(np.float64)
        runs.append(np.repeat(images, IMAGE_VOLUMES, axis=0)[:RUN_VOLUMES])
    X = np.vstack(runs)
    groups = np.repeat(np.arange(N_RUNS), RUN_VOLUMES)
    n_rf = int(RF_FRACTION * N_VOXELS)
    centres = rng.uniform(0.0, SHAPE[0] - 1.0, (n_rf, 2))
    sizes = rng.uniform(0.75, 2.5, n_rf)
    gains = rng.uniform(0.2, 1.5, n_rf)
    pixel_row, pixel_col = np.divmod(np.arange(n_pixels), SHAPE[1])
    distance2 = (pixel_row[:, None] - centres[:, 0]) ** 2 + (
        pixel_col[:, None] - centres[:, 1]
    ) ** 2
    weights = gains * np.exp(-distance2 / (2 * sizes**2))
    innovations = rng.standard_normal((N_RUNS, RUN_VOLUMES, N_VOXELS)) * NOISE_SD
    noise = np.empty_like(innovations)
    noise[:, 0] = innovations[:, 0]
    for t in range(1, RUN_VOLUMES):
        noise[:, t] = AR * noise[:, t - 1] + np.sqrt(1 - AR**2) * innovations[:, t]
    Y = noise.reshape(len(X), N_VOXELS)
    Y[:, :n_rf] += (X - 0.5) @ weights
    Y = Y[:, rng.permutation(N_VOXELS)]
    np.savez(path, X=X, Y=Y, groups=groups)
    return {"n_samples": len(X), "n_features": n_pixels, "n_voxels": N_VOXELS, "n_rf": n_rf}


# --- the methods (each runs in its own child process) ------------------------


def fmriflow_method():
    """Import fmriflow; return ``run(X, Y, groups, voxels) -> (alpha_index, r2)``."""
    sys.path.insert(0, str(SCRIPTS))
    import scipy.linalg  # noqa: F401
    from sklearn.model_selection import GroupKFold

    from fmriflow import encoding

    def run(X, Y, groups, voxels):
        result = encoding.cross_validated_encoding(
            X, Y, groups, ALPHAS, GroupKFold(OUTER_SPLITS), GroupKFold(INNER_SPLITS)
        )
        return result.alpha_index, result.r2

    return run


def sklearn_method():
    """Import scikit-learn; return ``run(X, Y, groups, voxels) -> (alpha_index, r2)``."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV, GroupKFold

    def run(X, Y, groups, voxels):
        folds = list(GroupKFold(OUTER_SPLITS).split(X, Y, groups))
        alpha_index = np.empty((len(folds), len(voxels)), dtype=int)
        predictions = np.empty((len(X), len(voxels)))
        for j, voxel in enumerate(voxels):
            for k, (train, test) in enumerate(folds):
                search = GridSearchCV(
                    Ridge(), {"alpha": list(ALPHAS)}, cv=GroupKFold(INNER_SPLITS), scoring="r2"
                )
                search.fit(X[train], Y[train, voxel], groups=groups[train])
                alpha_index[k, j] = search.best_index_
                predictions[test, j] = search.predict(X[test])
        return alpha_index, r2_score(Y[:, voxels], predictions, multioutput="raw_values")

    return run


LIBRARIES = {"fmriflow": fmriflow_method, "scikit-learn": sklearn_method}


def measure(spec):
    """Run one measurement in this (child) process; save its outputs, return time and memory."""
    run = LIBRARIES[spec["library"]]()
    data = np.load(spec["data"])
    X, Y, groups = data["X"], data["Y"], data["groups"]
    voxels = spec["voxels"]
    (alpha_index, r2), measurement = measure_call(run, X, Y, groups, voxels)
    np.savez(spec["out"], alpha_index=alpha_index, r2=r2)
    return measurement


def run_all(specs, repeat, threads):
    """Measure every spec ``repeat`` times, interleaved; keep the fastest run, largest peak."""
    runs = {name: [] for name in specs}
    with thread_environment(threads):
        for _ in range(repeat):
            for name, spec in specs.items():
                result = in_spawned_process(measure, spec)
                runs[name].append(result)
                print(f"  {name:<14} {result['seconds']:8.2f} s", flush=True)
    return best_runs(runs)


# --- comparison and report ------------------------------------------------------


def compare(specs, subset):
    """Identical penalties and R^2 within R2_TOLERANCE on the subset's voxels."""
    ours = np.load(specs["fmriflow"]["out"])
    reference = np.load(specs["scikit-learn"]["out"])
    ours_index = ours["alpha_index"][:, subset]
    r2_difference = float(np.max(np.abs(ours["r2"][subset] - reference["r2"])))
    return {
        "alphas identical": bool(np.array_equal(ours_index, reference["alpha_index"])),
        "alphas differing": int(np.sum(ours_index != reference["alpha_index"])),
        "r2 max difference": r2_difference,
        "r2 equal": r2_difference <= R2_TOLERANCE,
        "distinct alphas chosen": int(len(np.unique(ours["alpha_index"]))),
        "median r2": float(np.median(ours["r2"])),
        "max r2": float(np.max(ours["r2"])),
    }


def report(results, checks, n_subset, sizes, threads):
    """Print the measurements and the target; return whether the results agree."""
    ours = results["fmriflow"]
    theirs = results["scikit-learn"]
    per_voxel = theirs["seconds"] / n_subset
    extrapolated = per_voxel * sizes["n_voxels"]
    speedup = extrapolated / ours["seconds"]
    header = (
        f"{'measurement':<14} {'voxels':>7} {'wall (s)':>9} {'cpu (s)':>8} "
        f"{'peak RSS (MB)':>14} {'after imports (MB)':>19}"
    )
    print(header)
    print("-" * len(header))
    for name, n in (("fmriflow", sizes["n_voxels"]), ("scikit-learn", n_subset)):
        r = results[name]
        print(
            f"{name:<14} {n:>7} {r['seconds']:>9.2f} {r['cpu']:>8.2f} "
            f"{r['peak'] / MB:>14.0f} {r['after_imports'] / MB:>19.0f}"
        )
    print()
    print(f"fmriflow, all {sizes['n_voxels']} voxels: {ours['seconds']:.2f} s")
    print(f"scikit-learn, per voxel (timed on {n_subset} random voxels): {per_voxel * 1e3:.0f} ms")
    print(
        f"scikit-learn, all {sizes['n_voxels']} voxels, extrapolated linearly from the "
        f"{n_subset}-voxel run: {sizes['n_voxels']} x {per_voxel:.3f} s = {extrapolated:.0f} s"
    )
    print(f"speed ratio (scikit-learn extrapolated / fmriflow): {speedup:.0f}x")
    print()
    print(f"On the {n_subset} voxels timed with scikit-learn")
    print(
        f"  chosen penalties identical, every outer fold: {verdict(checks['alphas identical'])}"
        f" ({checks['alphas differing']} of {n_subset * OUTER_SPLITS} differ)"
    )
    print(
        f"  R^2 equal to {R2_TOLERANCE:g}: {verdict(checks['r2 equal'])} "
        f"(max |difference| {checks['r2 max difference']:.1e})"
    )
    print(
        f"All voxels: {checks['distinct alphas chosen']} distinct penalties chosen, "
        f"median R^2 {checks['median r2']:.3f}, max {checks['max r2']:.3f}"
    )
    agree = checks["alphas identical"] and checks["r2 equal"]
    print()
    print("Target")
    print(
        f"target >= {TARGET_SPEEDUP:g}x: {verdict(speedup >= TARGET_SPEEDUP and agree)} "
        f"({speedup:.0f}x, {threads} BLAS thread(s) each, identical results required)"
    )
    return agree


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"time scikit-learn on {SUBSET['quick']} voxels instead of {SUBSET['full']}",
    )
    add_run_options(parser, data_dir=False)
    parser.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads of both libraries"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    n_subset = SUBSET["quick" if args.quick else "full"]
    workdir = Path(tempfile.mkdtemp(prefix="bench_encoding_"))
    try:
        start = time.perf_counter()
        data = workdir / "data.npz"
        sizes = simulate(data)
        subset = np.sort(np.random.default_rng(SEED + 1).choice(N_VOXELS, n_subset, False))
        print(f"generated the data in {time.perf_counter() - start:.1f} s", flush=True)
        specs = {
            name: {
                "library": name,
                "data": data,
                "voxels": subset,
                "out": workdir / f"{name}.npz",
            }
            for name in LIBRARIES
        }
        results = run_all(specs, args.repeat, args.blas_threads)
        checks = compare(specs, subset)
    finally:
        shutil.rmtree(workdir)
    print()
    print(
        f"{sizes['n_samples']} volumes ({N_RUNS} runs x {RUN_VOLUMES}) x {sizes['n_features']} "
        f"binary pixels, {sizes['n_voxels']} voxels ({sizes['n_rf']} with receptive fields), "
        f"{len(ALPHAS)} penalties; outer GroupKFold({OUTER_SPLITS}), inner "
        f"GroupKFold({INNER_SPLITS}) by run"
    )
    print(f"{args.repeat} run(s) per measurement, {args.blas_threads} BLAS thread(s) each")
    print()
    if not report(results, checks, n_subset, sizes, args.blas_threads):
        raise SystemExit("chosen penalties or scores differ from scikit-learn's")


if __name__ == "__main__":
    main()
