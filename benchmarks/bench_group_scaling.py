"""Benchmark: the group ICA job as the number of subjects grows, with and without MIGP.

What is compared
    The group job of group ICA (group PCA + spatial FastICA, as the
    ``group_ica`` node runs it: ``fmriflow.decomposition.group_ica`` on the
    subjects' cached reductions ``pca_{n}.npy``, ``threshold="auto"``, the
    default ``n_init=5`` restarts) for 50, 100 and 200 subjects, three ways:

    * ``current``: the default group PCA (``solver="auto"``): the SVD of all
      subjects' unit-norm reductions stacked, streamed from the files by a
      seeded randomized subspace iteration that reads every subject
      ``n_iter + 2 = 9`` times per restart.
    * ``migp``: ``solver="migp"``: MIGP (Smith et al. 2014) reads every
      subject once, in a seeded random order, into a running matrix cut back
      to ``migp_rows`` rows (default ``4 x n_components``) whenever it fills;
      the restarts take the exact top components of that small matrix.
    * ``stacking``: what nilearn's ``CanICA`` does (its ``_MultiPCA``): every
      reduction loaded and stacked in memory (float32, as CanICA keeps float32
      data; filled in place, which is kinder than CanICA's list of arrays
      copied into the stack), rows scaled to unit norm in place (the norms
      without CanICA's ``data**2`` temporary, another stack's worth), then
      scikit-learn's ``randomized_svd`` (``n_iter=3``, CanICA's setting). The
      ICA stage after it is ours (FastICA restarts with the same seeds and
      consensus, orientation, order, threshold), so that only the group PCA
      differs.

Data
    Simulated subjects (``fmriflow.simulate``) on nilearn's MNI152
    grey-matter mask at 4 mm (28,144 voxels), the 5 default networks
    (``network_maps``, 14 mm blobs), ``--volumes`` volumes (default 150),
    TR 2 s, SNR drawn in [1, 2], cleaned by ``fmriflow.cleaning.clean_runs``
    (detrend, confounds, z-score; no band-pass) and reduced at once by
    ``reduce_subject`` to ``--subject-components`` rows (default 3 x
    ``--components`` = 60), saved as float32 ``.npy`` as the workflow caches
    them; the cleaned matrices are not kept. The largest cohort is generated
    once into ``--data-dir`` (reused when its parameters match) or a
    temporary folder (a folder holding more subjects with the same settings
    is reused too); the smaller cohorts are its first subjects.

How it is measured
    Every (method, cohort) runs in a freshly spawned Python process with one
    BLAS/OpenMP thread (as the node runner sets), after the imports, with
    the reductions in the page cache: wall time (``perf_counter``), CPU time
    (``getrusage``) and peak resident memory (``VmHWM``, the process's
    high-water mark, imports included), and the wall and CPU time of the
    group PCA alone (``current``, ``migp``: the time ``group_ica`` spends in
    ``reduced_by_migp`` and ``truncated_svd``, which the child wraps with a
    timer; ``stacking``: loading, stacking, scaling and ``randomized_svd``).
    The time per subject is the least-squares slope of a time against the
    number of subjects, for the whole job's wall and CPU time and for the
    group PCA's; a time is called linear when that line (with an
    intercept: the ICA stage does not grow with subjects) is within 10 %
    of every point. The CPU time is the one to trust on a busy machine (the
    load average is printed): other processes lengthen the wall time, not
    the CPU time. With ``--repeat N`` the fastest of N runs is kept, with
    the largest peak.

Accuracy
    Hungarian one-to-one matching of the maps to the planted networks by
    absolute spatial correlation (``fmriflow.decomposition.match_components``):
    the mean over the 5 networks, thresholded maps and raw maps.

Targets (issue 13): the MIGP group job's peak at most 1.5 GB at 200
subjects and at most 1/5 of the stacking path's; MIGP's recovery within
0.01 of the current path's. Benchmarks print; they assert nothing.

Run ``.venv/bin/python benchmarks/bench_group_scaling.py [--quick]``.
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from measuring import (
    add_run_options,
    best_runs,
    import_fmriflow,
    measure_call,
    print_table,
    spawn_pool,
    thread_environment,
    verdict,
    warm_page_cache,
)

RESOLUTION = 4
TR = 2.0
SNR = (1.0, 2.0)
N_NETWORKS = 5
BLOB_FWHM = 14.0
SEED = 0
MB = 1e6
#: Wall time is "linear" when the least-squares line is within this of every point.
LINEAR_TOLERANCE = 0.10
PEAK_TARGET = 1.5e9
STACKING_FRACTION = 5
RECOVERY_TOLERANCE = 0.01


def prepare_reductions(folder, n_subjects, n_volumes, n_subject_components):
    """Simulate, clean and reduce ``n_subjects`` subjects into ``folder`` (reused if there)."""
    import_fmriflow()
    from fmriflow import simulate
    from fmriflow.cleaning import clean_runs
    from fmriflow.decomposition import reduce_subject

    settings = {
        "subjects": n_subjects,
        "volumes": n_volumes,
        "subject_components": n_subject_components,
        "resolution": RESOLUTION,
        "snr": list(SNR),
        "networks": N_NETWORKS,
        "seed": SEED,
    }
    stamp = folder / "settings.json"
    paths = [folder / f"sub-{i + 1:03d}_pca_{n_subject_components}.npy" for i in range(n_subjects)]
    truth = folder / "truth.npy"
    if stamp.exists():
        stamped = json.loads(stamp.read_text())
        enough = stamped.pop("subjects", 0) >= n_subjects
        if enough and stamped == {k: v for k, v in settings.items() if k != "subjects"}:
            return paths, truth
    start = time.perf_counter()
    brain, grey, affine = simulate.rest_grid(RESOLUTION)
    maps, _ = simulate.network_maps(grey, affine, N_NETWORKS, BLOB_FWHM)
    np.save(truth, maps[:, grey].astype(np.float32))
    for index, path in enumerate(paths):
        sim = simulate.simulate_rest_subject(index, SEED, maps, brain, n_volumes, TR, SNR)
        raw = sim.bold[grey].T
        clean = np.zeros(raw.shape, dtype=np.float32)
        clean_runs(
            raw, np.zeros(n_volumes, dtype=int), TR, clean, confounds=sim.confounds.to_numpy()
        )
        np.save(path, reduce_subject(clean, n_subject_components, seed=SEED))
    stamp.write_text(json.dumps(settings))
    print(
        f"generated {n_subjects} subjects x {n_volumes} volumes -> {n_subject_components} "
        f"components each, {int(grey.sum())} voxels, in {time.perf_counter() - start:.0f} s "
        f"into {folder}",
        flush=True,
    )
    return paths, truth


# --- the three group jobs (run in child processes) -----------------------------------


def current_job(paths, n_components, migp_rows):
    """The default group PCA (streamed randomized SVD of the stack), then ICA."""
    from fmriflow.decomposition import group_ica

    return group_ica(paths, n_components, threshold="auto", seed=SEED)


def migp_job(paths, n_components, migp_rows):
    """MIGP, then ICA."""
    from fmriflow.decomposition import group_ica

    return group_ica(
        paths, n_components, threshold="auto", seed=SEED, solver="migp", migp_rows=migp_rows
    )


def stacking_job(paths, n_components, migp_rows, n_init=5):
    """nilearn CanICA's group PCA (stack in memory, scikit-learn's randomized_svd), our ICA."""
    from sklearn.utils.extmath import randomized_svd

    from fmriflow.decomposition.ica import (
        _consensus,
        _fastica,
        _run_seeds,
        finished_decomposition,
    )

    start, cpu = time.perf_counter(), time.process_time()
    shapes = [np.load(path, mmap_mode="r").shape for path in paths]
    data = np.empty((sum(s[0] for s in shapes), shapes[0][1]), dtype=np.float32, order="F")
    position = 0
    for path, shape in zip(paths, shapes, strict=True):
        data[position : position + shape[0]] = np.load(path)
        position += shape[0]
    norms = np.sqrt(np.einsum("ij,ij->i", data, data))
    data /= np.where(norms > 0, norms, 1.0)[:, None]
    components, _, _ = randomized_svd(
        data.T, n_components, transpose=True, random_state=SEED, n_iter=3
    )
    del data
    basis = components.T.astype(np.float64)
    PCA_SECONDS.append(time.perf_counter() - start)
    PCA_CPU.append(time.process_time() - cpu)
    runs = [_fastica(basis, seed, "logcosh", 200, 1e-4)[0] for seed in _run_seeds(SEED, n_init)]
    best = int(np.argmax(_consensus(runs)))
    return finished_decomposition(runs[best], paths, "canica", 1.0, "canica", SEED, True, {})


JOBS = {"current": current_job, "migp": migp_job, "stacking": stacking_job}

#: Seconds (wall, CPU) spent in the group PCA by the job running in this process.
PCA_SECONDS, PCA_CPU = [], []


def time_group_pca():
    """Count the time ``group_ica`` spends in its group PCA (MIGP and the SVDs).

    Wraps the two functions it calls for it, ``reduced_by_migp`` and
    ``truncated_svd`` (every restart), as imported in
    ``fmriflow.decomposition.ica``; the times go to :data:`PCA_SECONDS` and
    :data:`PCA_CPU`.
    """
    from fmriflow.decomposition import ica

    def timed(function):
        def run(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                PCA_SECONDS.append(time.perf_counter() - start)
                PCA_CPU.append(time.process_time() - cpu)

        return run

    ica.reduced_by_migp = timed(ica.reduced_by_migp)
    ica.truncated_svd = timed(ica.truncated_svd)


def measure_job(method, paths, n_components, migp_rows, out):
    """Run one group job in this (child) process; save its maps; return the measurement."""
    import_fmriflow()
    import sklearn.decomposition  # noqa: F401  (imported by the node; not timed)
    import sklearn.utils.extmath  # noqa: F401

    import fmriflow.decomposition  # noqa: F401

    time_group_pca()
    result, measurement = measure_call(JOBS[method], paths, n_components, migp_rows)
    np.savez(out, maps=result.maps, raw_maps=result.raw_maps)
    return {**measurement, "pca_seconds": sum(PCA_SECONDS), "pca_cpu": sum(PCA_CPU)}


def measure_in_child(method, paths, n_components, migp_rows, out):
    """:func:`measure_job` in a freshly spawned process with one BLAS thread."""
    with thread_environment(1), spawn_pool(1) as pool:
        return pool.submit(measure_job, method, paths, n_components, migp_rows, out).result()


# --- report --------------------------------------------------------------------------------


def scores(out, truth):
    """Recovery of the planted networks by the thresholded and the raw maps."""
    from fmriflow.decomposition import match_components

    maps = np.load(out)
    return {
        "recovery": match_components(maps["maps"], truth).mean,
        "recovery_raw": match_components(maps["raw_maps"], truth).mean,
    }


def time_fit(counts, seconds):
    """Least-squares line of wall time on subjects: slope, intercept, largest relative miss."""
    counts, seconds = np.asarray(counts, float), np.asarray(seconds, float)
    slope, intercept = np.polyfit(counts, seconds, 1)
    miss = np.max(np.abs(slope * counts + intercept - seconds) / seconds)
    return slope, intercept, miss


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8, 16, 32 subjects x 100 volumes")
    parser.add_argument("--subjects", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--volumes", type=int, default=150)
    parser.add_argument("--components", type=int, default=20, help="group ICA components")
    parser.add_argument(
        "--subject-components",
        type=int,
        default=None,
        help="components kept per subject (default: 3 x --components)",
    )
    parser.add_argument(
        "--migp-rows", type=int, default=None, help="rows MIGP keeps (default: the library's)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=sorted(JOBS), default=["current", "migp", "stacking"]
    )
    add_run_options(parser)
    return parser.parse_args(argv)


def measure_all(args, paths, truth, workdir):
    """Every method on every cohort, ``--repeat`` times; the best runs with their scores."""
    n_subject_components = args.subject_components or 3 * args.components
    runs = {}
    for _ in range(args.repeat):
        for n in args.subjects:
            cohort = [str(p) for p in paths[:n]]
            for method in args.methods:
                out = workdir / f"{method}_{n}.npz"
                result = measure_in_child(method, cohort, args.components, args.migp_rows, out)
                runs.setdefault((n, method), []).append(result)
                print(
                    f"  {n} subjects x {n_subject_components} rows, {method}: "
                    f"{result['seconds']:7.2f} s, peak {result['peak'] / MB:6.0f} MB",
                    flush=True,
                )
    results = best_runs(runs)
    for (n, method), result in results.items():
        result.update(scores(workdir / f"{method}_{n}.npz", truth))
    return results


def report(args, results, n_voxels, loads):
    """Print the table, the time fits and the targets."""
    import_fmriflow()
    from fmriflow.decomposition.pca import default_migp_rows

    n_subject_components = args.subject_components or 3 * args.components
    migp_rows = args.migp_rows or default_migp_rows(args.components)
    print()
    print(
        f"cohorts: {', '.join(map(str, args.subjects))} subjects x {args.volumes} volumes, "
        f"reduced to {n_subject_components} components each; {n_voxels:,} voxels (MNI152 grey "
        f"matter, {RESOLUTION} mm); {args.components} ICA components, n_init 5; MIGP keeps "
        f"{migp_rows} rows; 1 BLAS thread; {args.repeat} run(s) per measurement; "
        f"{os.cpu_count()} cores, load average {loads[0]:.1f} before and {loads[1]:.1f} after"
    )
    print()
    rows = [
        {
            "subjects": n,
            "method": method,
            "wall": result["seconds"],
            "cpu": result["cpu"],
            "pca": result["pca_seconds"],
            "pca_cpu": result["pca_cpu"],
            "peak": result["peak"] / MB,
            "imports": result["after_imports"] / MB,
            "recovery": result["recovery"],
            "recovery_raw": result["recovery_raw"],
        }
        for (n, method), result in sorted(results.items())
    ]
    print_table(
        rows,
        [
            ("subjects", "subjects", "d"),
            ("method", "method", ""),
            ("wall (s)", "wall", ".2f"),
            ("cpu (s)", "cpu", ".2f"),
            ("PCA wall (s)", "pca", ".2f"),
            ("PCA cpu (s)", "pca_cpu", ".2f"),
            ("peak (MB)", "peak", ".0f"),
            ("after imports (MB)", "imports", ".0f"),
            ("recovery", "recovery", ".3f"),
            ("recov. raw", "recovery_raw", ".3f"),
        ],
        left=2,
    )
    print()
    first, last = min(args.subjects), max(args.subjects)
    print(
        f"Time against subjects: least-squares line over the cohorts, of the whole job and of "
        f"its group PCA alone (wall and CPU); linear = the line within "
        f"{100 * LINEAR_TOLERANCE:.0f}% of every point"
    )
    print()
    fits = []
    for method in args.methods:
        for label, key in (
            ("job wall", "seconds"),
            ("job CPU", "cpu"),
            ("PCA wall", "pca_seconds"),
            ("PCA CPU", "pca_cpu"),
        ):
            seconds = [results[(n, method)][key] for n in args.subjects]
            slope, intercept, miss = time_fit(args.subjects, seconds)
            fits.append(
                {
                    "method": method,
                    "time": label,
                    "slope": slope,
                    "intercept": intercept,
                    "ratio": seconds[-1] / seconds[0],
                    "miss": 100 * miss,
                    "linear": verdict(miss <= LINEAR_TOLERANCE),
                }
            )
    print_table(
        fits,
        [
            ("method", "method", ""),
            ("time", "time", ""),
            ("s per subject", "slope", ".4f"),
            ("intercept (s)", "intercept", ".2f"),
            (f"t({last})/t({first})", "ratio", ".2f"),
            ("largest miss (%)", "miss", ".1f"),
            ("linear", "linear", ""),
        ],
        left=2,
    )
    print()
    for method in args.methods:
        peaks = results[(last, method)]["peak"] / results[(first, method)]["peak"]
        print(f"{method}: peak({last})/peak({first}) = {peaks:.2f}")
    if not {"migp", "current", "stacking"} <= set(args.methods):
        return
    print()
    print("Targets")
    migp, stacking = results[(last, "migp")], results[(last, "stacking")]
    print(
        f"MIGP group job peak at {last} subjects {migp['peak'] / MB:.0f} MB <= "
        f"{PEAK_TARGET / MB:.0f} MB: {verdict(migp['peak'] <= PEAK_TARGET)}; <= 1/"
        f"{STACKING_FRACTION} of the stacking path's ({stacking['peak'] / MB:.0f} MB, ratio "
        f"{stacking['peak'] / migp['peak']:.1f}): "
        f"{verdict(STACKING_FRACTION * migp['peak'] <= stacking['peak'])}"
    )
    for n in args.subjects:
        ours, current = results[(n, "migp")], results[(n, "current")]
        difference = ours["recovery"] - current["recovery"]
        raw = ours["recovery_raw"] - current["recovery_raw"]
        print(
            f"{n} subjects: recovery MIGP - current = {difference:+.3f} (raw maps {raw:+.3f}); "
            f"within {RECOVERY_TOLERANCE}: {verdict(abs(difference) <= RECOVERY_TOLERANCE)}; "
            f"not worse by more than {RECOVERY_TOLERANCE}: "
            f"{verdict(difference >= -RECOVERY_TOLERANCE)}; group job faster than current "
            f"{current['seconds'] / ours['seconds']:.1f}x (wall), "
            f"{current['cpu'] / ours['cpu']:.1f}x (CPU)"
        )


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.subjects, args.volumes = [8, 16, 32], 100
    args.subjects = sorted(set(args.subjects))
    n_subject_components = args.subject_components or 3 * args.components
    workdir = Path(tempfile.mkdtemp(prefix="bench_group_scaling_"))
    try:
        data_dir = args.data_dir or workdir
        data_dir.mkdir(parents=True, exist_ok=True)
        paths, truth = prepare_reductions(
            data_dir, max(args.subjects), args.volumes, n_subject_components
        )
        warm_page_cache(paths)
        truth = np.load(truth)
        loads = [os.getloadavg()[0]]
        results = measure_all(args, paths, truth, workdir)
        loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(workdir)
    report(args, results, truth.shape[1], loads)


if __name__ == "__main__":
    main()
