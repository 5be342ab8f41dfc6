"""Benchmark: fmriflow's searchlight against nilearn's SearchLight.

What is compared
    fmriflow's three exact searchlight paths and its general path, each
    reading the cached ``(volume x voxel)`` float32 matrix memory-mapped
    from a ``.npy`` and the mask:

    * ``gnb_searchlight`` (Gaussian naive Bayes in every sphere at once);
    * ``searchlight_scores(..., "ridge")``,
      ``searchlight_scores(..., "lda_shrinkage")``,
      ``searchlight_scores(..., "lda_auto")`` and
      ``searchlight_scores(..., "nearest_centroid")`` (the closed-form
      engine ``closed_form_searchlight``: every sphere from per-fold sums);
    * ``searchlight_scores(..., "linear_svc")`` and ``(..., "logreg_l1")``
      on the ROI (the general path's liblinear classifiers, liblinear called
      without scikit-learn's per-call overhead);
    * ``searchlight_scores(..., "svc")`` and ``(..., "logreg_l2")`` (the
      general path, scikit-learn fitted sphere by sphere);

    against ``nilearn.decoding.SearchLight(mask_img, process_mask_img=...,
    radius=5.6, estimator=..., cv=LeaveOneGroupOut(), scoring="accuracy")
    .fit(bold_img, y, groups=runs)`` with the matching estimator:
    ``GaussianNB()``, ``RidgeClassifier(alpha=1.0)``,
    ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1)``,
    ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``,
    ``NearestCentroid()``, ``LinearSVC(random_state=0, max_iter=10000)``,
    ``SVC(kernel="linear")``, ``OneVsRestClassifier(LogisticRegression(
    l1_ratio=1.0, solver="liblinear", random_state=0))`` or
    ``LogisticRegression(max_iter=5000)``. nilearn reads the same
    data as an uncompressed 4D NIfTI image: float32 as cached, except for
    ridge and LDA, where it reads a float64 copy (fmriflow's ridge and LDA
    are exact with respect to scikit-learn on float64 data; nearest centroid
    and naive Bayes are exact on the data as given). Both use the same
    number of workers
    (``--n-jobs``, default 2): nilearn's processes; fmriflow's processes for
    the general path, threads for the exact paths. Also timed: 100 label
    permutations (within runs) over the whole brain with each exact path
    (``gnb_permutation_test``; ``searchlight_scores(...,
    n_permutations=100, seed=0)`` for ridge, LDA and nearest centroid).

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
    path) count in neither. With ``--repeat N`` every measurement runs N
    times, interleaved, and the fastest run is kept (and the largest peak),
    which damps the noise of other jobs on the machine. nilearn's
    whole-brain searchlights (naive Bayes, ridge, LDA, nearest centroid: minutes
    each) are timed on two random subsets of centres (the data mask stays
    the whole brain, so the spheres are the same) and extrapolated linearly
    in the number of centres: ``fixed + n * per_centre`` from the two runs;
    their peak memory is that of the larger subset. The linear SVC is
    compared on the larger subset only.

Checks
    Scores are compared with ``numpy.array_equal`` (identical, not close):
    on the whole ROI, on the whole brain at the subsets' centres, and the
    permutation runs' observed scores with the plain runs'.
    Targets: over the whole brain, the naive Bayes path at least 100x
    faster than nilearn, the ridge, LDA and nearest centroid paths each at
    least 50x, all with identical scores; a 100-permutation whole-brain map
    in under a minute with naive Bayes, under 120 s with ridge, LDA and
    nearest centroid (on 2 cores); on the ROI, LinearSVC and L1 logistic
    regression (liblinear) at least 5x faster than nilearn, SVC and L2
    logistic regression (libsvm's and lbfgs's own iterations are most of a
    fit) at least as fast, all with identical scores.

Run ``.venv/bin/python benchmarks/bench_searchlight.py [--quick] [--repeat N]``
(``--quick`` times nilearn's whole brain on fewer random centres).
"""

import argparse
import os
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
#: The exact paths: naive Bayes and the closed-form engine's classifiers.
EXACT = ("gnb", "ridge", "lda_shrinkage", "lda_auto", "nearest_centroid")
#: How the tables name each classifier.
LABELS = {
    "gnb": "naive Bayes",
    "ridge": "ridge",
    "lda_shrinkage": "shrinkage LDA",
    "lda_auto": "Ledoit-Wolf LDA",
    "nearest_centroid": "nearest centroid",
    "svc": "linear SVC",
    "linear_svc": "LinearSVC",
    "logreg_l1": "L1 logistic",
    "logreg_l2": "L2 logistic",
}
#: Whole brain, nilearn's time over ours, at least.
#: Classifiers of the general path compared on the ROI: SVC (libsvm) and L2 logistic
#: regression (lbfgs), scikit-learn per sphere; LinearSVC and L1 logistic regression
#: (liblinear, one-vs-rest), liblinear called without scikit-learn's per-call overhead.
GENERAL = ("svc", "linear_svc", "logreg_l1", "logreg_l2")

#: Classifiers whose nilearn reference reads the float64 copy of the data.
FLOAT64_REFERENCE = ("ridge", "lda_shrinkage", "lda_auto")

TARGET_SPEEDUP = {
    "gnb": 100.0,
    "ridge": 50.0,
    "lda_shrinkage": 50.0,
    "lda_auto": 50.0,
    "nearest_centroid": 50.0,
}
#: Whole brain, 100 permutations, seconds, under.
TARGET_PERMUTATION_SECONDS = {
    "gnb": 60.0,
    "ridge": 120.0,
    "lda_shrinkage": 120.0,
    "lda_auto": 120.0,
    "nearest_centroid": 120.0,
}
#: ROI, nilearn's time over ours, at least: the liblinear classifiers 5x; the
#: scikit-learn-per-sphere path at least as fast as nilearn.
TARGET_GENERAL_SPEEDUP = {"svc": 1.0, "linear_svc": 5.0, "logreg_l1": 5.0, "logreg_l2": 1.0}
MB = 1e6


# --- data ------------------------------------------------------------------


def save_image(data, affine, path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, affine), path)


def save_case(folder, X, y, runs, mask, affine):
    """The cached matrix (for fmriflow) and the same data as 4D images (for nilearn).

    ``bold.nii`` holds the data as cached (float32), ``bold64.nii`` the same
    values in float64 (nilearn's ridge and LDA read it: fmriflow's are exact
    with respect to scikit-learn on float64 data).
    """
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "clean.npy", X)
    np.save(folder / "labels.npy", y)
    np.save(folder / "runs.npy", runs)
    save_image(mask.astype(np.uint8), affine, folder / "mask.nii")
    volume = np.zeros(mask.shape + (X.shape[0],), dtype=np.float32)
    volume[mask] = X.T
    save_image(volume, affine, folder / "bold.nii")
    save_image(volume.astype(np.float64), affine, folder / "bold64.nii")


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
    import sklearn.neighbors  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.svm  # noqa: F401
    import threadpoolctl  # noqa: F401

    from fmriflow import classifiers, decoding, searchlight  # noqa: F401
    from fmriflow.io import load_mask

    def run(case, centres, n_jobs, n_permutations):
        mask, img = load_mask(case / "mask.nii")
        centre_mask = None if centres is None else load_mask(case / centres)[0]
        X = np.load(case / "clean.npy", mmap_mode="r")
        y, runs = np.load(case / "labels.npy"), np.load(case / "runs.npy")
        spheres = searchlight.make_spheres(mask, img.affine, RADIUS, centre_mask)
        if kind == "gnb" and n_permutations:
            result = searchlight.gnb_permutation_test(
                X, y, runs, spheres, n_permutations, seed=SEED, n_jobs=n_jobs
            )
        elif kind == "gnb":
            result = searchlight.gnb_searchlight(X, y, runs, spheres, n_jobs=n_jobs)
        else:
            # ridge, lda_shrinkage, nearest_centroid (closed-form engine) or svc (general path).
            result = searchlight.searchlight_scores(
                X, y, runs, spheres, kind, n_permutations=n_permutations, seed=SEED, n_jobs=n_jobs
            )
        return result.scores

    return run


def nilearn_method(kind):
    """Import nilearn; return ``run(case, centres, n_jobs, n_permutations) -> scores``."""
    from nilearn.decoding import SearchLight
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import NearestCentroid
    from sklearn.svm import SVC, LinearSVC

    estimators = {
        "gnb": GaussianNB,
        "ridge": lambda: RidgeClassifier(alpha=1.0),
        "lda_shrinkage": lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1),
        "lda_auto": lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
        "nearest_centroid": NearestCentroid,
        "svc": lambda: SVC(kernel="linear"),
        "linear_svc": lambda: LinearSVC(random_state=0, max_iter=10000),
        "logreg_l1": lambda: OneVsRestClassifier(
            LogisticRegression(l1_ratio=1.0, solver="liblinear", random_state=0)
        ),
        "logreg_l2": lambda: LogisticRegression(max_iter=5000),
    }
    # Ridge and LDA on the float64 copy: the reference fmriflow's are exact to.
    image = "bold64.nii" if kind in FLOAT64_REFERENCE else "bold.nii"

    def run(case, centres, n_jobs, n_permutations):
        y, runs = np.load(case / "labels.npy"), np.load(case / "runs.npy")
        searchlight = SearchLight(
            str(case / "mask.nii"),
            process_mask_img=None if centres is None else str(case / centres),
            radius=RADIUS,
            estimator=estimators[kind](),
            cv=LeaveOneGroupOut(),
            scoring="accuracy",
            n_jobs=n_jobs,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            searchlight.fit(str(case / image), y, groups=runs)
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
        name = f"{case.name}/{library}/{kind}"
        name += "/permutations" if n_permutations else ""
        name += f"/{centres}" if centres else ""
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

    specs = []
    for kind in (*EXACT, *GENERAL):
        specs += [spec("fmriflow", kind, roi), spec("nilearn", kind, roi)]
    for kind in EXACT:
        specs += [
            spec("fmriflow", kind, brain),
            spec("fmriflow", kind, brain, n_permutations=N_PERMUTATIONS),
            spec("nilearn", kind, brain, f"centres_{small}.nii"),
            spec("nilearn", kind, brain, f"centres_{large}.nii"),
        ]
    specs += [
        spec("fmriflow", "svc", brain, f"centres_{large}.nii"),
        spec("nilearn", "svc", brain, f"centres_{large}.nii"),
    ]
    return dict(specs)


def run_all(specs, repeat):
    """Measure every spec ``repeat`` times, interleaved; keep the fastest run, largest peak."""
    runs = {name: [] for name in specs}
    width = max(len(name) for name in specs)
    for _ in range(repeat):
        for name, spec in specs.items():
            result = measure_in_child(spec)
            runs[name].append(result)
            print(f"  {name:<{width}} {result['seconds']:8.2f} s", flush=True)
    return best_runs(runs)


def subset_columns(brain, centres_file):
    """Positions of a subset's centres among all the brain's centres (C order)."""
    import nibabel as nib

    mask = np.asanyarray(nib.load(brain / "mask.nii").dataobj) != 0
    subset = np.asanyarray(nib.load(brain / centres_file).dataobj) != 0
    return np.flatnonzero(subset[mask])


def compare(specs, workdir, subsets):
    """Identical scores? ``(kind, comparison) -> bool``."""
    brain = workdir / "brain"
    small, large = subsets

    def scores(name):
        return np.load(specs[name]["out"])

    def note(kind):
        return " (nilearn on float64)" if kind in FLOAT64_REFERENCE else ""

    checks = {}
    for kind in (*EXACT, *GENERAL):
        checks[kind, f"ROI, {LABELS[kind]}{note(kind)}"] = np.array_equal(
            scores(f"roi/fmriflow/{kind}"), scores(f"roi/nilearn/{kind}")
        )
    for kind in EXACT:
        full_brain = scores(f"brain/fmriflow/{kind}")
        for n in (small, large):
            columns = subset_columns(brain, f"centres_{n}.nii")
            checks[kind, f"brain, {LABELS[kind]} at {n} centres{note(kind)}"] = np.array_equal(
                full_brain[columns], scores(f"brain/nilearn/{kind}/centres_{n}.nii")
            )
        checks[kind, f"brain, {LABELS[kind]}, permutation run's scores"] = np.array_equal(
            scores(f"brain/fmriflow/{kind}/permutations"), full_brain
        )
    checks["svc", f"brain, linear SVC at {large} centres"] = np.array_equal(
        scores(f"brain/fmriflow/svc/centres_{large}.nii"),
        scores(f"brain/nilearn/svc/centres_{large}.nii"),
    )
    return checks


def extrapolate(results, kind, subsets, n_centres):
    """nilearn's whole-brain time from its two subset runs: fixed + n * per_centre."""
    small, large = subsets
    t_small = results[f"brain/nilearn/{kind}/centres_{small}.nii"]["seconds"]
    t_large = results[f"brain/nilearn/{kind}/centres_{large}.nii"]["seconds"]
    per_centre = max((t_large - t_small) / (large - small), 1e-9)
    fixed = max(t_small - small * per_centre, 0.0)
    return fixed + n_centres * per_centre, fixed, per_centre


def print_measurements(results, specs):
    width = max(len(name) for name in results)
    header = (
        f"{'measurement':<{width}} {'centres':>8} {'wall (s)':>9} {'cpu (s)':>8} "
        f"{'peak RSS (MB)':>14} {'after imports (MB)':>19}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        centres = specs[name]["centres"]
        n = centres.split("_")[1].split(".")[0] if centres else "all"
        print(
            f"{name:<{width}} {n:>8} {r['seconds']:>9.2f} {r['cpu']:>8.2f} "
            f"{r['peak'] / MB:>14.0f} {r['after_imports'] / MB:>19.0f}"
        )


def report(results, specs, checks, subsets, sizes):
    """Print the tables and the targets; return whether all scores are identical."""
    brain_n = sizes["brain"]["n_centres"]
    small, large = subsets

    def versus(ours, theirs):
        """nilearn's time over ours, our peak over nilearn's."""
        return (
            results[theirs]["seconds"] / results[ours]["seconds"],
            results[ours]["peak"] / results[theirs]["peak"],
        )

    rows = {}
    for kind in (*EXACT, *GENERAL):
        rows[f"ROI, {LABELS[kind]}"] = versus(f"roi/fmriflow/{kind}", f"roi/nilearn/{kind}")
    extrapolated = {kind: extrapolate(results, kind, subsets, brain_n) for kind in EXACT}
    brain_speedup = {}
    for kind, (nilearn_brain, _, _) in extrapolated.items():
        ours = results[f"brain/fmriflow/{kind}"]
        brain_speedup[kind] = nilearn_brain / ours["seconds"]
        rows[f"brain, {LABELS[kind]} (nilearn extrapolated)"] = (
            brain_speedup[kind],
            ours["peak"] / results[f"brain/nilearn/{kind}/centres_{large}.nii"]["peak"],
        )
    svc_brain = versus(
        f"brain/fmriflow/svc/centres_{large}.nii", f"brain/nilearn/svc/centres_{large}.nii"
    )
    rows[f"brain, linear SVC at {large} centres"] = svc_brain

    print_measurements(results, specs)
    print()
    print(
        f"nilearn, whole brain ({brain_n} centres), extrapolated from its runs on {small} "
        f"and {large} random centres (peak memory: that of the {large}-centre run; ridge and LDA "
        f"read the float64 image):"
    )
    for kind, (nilearn_brain, fixed, per_centre) in extrapolated.items():
        print(
            f"  {LABELS[kind]:<17} {fixed:6.2f} s + {brain_n} x {per_centre * 1e3:6.2f} ms "
            f"= {nilearn_brain:6.0f} s"
        )
    print()
    header = f"{'comparison':<44} {'time nilearn/ours':>18} {'memory ours/nilearn':>20}"
    print(header)
    print("-" * len(header))
    for name, (speedup, memory) in rows.items():
        print(f"{name:<44} {speedup:>17.1f}x {memory:>20.2f}")
    print()
    print("Scores identical (numpy.array_equal)")
    for (_, name), ok in checks.items():
        print(f"  {name:<56} {verdict(ok)}")
    print()
    print("Targets")
    for kind in EXACT:
        identical = all(ok for (k, _), ok in checks.items() if k == kind)
        target = TARGET_SPEEDUP[kind]
        print(
            f"whole brain, {LABELS[kind]} >= {target:g}x faster than nilearn with identical "
            f"scores: {verdict(brain_speedup[kind] >= target and identical)} "
            f"({brain_speedup[kind]:.0f}x)"
        )
    for kind in EXACT:
        seconds = results[f"brain/fmriflow/{kind}/permutations"]["seconds"]
        target = TARGET_PERMUTATION_SECONDS[kind]
        print(
            f"whole brain, {N_PERMUTATIONS}-permutation map, {LABELS[kind]}, in < {target:g} s: "
            f"{verdict(seconds < target)} ({seconds:.1f} s)"
        )
    for kind, target in TARGET_GENERAL_SPEEDUP.items():
        speedup = rows[f"ROI, {LABELS[kind]}"][0]
        ok = speedup >= target and checks[kind, f"ROI, {LABELS[kind]}"]
        print(
            f"ROI, {LABELS[kind]} >= {target:g}x faster than nilearn with identical scores: "
            f"{verdict(ok)} ({speedup:.1f}x)"
        )
    svc_ok = svc_brain[0] >= TARGET_GENERAL_SPEEDUP["svc"]
    print(
        f"brain subset, linear SVC at least as fast as nilearn: {verdict(svc_ok)} "
        f"({svc_brain[0]:.1f}x)"
    )
    return all(checks.values())


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
    load_start = os.getloadavg()
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
    print(
        "load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}, at the end: "
        "{:.2f} {:.2f} {:.2f}, on {} CPUs".format(*load_start, *os.getloadavg(), os.cpu_count())
    )
    print()
    if not report(results, specs, checks, subsets, sizes):
        raise SystemExit("scores differ from nilearn's")


if __name__ == "__main__":
    main()
