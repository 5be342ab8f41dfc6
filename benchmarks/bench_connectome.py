"""Benchmark: fmriflow's connectome stage against nilearn's connectivity pipeline.

What is compared
    The same cleaned rest cohort turned into region signals, connectomes and
    a cross-validated prediction of the subjects' group, twice: once as
    nilearn's example "functional connectivity predicts age group" does it,
    once as the workflow runs it. Both with labels regions and with maps
    regions (``--regions``), each a comparison of its own.

    nilearn, in one process (as the example's script):

    * per subject: the masker (``NiftiLabelsMasker`` or ``NiftiMapsMasker``,
      ``mask_img`` the grey-matter mask, ``standardize=False``,
      ``detrend=False``: the data are already cleaned), fitted once and
      ``transform``-ed on each subject's 4D image, as the example does;
      then ``ConnectivityMeasure(kind=...)`` for ``"correlation"`` and
      ``"partial correlation"`` (its default Ledoit-Wolf estimator);
    * group: ``ConnectivityMeasure(kind="tangent")`` fitted on all subjects
      (the description of the group), and for each of the three kinds
      ``cross_val_score`` of the pipeline ``ConnectivityMeasure(kind,
      vectorize=True, discard_diagonal=kind != "tangent")`` +
      ``LogisticRegression(max_iter=5000)`` on the list of signals, with
      ``RepeatedStratifiedKFold(n_splits, n_repeats, random_state=0)``: the
      connectivity step is fitted inside each fold, so the tangent space's
      reference mean is fitted on the fold's training subjects only.

    fmriflow, as its jobs run:

    * per subject (the ``connectome_subject`` node; one freshly spawned
      Python process per subject, like Snakemake's jobs, ``--workers`` at a
      time): the mask, the regions image and table read with
      ``fmriflow.io`` / ``fmriflow.connectome_files``, the cached
      ``clean.npy`` memory-mapped, ``fmriflow.connectivity.region_signals``
      and ``subject_matrices`` (covariance, correlation, partial
      correlation), written as the node writes them (``signals.tsv`` with
      ``write_table``, the matrices with ``write_matrix``);
    * group (one process, the work of the ``connectome_group`` and
      ``connectome_predict`` nodes without their figures, the matrices read
      once): ``read_subject_matrices`` (only the per-subject files),
      ``connectivity.tangent_matrices`` of the covariances, and
      ``connectome_prediction.predict_from_connectomes`` for each measure
      with ``classifier="logreg_l2"`` (the same ``LogisticRegression(C=1,
      max_iter=5000)``), ``n_permutations=0`` and the same folds.

Data
    A simulated rest cohort (``fmriflow.simulate``): ``--subjects`` subjects
    (default 40) x ``--volumes`` volumes (default 150), TR 2 s, on nilearn's
    MNI152 grey-matter mask at 4 mm (28,144 voxels), the 8 planted networks
    (``network_maps``, 14 mm blobs), SNR drawn in [2, 3]. Subjects alternate
    between the groups of ``simulate.rest_groups``: in the ``coupled`` half
    the visual and sensorimotor time courses correlate by 0.6
    (``couple_time_courses``, through ``simulate_rest_subject``), in the
    ``control`` half they are independent. Each subject is cleaned once with
    ``fmriflow.cleaning.clean_runs`` (linear detrend, the simulated
    confounds regressed out, z-score; no band-pass) and written both as the
    workflow caches it (``clean.npy``, float32, with ``mask.nii.gz``) and as
    an uncompressed float32 4D ``.nii`` of the same values, zero outside the
    mask (nilearn's input, in its fastest form). Regions: ``--parcels``
    labels (default 100) grown from random seeds on the mask
    (``fmriflow.parcellation.grow_parcels``, contiguous parcels of 50 to 700
    voxels), and 8 signed maps, ``M[k] - 0.5 M[k+1]`` (cyclically) of the
    planted networks ``M``: signed, yet every voxel with a weight has a
    positive one (so that nilearn before 0.14, whose ``NiftiMapsMasker`` fitted
    on the voxels where some map is positive, and fmriflow, every voxel, solve
    the same least-squares problem). Region tables by
    ``fmriflow.regions.labels_regions`` / ``maps_regions``. ``--quick``: 12
    subjects x 100 volumes. Written once into ``--data-dir`` (reused when its
    parameters match) or a temporary folder.

How it is measured
    As in ``bench_decomposition.py``: every method in freshly spawned Python
    processes (``measuring.spawn_pool``), wall time (``perf_counter``), CPU
    time of all threads (``getrusage``), peak resident memory (``VmHWM`` of
    ``/proc/self/status``); the input files are read once beforehand so both
    sides find them in the page cache. fmriflow's processes run with one
    BLAS/OpenMP thread (as its node runner sets), and so does nilearn's by
    default (``--nilearn-threads``; 0 for the machine's default): the
    matrices are small (regions x regions), where more threads gain nothing,
    and on a busy machine OpenBLAS's threads made nilearn's
    ``ConnectivityMeasure`` tens of times slower (330 s instead of 5 s for
    the quick group stage under a load of 5 on 2 cores).

    * ``nilearn per-subject`` / ``group``: the two phases of the one nilearn
      process, after its imports; the peak of each phase is read at its end
      and reset in between (``/proc/self/clear_refs``), so the group's peak
      is that phase's high-water mark (the signals still held included).
    * ``fmriflow per-subject``: *wall* is the elapsed time of all the jobs
      with ``--workers`` (default 2) parallel processes, Python start-up and
      imports included; *CPU* the sum over the jobs of each process's whole
      CPU time (start-up and imports included); *compute* the sum of the
      jobs' time after their imports (what one core would spend on the work
      itself); *peak* the largest job's (``--workers`` of them run at once).
    * ``fmriflow group``: the call after the imports, in one process.
    * ``total``: per-subject + group (wall, CPU); the largest peak.

    Ratios are fmriflow / nilearn (below 1: fmriflow faster or smaller),
    for the per-subject stage, the group stage and the total; the
    per-subject stage also "compute only" (fmriflow's jobs' compute summed,
    against nilearn's phase: one core each, no start-up). With ``--repeat
    N`` every measurement runs N times, interleaved; the fastest wall time
    is kept with the largest peak.

Checks (the run exits non-zero if one fails)
    Region signals (fmriflow's ``signals.tsv`` against nilearn's masker,
    rtol 1e-4, atol 1e-5: the data are float32); the per-subject correlation
    and partial correlation files (atol 1e-8), the group's tangent matrices
    (atol 1e-6) and geometric mean (rtol 1e-6) against
    ``ConnectivityMeasure`` on the same signals (fmriflow's, as read back:
    nilearn's maskers return float32 signals for float32 images, fmriflow
    float64, and the difference of matrices from the two, float32 rounding,
    is printed as "end to end" but not enforced); and every fold's accuracy
    of every measure identical to nilearn's own pipeline's, from its own
    signals. The accuracies are reported per measure with chance (the
    majority class's share), and whether the planted grouping is predicted
    well above chance (mean accuracy at least chance + 0.2; reported, not
    enforced; with ``--quick``'s 12 subjects the 100-parcel connectomes stay
    at chance).

Run ``.venv/bin/python benchmarks/bench_connectome.py [--quick] [--repeat N]``.
"""

import argparse
import json
import os
import shutil
import sys
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
SNR = (2.0, 3.0)
N_NETWORKS = 8
BLOB_FWHM = 14.0
COUPLED = ("visual", "sensorimotor")
COUPLING = 0.6
#: Weight of the next network subtracted from each map (signed maps).
MAP_MIXING = 0.5
SEED = 0
CLASSIFIER = "logreg_l2"
#: nilearn's kinds and fmriflow's measures, side by side.
KINDS = {
    "correlation": "correlation",
    "partial_correlation": "partial correlation",
    "tangent": "tangent",
}
SIGNAL_RTOL, SIGNAL_ATOL = 1e-4, 1e-5
MATRIX_ATOL = 1e-8
TANGENT_ATOL = 1e-6
MEAN_RTOL = 1e-6
#: Mean accuracy over chance that counts as "well above chance".
ABOVE_CHANCE = 0.2
MB = 1e6


def reset_peak():
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
    except OSError:
        return False
    return True


# --- data ----------------------------------------------------------------------


def signed_maps(networks):
    """``M[k] - MAP_MIXING * M[k+1]`` (cyclically): signed, invertible mixing of ``M``.

    Where every map were <= 0 at a voxel, ``M[k] <= c M[k+1]`` for all ``k``
    around the cycle would give ``M[k] <= c**K M[k]``, so all ``M`` are 0
    there: every voxel with a weight has a positive one.
    """
    return networks - MAP_MIXING * np.roll(networks, -1, axis=0)


def prepare_data(folder, n_subjects, n_volumes, n_parcels):
    """Simulate, clean and write the cohort and regions into ``folder`` (reused if there)."""
    import nibabel as nib

    import_fmriflow()
    from fmriflow import simulate
    from fmriflow.cleaning import clean_runs
    from fmriflow.io import save_npy, write_table
    from fmriflow.parcellation import grow_parcels
    from fmriflow.regions import labels_regions, maps_regions

    settings = {
        "subjects": n_subjects,
        "volumes": n_volumes,
        "parcels": n_parcels,
        "resolution": RESOLUTION,
        "snr": list(SNR),
        "networks": N_NETWORKS,
        "coupled": list(COUPLED),
        "coupling": COUPLING,
        "mixing": MAP_MIXING,
        "seed": SEED,
    }
    stamp = folder / "settings.json"
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    groups, _ = simulate.rest_groups(n_subjects, SEED)
    paths = {
        "subjects": subjects,
        "groups": groups,
        "npy": [folder / f"sub-{s}" / "clean.npy" for s in subjects],
        "nii": [folder / f"sub-{s}" / "clean.nii" for s in subjects],
        "mask": folder / "mask.nii.gz",
        "regions": {
            "labels": (folder / "labels.nii.gz", folder / "labels.tsv"),
            "maps": (folder / "maps.nii.gz", folder / "maps.tsv"),
        },
    }
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return paths
    start = time.perf_counter()
    brain, grey, affine = simulate.rest_grid(RESOLUTION)
    networks, names = simulate.network_maps(grey, affine, N_NETWORKS, BLOB_FWHM)
    nib.save(nib.Nifti1Image(grey.astype(np.uint8), affine), paths["mask"])
    parcels = grow_parcels(grey, n_parcels, np.random.default_rng(SEED))
    labels_image, labels_table = paths["regions"]["labels"]
    nib.save(nib.Nifti1Image(parcels.astype(np.int32), affine), labels_image)
    write_table(labels_regions(parcels, grey, affine).table, labels_table)
    maps = np.moveaxis(signed_maps(networks), 0, -1).astype(np.float32)
    maps_image, maps_table = paths["regions"]["maps"]
    nib.save(nib.Nifti1Image(maps, affine), maps_image)
    write_table(maps_regions(maps, grey, affine, names=names).table, maps_table)
    pairs = [(names.index(COUPLED[0]), names.index(COUPLED[1]))]
    for index, (npy, nii) in enumerate(zip(paths["npy"], paths["nii"], strict=True)):
        coupled = groups[index] == simulate.REST_GROUPS[1]
        sim = simulate.simulate_rest_subject(
            index,
            SEED,
            networks,
            brain,
            n_volumes,
            TR,
            SNR,
            coupled_pairs=pairs if coupled else (),
            coupling=COUPLING if coupled else 0.0,
        )
        raw = sim.bold[grey].T
        clean = np.zeros(raw.shape, dtype=np.float32)
        clean_runs(
            raw, np.zeros(n_volumes, dtype=int), TR, clean, confounds=sim.confounds.to_numpy()
        )
        save_npy(clean, npy)
        volume = np.zeros(grey.shape + (n_volumes,), dtype=np.float32)
        volume[grey] = clean.T
        nib.save(nib.Nifti1Image(volume, affine), nii)
    stamp.write_text(json.dumps(settings))
    print(
        f"generated {n_subjects} subjects x {n_volumes} volumes, {int(grey.sum())} voxels, "
        f"{n_parcels} parcels, {N_NETWORKS} maps, in {time.perf_counter() - start:.0f} s "
        f"into {folder}",
        flush=True,
    )
    return paths


# --- fmriflow (child processes) --------------------------------------------------


def fmriflow_subject_job(clean, mask, regions, table, out_dir):
    """One ``connectome_subject`` job: signals and matrices of one subject, written."""
    entered = time.perf_counter()
    import_fmriflow()
    import nilearn.connectome  # noqa: F401  (imported by subject_matrices; not in compute)
    import pandas as pd
    import sklearn.covariance  # noqa: F401  (idem)

    from fmriflow import connectivity
    from fmriflow.connectome_files import read_region_table
    from fmriflow.io import load_mask, load_matrix, load_nifti, write_matrix, write_table

    start = time.perf_counter()
    mask, _ = load_mask(mask, "subject mask")
    regions_img = load_nifti(regions, "connectome regions")
    regions_table = read_region_table(table)
    names = regions_table["name"].tolist()
    index = regions_table["index"].astype(int).tolist()
    data = load_matrix(clean, "cleaned data")
    values = np.asanyarray(regions_img.dataobj)[mask]
    kind = "maps" if regions_img.ndim == 4 else "labels"
    loaded = time.perf_counter()
    signals = connectivity.region_signals(np.asarray(data), kind, values, index)
    connectivity.check_signals(signals, "region signals")
    extracted = time.perf_counter()
    matrices = connectivity.subject_matrices(signals)
    computed = time.perf_counter()
    out_dir = Path(out_dir)
    write_table(pd.DataFrame(signals, columns=names), out_dir / "signals.tsv")
    for measure in connectivity.SUBJECT_MEASURES:
        write_matrix(matrices[measure], names, out_dir / f"{measure}.tsv")
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "imports": start - entered,
        "load": loaded - start,
        "signals": extracted - loaded,
        "matrices": computed - extracted,
        "write": end - computed,
        "cpu": cpu_seconds(),
        "peak": memory_status()["VmHWM"],
    }


def run_fmriflow_subjects(paths, kind, workdir, workers):
    """The per-subject stage as the workflow runs it: a fresh process per job."""
    image, table = paths["regions"][kind]
    outs = [workdir / "fmriflow" / kind / f"sub-{s}" for s in paths["subjects"]]
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with thread_environment(1), spawn_pool(workers, fresh=True) as pool:
        jobs = [
            pool.submit(
                fmriflow_subject_job,
                str(npy),
                str(paths["mask"]),
                str(image),
                str(table),
                str(out),
            )
            for npy, out in zip(paths["npy"], outs, strict=True)
        ]
        results = [job.result() for job in jobs]
    wall = time.perf_counter() - start
    steps = ("seconds", "imports", "load", "signals", "matrices", "write")
    return outs, {
        "seconds": wall,
        "cpu": sum(r["cpu"] for r in results),
        "peak": max(r["peak"] for r in results),
        "compute": sum(r["seconds"] for r in results),
        "steps": {step: sum(r[step] for r in results) for step in steps},
    }


def fmriflow_group(outs, table, y, cv):
    """The group jobs' work, from the per-subject files only; returns ``run()``."""
    import_fmriflow()
    import sklearn.linear_model  # noqa: F401  (imported by the registry; not timed)

    from fmriflow import connectivity
    from fmriflow.connectome_files import read_region_table, read_subject_matrices
    from fmriflow.connectome_prediction import MEASURE_INPUT, predict_from_connectomes

    def run():
        steps = {}
        start = time.perf_counter()
        names = read_region_table(table)["name"].tolist()
        files = {
            measure: [Path(out) / f"{measure}.tsv" for out in outs]
            for measure in connectivity.SUBJECT_MEASURES
        }
        stacks = read_subject_matrices(files, connectivity.SUBJECT_MEASURES, names)
        steps["read"] = time.perf_counter() - start
        start = time.perf_counter()
        tangent, reference = connectivity.tangent_matrices(stacks["covariance"])
        steps["tangent (group)"] = time.perf_counter() - start
        folds = {}
        for measure, source in MEASURE_INPUT.items():
            start = time.perf_counter()
            result = predict_from_connectomes(
                stacks[source],
                y,
                measure,
                classifier=CLASSIFIER,
                n_splits=cv["n_splits"],
                n_repeats=cv["n_repeats"],
                n_permutations=0,
                seed=SEED,
            )
            steps[f"predict {measure}"] = time.perf_counter() - start
            folds[measure] = result["accuracies"]
        return {
            "tangent": tangent,
            "mean": reference,
            "folds": folds,
            "chance": result.get("chance", float("nan")),
            "steps": steps,
        }

    return run


# --- nilearn (child process) ------------------------------------------------------


def nilearn_pipeline(paths, kind, y, cv):
    """nilearn's example on the 4D images; returns ``run()`` (imports done)."""
    from nilearn.connectome import ConnectivityMeasure
    from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    image, _ = paths["regions"][kind]
    Masker = NiftiMapsMasker if kind == "maps" else NiftiLabelsMasker

    def phase_end(start, cpu):
        return {
            "seconds": time.perf_counter() - start,
            "cpu": cpu_seconds() - cpu,
            "peak": memory_status()["VmHWM"],
        }

    def run():
        steps, phases = {}, {}
        start, cpu = time.perf_counter(), cpu_seconds()
        masker = Masker(
            str(image), mask_img=str(paths["mask"]), standardize=False, detrend=False
        ).fit()
        signals = [masker.transform(str(nii)) for nii in paths["nii"]]
        steps["masker"] = time.perf_counter() - start
        step = time.perf_counter()
        matrices = {
            measure: ConnectivityMeasure(kind=KINDS[measure]).fit_transform(signals)
            for measure in ("correlation", "partial_correlation")
        }
        steps["correlation, partial"] = time.perf_counter() - step
        phases["per-subject"] = phase_end(start, cpu)
        phases["peak_reset"] = reset_peak()
        start, cpu = time.perf_counter(), cpu_seconds()
        tangent = ConnectivityMeasure(kind="tangent")
        matrices["tangent"] = tangent.fit_transform(signals)
        steps["tangent (group)"] = time.perf_counter() - start
        folds = {}
        for measure, nilearn_kind in KINDS.items():
            step = time.perf_counter()
            pipeline = make_pipeline(
                ConnectivityMeasure(
                    kind=nilearn_kind, vectorize=True, discard_diagonal=measure != "tangent"
                ),
                LogisticRegression(max_iter=5000),
            )
            splitter = RepeatedStratifiedKFold(
                n_splits=cv["n_splits"], n_repeats=cv["n_repeats"], random_state=SEED
            )
            folds[measure] = cross_val_score(
                pipeline, signals, y, cv=splitter, scoring="accuracy", error_score="raise"
            )
            steps[f"predict {measure}"] = time.perf_counter() - step
        phases["group"] = phase_end(start, cpu)
        return {
            "signals": signals,
            "matrices": matrices,
            "mean": tangent.mean_,
            "folds": folds,
            "steps": steps,
            "phases": phases,
        }

    return run


# --- measurement ------------------------------------------------------------------


def measure_child(side, args):
    """Run one side's measured call in this (child) process."""
    entered = time.perf_counter()
    factory = {"nilearn": nilearn_pipeline, "fmriflow group": fmriflow_group}[side]
    with warnings.catch_warnings():
        # nilearn's notes (the boolean standardize to be deprecated) on
        # every ConnectivityMeasure fit, in every fold.
        warnings.simplefilter("ignore")
        run = factory(*args)
        imports = time.perf_counter() - entered
        result, measurement = measure_call(run)
    measurement["imports"] = imports
    return result, measurement


def measure_in_child(side, args, nilearn_threads=1):
    """:func:`measure_child` in a freshly spawned process.

    fmriflow with one BLAS thread (as its node runner sets), nilearn with
    ``nilearn_threads`` (0: the machine's default).
    """
    threads = 1 if side.startswith("fmriflow") else nilearn_threads
    with thread_environment(threads, threads > 0), spawn_pool(1) as pool:
        return pool.submit(measure_child, side, args).result()


def best(runs):
    """Of repeated measurements, the fastest (its outputs), with the largest peak."""
    fastest = min(runs, key=lambda r: r["seconds"])
    return {**fastest, "peak": max(r["peak"] for r in runs)}


def measure_regions(paths, kind, workdir, args, cv):
    """Measure both sides ``args.repeat`` times for one kind of regions."""
    y = np.asarray(paths["groups"])
    _, table = paths["regions"][kind]
    runs = {"fmriflow per-subject": [], "fmriflow group": [], "nilearn": []}
    outputs = {}
    for repeat in range(args.repeat):
        outs, stage = run_fmriflow_subjects(paths, kind, workdir, args.workers)
        runs["fmriflow per-subject"].append(stage)
        group, measured = measure_in_child("fmriflow group", (outs, table, y, cv))
        runs["fmriflow group"].append({**measured, "result": group})
        theirs, measured = measure_in_child("nilearn", (paths, kind, y, cv), args.nilearn_threads)
        runs["nilearn"].append({**measured, "result": theirs})
        print(
            f"  {kind}, run {repeat + 1}: fmriflow per-subject {stage['seconds']:.2f} s, "
            f"group {runs['fmriflow group'][-1]['seconds']:.2f} s; "
            f"nilearn {runs['nilearn'][-1]['seconds']:.2f} s",
            flush=True,
        )
        outputs["outs"] = outs
    results = {name: best(r) for name, r in runs.items()}
    for phase in ("per-subject", "group"):  # nilearn's phases: the largest peaks too
        results["nilearn"]["result"]["phases"][phase]["peak"] = max(
            r["result"]["phases"][phase]["peak"] for r in runs["nilearn"]
        )
    results["checks"] = check_equal(
        outputs["outs"],
        table,
        results["fmriflow group"]["result"],
        results["nilearn"]["result"],
    )
    return results


# --- checks ------------------------------------------------------------------------


def check_equal(outs, table, ours, theirs):
    """Compare fmriflow's files and group results with nilearn's; one dict per check.

    The signals and the fold accuracies are compared with what nilearn's own
    pipeline gave. The matrices are compared with ``ConnectivityMeasure`` on
    fmriflow's signals (as read from ``signals.tsv``): nilearn's maskers
    return float32 signals for float32 images (its labels means are cast to
    float32, its maps least squares solved in float32), fmriflow float64, so
    matrices from the two sets of signals differ by float32 rounding, which
    is reported (not enforced) as the "end to end" difference.
    """
    import_fmriflow()
    from nilearn.connectome import ConnectivityMeasure
    from threadpoolctl import threadpool_limits

    from fmriflow.connectome_files import read_region_table, read_subject_signals
    from fmriflow.io import read_matrix

    names = read_region_table(table)["name"].tolist()
    checks = []

    def add(what, ok, detail, enforced=True):
        checks.append({"what": what, "ok": bool(ok), "detail": detail, "enforced": enforced})

    signals = read_subject_signals([Path(o) / "signals.tsv" for o in outs], names)
    pairs = list(zip(signals, theirs["signals"], strict=True))
    same_shape = all(s.shape == t.shape for s, t in pairs)
    # numpy.testing.assert_allclose's rule, nilearn's signals the reference.
    ok = same_shape and all(
        bool(np.all(np.abs(s - t) <= SIGNAL_ATOL + SIGNAL_RTOL * np.abs(t))) for s, t in pairs
    )
    largest = max(float(np.abs(s - t).max()) for s, t in pairs) if same_shape else np.nan
    add(
        "signals (nilearn's masker)",
        ok,
        f"max |diff| {largest:.2g}, rtol {SIGNAL_RTOL:g}, atol {SIGNAL_ATOL:g}; nilearn's are "
        f"{theirs['signals'][0].dtype}, fmriflow's float64",
    )
    files = {
        measure: np.array([read_matrix(Path(o) / f"{measure}.tsv", names)[0] for o in outs])
        for measure in ("correlation", "partial_correlation")
    }
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            measure: ConnectivityMeasure(kind=KINDS[measure]).fit_transform(signals)
            for measure in files
        }
        tangent = ConnectivityMeasure(kind="tangent")
        expected["tangent"] = tangent.fit_transform(signals)
    for measure, found in files.items():
        diff = float(np.abs(found - expected[measure]).max())
        add(
            f"{measure} (same signals)",
            diff <= MATRIX_ATOL,
            f"max |diff| {diff:.2g}, atol {MATRIX_ATOL:g}",
        )
    diff = float(np.abs(ours["tangent"] - expected["tangent"]).max())
    add(
        "tangent, group (same signals)",
        diff <= TANGENT_ATOL,
        f"max |diff| {diff:.2g}, atol {TANGENT_ATOL:g}",
    )
    relative = float(np.abs(ours["mean"] - tangent.mean_).max() / np.abs(tangent.mean_).max())
    add(
        "geometric mean (same signals)",
        relative <= MEAN_RTOL,
        f"max |diff| / max |value| {relative:.2g}, rtol {MEAN_RTOL:g}",
    )
    for measure in KINDS:
        a, b = ours["folds"][measure], theirs["folds"][measure]
        same = a.shape == b.shape and bool(np.array_equal(a, b))
        unequal = int(np.sum(a != b)) if a.shape == b.shape else "shape"
        add(
            f"fold accuracies, {measure}",
            same,
            f"{len(a)} folds, {unequal} different; mean {a.mean():.3f} vs {b.mean():.3f}",
        )
    found = {**files, "tangent": ours["tangent"]}
    end_to_end = ", ".join(
        f"{m} {float(np.abs(found[m] - theirs['matrices'][m]).max()):.2g}" for m in found
    )
    add(
        "end to end (nilearn's matrices from its own signals)",
        True,
        f"max |diff| {end_to_end}",
        enforced=False,
    )
    return checks


# --- report --------------------------------------------------------------------------


def stage_rows(kind, results, workers, n_subjects):
    """The table rows of one kind of regions: measurements, then ratios."""
    nilearn = results["nilearn"]
    phases = nilearn["result"]["phases"]
    theirs = {
        "per-subject": {**phases["per-subject"], "compute": phases["per-subject"]["seconds"]},
        "group": {**phases["group"], "compute": phases["group"]["seconds"]},
    }
    subjects = results["fmriflow per-subject"]
    group = results["fmriflow group"]
    ours = {
        "per-subject": subjects,
        "group": {**group, "compute": group["seconds"]},
    }
    for side in (theirs, ours):
        side["total"] = {
            "seconds": side["per-subject"]["seconds"] + side["group"]["seconds"],
            "cpu": side["per-subject"]["cpu"] + side["group"]["cpu"],
            "compute": side["per-subject"]["compute"] + side["group"]["compute"],
            "peak": max(side["per-subject"]["peak"], side["group"]["peak"]),
        }
    labels = {
        ("nilearn", "per-subject"): "per-subject: masker, corr./partial",
        ("nilearn", "group"): "group: tangent, 3 x cross_val_score",
        ("fmriflow", "per-subject"): f"per-subject: {n_subjects} jobs, {workers} workers",
        ("fmriflow", "group"): "group: read, tangent, 3 x predict",
    }
    rows = []
    for name, side in (("nilearn", theirs), ("fmriflow", ours)):
        for stage in ("per-subject", "group", "total"):
            m = side[stage]
            rows.append(
                {
                    "regions": kind,
                    "side": name,
                    "stage": labels.get((name, stage), stage),
                    "wall": f"{m['seconds']:.2f}",
                    "cpu": f"{m['cpu']:.2f}",
                    "compute": f"{m['compute']:.2f}",
                    "peak": f"{m['peak'] / MB:.0f}",
                }
            )
    ratios = {}
    for stage in ("per-subject", "group", "total"):
        a, b = ours[stage], theirs[stage]
        ratios[stage] = {
            "wall": a["seconds"] / b["seconds"],
            "cpu": a["cpu"] / b["cpu"],
            "compute": a["compute"] / b["compute"],
            "peak": a["peak"] / b["peak"],
        }
        rows.append(
            {
                "regions": kind,
                "side": "fmriflow/nilearn",
                "stage": stage,
                **{key: f"{value:.2f}x" for key, value in ratios[stage].items()},
            }
        )
    return rows, ratios


def print_breakdown(kind, results):
    """Where the time goes on each side."""
    theirs = results["nilearn"]
    ours = results["fmriflow per-subject"]["steps"]
    group = results["fmriflow group"]["result"]["steps"]
    print(
        f"{kind}: nilearn ({theirs['imports']:.1f} s imports, "
        f"{theirs['after_imports'] / MB:.0f} MB after imports, not counted): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in theirs["result"]["steps"].items())
    )
    print(
        f"{kind}: fmriflow per-subject, summed over the jobs: "
        + ", ".join(f"{k} {ours[k]:.2f} s" for k in ("imports", "load", "signals", "matrices"))
        + f", write {ours['write']:.2f} s (compute {ours['seconds']:.2f} s; the rest of the CPU "
        f"is interpreter start-up)"
    )
    print(
        f"{kind}: fmriflow group ({results['fmriflow group']['imports']:.1f} s imports, "
        f"{results['fmriflow group']['after_imports'] / MB:.0f} MB after imports, not counted): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in group.items())
    )


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 subjects x 100 volumes")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--volumes", type=int, default=150)
    parser.add_argument("--parcels", type=int, default=100, help="labels regions")
    parser.add_argument(
        "--regions", nargs="+", choices=("labels", "maps"), default=["labels", "maps"]
    )
    parser.add_argument("--splits", type=int, default=5, help="folds of the cross-validation")
    parser.add_argument("--cv-repeats", type=int, default=10, help="its repeats")
    parser.add_argument("--workers", type=int, default=2, help="fmriflow's parallel jobs")
    parser.add_argument(
        "--nilearn-threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads of nilearn's process (default 1, as fmriflow's; 0: the "
        "machine's default)",
    )
    add_run_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.subjects, args.volumes = 12, 100
    command = " ".join([".venv/bin/python", "benchmarks/bench_connectome.py", *sys.argv[1:]])
    cv = {"n_splits": args.splits, "n_repeats": args.cv_repeats}
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench_connectome_"))
    try:
        data_dir = args.data_dir or workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        paths = prepare_data(data_dir, args.subjects, args.volumes, args.parcels)
        warm_page_cache(paths["npy"] + paths["nii"])
        results = {kind: measure_regions(paths, kind, workdir, args, cv) for kind in args.regions}
    finally:
        shutil.rmtree(workdir)
    load_after = os.getloadavg()

    groups, counts = np.unique(paths["groups"], return_counts=True)
    sizes = ", ".join(f"{n} {g}" for g, n in zip(groups, counts, strict=True))
    described = ", ".join(
        f"{args.parcels} labels" if kind == "labels" else f"{N_NETWORKS} signed maps"
        for kind in args.regions
    )
    print()
    print(f"command: {command}")
    print(
        f"cohort: {args.subjects} subjects ({sizes})"
        f" x {args.volumes} volumes, MNI grey matter at {RESOLUTION} mm; regions: "
        f"{described}; {CLASSIFIER} "
        f"(LogisticRegression(max_iter=5000)), {args.splits}-fold x {args.cv_repeats} "
        f"repeated stratified CV; {args.repeat} run(s) per measurement; "
        f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after"
    )
    print(
        "fmriflow: 1 BLAS thread per process; per-subject wall and CPU include each job's "
        "interpreter start-up and imports, 'compute' excludes them; nilearn: "
        + (f"{args.nilearn_threads} BLAS thread(s)" if args.nilearn_threads else "default threads")
        + ", after imports"
    )
    print()
    rows, summaries = [], {}
    for kind, result in results.items():
        kind_rows, ratios = stage_rows(kind, result, args.workers, args.subjects)
        rows += kind_rows
        summaries[kind] = ratios
    print_table(
        rows,
        [
            ("regions", "regions", ""),
            ("side", "side", ""),
            ("stage", "stage", ""),
            ("wall (s)", "wall", ""),
            ("cpu (s)", "cpu", ""),
            ("compute (s)", "compute", ""),
            ("peak (MB)", "peak", ""),
        ],
        left=3,
    )
    print("(ratio rows: fmriflow / nilearn, below 1 means fmriflow is faster or smaller)")
    if not all(r["nilearn"]["result"]["phases"]["peak_reset"] for r in results.values()):
        print("note: /proc/self/clear_refs refused: nilearn's group peak includes its first phase")
    print()
    print("Where the time goes")
    for kind, result in results.items():
        print_breakdown(kind, result)
    print()
    print("Accuracy (planted grouping, mean over folds, identical folds on both sides)")
    chance = float(counts.max() / counts.sum())
    for kind, result in results.items():
        folds = result["fmriflow group"]["result"]["folds"]
        line = ", ".join(f"{m} {f.mean():.3f} ± {f.std():.3f}" for m, f in folds.items())
        above = all(f.mean() >= chance + ABOVE_CHANCE for f in folds.values())
        print(
            f"{kind}: {line}; chance {chance:.3f} (the majority class; fmriflow reports "
            f"{result['fmriflow group']['result']['chance']:.3f}); every measure >= chance + "
            f"{ABOVE_CHANCE:g}: {verdict(above)}"
        )
    print()
    print("Checks (fmriflow against nilearn)")
    failed = []
    for kind, result in results.items():
        for check in result["checks"]:
            if not check["enforced"]:
                print(
                    f"{kind}: {check['what']}: {check['detail']} (float32 rounding; not checked)"
                )
                continue
            print(f"{kind}: {check['what']}: equal: {verdict(check['ok'])} ({check['detail']})")
            if not check["ok"]:
                failed.append(f"{kind} {check['what']}")
    print()
    print("Ratios fmriflow / nilearn")
    for kind, ratios in summaries.items():
        print(
            f"{kind}: time (wall, {args.workers} workers) per-subject "
            f"{ratios['per-subject']['wall']:.2f}, group {ratios['group']['wall']:.2f}, total "
            f"{ratios['total']['wall']:.2f}; CPU total {ratios['total']['cpu']:.2f}; "
            f"compute only (one core, no start-up) per-subject "
            f"{ratios['per-subject']['compute']:.2f}, total {ratios['total']['compute']:.2f}; "
            f"peak memory total {ratios['total']['peak']:.2f}"
        )
    if failed:
        raise SystemExit(f"FAILED: fmriflow and nilearn differ: {', '.join(failed)}")


if __name__ == "__main__":
    main()
