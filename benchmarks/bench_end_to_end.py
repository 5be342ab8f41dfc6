"""Benchmark: the whole workflow on a lab's own NIfTI files against nilearn's few-line script.

What is compared
    One resting-state study taken from the user's files to group networks
    and a parcellation, twice: once as ``snakemake --cores 2`` runs it in a
    fresh working directory (the cohort given as a ``local`` dataset by path
    templates), once as the few lines of nilearn a user would write for the
    same work, in one Python process:

    * nilearn (``NILEARN_SCRIPT``, written next to its outputs and run with
      this Python): ``CanICA(n_components=10)`` then
      ``Parcellations("ward", n_parcels=100)``, both fitted on the list of
      4D files with their confound tables, the grey-matter mask file and
      the preprocessing CanICA applies by default (``smoothing_fwhm=6``,
      ``standardize="zscore_sample"`` — what ``True`` means since nilearn 0.14 —,
      ``detrend=True``, no band-pass), ``random_state=0``, ``n_jobs=1``;
      the maps and labels saved as NIfTI (``to_filename``).
    * fmriflow: every job of the default target for that config —
      ``describe_local``, ``import_local`` and ``import_local_confounds``
      per subject, ``mask`` and ``clean`` (the same mask, smoothing,
      cleaning: ``mask: mni_gm``, ``smoothing_fwhm: 6``, ``detrend``,
      ``standardize: zscore_sample``, confounds), ``reduce_subject`` (the
      ICA's reduction; the clustering's too when ``n_features`` is below the
      number of volumes — otherwise ``subject_pca: false``: a subject PCA
      keeping every volume is the data rotated, so the group PCA reads
      ``clean.npy``), ``template_mask`` (the grey-matter mask on the grid,
      once), ``group_ica``
      (``method: canica``, 10 components, ``n_subject_components: 10`` as
      nilearn keeps ``n_components`` per subject, ``n_init: 10`` as CanICA,
      ``threshold: auto``, one seed: no stability repetitions), ``parcellate``
      (``ward``, 100 clusters, ``n_features`` = min(200, volumes): nilearn's
      Parcellations reduces to 200 components per subject and for the
      group), their figures, the provenance sidecars and table.

Data
    A simulated cohort written as a lab would have it (``fmriflow.simulate``,
    the generator of the workflow's rest datasets): ``--subjects`` subjects
    (default 20) x ``--volumes`` volumes (default 150), TR 2 s, on nilearn's
    MNI152 grid at 4 mm (grey matter: 28,144 voxels; the signal on the
    whole-brain mask), ``--networks`` planted networks (default 8, all the
    simulator knows; ``network_maps``, 14 mm blobs), SNR drawn in [1, 2],
    with drifts, AR(1) noise, a baseline and two slow artefacts whose time
    courses are the confound tables. Per subject ``sub-XX_bold.nii.gz``
    (float32, TR in the header; ``--uncompressed``: ``.nii``) and
    ``sub-XX_confounds.tsv``; the grey-matter mask (``mask.nii.gz``) and the
    planted maps on its voxels (``truth.npy``, for scoring only). Written
    under ``/tmp/e2e/data`` and reused when its parameters match.
    ``--quick``: 6 subjects x 100 volumes.

How it is measured
    Each side is one command started with ``subprocess`` (this Python, the
    venv's ``snakemake``); wall time from its start to its end
    (``perf_counter``), interpreter start-up, imports, every job and every
    file written included. Peak memory: a thread samples ``/proc`` every
    ``--interval`` seconds (default 0.05), finds the command's whole process
    tree (parents from ``/proc/<pid>/stat``) and sums the resident memory
    of its processes (``/proc/<pid>/statm``); the largest sum is the peak
    (pages shared between processes — libraries — count once per process,
    which overstates the workflow, whose jobs are separate interpreters). A
    job shorter than the interval can be missed between samples; the
    ``max_rss`` of Snakemake's per-job benchmark files is printed beside.
    Snakemake runs in a fresh directory (``/tmp/e2e/run``, removed first,
    nothing cached), with the workflow's own profile and its one BLAS thread
    per job; nilearn with the machine's default threads
    (``--nilearn-threads N`` sets ``OPENBLAS/OMP/MKL_NUM_THREADS``). The
    input files are read once before each command (page cache warm). The
    order of the two runs is ``--order`` (default: fmriflow first).

    Where the workflow's time goes: the ``s`` column of every
    ``logs/benchmark/<rule>/*.tsv`` summed per rule (seconds of the jobs,
    two at a time, so the sum exceeds the wall time), with the number of
    jobs and the largest ``max_rss``; the rest of the wall time is
    Snakemake's own (parsing, the DAG, checks before any job, scheduling).

Checks (printed, not enforced; no timed assertion)
    Recovery: the 10 maps of each side (the saved, thresholded maps, on the
    mask's voxels) matched one to one with the planted networks by absolute
    spatial correlation (Hungarian, ``fmriflow.decomposition.match_components``),
    the mean matched correlation of each, and the mean of the two sides'
    maps matched with each other. Parcellation: the adjusted Rand index
    between the two labelings, and for each the number of parcels,
    connected regions, fragmented parcels and the compression R² on the
    workflow's cleaned data (``summarize_parcellation``: the variance kept
    when each voxel is replaced by its parcel's mean; the same data for
    both). The issue's targets are printed with their verdict: fmriflow's
    wall time at most 1.0x nilearn's, peak memory at most 0.7x, recovery
    equal (within 0.01).

Run ``.venv/bin/python benchmarks/bench_end_to_end.py [--quick] [--subjects N] [--keep]``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from measuring import (
    THREAD_VARIABLES,
    import_fmriflow,
    print_table,
    verdict,
    warm_page_cache,
)

ROOT = Path("/tmp/e2e")
REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
PYTHON = Path(sys.executable)
SNAKEMAKE = PYTHON.with_name("snakemake")

DATASET = "e2e"
RESOLUTION = 4
TR = 2.0
SNR = (1.0, 2.0)
BLOB_FWHM = 14.0
SEED = 0
N_COMPONENTS = 10
N_PARCELS = 100
#: CanICA's default preprocessing (nilearn 0.14), applied on both sides.
SMOOTHING_FWHM = 6.0
#: nilearn's ``standardize=True`` is the sample z-score ("zscore_sample") since 0.14.
STANDARDIZE = "zscore_sample"
#: nilearn's Parcellations reduces each subject and the group to 200 components.
PARCELLATION_COMPONENTS = 200
#: CanICA's default number of FastICA restarts.
CANICA_N_INIT = 10
#: Recovery counted as equal when the two means differ by at most this.
RECOVERY_TOLERANCE = 0.01
#: The issue's targets: fmriflow / nilearn.
TARGET_TIME, TARGET_MEMORY = 1.0, 0.7
MB = 1e6
PAGE = os.sysconf("SC_PAGE_SIZE")

NILEARN_SCRIPT = '''\
"""nilearn's pipeline for the same work: group ICA and Ward parcels of a rest cohort."""

import json
import sys
import time

start = time.perf_counter()
import pandas as pd
from nilearn.decomposition import CanICA
from nilearn.regions import Parcellations

spec = json.load(open(sys.argv[1]))
bold = spec["bold"]
confounds = [pd.read_csv(path, sep="\\t") for path in spec["confounds"]]
preprocessing = dict(
    mask=spec["mask"], smoothing_fwhm=6, standardize="zscore_sample", detrend=True,
    random_state=0, n_jobs=1,
)
imported = time.perf_counter()
canica = CanICA(n_components=spec["n_components"], **preprocessing)
canica.fit(bold, confounds=confounds)
canica.components_img_.to_filename(spec["components"])
fitted_ica = time.perf_counter()
ward = Parcellations("ward", n_parcels=spec["n_parcels"], **preprocessing)
ward.fit(bold, confounds=confounds)
ward.labels_img_.to_filename(spec["labels"])
end = time.perf_counter()
print(json.dumps({"imports": imported - start, "canica": fitted_ica - imported,
                  "parcellations": end - fitted_ica}))
'''


# --- data ---------------------------------------------------------------------------


def prepare_cohort(folder, n_subjects, n_volumes, n_networks, compressed):
    """Simulate the cohort into ``folder`` as a lab's files (reused when already there)."""
    import nibabel as nib

    import_fmriflow()
    from fmriflow import simulate
    from fmriflow.dataset import save_bold
    from fmriflow.io import write_table

    settings = {
        "subjects": n_subjects,
        "volumes": n_volumes,
        "networks": n_networks,
        "compressed": compressed,
        "resolution": RESOLUTION,
        "snr": list(SNR),
        "seed": SEED,
    }
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    extension = "nii.gz" if compressed else "nii"
    paths = {
        "subjects": subjects,
        "bold_template": str(folder / f"sub-{{subject}}_bold.{extension}"),
        "confounds_template": str(folder / "sub-{subject}_confounds.tsv"),
        "bold": [folder / f"sub-{s}_bold.{extension}" for s in subjects],
        "confounds": [folder / f"sub-{s}_confounds.tsv" for s in subjects],
        "mask": folder / "mask.nii.gz",
        "truth": folder / "truth.npy",
    }
    stamp = folder / "settings.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return paths
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    brain, grey, affine = simulate.rest_grid(RESOLUTION)
    maps, _ = simulate.network_maps(grey, affine, n_networks, BLOB_FWHM)
    nib.save(nib.Nifti1Image(grey.astype(np.uint8), affine), paths["mask"])
    np.save(paths["truth"], maps[:, grey].astype(np.float32))
    for index, (bold, confounds) in enumerate(zip(paths["bold"], paths["confounds"], strict=True)):
        sim = simulate.simulate_rest_subject(index, SEED, maps, brain, n_volumes, TR, SNR)
        save_bold(sim.bold, affine, TR, bold)
        write_table(sim.confounds, confounds)
    stamp.write_text(json.dumps(settings))
    print(
        f"generated {n_subjects} subjects x {n_volumes} volumes ({int(grey.sum())} grey-matter "
        f"voxels, {n_networks} networks) in {time.perf_counter() - start:.0f} s into {folder}",
        flush=True,
    )
    return paths


def n_features(n_volumes):
    """The clustering's group components: nilearn's 200, at most one per volume."""
    return min(PARCELLATION_COMPONENTS, n_volumes)


def workflow_config(paths, n_volumes):
    """The workflow's config for the cohort: nilearn's preprocessing and models."""
    return {
        "download_dir": str(ROOT / "downloads"),
        "datasets": {
            DATASET: {
                "source": "local",
                "local": {
                    "kind": "rest",
                    "tr": TR,
                    "space": "MNI152NLin2009cAsym",
                    "subjects": paths["subjects"],
                    "bold": paths["bold_template"],
                    "confounds": paths["confounds_template"],
                },
                "preprocess": {
                    "mask": "mni_gm",
                    "include_roi": False,
                    "smoothing_fwhm": SMOOTHING_FWHM,
                    "clean": {
                        "detrend": True,
                        "standardize": STANDARDIZE,
                        "high_pass": None,
                        "low_pass": None,
                        "confounds": True,
                    },
                },
            }
        },
        "ica": [
            {
                "name": "canica",
                "dataset": DATASET,
                "method": "canica",
                "n_components": N_COMPONENTS,
                "n_subject_components": N_COMPONENTS,
                "n_init": CANICA_N_INIT,
                "threshold": "auto",
                "seeds": [SEED],
            }
        ],
        "clustering": [
            {
                "dataset": DATASET,
                "method": "ward",
                "n_clusters": [N_PARCELS],
                "n_features": n_features(n_volumes),
                # A subject PCA keeping every volume is the data rotated: the group
                # PCA then reads clean.npy directly, as a user would configure it.
                "subject_pca": n_features(n_volumes) < n_volumes,
                "seed": SEED,
            }
        ],
    }


# --- measurement ----------------------------------------------------------------------


def process_parents():
    """Parent pid of every process on the machine (those that vanish are skipped)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name (in parentheses) may contain spaces: split after it.
        fields = text[text.rfind(b")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def tree_rss(root):
    """Summed resident bytes of ``root`` and all its descendants, and their number."""
    children = {}
    for pid, parent in process_parents().items():
        children.setdefault(parent, []).append(pid)
    total, count, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                resident = int(statm.read().split()[1])
        except (OSError, IndexError):
            continue
        total += resident * PAGE
        count += 1
    return total, count


class TreeMemorySampler(threading.Thread):
    """Samples the summed RSS of a process tree until stopped; keeps the peak."""

    def __init__(self, root, interval):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak, self.peak_processes, self.samples = 0, 0, 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            total, count = tree_rss(self.root)
            if total > self.peak:
                self.peak, self.peak_processes = total, count
            self.samples += 1
            self.stopped.wait(self.interval)

    def stop(self):
        self.stopped.set()
        self.join()


def run_measured(command, cwd, log, interval, env=None):
    """Run ``command``; its wall time, the peak of its tree's summed RSS, its exit code."""
    with open(log, "w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, env=env
        )
        sampler = TreeMemorySampler(process.pid, interval)
        sampler.start()
        code = process.wait()
        seconds = time.perf_counter() - start
        sampler.stop()
    return {
        "seconds": seconds,
        "peak": sampler.peak,
        "processes": sampler.peak_processes,
        "samples": sampler.samples,
        "code": code,
        "log": log,
    }


def run_fmriflow(paths, args):
    """``snakemake --cores 2`` on the cohort, in a fresh directory."""
    import yaml

    workdir = ROOT / "run"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(workflow_config(paths, args.volumes), sort_keys=False))
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        str(args.cores),
    ]
    warm_page_cache(paths["bold"] + paths["confounds"] + [paths["mask"]])
    result = run_measured(command, workdir, ROOT / "snakemake.log", args.interval)
    result["command"] = " ".join(command)
    result["workdir"] = workdir
    return result


def run_nilearn(paths, args):
    """nilearn's script, in its own process."""
    folder = ROOT / "nilearn"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    script = folder / "pipeline.py"
    script.write_text(NILEARN_SCRIPT)
    spec = {
        "bold": [str(p) for p in paths["bold"]],
        "confounds": [str(p) for p in paths["confounds"]],
        "mask": str(paths["mask"]),
        "n_components": N_COMPONENTS,
        "n_parcels": N_PARCELS,
        "components": str(folder / "canica_components.nii.gz"),
        "labels": str(folder / "ward_labels.nii.gz"),
    }
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    if args.nilearn_threads:
        env.update({name: str(args.nilearn_threads) for name in THREAD_VARIABLES})
    command = [str(PYTHON), str(script), str(spec_path)]
    warm_page_cache(paths["bold"] + paths["confounds"] + [paths["mask"]])
    result = run_measured(command, folder, ROOT / "nilearn.log", args.interval, env=env)
    result["command"] = " ".join(command)
    result["outputs"] = spec
    result["steps"] = None
    if result["code"] == 0:
        lines = Path(result["log"]).read_text().strip().splitlines()
        result["steps"] = json.loads(lines[-1]) if lines else None
    return result


def rule_seconds(workdir):
    """Per rule: the jobs' seconds summed, their number and largest max_rss (MB)."""
    import pandas as pd

    rows = []
    for folder in sorted((workdir / "logs" / "benchmark").iterdir()):
        tables = [pd.read_csv(path, sep="\t") for path in sorted(folder.glob("*.tsv"))]
        if not tables:
            continue
        table = pd.concat(tables, ignore_index=True)
        rss = pd.to_numeric(table["max_rss"], errors="coerce")
        rows.append(
            {
                "rule": folder.name,
                "jobs": len(table),
                "seconds": float(table["s"].sum()),
                "mean": float(table["s"].mean()),
                "max_rss": float(rss.max()) if rss.notna().any() else None,
                "cpu": float(pd.to_numeric(table["cpu_time"], errors="coerce").sum()),
            }
        )
    return sorted(rows, key=lambda row: -row["seconds"])


# --- checks -----------------------------------------------------------------------------


def masked_maps(path, mask):
    """A 4D image's volumes on the mask's voxels, as (n_maps, n_voxels)."""
    import nibabel as nib

    data = np.asanyarray(nib.load(path).dataobj)
    return np.moveaxis(data, -1, 0)[:, mask].astype(np.float64)


def masked_labels(path, mask):
    import nibabel as nib

    return np.asanyarray(nib.load(path).dataobj)[mask].astype(np.int64)


def score(paths, fmriflow_run, nilearn_run):
    """Recovery of the planted networks and agreement of the parcellations."""
    import nibabel as nib
    from sklearn.metrics import adjusted_rand_score

    import_fmriflow()
    from fmriflow.decomposition import match_components
    from fmriflow.parcellation import summarize_parcellation

    mask = np.asanyarray(nib.load(paths["mask"]).dataobj) > 0
    truth = np.load(paths["truth"])
    results = workdir_results(fmriflow_run["workdir"])
    ours_maps = masked_maps(results / "group" / "ica" / "canica" / "components.nii.gz", mask)
    theirs_maps = masked_maps(nilearn_run["outputs"]["components"], mask)
    ours = match_components(ours_maps, truth)
    theirs = match_components(theirs_maps, truth)
    between = match_components(ours_maps, theirs_maps)
    labels_path = results / "group" / "clustering" / f"ward_{N_PARCELS}" / "labels.nii.gz"
    ours_labels = masked_labels(labels_path, mask)
    theirs_labels = masked_labels(nilearn_run["outputs"]["labels"], mask)
    clean = [results / f"sub-{s}" / "clean.npy" for s in paths["subjects"]]
    subject_mask = (
        np.asanyarray(nib.load(results / f"sub-{paths['subjects'][0]}" / "mask.nii.gz").dataobj)
        > 0
    )
    same_mask = bool(np.array_equal(subject_mask, mask))
    data = clean if same_mask else None
    return {
        "recovery": {"fmriflow": ours, "nilearn": theirs},
        "between": between,
        "n_maps": (len(ours_maps), len(theirs_maps)),
        "ari": float(adjusted_rand_score(ours_labels, theirs_labels)),
        "parcels": {
            "fmriflow": summarize_parcellation(ours_labels, mask, data),
            "nilearn": summarize_parcellation(theirs_labels, mask, data),
        },
        "same_mask": same_mask,
        "n_voxels": int(mask.sum()),
    }


def workdir_results(workdir):
    return Path(workdir) / "results" / DATASET


# --- report ---------------------------------------------------------------------------------


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 subjects x 100 volumes")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--volumes", type=int, default=150)
    parser.add_argument("--networks", type=int, default=8, help="planted networks (1 to 8)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument(
        "--nilearn-threads",
        type=int,
        default=0,
        help="BLAS/OpenMP threads of nilearn's process (default 0: the machine's default)",
    )
    parser.add_argument(
        "--uncompressed", action="store_true", help="write the BOLD files as .nii, not .nii.gz"
    )
    parser.add_argument(
        "--order",
        choices=("fmriflow-first", "nilearn-first"),
        default="fmriflow-first",
        help="which command runs first",
    )
    parser.add_argument(
        "--interval", type=float, default=0.05, help="seconds between memory samples"
    )
    parser.add_argument("--keep", action="store_true", help=f"keep {ROOT} (data, runs, logs)")
    return parser.parse_args(argv)


def print_failure(name, run):
    tail = Path(run["log"]).read_text().splitlines()[-40:]
    print(f"{name} failed (exit code {run['code']}); the end of {run['log']}:")
    print("\n".join(tail))


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.subjects, args.volumes = 6, 100
    command = " ".join([".venv/bin/python", "benchmarks/bench_end_to_end.py", *sys.argv[1:]])
    ROOT.mkdir(parents=True, exist_ok=True)
    done = False
    try:
        paths = prepare_cohort(
            ROOT / "data", args.subjects, args.volumes, args.networks, not args.uncompressed
        )
        loads = [os.getloadavg()]
        order = ("fmriflow", "nilearn")
        if args.order == "nilearn-first":
            order = order[::-1]
        runs = {}
        for side in order:
            print(f"running {side} ...", flush=True)
            runs[side] = (
                run_fmriflow(paths, args) if side == "fmriflow" else run_nilearn(paths, args)
            )
            loads.append(os.getloadavg())
            print(
                f"  {side}: {runs[side]['seconds']:.1f} s, peak {runs[side]['peak'] / MB:.0f} MB, "
                f"exit code {runs[side]['code']}; load average {loads[-1][0]:.2f}",
                flush=True,
            )
        failed = [side for side, run in runs.items() if run["code"]]
        for side in failed:
            print_failure(side, runs[side])
        if failed:
            raise SystemExit(f"FAILED: {', '.join(failed)} (files kept in {ROOT})")
        ours, theirs = runs["fmriflow"], runs["nilearn"]
        rules = rule_seconds(ours["workdir"])
        scores = score(paths, ours, theirs)
        done = True
    finally:
        if done and not args.keep:
            shutil.rmtree(ROOT, ignore_errors=True)

    print()
    print(f"command: {command}")
    print(
        f"cohort: {args.subjects} subjects x {args.volumes} volumes, MNI152 4 mm, "
        f"{scores['n_voxels']:,}-voxel grey-matter mask, "
        f"{args.networks} planted networks, SNR {SNR[0]:g}-{SNR[1]:g}; "
        f"{'.nii' if args.uncompressed else '.nii.gz'} BOLD files with 2 confounds each"
    )
    print(
        f"models: CanICA {N_COMPONENTS} components (n_init {CANICA_N_INIT}, threshold auto); "
        f"Ward {N_PARCELS} parcels (fmriflow n_features {n_features(args.volumes)}, nilearn 200 "
        f"PCA components); preprocessing: grey-matter mask, smoothing {SMOOTHING_FWHM:g} mm, "
        f"detrend, z-score, confounds, no band-pass"
    )
    print(
        f"machine: {os.cpu_count()} cores; load average (1 min) "
        + ", ".join(f"{load[0]:.2f}" for load in loads)
        + " (before, after each run); snakemake --cores "
        f"{args.cores}, 1 BLAS thread per job; nilearn: "
        + (f"{args.nilearn_threads} BLAS thread(s)" if args.nilearn_threads else "default threads")
    )
    print()
    rows = [
        {
            "side": name,
            "wall": f"{run['seconds']:.2f}",
            "peak": f"{run['peak'] / MB:.0f}",
            "processes": f"{run['processes']}",
            "samples": f"{run['samples']}",
        }
        for name, run in (("nilearn script", theirs), ("fmriflow (snakemake)", ours))
    ]
    rows.append(
        {
            "side": "fmriflow / nilearn",
            "wall": f"{ours['seconds'] / theirs['seconds']:.2f}x",
            "peak": f"{ours['peak'] / theirs['peak']:.2f}x",
        }
    )
    print_table(
        rows,
        [
            ("side", "side", ""),
            ("wall (s)", "wall", ""),
            ("peak, summed RSS (MB)", "peak", ""),
            ("processes at peak", "processes", ""),
            ("memory samples", "samples", ""),
        ],
    )
    print("(last row: ratios; below 1 means fmriflow is faster or smaller)")
    if theirs["steps"]:
        steps = theirs["steps"]
        print(
            f"nilearn's script: imports {steps['imports']:.1f} s, CanICA fit + save "
            f"{steps['canica']:.1f} s, Parcellations fit + save {steps['parcellations']:.1f} s"
        )
    print()
    print(
        "Where the workflow's time goes (logs/benchmark/<rule>/*.tsv: job seconds summed, "
        f"{args.cores} jobs at a time)"
    )
    total_jobs = sum(row["seconds"] for row in rules)
    print_table(
        [{**row, "share": 100 * row["seconds"] / total_jobs} for row in rules],
        [
            ("rule", "rule", ""),
            ("jobs", "jobs", "d"),
            ("seconds", "seconds", ".1f"),
            ("share (%)", "share", ".0f"),
            ("mean (s)", "mean", ".2f"),
            ("cpu (s)", "cpu", ".1f"),
            ("largest max_rss (MB)", "max_rss", ".0f"),
        ],
    )
    print(
        f"jobs' seconds summed {total_jobs:.1f} s, over {args.cores} cores "
        f"{total_jobs / args.cores:.1f} s, against a wall time of {ours['seconds']:.1f} s "
        "(the difference: Snakemake's own start-up, checks and scheduling, and idle cores)"
    )
    print()
    recovery = scores["recovery"]
    parcels = scores["parcels"]
    print(
        f"Recovery of the {args.networks} planted networks (Hungarian, mean matched |r|; "
        f"{scores['n_maps'][0]} and {scores['n_maps'][1]} maps)"
    )
    for side in ("fmriflow", "nilearn"):
        matched = ", ".join(f"{c:.2f}" for c in recovery[side].correlations)
        print(f"{side}: {recovery[side].mean:.3f} ({matched})")
    print(
        f"fmriflow's maps against nilearn's (Hungarian, mean |r| over "
        f"{len(scores['between'].correlations)} pairs): {scores['between'].mean:.3f}"
    )
    print()
    print(
        f"Ward parcellations: adjusted Rand index fmriflow vs nilearn {scores['ari']:.3f}"
        + ("" if scores["same_mask"] else "; R² not computed (the workflow's mask differs)")
    )
    print_table(
        [{"side": side, **parcels[side]} for side in ("fmriflow", "nilearn")],
        [
            ("side", "side", ""),
            ("parcels", "n_parcels", "d"),
            ("regions", "n_regions", "d"),
            ("fragmented", "n_fragmented", "d"),
            ("size min", "size_min", "d"),
            ("size median", "size_median", ".0f"),
            ("size max", "size_max", "d"),
            ("R² (workflow's clean data)", "r2", ".3f"),
        ],
    )
    print()
    time_ratio = ours["seconds"] / theirs["seconds"]
    memory_ratio = ours["peak"] / theirs["peak"]
    difference = recovery["fmriflow"].mean - recovery["nilearn"].mean
    print("Targets (issue 13)")
    print(
        f"wall time fmriflow/nilearn {time_ratio:.2f} <= {TARGET_TIME:g}: "
        f"{verdict(time_ratio <= TARGET_TIME)}"
    )
    print(
        f"peak memory fmriflow/nilearn {memory_ratio:.2f} <= {TARGET_MEMORY:g}: "
        f"{verdict(memory_ratio <= TARGET_MEMORY)}"
    )
    print(
        f"recovery fmriflow - nilearn {difference:+.3f}, equal within {RECOVERY_TOLERANCE:g} "
        f"(or better): {verdict(difference >= -RECOVERY_TOLERANCE)}"
    )
    if args.keep:
        print(f"kept: {ROOT} (snakemake.log, nilearn.log, run/, nilearn/, data/)")


if __name__ == "__main__":
    main()
