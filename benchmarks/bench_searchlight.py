"""Benchmark: fmriflow's searchlight against nilearn's SearchLight.

What is compared
    ``fmriflow.searchlight.gnb_searchlight`` (the exact fast Gaussian naive
    Bayes path) and ``fmriflow.searchlight.searchlight_scores(..., "svc")``
    (the general path, any registry classifier), each reading the cached
    ``(volume x voxel)`` matrix memory-mapped from a ``.npy`` and the mask,
    against ``nilearn.decoding.SearchLight(mask_img, process_mask_img=...,
    radius=5.6, estimator=GaussianNB() or SVC(kernel="linear"),
    cv=LeaveOneGroupOut(), scoring="accuracy").fit(bold_img, y, groups=runs)``
    reading the same data as an uncompressed 4D NIfTI image. Both use the
    same number of workers (``--n-jobs``, default 2): nilearn's processes;
    fmriflow's processes for the general path, threads for naive Bayes.
    Also timed: ``gnb_permutation_test`` with 100 permutations over the
    whole brain.

Data
    (a) ROI: a Haxby-like subject from ``fmriflow.simulate`` (grid 20 x 28
    x 28 with Haxby's 3.5 x 3.75 x 3.75 mm voxels, 12 runs, Glover-HRF block
    design), cleaned per run (detrended, z-scored), face vs house: 216
    volumes over the 582-voxel ventral-temporal-like ROI (Haxby's mask4_vt
    has 577), every ROI voxel a sphere centre.
    (b) whole brain: nilearn's MNI152 grey-matter mask at 4 mm (28,144
    voxels), 204 volumes (12 runs of 17) of Gaussian noise with two planted
    blobs whose mean differs between the two classes; every voxel a centre.
    The radius is nilearn's example's, 5.6 mm (19 voxels per sphere on
    Haxby's grid, 7 at 4 mm).

How it is measured
    As in ``bench_masking.py``: each run in a freshly spawned Python
    process, imports done first, wall time (``perf_counter``), CPU time of
    its threads (``getrusage``) and peak resident memory (``VmHWM`` of the
    child); worker processes (nilearn's, and those of fmriflow's general
    path) count in neither. With ``--repeat N`` every measurement runs N times, interleaved,
    and the fastest run is kept (and the largest peak), which damps the
    noise of other jobs on the machine. nilearn's whole-brain searchlight
    (about ten minutes) is timed on two random subsets of centres (the
    data mask stays the whole brain, so the spheres are the same) and
    extrapolated linearly in the number of centres: ``fixed + n * per_centre``
    from the two runs; its peak memory is that of the larger subset.

Checks
    Scores are compared with ``numpy.array_equal`` (identical, not close):
    on the whole ROI, and on the whole brain at the subsets' centres.
    Targets from the issue: the naive Bayes path at least 100x faster than
    nilearn over the whole brain with identical scores; a 100-permutation
    whole-brain map in under a minute; the general path (linear SVC) at
    least as fast as nilearn.

Run ``.venv/bin/python benchmarks/bench_searchlight.py [--quick] [--repeat N]``.
"""

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from measuring import add_run_options, best_runs, in_spawned_process, measure_call, verdict

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
RADIUS = 5.6
SEED = 0
ROI_SHAPE = (20, 28, 28)
HAXBY_ZOOMS = (3.5, 3.75, 3.75)
N_RUNS = 12
BRAIN_PER_RUN = 17
N_PERMUTATIONS = 100
#: Random centres nilearn's whole-brain searchlight is timed on.
SUBSETS = {"full": (60, 400), "quick": (20, 120)}
TARGET_GNB_SPEEDUP = 100.0
TARGET_PERMUTATION_SECONDS = 60.0
TARGET_SVC_SPEEDUP = 1.0
MB = 1e6


# --- data ------------------------------------------------------------------


def save_image(data, affine, path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, affine), path)


def save_case(folder, X, y, runs, mask, affine):
    """The cached matrix (for fmriflow) and the same data as a 4D image (for nilearn)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "clean.npy", X)
    np.save(folder / "labels.npy", y)
    np.save(folder / "runs.npy", runs)
    save_image(mask.astype(np.uint8), affine, folder / "mask.nii")
    volume = np.zeros(mask.shape + (X.shape[0],), dtype=np.float32)
    volume[mask] = X.T
    save_image(volume, affine, folder / "bold.nii")


def make_roi_case(folder):
    """Haxby-like simulated subject, face vs house over the ventral-temporal ROI."""
    sys.path.insert(0, str(SCRIPTS))
    from nilearn.signal import clean

    from fmriflow import decoding, simulate

    affine = simulate.grid_affine(ROI_SHAPE, HAXBY_ZOOMS)
    sim = simulate.simulate_task_subject(0, SEED, ROI_SHAPE, N_RUNS, 2.5, (1.0, 1.5))
    _, roi = simulate.task_masks(ROI_SHAPE)
    runs_all = sim.events["run"].to_numpy()
    data = np.vstack(
        [
            clean(sim.bold[roi].T[runs_all == r].astype(float), standardize="zscore_sample")
            for r in np.unique(runs_all)
        ]
    )
    rows, y, runs, _ = decoding.select_target(sim.events, ["face", "house"], "events")
    X = np.ascontiguousarray(data[rows], dtype=np.float32)
    save_case(folder, X, y, runs, roi, affine)
    return {"n_samples": len(y), "n_voxels": int(roi.sum()), "n_centres": int(roi.sum())}


def make_brain_case(folder, subsets):
    """Whole-brain noise with two informative blobs; random centre subsets for nilearn."""
    from nilearn.datasets import load_mni152_gm_mask

    img = load_mni152_gm_mask(resolution=4)
    mask = np.asanyarray(img.dataobj) > 0
    rng = np.random.default_rng(SEED)
    runs = np.repeat(np.arange(N_RUNS), BRAIN_PER_RUN)
    y = np.tile(np.array(["a"] * 9 + ["b"] * 8), N_RUNS)
    X = rng.standard_normal((len(y), int(mask.sum()))).astype(np.float32)
    ijk = np.argwhere(mask)
    xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    for centre in ([-40.0, -60.0, -10.0], [40.0, -60.0, -10.0]):
        blob = np.linalg.norm(xyz - centre, axis=1) <= 12.0
        X[np.ix_(y == "b", blob)] += 0.6
    save_case(folder, X, y, runs, mask, img.affine)
    order = rng.permutation(len(ijk))
    for n in subsets:
        centres = np.zeros_like(mask)
        centres[tuple(ijk[order[:n]].T)] = True
        save_image(centres.astype(np.uint8), img.affine, folder / f"centres_{n}.nii")
    return {"n_samples": len(y), "n_voxels": int(mask.sum()), "n_centres": int(mask.sum())}


# --- the methods (each runs in its own child process) ------------------------


def fmriflow_method(kind):
    """Import fmriflow; return ``run(case, centres, n_jobs, n_permutations) -> scores``."""
    sys.path.insert(0, str(SCRIPTS))
    # What the library imports lazily, imported before the clock starts as for nilearn.
    import joblib  # noqa: F401
    import sklearn.feature_selection  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.multiclass  # noqa: F401
    import sklearn.naive_bayes  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.svm  # noqa: F401
    import threadpoolctl  # noqa: F401

    from fmriflow import searchlight
    from fmriflow.io import load_mask

    def run(case, centres, n_jobs, n_permutations):
        mask, img = load_mask(case / "mask.nii")
        centre_mask = None if centres is None else load_mask(case / centres)[0]
        X = np.load(case / "clean.npy", mmap_mode="r")
        y, runs = np.load(case / "labels.npy"), np.load(case / "runs.npy")
        spheres = searchlight.make_spheres(mask, img.affine, RADIUS, centre_mask)
        if kind == "gnb":
            return searchlight.gnb_searchlight(X, y, runs, spheres, n_jobs=n_jobs).scores
        if kind == "permutations":
            result = searchlight.gnb_permutation_test(
                X, y, runs, spheres, n_permutations, seed=SEED, n_jobs=n_jobs
            )
            return result.scores
        return searchlight.searchlight_scores(X, y, runs, spheres, "svc", n_jobs=n_jobs).scores

    return run


def nilearn_method(kind):
    """Import nilearn; return ``run(case, centres, n_jobs, n_permutations) -> scores``."""
    from nilearn.decoding import SearchLight
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.naive_bayes import GaussianNB
    from sklearn.svm import SVC

    def run(case, centres, n_jobs, n_permutations):
        y, runs = np.load(case / "labels.npy"), np.load(case / "runs.npy")
        searchlight = SearchLight(
            str(case / "mask.nii"),
            process_mask_img=None if centres is None else str(case / centres),
            radius=RADIUS,
            estimator=GaussianNB() if kind == "gnb" else SVC(kernel="linear"),
            cv=LeaveOneGroupOut(),
            scoring="accuracy",
            n_jobs=n_jobs,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            searchlight.fit(str(case / "bold.nii"), y, groups=runs)
        return searchlight.masked_scores_

    return run


LIBRARIES = {"fmriflow": fmriflow_method, "nilearn": nilearn_method}


def measure(spec):
    """Run one measurement in this (child) process; save its scores, return time and memory."""
    run = LIBRARIES[spec["library"]](spec["kind"])
    args = (spec["case"], spec["centres"], spec["n_jobs"], spec["n_permutations"])
    scores, measurement = measure_call(run, *args)
    np.save(spec["out"], scores)
    # joblib's worker processes idle for minutes before exiting, and this
    # process cannot end before them: stop them now (outside the timing).
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    return measurement


def measure_in_child(spec):
    """Run :func:`measure` in a freshly spawned Python process."""
    return in_spawned_process(measure, spec)


# --- plan, comparisons, report ------------------------------------------------------


def plan(workdir, subsets, n_jobs):
    """Every measurement: name -> spec."""
    roi, brain = workdir / "roi", workdir / "brain"
    small, large = subsets

    def spec(library, kind, case, centres=None, n_permutations=0):
        name = f"{case.name}/{library}/{kind}" + (f"/{centres}" if centres else "")
        out = workdir / (name.replace("/", "_") + ".npy")
        return name, {
            "library": library,
            "kind": kind,
            "case": case,
            "centres": centres,
            "n_jobs": n_jobs,
            "n_permutations": n_permutations,
            "out": out,
        }

    specs = [
        spec("fmriflow", "gnb", roi),
        spec("nilearn", "gnb", roi),
        spec("fmriflow", "svc", roi),
        spec("nilearn", "svc", roi),
        spec("fmriflow", "gnb", brain),
        spec("fmriflow", "permutations", brain, n_permutations=N_PERMUTATIONS),
        spec("nilearn", "gnb", brain, f"centres_{small}.nii"),
        spec("nilearn", "gnb", brain, f"centres_{large}.nii"),
        spec("fmriflow", "svc", brain, f"centres_{large}.nii"),
        spec("nilearn", "svc", brain, f"centres_{large}.nii"),
    ]
    return dict(specs)


def run_all(specs, repeat):
    """Measure every spec ``repeat`` times, interleaved; keep the fastest run, largest peak."""
    runs = {name: [] for name in specs}
    for _ in range(repeat):
        for name, spec in specs.items():
            result = measure_in_child(spec)
            runs[name].append(result)
            print(f"  {name:<42} {result['seconds']:8.2f} s", flush=True)
    return best_runs(runs)


def subset_columns(brain, centres_file):
    """Positions of a subset's centres among all the brain's centres (C order)."""
    import nibabel as nib

    mask = np.asanyarray(nib.load(brain / "mask.nii").dataobj) != 0
    subset = np.asanyarray(nib.load(brain / centres_file).dataobj) != 0
    return np.flatnonzero(subset[mask])


def compare(specs, workdir, subsets):
    """Identical scores? One entry per comparison."""
    brain = workdir / "brain"
    small, large = subsets

    def scores(name):
        return np.load(specs[name]["out"])

    full_brain = scores("brain/fmriflow/gnb")
    checks = {
        "ROI, naive Bayes": np.array_equal(scores("roi/fmriflow/gnb"), scores("roi/nilearn/gnb")),
        "ROI, linear SVC": np.array_equal(scores("roi/fmriflow/svc"), scores("roi/nilearn/svc")),
        "brain, permutation test's scores": np.array_equal(
            scores("brain/fmriflow/permutations"), full_brain
        ),
    }
    for n in (small, large):
        columns = subset_columns(brain, f"centres_{n}.nii")
        checks[f"brain, naive Bayes at {n} centres"] = np.array_equal(
            full_brain[columns], scores(f"brain/nilearn/gnb/centres_{n}.nii")
        )
    checks[f"brain, linear SVC at {large} centres"] = np.array_equal(
        scores(f"brain/fmriflow/svc/centres_{large}.nii"),
        scores(f"brain/nilearn/svc/centres_{large}.nii"),
    )
    return checks


def extrapolate(results, subsets, n_centres):
    """nilearn's whole-brain time from its two subset runs: fixed + n * per_centre."""
    small, large = subsets
    t_small = results[f"brain/nilearn/gnb/centres_{small}.nii"]["seconds"]
    t_large = results[f"brain/nilearn/gnb/centres_{large}.nii"]["seconds"]
    per_centre = max((t_large - t_small) / (large - small), 1e-9)
    fixed = max(t_small - small * per_centre, 0.0)
    return fixed + n_centres * per_centre, fixed, per_centre


def print_measurements(results, specs):
    header = (
        f"{'measurement':<42} {'centres':>8} {'wall (s)':>9} {'cpu (s)':>8} "
        f"{'peak RSS (MB)':>14} {'after imports (MB)':>19}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        centres = specs[name]["centres"]
        n = centres.split("_")[1].split(".")[0] if centres else "all"
        print(
            f"{name:<42} {n:>8} {r['seconds']:>9.2f} {r['cpu']:>8.2f} "
            f"{r['peak'] / MB:>14.0f} {r['after_imports'] / MB:>19.0f}"
        )


def report(results, specs, checks, subsets, sizes):
    """Print the tables and the targets; return whether all scores are identical."""
    brain_n = sizes["brain"]["n_centres"]
    nilearn_brain, fixed, per_centre = extrapolate(results, subsets, brain_n)
    small, large = subsets
    rows = [
        (
            "ROI, naive Bayes",
            results["roi/nilearn/gnb"]["seconds"] / results["roi/fmriflow/gnb"]["seconds"],
            results["roi/fmriflow/gnb"]["peak"] / results["roi/nilearn/gnb"]["peak"],
        ),
        (
            "ROI, linear SVC",
            results["roi/nilearn/svc"]["seconds"] / results["roi/fmriflow/svc"]["seconds"],
            results["roi/fmriflow/svc"]["peak"] / results["roi/nilearn/svc"]["peak"],
        ),
        (
            "brain, naive Bayes (nilearn extrapolated)",
            nilearn_brain / results["brain/fmriflow/gnb"]["seconds"],
            results["brain/fmriflow/gnb"]["peak"]
            / results[f"brain/nilearn/gnb/centres_{large}.nii"]["peak"],
        ),
        (
            f"brain, linear SVC at {large} centres",
            results[f"brain/nilearn/svc/centres_{large}.nii"]["seconds"]
            / results[f"brain/fmriflow/svc/centres_{large}.nii"]["seconds"],
            results[f"brain/fmriflow/svc/centres_{large}.nii"]["peak"]
            / results[f"brain/nilearn/svc/centres_{large}.nii"]["peak"],
        ),
    ]
    print_measurements(results, specs)
    print()
    print(
        f"nilearn, whole brain ({brain_n} centres), extrapolated from its runs on {small} "
        f"and {large} random centres: {fixed:.2f} s + {brain_n} x {per_centre * 1e3:.2f} ms "
        f"= {nilearn_brain:.0f} s (peak memory: that of the {large}-centre run)"
    )
    print()
    header = f"{'comparison':<44} {'time nilearn/ours':>18} {'memory ours/nilearn':>20}"
    print(header)
    print("-" * len(header))
    for name, speedup, memory in rows:
        print(f"{name:<44} {speedup:>17.1f}x {memory:>20.2f}")
    print()
    print("Scores identical (numpy.array_equal)")
    for name, ok in checks.items():
        print(f"  {name:<52} {verdict(ok)}")
    permutations = results["brain/fmriflow/permutations"]["seconds"]
    identical = all(checks.values())
    print()
    print("Targets")
    print(
        f"whole brain, naive Bayes >= {TARGET_GNB_SPEEDUP:g}x faster than nilearn with identical "
        f"scores: {verdict(rows[2][1] >= TARGET_GNB_SPEEDUP and identical)} ({rows[2][1]:.0f}x)"
    )
    print(
        f"whole brain, {N_PERMUTATIONS}-permutation map in < {TARGET_PERMUTATION_SECONDS:g} s: "
        f"{verdict(permutations < TARGET_PERMUTATION_SECONDS)} ({permutations:.1f} s)"
    )
    svc_ok = rows[1][1] >= TARGET_SVC_SPEEDUP and rows[3][1] >= TARGET_SVC_SPEEDUP
    print(
        f"general path (linear SVC) at least as fast as nilearn: {verdict(svc_ok)} "
        f"(ROI {rows[1][1]:.1f}x, brain subset {rows[3][1]:.1f}x)"
    )
    return identical


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"time nilearn's whole brain on {SUBSETS['quick']} centres "
        f"instead of {SUBSETS['full']}",
    )
    add_run_options(parser, data_dir=False)
    parser.add_argument("--n-jobs", type=int, default=2, help="workers for both libraries")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    subsets = SUBSETS["quick" if args.quick else "full"]
    workdir = Path(tempfile.mkdtemp(prefix="bench_searchlight_"))
    try:
        start = time.perf_counter()
        sizes = {
            "roi": make_roi_case(workdir / "roi"),
            "brain": make_brain_case(workdir / "brain", subsets),
        }
        print(f"generated the data in {time.perf_counter() - start:.1f} s", flush=True)
        specs = plan(workdir, subsets, args.n_jobs)
        results = run_all(specs, args.repeat)
        checks = compare(specs, workdir, subsets)
    finally:
        shutil.rmtree(workdir)
    print()
    for case, size in sizes.items():
        print(
            f"{case}: {size['n_samples']} volumes x {size['n_voxels']} voxels, "
            f"{size['n_centres']} centres, radius {RADIUS} mm, leave-one-run-out over "
            f"{N_RUNS} runs"
        )
    print(f"{args.repeat} run(s) per measurement, n_jobs={args.n_jobs} for both libraries")
    print()
    if not report(results, specs, checks, subsets, sizes):
        raise SystemExit("scores differ from nilearn's")


if __name__ == "__main__":
    main()
