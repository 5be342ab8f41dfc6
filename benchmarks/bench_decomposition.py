"""Benchmark: fmriflow's group ICA and clustering against nilearn's CanICA and Parcellations.

What is compared
    Group ICA: ``fmriflow.decomposition`` run as the workflow runs it — one
    job per subject (``reduce_subject`` on the subject's ``clean.npy``,
    result saved as ``.npy``), then one group job (``group_ica`` on the
    saved reductions, ``threshold="auto"``) — against
    ``nilearn.decomposition.CanICA`` fitted on the same cleaned data as 4D
    NIfTI images, with the same mask, number of components and seed.
    Clustering: ``fmriflow.parcellation`` (``voxel_features`` on the same
    cached reductions, then ``ward`` or ``kmeans``) against
    ``nilearn.regions.Parcellations(method="ward" | "kmeans")``. With
    ``--smoothing FWHM`` (clustering only), nilearn smooths the images
    (``smoothing_fwhm``) and fmriflow the voxel features
    (``smooth_features_in_place``, the same Gaussian on the same grid, zero outside
    the mask; linear, so it commutes with the group projection).

    nilearn is given what makes it fastest and equivalent: uncompressed
    ``.nii`` files of the already cleaned data, ``smoothing_fwhm=None``,
    ``standardize=False``, ``detrend=False``, ``n_jobs=1`` (its joblib
    workers would escape the memory measurement) and its default BLAS
    threads (both cores). CanICA is fitted with ``threshold=None`` and its
    own "auto" threshold (a percentile of all |values|, as CanICA does after
    choosing among its restarts) is applied to its maps in the parent, so
    one fit gives both the raw and the thresholded maps.

Data
    A simulated cohort (``fmriflow.simulate``): ``--subjects`` subjects
    (default 20) x ``--volumes`` volumes (default 150), TR 2 s, on nilearn's
    MNI152 grey-matter mask at 4 mm (28,144 voxels), the 5 default networks
    (``network_maps``, 14 mm blobs), SNR drawn in [1, 2], cleaned per
    subject with ``fmriflow.cleaning.clean_runs`` (linear detrend, the
    simulated confounds regressed out, z-score; no band-pass, which costs
    about 15 s per subject in nilearn at this size). Written once into
    ``--data-dir`` (reused when its parameters match) or a temporary folder:
    ``sub-XX.npy`` (float32 ``clean.npy``), ``sub-XX.nii`` (float32 4D),
    the mask and the ground-truth maps. ``--quick``: 8 subjects x 100
    volumes.

How it is measured
    Every method runs in freshly spawned Python processes, as in
    ``bench_masking.py``: wall time with ``time.perf_counter``, CPU time
    (user + system, all threads) with ``getrusage`` and peak resident
    memory from ``VmHWM`` in ``/proc/self/status``. fmriflow's processes
    are spawned with ``OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=1`` (one thread,
    as the workflow's node runner sets); nilearn's with the machine's
    defaults.

    * ``fmriflow stage 1``: one process per subject (a new process for every
      job, like Snakemake), two at a time. *CPU* is the sum over the jobs of
      each process's whole CPU time, Python start-up and imports included;
      *wall* is the elapsed time of the whole stage with 2 parallel workers;
      *peak* is the largest peak of any job.
    * ``fmriflow group`` (one process per method): the time of the call
      after the imports; its CPU the same; its peak the process's.
    * ``fmriflow total``: stage 1 wall (2 workers) + group wall; CPU summed;
      peak the largest of all processes. The clustering methods reuse the
      reductions of stage 1 (the workflow caches them), so their total
      counts the same stage 1 again.
    * nilearn: the ``fit`` call after the imports, in one process.

    With ``--repeat N`` every measurement is repeated N times, interleaved;
    the fastest wall time is kept with the largest peak.

Accuracy
    ICA: Hungarian one-to-one matching of the maps to the planted networks
    by absolute spatial correlation (``match_components``); the mean over
    the 5 networks, for the thresholded and the raw maps. Clustering: the
    adjusted Rand index between fmriflow's and nilearn's labels (same
    method), the number of connected regions (6-connectivity) and of
    fragmented parcels, parcel sizes, and the compression R² on the cleaned
    data (variance kept when each voxel is replaced by its parcel mean).

Run ``.venv/bin/python benchmarks/bench_decomposition.py [--quick]``.
"""

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from measuring import (
    add_run_options,
    cpu_seconds,
    import_fmriflow,
    measure_call,
    memory_status,
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


def prepare_data(folder, n_subjects, n_volumes):
    """Simulate and clean the cohort into ``folder`` (reused if already there)."""
    import nibabel as nib

    import_fmriflow()
    from fmriflow import simulate
    from fmriflow.cleaning import clean_runs

    settings = {
        "subjects": n_subjects,
        "volumes": n_volumes,
        "resolution": RESOLUTION,
        "snr": list(SNR),
        "networks": N_NETWORKS,
        "seed": SEED,
    }
    stamp = folder / "settings.json"
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    paths = {
        "npy": [folder / f"sub-{s}.npy" for s in subjects],
        "nii": [folder / f"sub-{s}.nii" for s in subjects],
        "mask": folder / "mask.nii.gz",
        "truth": folder / "truth.npy",
    }
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return paths
    start = time.perf_counter()
    brain, grey, affine = simulate.rest_grid(RESOLUTION)
    maps, _ = simulate.network_maps(grey, affine, N_NETWORKS, BLOB_FWHM)
    nib.save(nib.Nifti1Image(grey.astype(np.uint8), affine), paths["mask"])
    np.save(paths["truth"], maps[:, grey].astype(np.float32))
    for index, (npy, nii) in enumerate(zip(paths["npy"], paths["nii"], strict=True)):
        sim = simulate.simulate_rest_subject(index, SEED, maps, brain, n_volumes, TR, SNR)
        raw = sim.bold[grey].T
        clean = np.zeros(raw.shape, dtype=np.float32)
        clean_runs(
            raw, np.zeros(n_volumes, dtype=int), TR, clean, confounds=sim.confounds.to_numpy()
        )
        np.save(npy, clean)
        volume = np.zeros(grey.shape + (n_volumes,), dtype=np.float32)
        volume[grey] = clean.T
        nib.save(nib.Nifti1Image(volume, affine), nii)
    stamp.write_text(json.dumps(settings))
    print(
        f"generated {n_subjects} subjects x {n_volumes} volumes, {int(grey.sum())} voxels, "
        f"in {time.perf_counter() - start:.0f} s into {folder}",
        flush=True,
    )
    return paths


# --- measurement (in child processes) --------------------------------------------


def reduction_job(data_path, out_path, n_components):
    """One workflow job of stage 1: reduce one subject, save the ``.npy``."""
    import_fmriflow()
    from fmriflow.decomposition import reduce_subject
    from fmriflow.io import load_matrix, save_npy

    start = time.perf_counter()
    save_npy(reduce_subject(load_matrix(data_path), n_components, seed=SEED), out_path)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": cpu_seconds(), "peak": memory_status()["VmHWM"]}


def fmriflow_ica(paths, n_components, n_parcels, n_features, smoothing):
    import_fmriflow()
    import sklearn.decomposition  # noqa: F401  (imported by the node; not timed)

    from fmriflow.decomposition import group_ica

    def run():
        result = group_ica(paths["reductions"], n_components, threshold="auto", seed=SEED)
        return {"maps": result.maps, "raw_maps": result.raw_maps}

    return run


def fmriflow_clustering(method):
    def factory(paths, n_components, n_parcels, n_features, smoothing):
        import_fmriflow()
        import sklearn.cluster  # noqa: F401  (imported by the node; not timed)

        from fmriflow.io import load_mask
        from fmriflow.parcellation import parcellate, smooth_features_in_place, voxel_features

        mask, img = load_mask(paths["mask"])

        def run():
            features = voxel_features(paths["reductions"], n_features, seed=SEED)
            if smoothing:
                smooth_features_in_place(features, mask, img.affine, smoothing)
            return {"labels": parcellate(features, mask, n_parcels, method, seed=SEED)}

        return run

    return factory


def nilearn_canica(paths, n_components, n_parcels, n_features, smoothing):
    from nilearn.decomposition import CanICA

    def run():
        model = CanICA(
            mask=str(paths["mask"]),
            n_components=n_components,
            smoothing_fwhm=None,
            standardize=False,
            detrend=False,
            threshold=None,
            random_state=SEED,
            n_jobs=1,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit([str(p) for p in paths["nii"]])
        return {"raw_maps": model.components_}

    return run


def nilearn_parcellations(method):
    def factory(paths, n_components, n_parcels, n_features, smoothing):
        import nibabel as nib
        from nilearn.regions import Parcellations

        mask = np.asanyarray(nib.load(paths["mask"]).dataobj) > 0

        def run():
            model = Parcellations(
                method=method,
                n_parcels=n_parcels,
                mask=str(paths["mask"]),
                smoothing_fwhm=smoothing or None,
                standardize=False,
                detrend=False,
                random_state=SEED,
                n_jobs=1,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit([str(p) for p in paths["nii"]])
            labels = np.asanyarray(model.labels_img_.dataobj)[mask]
            return {"labels": labels.astype(np.int32)}

        return run

    return factory


#: Group-stage methods: name -> factory returning a ``run()`` (imports done).
GROUP_METHODS = {
    "fmriflow ica": fmriflow_ica,
    "nilearn canica": nilearn_canica,
    "fmriflow ward": fmriflow_clustering("ward"),
    "nilearn ward": nilearn_parcellations("ward"),
    "fmriflow kmeans": fmriflow_clustering("kmeans"),
    "nilearn kmeans": nilearn_parcellations("kmeans"),
}


def measure_group(method, paths, out, settings):
    """Run one group-stage method in this (child) process; save its outputs."""
    outputs, measurement = measure_call(GROUP_METHODS[method](paths, **settings))
    np.savez(out, **outputs)
    return measurement


def one_thread_environment(active=True):
    """Spawn children with one BLAS/OpenMP thread, as the workflow's jobs run."""
    return thread_environment(1, active)


def run_stage1(paths, workdir, n_subject_components, workers=2):
    """Stage 1 as the workflow runs it: one fresh process per subject, 2 at a time."""
    outs = [workdir / f"reduction-{i:03d}.npy" for i in range(len(paths["npy"]))]
    start = time.perf_counter()
    with one_thread_environment(), spawn_pool(workers, fresh=True) as pool:
        jobs = [
            pool.submit(reduction_job, str(data), str(out), n_subject_components)
            for data, out in zip(paths["npy"], outs, strict=True)
        ]
        results = [job.result() for job in jobs]
    wall = time.perf_counter() - start
    return outs, {
        "seconds": wall,
        "cpu": sum(r["cpu"] for r in results),
        "peak": max(r["peak"] for r in results),
        "job_seconds": sum(r["seconds"] for r in results),
    }


def measure_in_child(method, paths, out, settings):
    """Run :func:`measure_group` in a freshly spawned Python process."""
    with one_thread_environment(method.startswith("fmriflow")), spawn_pool(1) as pool:
        return pool.submit(measure_group, method, paths, out, settings).result()


# --- accuracy ------------------------------------------------------------------------


def canica_threshold(maps, ratio=1.0):
    """CanICA's "auto" threshold: zero |values| below a percentile of all of them."""
    from scipy.stats import scoreatpercentile

    magnitudes = np.abs(maps)
    cut = scoreatpercentile(magnitudes, 100.0 - 100.0 / len(maps) * ratio)
    return np.where(magnitudes < cut, 0.0, maps)


def ica_scores(outputs, truth):
    """Hungarian mean |correlation| with the planted networks, thresholded and raw."""
    import_fmriflow()
    from fmriflow.decomposition import match_components

    raw = outputs["raw_maps"]
    thresholded = outputs["maps"] if "maps" in outputs else canica_threshold(raw)
    return {
        "recovery": match_components(thresholded, truth).mean,
        "recovery_raw": match_components(raw, truth).mean,
    }


def clustering_scores(labels, mask, data_paths):
    import_fmriflow()
    from fmriflow.parcellation import summarize_parcellation

    return summarize_parcellation(labels, mask, data_paths)


# --- report ------------------------------------------------------------------------------


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 subjects x 100 volumes")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--volumes", type=int, default=150)
    parser.add_argument("--components", type=int, default=20, help="group ICA components")
    parser.add_argument(
        "--subject-components",
        type=int,
        default=None,
        help="components kept per subject (default: 3 x --components)",
    )
    parser.add_argument("--parcels", type=int, default=100, help="clusters")
    parser.add_argument("--features", type=int, default=200, help="fmriflow clustering features")
    parser.add_argument(
        "--smoothing",
        type=float,
        default=0.0,
        help="clustering only: FWHM (mm) of the smoothing, for both libraries (default none)",
    )
    parser.add_argument("--skip-ica", action="store_true")
    parser.add_argument("--skip-clustering", action="store_true")
    add_run_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.subjects, args.volumes = 8, 100
    n_subject_components = args.subject_components or 3 * args.components
    methods = []
    if not args.skip_ica:
        methods += ["fmriflow ica", "nilearn canica"]
    if not args.skip_clustering:
        methods += ["fmriflow ward", "nilearn ward", "fmriflow kmeans", "nilearn kmeans"]
    settings = {
        "n_components": args.components,
        "n_parcels": args.parcels,
        "n_features": args.features,
        "smoothing": args.smoothing,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench_decomposition_"))
    try:
        data_dir = args.data_dir or workdir
        data_dir.mkdir(parents=True, exist_ok=True)
        paths = prepare_data(data_dir, args.subjects, args.volumes)
        warm_page_cache(paths["npy"] + paths["nii"])
        stage1_runs, group_runs = [], {m: [] for m in methods}
        for repeat in range(args.repeat):
            reductions, stage1 = run_stage1(paths, workdir, n_subject_components)
            stage1_runs.append(stage1)
            print(f"  run {repeat + 1}: fmriflow stage 1: {stage1['seconds']:6.2f} s", flush=True)
            paths["reductions"] = [str(p) for p in reductions]
            for method in methods:
                out = workdir / f"{method.replace(' ', '_')}.npz"
                result = measure_in_child(method, paths, out, settings)
                group_runs[method].append(result)
                print(f"  run {repeat + 1}: {method}: {result['seconds']:6.2f} s", flush=True)
        results = {}
        for method, runs in group_runs.items():
            best = min(runs, key=lambda r: r["seconds"])
            results[method] = {**best, "peak": max(r["peak"] for r in runs)}
            results[method]["after_imports_mb"] = best["after_imports"] / MB
        best1 = min(stage1_runs, key=lambda r: r["seconds"])
        stage1 = {**best1, "peak": max(r["peak"] for r in stage1_runs)}
        outputs = {m: dict(np.load(workdir / f"{m.replace(' ', '_')}.npz")) for m in methods}
        truth = np.load(paths["truth"])
        import nibabel as nib

        mask = np.asanyarray(nib.load(paths["mask"]).dataobj) > 0
        for method in methods:
            if "labels" in outputs[method]:
                results[method].update(
                    clustering_scores(outputs[method]["labels"], mask, paths["npy"])
                )
            else:
                results[method].update(ica_scores(outputs[method], truth))
    finally:
        shutil.rmtree(workdir)

    print()
    print(
        f"cohort: {args.subjects} subjects x {args.volumes} volumes, {int(mask.sum())} voxels "
        f"(MNI grey matter, {RESOLUTION} mm); {args.components} ICA components, "
        f"{n_subject_components} per subject; {args.parcels} parcels, {args.features} features, "
        f"smoothing {args.smoothing:g} mm; "
        f"{args.repeat} run(s) per method"
    )
    print(
        f"fmriflow stage 1 ({args.subjects} jobs, one process each, 2 workers, 1 BLAS thread): "
        f"wall {stage1['seconds']:.2f} s, CPU {stage1['cpu']:.2f} s (compute only "
        f"{stage1['job_seconds']:.2f} s), largest peak {stage1['peak'] / MB:.0f} MB"
    )
    print()
    rows = []
    verdicts = []
    families = [("ica", "nilearn canica")]
    families += [("ward", "nilearn ward"), ("kmeans", "nilearn kmeans")]
    for family, reference in families:
        ours_name = f"fmriflow {family}"
        if ours_name not in results:
            continue
        ours, theirs = results[ours_name], results[reference]
        total_wall = stage1["seconds"] + ours["seconds"]
        total_cpu = stage1["cpu"] + ours["cpu"]
        total_peak = max(stage1["peak"], ours["peak"])
        rows.append(
            {**theirs, "method": reference, "wall": theirs["seconds"], "peak": theirs["peak"] / MB}
        )
        rows.append(
            {
                **ours,
                "method": f"{ours_name} (group)",
                "wall": ours["seconds"],
                "peak": ours["peak"] / MB,
            }
        )
        rows.append(
            {
                "method": f"{ours_name} (total)",
                "wall": total_wall,
                "cpu": total_cpu,
                "peak": total_peak / MB,
            }
        )
        speed_total = theirs["seconds"] / total_wall
        speed_cpu = theirs["cpu"] / total_cpu
        speed_group = theirs["seconds"] / ours["seconds"]
        memory = total_peak / theirs["peak"]
        line = (
            f"{family}: nilearn/fmriflow time: total wall (2 workers) {speed_total:.2f}x, "
            f"total CPU {speed_cpu:.2f}x, group only (cached reductions) {speed_group:.2f}x; "
            f"peak memory fmriflow/nilearn {memory:.2f}"
        )
        if family == "ica":
            accurate = (
                ours["recovery"] >= theirs["recovery"]
                and ours["recovery_raw"] >= theirs["recovery_raw"]
            )
            line += f"; recovery at least as good: {verdict(accurate)}"
        else:
            from sklearn.metrics import adjusted_rand_score

            ari = adjusted_rand_score(outputs[ours_name]["labels"], outputs[reference]["labels"])
            better = verdict(ours["r2"] >= theirs["r2"])
            line += f"; ARI fmriflow vs nilearn {ari:.2f}; R² at least as good: {better}"
        line += (
            f"; faster (total wall): {verdict(speed_total > 1)}; lower peak: {verdict(memory < 1)}"
        )
        verdicts.append(line)
    columns = [
        ("method", "method", ""),
        ("wall (s)", "wall", ".2f"),
        ("cpu (s)", "cpu", ".2f"),
        ("peak (MB)", "peak", ".0f"),
        ("after imports (MB)", "after_imports_mb", ".0f"),
        ("recovery", "recovery", ".3f"),
        ("recov. raw", "recovery_raw", ".3f"),
        ("parcels", "n_parcels", "d"),
        ("regions", "n_regions", "d"),
        ("fragmented", "n_fragmented", "d"),
        ("size min", "size_min", "d"),
        ("size med", "size_median", ".0f"),
        ("size max", "size_max", "d"),
        ("R²", "r2", ".3f"),
    ]
    print_table(rows, columns)
    print()
    print("Targets")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
