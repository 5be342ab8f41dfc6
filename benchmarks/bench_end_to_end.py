"""Benchmark: the whole workflow on a lab's own NIfTI files against nilearn's few-line script.

Two studies, chosen with ``--cohort``: a resting-state one (``rest``, the
default: group ICA and a parcellation) and a Haxby-like task one (``task``:
decoding and a searchlight). Each is given to fmriflow as a lab would have
it (a ``local`` dataset described by path templates) and run end to end by
``snakemake --cores 2`` in a fresh working directory; the same files go
through the few lines of nilearn a user would write for the same work, in
one Python process. Both commands are timed and their memory sampled the
same way, and their answers compared.

What is compared: rest (``--cohort rest``)
    * nilearn (``NILEARN_SCRIPT``, written next to its outputs and run with
      this Python): ``CanICA(n_components=10)`` then
      ``Parcellations("ward", n_parcels=100)``, both fitted on the list of
      4D files with their confound tables, the grey-matter mask file and
      the preprocessing CanICA applies by default (``smoothing_fwhm=6``,
      ``standardize="zscore_sample"`` — what ``True`` means since nilearn 0.14 —,
      ``detrend=True``, no band-pass), ``random_state=0``, ``n_jobs=1``;
      the maps and labels saved as NIfTI (``to_filename``).
    * fmriflow: every job of the default target for that config —
      ``describe_local``, ``import_local_with_confounds`` (the BOLD image
      and its confounds) per subject, ``mask`` and ``clean`` (the same mask, smoothing,
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

What is compared: task (``--cohort task``)
    Face against house in every subject, decoded in the ventral-temporal
    ROI and mapped by a searchlight, both cross-validated leave-one-run-out:

    * nilearn (``NILEARN_TASK_SCRIPT``), per subject: the label table read
      with pandas, the BOLD file loaded once (``load_img``), two
      ``NiftiMasker(mask_img=..., runs=<run of each volume>, detrend=True,
      standardize="zscore_sample")`` — one on the brain mask, one on the
      subject's ROI file: each run detrended and z-scored on its own, as
      the workflow's clean step does —, the face and house volumes kept;
      decoding as the tutorial does, ``cross_val_score(SVC(kernel="linear"),
      X_roi, y, groups=runs, cv=LeaveOneGroupOut())``; then
      ``SearchLight(<brain mask>, process_mask_img=<centres>, radius=5.6,
      cv=LeaveOneGroupOut(), n_jobs=2)`` with the tutorial's (and
      nilearn's default) estimator ``"svc"``, which nilearn 0.14.1 builds as
      ``LinearSVC(penalty="l2", max_iter=10000, random_state=0)``, fitted
      on the cleaned face and house volumes put back into an image
      (``inverse_transform``); the fold accuracies saved as JSON and each
      map as NIfTI (``scores_img_``, set to float32 first: it takes the
      mask's header, whose uint8 type would store the accuracies in steps
      of 1/255).
    * fmriflow: every job of the default target for that config —
      ``describe_local``, ``import_local_brain_mask``, and per subject
      ``import_local`` (the BOLD file linked, the label table turned into
      ``events.tsv``), ``import_local_roi``, ``mask`` (``mask: dataset``,
      the lab's brain mask; ``include_roi``; no smoothing) and ``clean``
      (``detrend``, ``standardize: zscore_sample``, per run, no band-pass,
      no confounds); ``decode`` (``face_vs_house``: ``classifier: svc``,
      the registry's ``SVC(kernel="linear")``, ``voxels: roi``,
      leave-one-run-out, no permutations) and ``decode_group``;
      ``searchlight_part`` and ``searchlight`` (``classifier: linear_svc``,
      the registry's ``LinearSVC(C=1, random_state=0, max_iter=10000)``:
      nilearn's ``"svc"``; radius 5.6 mm, centres as nilearn's; no
      permutations); their figures, the provenance sidecars and table.
      The searchlight's centres are the ROI's voxels (``--centres roi``,
      the default), its spheres holding every brain-mask voxel within the
      radius, on both sides: nilearn's searchlight over the whole brain
      (``--centres mask``, 3,912 centres) took 53 s a subject at the
      ``--quick`` size (4 folds of 72 volumes, on 2 cores with a load of
      5), which the default size's 12 folds of 216 volumes would make
      some 20 minutes in all; both sides do the same centres, so nothing
      is extrapolated.

Data
    Simulated with ``fmriflow.simulate`` (the generator of the workflow's
    simulated datasets) and written as a lab would have it, under
    ``/tmp/e2e/data`` (rest) or ``/tmp/e2e-task/data`` (task), reused when
    its parameters match (with ``--keep``: otherwise the folder is removed
    at the end).

    *rest*: ``--subjects`` subjects (default 20) x ``--volumes`` volumes
    (default 150), TR 2 s, on nilearn's MNI152 grid at 4 mm (grey matter:
    28,144 voxels; the signal on the whole-brain mask), ``--networks``
    planted networks (default 8, all the simulator knows;
    ``network_maps``, 14 mm blobs), SNR drawn in [1, 2], with drifts, AR(1)
    noise, a baseline and two slow artefacts whose time courses are the
    confound tables. Per subject ``sub-XX_bold.nii.gz`` (float32, TR in the
    header; ``--uncompressed``: ``.nii``) and ``sub-XX_confounds.tsv``; the
    grey-matter mask (``mask.nii.gz``) and the planted maps on its voxels
    (``truth.npy``, for scoring only). ``--quick``: 6 subjects x 100
    volumes.

    *task* (``simulate_task_subject``, the workflow's Haxby-like model):
    ``--subjects`` subjects (default 6, as Haxby's study) x ``--runs`` runs
    (default 12, as Haxby's) of 126 volumes (8 category blocks of 9
    volumes, rest around them), TR 2.5 s, 1,512 volumes per subject, on the
    simulator's default grid (``--shape``, default 20 x 24 x 20, Haxby's
    3.5 x 3.75 x 3.75 mm voxels: a 3,912-voxel brain, a 356-voxel
    bilateral ventral-temporal-like ROI), SNR drawn in [1, 2], category
    patterns planted in the ROI (face and house differ there only), drift,
    AR(1) spatially smooth noise, int16 like Haxby's files. Per subject, as
    Haxby's release lays them out, ``sub-XX/bold.nii.gz`` (all runs in one
    file, TR in the header; ``--uncompressed``: ``.nii``),
    ``sub-XX/labels.tsv`` (one row per volume: ``label``, ``run``) and
    ``sub-XX/mask4_vt.nii.gz`` (the ROI); one ``brain_mask.nii.gz``.
    ``--quick``: 3 subjects x 4 runs.

How it is measured
    Each side is one command started with ``subprocess`` (this Python, the
    venv's ``snakemake``); wall time from its start to its end
    (``perf_counter``), interpreter start-up, imports, every job and every
    file written included. Peak memory: a thread samples ``/proc`` every
    ``--interval`` seconds (default 0.05), finds the command's whole process
    tree (parents from ``/proc/<pid>/stat``) and sums the resident memory
    of its processes (the ``rss`` of the same file); the largest sum is the
    peak. A child caught between ``vfork`` and ``exec`` (Snakemake starting
    a job, a job starting ``git``, a worker pool starting a worker: same
    virtual size and resident pages as its parent) shares its parent's
    pages and is not counted again. Otherwise pages shared between
    processes (libraries) count once per process, which overstates the
    workflow, whose jobs are separate interpreters, and nilearn's
    searchlight, whose two workers are too. A job shorter
    than the interval can be missed between samples; the ``max_rss`` of
    Snakemake's per-job benchmark files is printed beside. Snakemake runs
    in a fresh directory (``run/`` under the cohort's folder, removed
    first, nothing cached), with the workflow's own profile and its one
    BLAS thread per job; nilearn with the machine's default threads
    (``--nilearn-threads N`` sets ``OPENBLAS/OMP/MKL_NUM_THREADS``). The
    input files are read once before each command (page cache warm). The
    order of the two runs is ``--order`` (default: fmriflow first).

    Where the workflow's time goes: the ``s`` column of every
    ``logs/benchmark/<rule>/*.tsv`` summed per rule (seconds of the jobs,
    two at a time, so the sum exceeds the wall time), with the number of
    jobs and the largest ``max_rss``; the rest of the wall time is
    Snakemake's own (parsing, the DAG, checks before any job, scheduling).
    nilearn's script times its own steps (imports; per subject masking and
    cleaning, decoding, searchlight), printed beside.

Checks (printed, not enforced; no timed assertion)
    *rest*. Recovery: the 10 maps of each side (the saved, thresholded
    maps, on the mask's voxels) matched one to one with the planted
    networks by absolute spatial correlation (Hungarian,
    ``fmriflow.decomposition.match_components``), the mean matched
    correlation of each, and the mean of the two sides' maps matched with
    each other. Parcellation: the adjusted Rand index between the two
    labelings, and for each the number of parcels, connected regions,
    fragmented parcels and the compression R² on the workflow's cleaned
    data (``summarize_parcellation``: the variance kept when each voxel is
    replaced by its parcel's mean; the same data for both).

    *task*. Per subject, the mean decoding accuracy of each side with the
    chance level (the workflow's: the training folds' majority class, and
    1 / number of classes) and the largest difference between the two
    sides' accuracies fold by fold (folds matched by their test run);
    the searchlight maps at their common centres: the mean accuracy of
    each, the chance level, the largest absolute difference, the number of
    centres that differ and the correlation; over the whole brain
    (``--centres mask``), the mean accuracy of the workflow's map inside
    and outside the ROI too (where the planted patterns are, and where
    they are not).

    The issue's targets are printed with their verdict: fmriflow's wall
    time at most 1.0x nilearn's, peak memory at most 0.7x, and the same
    answers — rest: recovery equal (within 0.01); task: every fold accuracy
    and every searchlight centre equal (within 1e-6, the float32 maps'
    precision).

Run ``.venv/bin/python benchmarks/bench_end_to_end.py [--cohort rest|task] [--quick]
[--subjects N] [--keep]``.
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

#: The task cohort's folder, dataset name and simulation (the simulator's task defaults).
TASK_ROOT = Path("/tmp/e2e-task")
TASK_DATASET = "haxbylike"
TASK_TR = 2.5
TASK_SHAPE = (20, 24, 20)
#: Haxby's voxels (mm), the simulator's default.
VOXEL_SIZE = (3.5, 3.75, 3.75)
CONTRAST = ("face", "house")
#: nilearn's searchlight example's radius (mm).
RADIUS = 5.6
DECODING_NAME = "face_vs_house"
SEARCHLIGHT_NAME = "face_vs_house_svc"
#: The workflow's registry names of nilearn's estimators: the tutorial's SVC(kernel="linear")
#: for decoding, SearchLight's default "svc" (a LinearSVC) for the searchlight.
DECODING_CLASSIFIER, SEARCHLIGHT_CLASSIFIER = "svc", "linear_svc"
#: Accuracies counted as equal when they differ by at most this (the maps are float32).
SCORE_TOLERANCE = 1e-6

NILEARN_TASK_SCRIPT = '''\
"""nilearn's code for the same work: face vs house per subject, in the ROI and by searchlight."""

import json
import sys
import time

start = time.perf_counter()
import numpy as np
import pandas as pd
from nilearn.decoding import SearchLight
from nilearn.image import load_img
from nilearn.maskers import NiftiMasker
from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
from sklearn.svm import SVC

spec = json.load(open(sys.argv[1]))
steps = {"imports": time.perf_counter() - start, "cleaning": 0.0, "decoding": 0.0,
         "searchlight": 0.0}
folds = {}
for subject in spec["subjects"]:
    tic = time.perf_counter()
    table = pd.read_csv(subject["labels"], sep="\\t")
    runs = table["run"].to_numpy()
    keep = table["label"].isin(spec["labels"]).to_numpy()
    y, groups = table["label"].to_numpy()[keep], runs[keep]
    bold = load_img(subject["bold"])
    # Every run detrended and z-scored on its own.
    cleaning = dict(runs=runs, detrend=True, standardize="zscore_sample")
    brain_masker = NiftiMasker(mask_img=spec["brain_mask"], **cleaning)
    brain = brain_masker.fit_transform(bold)[keep]
    roi = NiftiMasker(mask_img=subject["roi"], **cleaning).fit_transform(bold)[keep]
    toc = time.perf_counter()
    steps["cleaning"] += toc - tic
    scores = cross_val_score(SVC(kernel="linear"), roi, y, groups=groups, cv=LeaveOneGroupOut())
    folds[subject["name"]] = {"runs": np.unique(groups).tolist(), "accuracy": scores.tolist()}
    tic = time.perf_counter()
    steps["decoding"] += tic - toc
    searchlight = SearchLight(
        spec["brain_mask"], process_mask_img=subject["centres"], radius=spec["radius"],
        cv=LeaveOneGroupOut(), n_jobs=spec["n_jobs"],
    )
    searchlight.fit(brain_masker.inverse_transform(brain), y, groups=groups)
    # The map takes the mask's header: saved as float32, not the mask's uint8 (in 1/255 steps).
    scores = searchlight.scores_img_
    scores.set_data_dtype("float32")
    scores.to_filename(subject["searchlight"])
    steps["searchlight"] += time.perf_counter() - tic
with open(spec["decoding"], "w") as output:
    json.dump(folds, output)
print(json.dumps(steps))
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


def cohort_files(paths):
    """Every input file of a cohort (read once before each command: page cache warm)."""
    names = ("bold", "confounds", "labels", "roi")
    files = [path for name in names for path in paths.get(name, [])]
    return files + [paths[name] for name in ("mask", "brain_mask") if name in paths]


def prepare_task_cohort(folder, n_subjects, n_runs, shape, compressed):
    """Simulate the Haxby-like cohort into ``folder`` as a lab's files (reused when there)."""
    import nibabel as nib

    import_fmriflow()
    from fmriflow import simulate
    from fmriflow.dataset import save_bold, save_roi
    from fmriflow.io import write_table

    settings = {
        "cohort": "task",
        "subjects": n_subjects,
        "runs": n_runs,
        "shape": list(shape),
        "compressed": compressed,
        "snr": list(SNR),
        "seed": SEED,
    }
    subjects = simulate.subject_labels(n_subjects)
    extension = "nii.gz" if compressed else "nii"
    templates = {
        "bold": f"sub-{{subject}}/bold.{extension}",
        "labels": "sub-{subject}/labels.tsv",
        "roi": "sub-{subject}/mask4_vt.nii.gz",
    }
    paths = {"subjects": subjects, "brain_mask": folder / "brain_mask.nii.gz"}
    for name, template in templates.items():
        paths[f"{name}_template"] = str(folder / template)
        paths[name] = [folder / template.format(subject=s) for s in subjects]
    stamp = folder / "settings.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return paths
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    affine = simulate.grid_affine(shape, VOXEL_SIZE)
    brain, roi = simulate.task_masks(tuple(shape))
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), paths["brain_mask"])
    for index, subject in enumerate(subjects):
        (folder / f"sub-{subject}").mkdir()
        sim = simulate.simulate_task_subject(index, SEED, tuple(shape), n_runs, TASK_TR, SNR)
        save_bold(sim.bold, affine, TASK_TR, paths["bold"][index])
        write_table(sim.events[["label", "run"]], paths["labels"][index])
        save_roi(sim.roi, paths["roi"][index], affine)
    stamp.write_text(json.dumps(settings))
    print(
        f"generated {n_subjects} subjects x {n_runs} runs ({len(sim.events)} volumes each, "
        f"{int(brain.sum())} brain voxels, {int(roi.sum())} in the ROI) in "
        f"{time.perf_counter() - start:.0f} s into {folder}",
        flush=True,
    )
    return paths


def task_workflow_config(paths, root, centres):
    """The workflow's config for the task cohort: nilearn's cleaning, estimators and folds."""
    return {
        "download_dir": str(root / "downloads"),
        "datasets": {
            TASK_DATASET: {
                "source": "local",
                "local": {
                    "kind": "task",
                    "tr": TASK_TR,
                    "space": "native",
                    "subjects": paths["subjects"],
                    "bold": paths["bold_template"],
                    "events": paths["labels_template"],
                    "events_format": "per_volume",
                    "roi": paths["roi_template"],
                    "brain_mask": str(paths["brain_mask"]),
                },
                "preprocess": {
                    "mask": "dataset",
                    "include_roi": True,
                    "smoothing_fwhm": None,
                    "clean": {
                        "detrend": True,
                        "standardize": STANDARDIZE,
                        "high_pass": None,
                        "low_pass": None,
                        "confounds": False,
                    },
                },
            }
        },
        "decoding": [
            {
                "name": DECODING_NAME,
                "dataset": TASK_DATASET,
                "labels": list(CONTRAST),
                "voxels": "roi",
                "classifier": DECODING_CLASSIFIER,
                "cv": {"scheme": "leave_one_run_out"},
                "permutations": 0,
            }
        ],
        "searchlight": [
            {
                "name": SEARCHLIGHT_NAME,
                "dataset": TASK_DATASET,
                "labels": list(CONTRAST),
                "centres": centres,
                "radius": RADIUS,
                "classifier": SEARCHLIGHT_CLASSIFIER,
                "cv": {"scheme": "leave_one_run_out"},
                "permutations": 0,
            }
        ],
    }


def task_nilearn_spec(paths, folder, centres, n_jobs):
    """What nilearn's task script reads: the files, the contrast, where to write."""
    return {
        "labels": list(CONTRAST),
        "radius": RADIUS,
        "n_jobs": n_jobs,
        "brain_mask": str(paths["brain_mask"]),
        "decoding": str(folder / "decoding.json"),
        "subjects": [
            {
                "name": subject,
                "bold": str(bold),
                "labels": str(labels),
                "roi": str(roi),
                "centres": str(paths["brain_mask"] if centres == "mask" else roi),
                "searchlight": str(folder / f"sub-{subject}_searchlight.nii.gz"),
            }
            for subject, bold, labels, roi in zip(
                paths["subjects"], paths["bold"], paths["labels"], paths["roi"], strict=True
            )
        ],
    }


# --- measurement ----------------------------------------------------------------------


def process_table():
    """Every process on the machine: pid -> (parent pid, virtual bytes, resident pages).

    Read from ``/proc/<pid>/stat`` (its ``rss`` is ``statm``'s resident
    count); processes that vanish while being read are skipped.
    """
    table = {}
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
        table[int(entry.name)] = (int(fields[1]), int(fields[20]), int(fields[21]))
    return table


def tree_rss(root):
    """Summed resident bytes of ``root`` and all its descendants, and their number.

    A child whose virtual size and resident pages are exactly its parent's
    is a process between ``vfork`` (or ``fork``) and ``exec`` — Snakemake
    starting a job, a job starting ``git`` —: its pages are its parent's and
    are not counted twice.
    """
    table = process_table()
    children = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, count, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        if pid not in table:
            continue
        parent, size, resident = table[pid]
        if pid != root and parent in table and table[parent][1:] == (size, resident):
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


def run_fmriflow(config, inputs, args):
    """``snakemake --cores 2`` on a cohort's ``config``, in a fresh directory."""
    import yaml

    workdir = args.root / "run"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(config_path),
        "--cores",
        str(args.cores),
    ]
    warm_page_cache(inputs)
    result = run_measured(command, workdir, args.root / "snakemake.log", args.interval)
    result["command"] = " ".join(command)
    result["workdir"] = workdir
    return result


def nilearn_folder(args):
    """Where nilearn's script, its spec and its outputs go."""
    return args.root / "nilearn"


def rest_nilearn_spec(paths, folder):
    """What nilearn's rest script reads: the files, the models' sizes, where to write."""
    return {
        "bold": [str(p) for p in paths["bold"]],
        "confounds": [str(p) for p in paths["confounds"]],
        "mask": str(paths["mask"]),
        "n_components": N_COMPONENTS,
        "n_parcels": N_PARCELS,
        "components": str(folder / "canica_components.nii.gz"),
        "labels": str(folder / "ward_labels.nii.gz"),
    }


def run_nilearn(script_text, spec, inputs, args):
    """nilearn's script (``script_text``, reading ``spec``), in its own process."""
    folder = nilearn_folder(args)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    script = folder / "pipeline.py"
    script.write_text(script_text)
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    if args.nilearn_threads:
        env.update({name: str(args.nilearn_threads) for name in THREAD_VARIABLES})
    command = [str(PYTHON), str(script), str(spec_path)]
    warm_page_cache(inputs)
    result = run_measured(command, folder, args.root / "nilearn.log", args.interval, env=env)
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


def load_volume(path):
    import nibabel as nib

    return np.asanyarray(nib.load(path).dataobj)


def score_task(paths, fmriflow_run, nilearn_run, centres):
    """Per subject: the two sides' decoding folds and searchlight maps, compared."""
    import pandas as pd

    results = Path(fmriflow_run["workdir"]) / "results" / TASK_DATASET
    spec = nilearn_run["outputs"]
    theirs_folds = json.loads(Path(spec["decoding"]).read_text())
    brain = load_volume(paths["brain_mask"]) > 0
    decoding, searchlight = [], []
    for index, subject in enumerate(paths["subjects"]):
        folder = results / f"sub-{subject}"
        analysis = folder / "decoding" / DECODING_NAME
        folds = pd.read_csv(analysis / "folds.tsv", sep="\t", dtype={"test_runs": str})
        summary = json.loads((analysis / "summary.json").read_text())
        ours = dict(zip(folds["test_runs"], folds["accuracy"], strict=True))
        nilearn = theirs_folds[subject]
        theirs = dict(zip(map(str, nilearn["runs"]), nilearn["accuracy"], strict=True))
        common = sorted(set(ours) & set(theirs))
        decoding.append(
            {
                "subject": subject,
                "folds": len(common),
                "same_folds": set(ours) == set(theirs),
                "fmriflow": float(np.mean(list(ours.values()))),
                "nilearn": float(np.mean(list(theirs.values()))),
                "chance": summary["chance"],
                "chance_balanced": summary["chance_balanced"],
                "difference": max(abs(ours[run] - theirs[run]) for run in common),
            }
        )
        roi = load_volume(paths["roi"][index]) > 0
        where = brain if centres == "mask" else roi
        maps = folder / "searchlight" / SEARCHLIGHT_NAME
        ours_map = load_volume(maps / "accuracy.nii.gz")[where].astype(np.float64)
        theirs_map = load_volume(spec["subjects"][index]["searchlight"])[where].astype(np.float64)
        difference = np.abs(ours_map - theirs_map)
        in_roi = roi[where]
        searchlight.append(
            {
                "subject": subject,
                "centres": int(where.sum()),
                "fmriflow": float(ours_map.mean()),
                "nilearn": float(theirs_map.mean()),
                "difference": float(difference.max()),
                "differing": int(np.sum(difference > SCORE_TOLERANCE)),
                "correlation": float(np.corrcoef(ours_map, theirs_map)[0, 1]),
                "chance": json.loads((maps / "summary.json").read_text())["chance"],
                "in_roi": float(ours_map[in_roi].mean()),
                "outside": float(ours_map[~in_roi].mean()) if (~in_roi).any() else None,
            }
        )
    labels = pd.read_csv(paths["labels"][0], sep="\t")
    return {
        "decoding": decoding,
        "searchlight": searchlight,
        "n_brain": int(brain.sum()),
        "n_roi": int((load_volume(paths["roi"][0]) > 0).sum()),
        "n_volumes": len(labels),
        "n_selected": int(labels["label"].isin(CONTRAST).sum()),
    }


# --- report ---------------------------------------------------------------------------------


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cohort",
        choices=("rest", "task"),
        default="rest",
        help="rest: group ICA and Ward parcels; task: decoding and searchlight (Haxby-like)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="rest: 6 subjects x 100 volumes; task: 3 subjects x 4 runs",
    )
    parser.add_argument("--subjects", type=int, help="default: 20 (rest), 6 (task)")
    parser.add_argument("--volumes", type=int, default=150, help="rest: volumes per subject")
    parser.add_argument("--networks", type=int, default=8, help="rest: planted networks (1 to 8)")
    parser.add_argument("--runs", type=int, default=12, help="task: runs per subject")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=TASK_SHAPE,
        metavar=("X", "Y", "Z"),
        help="task: the grid (default: the simulator's, 20 24 20)",
    )
    parser.add_argument(
        "--centres",
        choices=("roi", "mask"),
        default="roi",
        help="task: searchlight centres, the ROI's voxels (default) or every brain-mask voxel",
    )
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
    parser.add_argument(
        "--keep", action="store_true", help=f"keep {ROOT} or {TASK_ROOT} (data, runs, logs)"
    )
    args = parser.parse_args(argv)
    task = args.cohort == "task"
    args.root = TASK_ROOT if task else ROOT
    if args.subjects is None:
        args.subjects = 6 if task else 20
    if args.quick:
        if task:
            args.subjects, args.runs = 3, 4
        else:
            args.subjects, args.volumes = 6, 100
    return args


def print_failure(name, run):
    tail = Path(run["log"]).read_text().splitlines()[-40:]
    print(f"{name} failed (exit code {run['code']}); the end of {run['log']}:")
    print("\n".join(tail))


def run_sides(sides, args):
    """Run the two commands (``sides``: name -> callable) in ``--order``; stop on a failure."""
    loads = [os.getloadavg()]
    order = ("fmriflow", "nilearn")
    if args.order == "nilearn-first":
        order = order[::-1]
    runs = {}
    for side in order:
        print(f"running {side} ...", flush=True)
        runs[side] = sides[side]()
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
        raise SystemExit(f"FAILED: {', '.join(failed)} (files kept in {args.root})")
    return runs, loads


def main(argv=None):
    args = parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/bench_end_to_end.py", *sys.argv[1:]])
    args.root.mkdir(parents=True, exist_ok=True)
    task = args.cohort == "task"
    done = False
    try:
        if task:
            paths = prepare_task_cohort(
                args.root / "data", args.subjects, args.runs, args.shape, not args.uncompressed
            )
            config = task_workflow_config(paths, args.root, args.centres)
            script = NILEARN_TASK_SCRIPT
            spec = task_nilearn_spec(paths, nilearn_folder(args), args.centres, args.cores)
        else:
            paths = prepare_cohort(
                args.root / "data",
                args.subjects,
                args.volumes,
                args.networks,
                not args.uncompressed,
            )
            config = workflow_config(paths, args.volumes)
            script, spec = NILEARN_SCRIPT, rest_nilearn_spec(paths, nilearn_folder(args))
        inputs = cohort_files(paths)
        runs, loads = run_sides(
            {
                "fmriflow": lambda: run_fmriflow(config, inputs, args),
                "nilearn": lambda: run_nilearn(script, spec, inputs, args),
            },
            args,
        )
        ours, theirs = runs["fmriflow"], runs["nilearn"]
        rules = rule_seconds(ours["workdir"])
        if task:
            scores = score_task(paths, ours, theirs, args.centres)
        else:
            scores = score(paths, ours, theirs)
        done = True
    finally:
        if done and not args.keep:
            shutil.rmtree(args.root, ignore_errors=True)

    print()
    print(f"command: {command}")
    if task:
        print_task_settings(args, scores)
    else:
        print_rest_settings(args, scores)
    print_machine(args, loads)
    print()
    print_sides(ours, theirs)
    if theirs["steps"]:
        steps = theirs["steps"]
        if task:
            print(
                f"nilearn's script: imports {steps['imports']:.1f} s; over the subjects, "
                f"loading and cleaning {steps['cleaning']:.1f} s, decoding "
                f"{steps['decoding']:.1f} s, searchlight fit + save {steps['searchlight']:.1f} s"
            )
        else:
            print(
                f"nilearn's script: imports {steps['imports']:.1f} s, CanICA fit + save "
                f"{steps['canica']:.1f} s, Parcellations fit + save "
                f"{steps['parcellations']:.1f} s"
            )
    print()
    print_rules(rules, ours, args)
    print()
    if task:
        same = print_task_checks(scores, args.centres)
    else:
        recovery = print_rest_checks(args, scores)
    print()
    print("Targets (issue 13)")
    print_resource_targets(ours, theirs)
    if task:
        print(
            f"same answers (every fold accuracy and searchlight centre within "
            f"{SCORE_TOLERANCE:g}): {verdict(same)}"
        )
    else:
        difference = recovery["fmriflow"].mean - recovery["nilearn"].mean
        print(
            f"recovery fmriflow - nilearn {difference:+.3f}, equal within "
            f"{RECOVERY_TOLERANCE:g} (or better): {verdict(difference >= -RECOVERY_TOLERANCE)}"
        )
    if args.keep:
        print(f"kept: {args.root} (snakemake.log, nilearn.log, run/, nilearn/, data/)")


def print_rest_settings(args, scores):
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


def print_task_settings(args, scores):
    centres = (
        f"every brain-mask voxel ({scores['n_brain']:,})"
        if args.centres == "mask"
        else f"the ROI's voxels ({scores['n_roi']:,}; --centres mask for the whole brain, "
        "minutes per subject for nilearn)"
    )
    print(
        f"cohort: {args.subjects} subjects x {args.runs} runs ({scores['n_volumes']:,} volumes "
        f"each, TR {TASK_TR:g} s), grid {' x '.join(map(str, args.shape))} at "
        f"{' x '.join(f'{v:g}' for v in VOXEL_SIZE)} mm, {scores['n_brain']:,}-voxel brain "
        f"mask, {scores['n_roi']:,}-voxel ROI, SNR {SNR[0]:g}-{SNR[1]:g}; per subject one "
        f"{'.nii' if args.uncompressed else '.nii.gz'} BOLD file (int16), a per-volume label "
        "table and an ROI file"
    )
    print(
        f"analyses: {' vs '.join(CONTRAST)} ({scores['n_selected']} volumes per subject), "
        f"leave-one-run-out ({args.runs} folds); decoding in the ROI with SVC(kernel='linear') "
        f"(fmriflow {DECODING_CLASSIFIER}); searchlight with LinearSVC (nilearn's default 'svc'; "
        f"fmriflow {SEARCHLIGHT_CLASSIFIER}), spheres of brain-mask voxels within {RADIUS:g} mm "
        f"of each centre, centres: {centres}, on both sides, no permutations; "
        "preprocessing: brain mask, detrend and z-score (zscore_sample) per run, "
        "no smoothing, no band-pass"
    )


def print_machine(args, loads):
    print(
        f"machine: {os.cpu_count()} cores; load average (1 min) "
        + ", ".join(f"{load[0]:.2f}" for load in loads)
        + " (before, after each run); snakemake --cores "
        f"{args.cores}, 1 BLAS thread per job; nilearn: "
        + (f"{args.nilearn_threads} BLAS thread(s)" if args.nilearn_threads else "default threads")
    )


def print_sides(ours, theirs):
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


def print_rules(rules, ours, args):
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


def print_rest_checks(args, scores):
    """Recovery and parcellation tables of the rest cohort; returns the recovery."""
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
    return recovery


def print_task_checks(scores, centres):
    """Decoding and searchlight agreement tables of the task cohort; returns whether equal."""
    decoding, searchlight = scores["decoding"], scores["searchlight"]
    print(
        f"Decoding, {' vs '.join(CONTRAST)} in the ROI: mean accuracy over the folds, "
        "chance (training majority; 1/classes), largest fold-by-fold difference"
    )
    print_table(
        decoding,
        [
            ("subject", "subject", ""),
            ("folds", "folds", "d"),
            ("fmriflow", "fmriflow", ".4f"),
            ("nilearn", "nilearn", ".4f"),
            ("chance", "chance", ".3f"),
            ("1/classes", "chance_balanced", ".3f"),
            ("max |fold difference|", "difference", ".2g"),
        ],
    )
    if not all(row["same_folds"] for row in decoding):
        print("the two sides' folds test different runs (compared on the common ones)")
    print()
    whole_brain = centres == "mask"
    print(
        "Searchlight maps at their common centres: mean accuracy, chance (training majority), "
        f"largest |difference|, centres differing by more than {SCORE_TOLERANCE:g}, correlation"
        + ("; fmriflow's mean inside and outside the ROI" if whole_brain else "")
    )
    columns = [
        ("subject", "subject", ""),
        ("centres", "centres", "d"),
        ("fmriflow", "fmriflow", ".4f"),
        ("nilearn", "nilearn", ".4f"),
        ("chance", "chance", ".3f"),
        ("max |difference|", "difference", ".2g"),
        ("differing", "differing", "d"),
        ("correlation", "correlation", ".6f"),
    ]
    if whole_brain:
        columns += [("in ROI", "in_roi", ".3f"), ("outside", "outside", ".3f")]
    print_table(searchlight, columns)
    decoding_same = all(
        row["same_folds"] and row["difference"] <= SCORE_TOLERANCE for row in decoding
    )
    searchlight_same = all(row["difference"] <= SCORE_TOLERANCE for row in searchlight)
    print(
        f"decoding identical fold by fold: {verdict(decoding_same)}; searchlight maps "
        f"identical: {verdict(searchlight_same)}"
    )
    return decoding_same and searchlight_same


def print_resource_targets(ours, theirs):
    time_ratio = ours["seconds"] / theirs["seconds"]
    memory_ratio = ours["peak"] / theirs["peak"]
    print(
        f"wall time fmriflow/nilearn {time_ratio:.2f} <= {TARGET_TIME:g}: "
        f"{verdict(time_ratio <= TARGET_TIME)}"
    )
    print(
        f"peak memory fmriflow/nilearn {memory_ratio:.2f} <= {TARGET_MEMORY:g}: "
        f"{verdict(memory_ratio <= TARGET_MEMORY)}"
    )


if __name__ == "__main__":
    main()
