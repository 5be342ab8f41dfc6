"""Benchmark: a whole-brain group searchlight end to end, against nilearn's SearchLight.

What is measured
    The issue's target: 20 subjects on a whole-brain grid, 100 label
    permutations each and 10^5 group draws, end to end in under 10
    minutes on 2 cores, with the group job under 2 GB.

    * Every subject's searchlight: ``fmriflow.searchlight.searchlight_scores(
      X, y, runs, spheres, "ridge", n_permutations=100, seed=0, n_jobs=2)``
      (the exact closed-form ridge path, spheres from ``make_spheres`` at
      radius 5.6 mm), reading the subject's cached ``(volume x voxel)``
      float32 matrix memory-mapped from a ``.npy`` and writing its observed
      accuracy map and its 100 permutation maps as float32 ``.npy`` (as the
      workflow writes float32 maps).
    * The group job, in one process: every subject's maps loaded from those
      files and stacked (accuracy ``(20, n_voxels)``, null ``(20, 100,
      n_voxels)`` float32, as the ``searchlight_group`` node stacks them),
      then ``fmriflow.searchlight.group.cluster_test(accuracy, null, mask,
      n_draws=100_000, voxel_p=0.001)`` (Stelzer et al. 2013) and
      ``group.prevalence_test(accuracy, null, chance=0.5, n_draws=100_000)``
      (Allefeld et al. 2016), both with ``n_jobs`` threads (``--n-jobs``,
      default 2). Its peak resident memory is the group job's memory.
    * End to end: the subjects' searchlights one after the other plus the
      group job (each subject's job uses the 2 cores).

What it is compared with
    The same per-subject work with ``nilearn.decoding.SearchLight(mask_img,
    process_mask_img=..., radius=5.6, estimator=RidgeClassifier(alpha=1.0),
    cv=LeaveOneGroupOut(), scoring="accuracy", n_jobs=2).fit(bold_img, y,
    groups=runs)`` on the first subject's data as an uncompressed 4D NIfTI
    in float64 (fmriflow's ridge is exact with respect to scikit-learn on
    float64 data). nilearn's whole-brain map (minutes) is timed on two
    random subsets of centres (the data mask stays the whole brain, so the
    spheres are the same) and extrapolated linearly in the number of
    centres, ``fixed + n * per_centre``, then multiplied by 101 maps
    (observed labels and 100 permutations: nilearn refits the searchlight
    for each) and by the number of subjects. nilearn has no group stage:
    the comparison is of the searchlight stage, and of our whole pipeline
    against nilearn's searchlight stage alone.

Data
    nilearn's MNI152 grey-matter mask at 4 mm (``load_mni152_gm_mask(
    resolution=4)``: 28,144 voxels, every one a centre); per subject 204
    volumes (12 runs of 17, two classes, 9 and 8 per run) of Gaussian noise
    (its own seed) with one planted blob (radius 12 mm, centred at (-40,
    -60, -10) mm, the same in every subject) whose mean is 0.6 higher in
    the second class, so that the group stage has something to find.

How it is measured
    As in ``bench_searchlight.py``: every measurement in a freshly spawned
    Python process with one BLAS thread (as the workflow's jobs run;
    fmriflow's and nilearn's workers are their own), imports done first,
    wall time (``perf_counter``), CPU time of its threads (``getrusage``)
    and peak resident memory (``VmHWM`` of the process; nilearn's worker
    processes count in neither). With ``--repeat N`` every measurement runs
    N times, interleaved, and the fastest run is kept (and the largest
    peak).

Checks and targets
    The observed accuracies of the first subject equal nilearn's at the
    subsets' centres (``numpy.array_equal`` in float32, as stored); the
    group stage finds the planted blob (clusters with family-wise p <= 0.05
    cover at least half of it, and the prevalence null hypothesis is
    rejected at some of its voxels). Targets: end to end in under 600 s,
    the group job's peak memory under 2 GB.

Run ``.venv/bin/python benchmarks/bench_searchlight_group.py [--quick]
[--repeat N] [--n-jobs N]`` (``--quick``: 4 subjects, 10^4 draws, nilearn
timed on fewer centres; a few minutes, not the target's scale).
"""

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from measuring import (
    add_run_options,
    best_runs,
    cpu_seconds,
    import_fmriflow,
    in_spawned_process,
    measure_call,
    print_table,
    thread_environment,
    verdict,
)

RADIUS = 5.6
SEED = 0
N_RUNS = 12
PER_RUN = 17
N_PERMUTATIONS = 100
VOXEL_P = 0.001
CHANCE = 0.5
ALPHA = 0.05
BLOB_CENTRE = (-40.0, -60.0, -10.0)
BLOB_RADIUS = 12.0
BLOB_EFFECT = 0.6
#: Subjects, group draws and nilearn's random centres.
SCALES = {
    "full": {"subjects": 20, "draws": 100_000, "subsets": (60, 400)},
    "quick": {"subjects": 4, "draws": 10_000, "subsets": (20, 120)},
}
TARGET_SECONDS = 600.0
TARGET_GROUP_BYTES = 2e9
MB = 1e6


# --- data ------------------------------------------------------------------


def subject_file(folder, subject, what):
    return folder / f"sub{subject + 1:02d}_{what}.npy"


def save_image(data, affine, path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, affine), path)


def make_data(folder, n_subjects, subsets):
    """Mask, labels, runs, the planted blob and every subject's cached matrix.

    The first subject's data are also written as a float64 4D image for
    nilearn, with the random subsets of centres it is timed on.
    """
    from nilearn.datasets import load_mni152_gm_mask

    folder.mkdir(parents=True, exist_ok=True)
    img = load_mni152_gm_mask(resolution=4)
    mask = np.asanyarray(img.dataobj) > 0
    save_image(mask.astype(np.uint8), img.affine, folder / "mask.nii")
    runs = np.repeat(np.arange(N_RUNS), PER_RUN)
    y = np.tile(np.array(["a"] * 9 + ["b"] * 8), N_RUNS)
    np.save(folder / "labels.npy", y)
    np.save(folder / "runs.npy", runs)
    ijk = np.argwhere(mask)
    xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    blob = np.linalg.norm(xyz - np.array(BLOB_CENTRE), axis=1) <= BLOB_RADIUS
    np.save(folder / "blob.npy", blob)
    for subject in range(n_subjects):
        rng = np.random.default_rng(SEED + 1 + subject)
        X = rng.standard_normal((len(y), int(mask.sum()))).astype(np.float32)
        X[np.ix_(y == "b", blob)] += BLOB_EFFECT
        np.save(subject_file(folder, subject, "clean"), X)
        if subject == 0:
            volume = np.zeros(mask.shape + (len(y),), dtype=np.float64)
            volume[mask] = X.T
            save_image(volume, img.affine, folder / "bold64.nii")
            del volume
    order = np.random.default_rng(SEED).permutation(len(ijk))
    for n in subsets:
        centres = np.zeros_like(mask)
        centres[tuple(ijk[order[:n]].T)] = True
        save_image(centres.astype(np.uint8), img.affine, folder / f"centres_{n}.nii")
    return {"n_samples": len(y), "n_voxels": int(mask.sum()), "n_blob": int(blob.sum())}


# --- the jobs (each runs in its own child process) ---------------------------


def shutdown_workers():
    """Stop joblib's idle worker processes (outside the timing) so the child can end."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def searchlight_job(spec):
    """One subject's searchlight with permutations; its maps saved as float32 .npy."""
    import_fmriflow()
    # What the library imports lazily, imported before the clock starts.
    import joblib  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import threadpoolctl  # noqa: F401

    from fmriflow import classifiers, searchlight  # noqa: F401
    from fmriflow.io import load_mask

    def run(folder, subject, n_jobs):
        mask, img = load_mask(folder / "mask.nii")
        X = np.load(subject_file(folder, subject, "clean"), mmap_mode="r")
        y, runs = np.load(folder / "labels.npy"), np.load(folder / "runs.npy")
        spheres = searchlight.make_spheres(mask, img.affine, RADIUS)
        result = searchlight.searchlight_scores(
            X, y, runs, spheres, "ridge", n_permutations=N_PERMUTATIONS, seed=SEED, n_jobs=n_jobs
        )
        np.save(subject_file(folder, subject, "accuracy"), result.scores.astype(np.float32))
        np.save(subject_file(folder, subject, "null"), result.null.astype(np.float32))

    _, measurement = measure_call(run, spec["folder"], spec["subject"], spec["n_jobs"])
    shutdown_workers()
    return measurement


def group_job(spec):
    """The group job: load and stack the maps, cluster and prevalence inference."""
    import_fmriflow()
    import pandas  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401

    from fmriflow.io import load_mask
    from fmriflow.searchlight import group

    def run(folder, n_subjects, n_draws, n_jobs):
        steps = {}

        def step(name, function, *args, **kwargs):
            cpu, start = cpu_seconds(), time.perf_counter()
            result = function(*args, **kwargs)
            steps[name] = {"seconds": time.perf_counter() - start, "cpu": cpu_seconds() - cpu}
            return result

        def load():
            mask, _ = load_mask(folder / "mask.nii")
            subjects = range(n_subjects)
            accuracy = np.stack([np.load(subject_file(folder, s, "accuracy")) for s in subjects])
            null = np.stack([np.load(subject_file(folder, s, "null")) for s in subjects])
            return mask, accuracy, null

        mask, accuracy, null = step("load", load)
        # Voxels where all subjects' accuracies are equal make scipy's t-test warn.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        clusters = step(
            "cluster_test",
            group.cluster_test,
            accuracy,
            null,
            mask,
            n_draws=n_draws,
            voxel_p=VOXEL_P,
            n_jobs=n_jobs,
        )
        prevalence = step(
            "prevalence_test",
            group.prevalence_test,
            accuracy,
            null,
            chance=CHANCE,
            n_draws=n_draws,
            n_jobs=n_jobs,
        )
        return steps, summarize_group(clusters, prevalence, np.load(folder / "blob.npy"))

    (steps, summary), measurement = measure_call(
        run, spec["folder"], spec["n_subjects"], spec["n_draws"], spec["n_jobs"]
    )
    return {**measurement, "steps": steps, "summary": summary}


def summarize_group(clusters, prevalence, blob):
    """What the group stage found, against the planted blob."""
    significant = clusters.clusters[clusters.clusters["fwe_p"] <= ALPHA]
    in_clusters = np.isin(clusters.cluster_labels, significant["cluster"].to_numpy())
    rejected = prevalence.reject_corrected
    return {
        "n_significant": len(significant),
        "largest": int(significant["size_voxels"].max()) if len(significant) else 0,
        "smallest_p": float(clusters.clusters["fwe_p"].min()) if len(clusters.clusters) else 1.0,
        "blob_in_clusters": int(np.count_nonzero(in_clusters & blob)),
        "outside_blob": int(np.count_nonzero(in_clusters & ~blob)),
        "prevalence_in_blob": int(np.count_nonzero(rejected & blob)),
        "prevalence_outside": int(np.count_nonzero(rejected & ~blob)),
        "gamma_max": float(prevalence.gamma_corrected.max()),
    }


def nilearn_job(spec):
    """nilearn's SearchLight with ridge on the first subject, over a subset of centres."""
    from nilearn.decoding import SearchLight
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import LeaveOneGroupOut

    def run(folder, centres, n_jobs):
        y, runs = np.load(folder / "labels.npy"), np.load(folder / "runs.npy")
        searchlight = SearchLight(
            str(folder / "mask.nii"),
            process_mask_img=str(folder / centres),
            radius=RADIUS,
            estimator=RidgeClassifier(alpha=1.0),
            cv=LeaveOneGroupOut(),
            scoring="accuracy",
            n_jobs=n_jobs,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            searchlight.fit(str(folder / "bold64.nii"), y, groups=runs)
        return searchlight.masked_scores_

    scores, measurement = measure_call(run, spec["folder"], spec["centres"], spec["n_jobs"])
    np.save(spec["out"], scores)
    shutdown_workers()
    return measurement


JOBS = {"searchlight": searchlight_job, "group": group_job, "nilearn": nilearn_job}


def measure_in_child(spec):
    """Run the spec's job in a freshly spawned Python process with one BLAS thread."""
    with thread_environment(1):
        return in_spawned_process(JOBS[spec["job"]], spec)


# --- plan, report ------------------------------------------------------------------


def plan(folder, scale, n_jobs):
    """Every measurement, in the order run: name -> spec."""
    specs = {}
    for subject in range(scale["subjects"]):
        specs[f"searchlight/sub{subject + 1:02d}"] = {
            "job": "searchlight",
            "folder": folder,
            "subject": subject,
            "n_jobs": n_jobs,
        }
    specs["group"] = {
        "job": "group",
        "folder": folder,
        "n_subjects": scale["subjects"],
        "n_draws": scale["draws"],
        "n_jobs": n_jobs,
    }
    for n in scale["subsets"]:
        specs[f"nilearn/{n}"] = {
            "job": "nilearn",
            "folder": folder,
            "centres": f"centres_{n}.nii",
            "n_jobs": n_jobs,
            "out": folder / f"nilearn_{n}.npy",
        }
    return specs


def run_all(specs, repeat):
    """Measure every spec ``repeat`` times, interleaved; keep the fastest run, largest peak."""
    runs = {name: [] for name in specs}
    width = max(len(name) for name in specs)
    for _ in range(repeat):
        for name, spec in specs.items():
            result = measure_in_child(spec)
            runs[name].append(result)
            print(
                f"  {name:<{width}} {result['seconds']:8.2f} s  {result['peak'] / MB:6.0f} MB",
                flush=True,
            )
    # The group job's steps and findings are those of its fastest run.
    return best_runs(runs)


def compare_with_nilearn(folder, subsets):
    """First subject's accuracies equal nilearn's at each subset's centres (float32)?"""
    import nibabel as nib

    mask = np.asanyarray(nib.load(folder / "mask.nii").dataobj) != 0
    ours = np.load(subject_file(folder, 0, "accuracy"))
    checks = {}
    for n in subsets:
        centres = np.asanyarray(nib.load(folder / f"centres_{n}.nii").dataobj) != 0
        theirs = np.load(folder / f"nilearn_{n}.npy").astype(np.float32)
        checks[n] = np.array_equal(ours[np.flatnonzero(centres[mask])], theirs)
    return checks


def extrapolate(results, subsets, n_centres):
    """nilearn's whole-brain time from its two subset runs: fixed + n * per_centre."""
    small, large = subsets
    t_small = results[f"nilearn/{small}"]["seconds"]
    t_large = results[f"nilearn/{large}"]["seconds"]
    per_centre = max((t_large - t_small) / (large - small), 1e-9)
    fixed = max(t_small - small * per_centre, 0.0)
    return fixed + n_centres * per_centre, fixed, per_centre


def report(results, scale, sizes, checks):
    """Print the table, the comparison, the checks and the targets."""
    n_subjects, n_draws = scale["subjects"], scale["draws"]
    small, large = scale["subsets"]
    subjects = [results[f"searchlight/sub{s + 1:02d}"] for s in range(n_subjects)]
    searchlight_seconds = sum(r["seconds"] for r in subjects)
    group = results["group"]
    total = searchlight_seconds + group["seconds"]
    steps = group["steps"]
    n_centres = sizes["n_voxels"]
    per_map, fixed, per_centre = extrapolate(results, scale["subsets"], n_centres)
    n_maps = 1 + N_PERMUTATIONS
    nilearn_subject = per_map * n_maps
    nilearn_total = nilearn_subject * n_subjects

    rows = [
        {
            "name": "searchlight, per subject (mean)",
            "seconds": searchlight_seconds / n_subjects,
            "cpu": sum(r["cpu"] for r in subjects) / n_subjects,
            "peak": max(r["peak"] for r in subjects) / MB,
        },
        {"name": "  fastest subject", "seconds": min(r["seconds"] for r in subjects)},
        {"name": "  slowest subject", "seconds": max(r["seconds"] for r in subjects)},
        {
            "name": f"searchlight, {n_subjects} subjects (sum)",
            "seconds": searchlight_seconds,
            "cpu": sum(r["cpu"] for r in subjects),
        },
        {
            "name": "group job (whole process)",
            "seconds": group["seconds"],
            "cpu": group["cpu"],
            "peak": group["peak"] / MB,
        },
    ]
    for name in ("load", "cluster_test", "prevalence_test"):
        rows.append({"name": f"  {name}", **steps[name]})
    rows += [
        {"name": "end to end (searchlights + group job)", "seconds": total},
        {"name": "nilearn SearchLight, one map (extrap.)", "seconds": per_map},
        {"name": f"nilearn, x {n_maps} maps (one subject)", "seconds": nilearn_subject},
        {"name": f"nilearn, x {n_maps} maps x {n_subjects} subjects", "seconds": nilearn_total},
    ]
    for n in (small, large):
        r = results[f"nilearn/{n}"]
        rows.append(
            {
                "name": f"  nilearn measured, {n} centres",
                "seconds": r["seconds"],
                "cpu": r["cpu"],
                "peak": r["peak"] / MB,
            }
        )
    print_table(
        rows,
        [
            ("measurement", "name", "s"),
            ("wall (s)", "seconds", ",.1f"),
            ("cpu (s)", "cpu", ",.1f"),
            ("peak RSS (MB)", "peak", ".0f"),
        ],
    )
    print()
    print(
        f"nilearn, one whole-brain map ({n_centres} centres), extrapolated from {small} and "
        f"{large} random centres: {fixed:.2f} s + {n_centres} x {per_centre * 1e3:.2f} ms "
        f"= {per_map:.0f} s"
    )
    print(
        f"searchlight stage, {n_subjects} subjects x {n_maps} maps: nilearn "
        f"{nilearn_total:,.0f} s ({nilearn_total / 3600:.1f} h), fmriflow "
        f"{searchlight_seconds:.0f} s: "
        f"{nilearn_total / searchlight_seconds:,.0f}x"
    )
    print(
        f"nilearn's searchlight stage alone against fmriflow end to end (with the group "
        f"job): {nilearn_total / total:,.0f}x"
    )
    print()
    found = group["summary"]
    print(
        f"Group stage ({n_draws:,} draws, voxel p < {VOXEL_P:g}): {found['n_significant']} "
        f"cluster(s) with FWE p <= {ALPHA:g} (largest {found['largest']} voxels, smallest p "
        f"{found['smallest_p']:.2g}), covering {found['blob_in_clusters']} of the blob's "
        f"{sizes['n_blob']} voxels and {found['outside_blob']} outside; prevalence null "
        f"rejected (corrected) at {found['prevalence_in_blob']} blob voxels and "
        f"{found['prevalence_outside']} outside (largest gamma0 {found['gamma_max']:.2f})"
    )
    print()
    print("Checks")
    for n, ok in checks.items():
        print(f"  first subject's accuracies equal nilearn's at {n} centres: {verdict(ok)}")
    blob_found = (
        found["blob_in_clusters"] >= 0.5 * sizes["n_blob"] and found["prevalence_in_blob"] > 0
    )
    print(f"  group stage finds the planted blob: {verdict(blob_found)}")
    print()
    print("Targets" + ("" if n_subjects == 20 else " (quick run: not the target's scale)"))
    print(
        f"{n_subjects} subjects x {N_PERMUTATIONS} permutations + {n_draws:,} group draws end "
        f"to end in < {TARGET_SECONDS:g} s: {verdict(total < TARGET_SECONDS)} ({total:.0f} s)"
    )
    print(
        f"group job peak memory < {TARGET_GROUP_BYTES / 1e9:g} GB: "
        f"{verdict(group['peak'] < TARGET_GROUP_BYTES)} ({group['peak'] / MB:.0f} MB)"
    )
    return all(checks.values()) and blob_found


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = SCALES["quick"]
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{quick['subjects']} subjects, {quick['draws']} group draws, nilearn timed on "
        f"{quick['subsets']} centres",
    )
    add_run_options(parser, data_dir=False)
    parser.add_argument(
        "--n-jobs", type=int, default=2, help="threads or workers of every job (both libraries)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    scale = SCALES["quick" if args.quick else "full"]
    load_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench_searchlight_group_"))
    try:
        start = time.perf_counter()
        sizes = make_data(workdir, scale["subjects"], scale["subsets"])
        print(f"generated the data in {time.perf_counter() - start:.1f} s", flush=True)
        results = run_all(plan(workdir, scale, args.n_jobs), args.repeat)
        checks = compare_with_nilearn(workdir, scale["subsets"])
    finally:
        shutil.rmtree(workdir)
    print()
    print(
        f"{scale['subjects']} subjects: {sizes['n_samples']} volumes (12 runs x {PER_RUN}, two "
        f"classes) x {sizes['n_voxels']} voxels, every voxel a centre, radius {RADIUS} mm, "
        f"ridge, leave-one-run-out, {N_PERMUTATIONS} permutations; planted blob of "
        f"{sizes['n_blob']} voxels"
    )
    print(f"{args.repeat} run(s) per measurement, n_jobs={args.n_jobs} for every job")
    print(
        "load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}, at the end: "
        "{:.2f} {:.2f} {:.2f}, on {} CPUs".format(*load_start, *os.getloadavg(), os.cpu_count())
    )
    print()
    if not report(results, scale, sizes, checks):
        raise SystemExit("a check failed")


if __name__ == "__main__":
    main()
