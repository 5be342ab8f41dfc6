"""Download real datasets with nilearn's fetchers and convert them.

Three datasets are supported:

* ``haxby`` — Haxby et al. (2001), subjects 1–6, through
  :func:`nilearn.datasets.fetch_haxby`: a block-design object-category task
  (8 categories, 12 runs, TR 2.5 s) with each subject's ventral-temporal
  mask (``mask4_vt``).
* ``adhd`` — the 40-subject resting-state sample of ADHD-200 through
  :func:`nilearn.datasets.fetch_adhd`: preprocessed rest scans in MNI space
  (TR 2 s) with nuisance regressors. It is the cohort of the resting-state
  section of Abraham et al. (2014), it is genuine rest (the development
  fMRI set is movie watching), its subject list is known without a
  download (``nilearn.datasets.func.adhd_ids``), so the workflow can plan
  per-subject jobs before anything is fetched, and all subjects share one
  MNI grid, which group ICA and clustering need.
* ``miyawaki2008`` — Miyawaki et al. (2008), one subject, through
  :func:`nilearn.datasets.fetch_miyawaki2008`: 20 runs of random 10x10
  binary patterns (training) and 12 runs of geometric figures and letters
  (test), TR 2 s, with the visual-cortex mask and a background image. It
  feeds the encoding and reconstruction stages (Abraham et al. 2014,
  section 5). nilearn checks no checksum for this archive; the sha256
  registry below is then the only check.

nilearn checks the archives it knows checksums for and downloads into a
temporary folder before moving files into place. On top of that, every
fetched file's sha256 is recorded in ``dataset.json`` and in a registry in
the download folder, and checked again whenever the file is re-used, so a
file altered or corrupted after its download is caught. Besides its
subjects' files, a dataset may have files of its own (``dataset_files`` in
``dataset.json``, each with its sha256): ADHD's phenotypic table, which
becomes ``participants.tsv``.

The registry and the error messages (:func:`record_checksums`,
:func:`network_error`, :func:`checksum_error`) serve every download of the
workflow, the standard atlases (:mod:`fmriflow.atlases`) included.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from fmriflow.errors import InputError
from fmriflow.io import atomic_output, sha256sum

HAXBY_SUBJECTS = (1, 2, 3, 4, 5, 6)
REGISTRY = "fmriflow-sha256.json"

#: The kind of data each fetcher gives.
FETCHED_KIND = {"haxby": "task", "adhd": "rest", "miyawaki2008": "stimulus"}
#: The space of each fetched dataset's images.
FETCHED_SPACE = {"haxby": "native", "adhd": "MNI152", "miyawaki2008": "native"}
#: The optional canonical files each fetcher gives a subject, by role.
FETCHED_ROLES = {
    "haxby": ("roi", "anat"),
    "adhd": ("confounds",),
    "miyawaki2008": ("roi", "anat", "stimuli"),
}
#: Fetchers whose download has a phenotypic table (the dataset's participants.tsv).
FETCHED_PARTICIPANTS = ("adhd",)
#: Miyawaki et al. (2008): TR in seconds (the archive's headers are not
#: relied upon), the stimulus grid, and the runs in nilearn's order.
MIYAWAKI_TR = 2.0
MIYAWAKI_SHAPE = (10, 10)
MIYAWAKI_RUNS = (("figure", "test", 12), ("random", "train", 20))
#: What is known of each fetched dataset before it is downloaded (for checks of the
#: config before any job): its TR (s) and, for task data, voxel sizes (mm).
FETCHED_TR = {"haxby": 2.5, "adhd": 2.0, "miyawaki2008": MIYAWAKI_TR}
FETCHED_VOXEL_SIZES = {"haxby": (3.5, 3.75, 3.75)}
#: Haxby subjects whose archive has no anatomical image.
HAXBY_WITHOUT_ANAT = ("6",)
#: ADHD's phenotypic table, at the top of nilearn's ``adhd`` folder.
ADHD_PHENOTYPIC = "ADHD200_40subs_motion_parameters_and_phenotypics.csv"


def subject_roles(fetcher, subject):
    """The optional roles (``roi``, ``anat``, ``confounds``) a fetched subject has.

    Known before anything is downloaded, so that the workflow plans exactly
    the files each subject will have.
    """
    roles = FETCHED_ROLES[fetcher]
    if fetcher == "haxby" and str(subject) in HAXBY_WITHOUT_ANAT:
        roles = tuple(role for role in roles if role != "anat")
    return roles


def adhd_subjects():
    """The 40 subject IDs of nilearn's ADHD sample, in the fetcher's order."""
    from nilearn.datasets.func import adhd_ids

    return list(adhd_ids())


def fetch_subjects(fetcher, subjects):
    """Check and normalise the subject list of a fetched dataset.

    Parameters
    ----------
    fetcher : {"haxby", "adhd", "miyawaki2008"}
        Which dataset.
    subjects : list or int
        Explicit subject labels (Miyawaki's one subject is ``1``), or (for
        ``adhd``) the number of subjects to take in the fetcher's order.

    Returns
    -------
    list of str
    """
    if fetcher in ("haxby", "miyawaki2008"):
        known = [str(s) for s in HAXBY_SUBJECTS] if fetcher == "haxby" else ["1"]
        labels = [str(s) for s in (known if subjects is None else subjects)]
    else:
        known = adhd_subjects()
        if subjects is None:
            labels = known
        elif isinstance(subjects, int):
            labels = known[:subjects]
        else:
            labels = [str(s) for s in subjects]
    unknown = [s for s in labels if s not in known]
    if unknown or not labels:
        raise InputError(
            f"config key fetch.subjects of the {fetcher} dataset",
            f"unknown subject(s) {unknown}" if unknown else "no subject selected",
            f"The {fetcher} fetcher has subjects {known}",
        )
    return labels


def network_error(what, exc, advice, server="the dataset server"):
    """The one message of a download that could not reach its server.

    Parameters
    ----------
    what : str
        What was being downloaded (``"the haxby dataset"``).
    exc : requests.RequestException
        The error; its request names the URL.
    advice : str
        What to do besides retrying (a mirror's config key, a local copy).
    server : str
        Named instead of the URL when the error carries none.

    Returns
    -------
    InputError
    """
    url = getattr(getattr(exc, "request", None), "url", None) or server
    return InputError(
        f"download of {what} from {url}",
        f"the server could not be reached or refused the request ({type(exc).__name__}: {exc})",
        f"Check the internet connection and retry later; {advice}",
    )


def is_checksum_error(exc):
    """Whether a ``ValueError`` of nilearn's downloader is a failed archive checksum."""
    return "checksum" in str(exc).lower() or "md5" in str(exc).lower()


def checksum_error(what, data_dir, exc, url_key):
    """The one message of a downloaded archive that failed nilearn's checksum.

    ``url_key`` is the config key of a mirror (``fetch.url``).
    """
    return InputError(
        f"download of {what} into {data_dir}",
        f"a downloaded archive failed its checksum ({exc})",
        "Delete the partial download and retry; if it fails again the "
        f"server's copy may be damaged: use {url_key} to point at a mirror",
    )


def _network_error(dataset, exc, url_option):
    return network_error(
        f"the {dataset} dataset",
        exc,
        f"set fetch.url to a mirror{url_option}; or, if you already have the "
        "files, describe them as a 'local' dataset",
    )


def download(fetcher, subjects, data_dir, url=None):
    """Fetch a dataset with nilearn and list its files per subject.

    Parameters
    ----------
    fetcher : {"haxby", "adhd", "miyawaki2008"}
        Which dataset.
    subjects : list of str
        Subject labels, checked with :func:`fetch_subjects`.
    data_dir : str or pathlib.Path
        nilearn's download folder; files already there are not downloaded.
    url : str, optional
        Base URL of a mirror of the dataset's files.

    Returns
    -------
    dict
        ``{"tr": float, "files": {subject: {role: path}}, "dataset_files":
        {role: path}}`` with roles ``bold``, ``labels`` (haxby,
        miyawaki2008), ``roi`` (haxby, miyawaki2008), ``anat`` (haxby, not
        subject 6; miyawaki2008) and ``confounds`` (adhd). Miyawaki's
        ``bold`` and ``labels`` are lists of the 32 runs' files, figure runs
        first, as nilearn orders them. The dataset's own files are ADHD's
        ``phenotypic`` table (none for the others).
    """
    import requests
    from nilearn import datasets

    subjects = fetch_subjects(fetcher, subjects)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    dataset_files = {}
    try:
        if fetcher == "haxby":
            # fetch_haxby's lists are only aligned with the subjects when
            # subject 6 (no anatomy) comes last: ask in increasing order.
            order = sorted({int(s) for s in subjects})
            bunch = datasets.fetch_haxby(data_dir=data_dir, subjects=order, url=url, verbose=1)
            files = {s: _haxby_files(bunch, order.index(int(s))) for s in subjects}
        elif fetcher == "miyawaki2008":
            bunch = datasets.fetch_miyawaki2008(data_dir=data_dir, url=url, verbose=1)
            files = {"1": _miyawaki_files(bunch)}
        else:
            known = adhd_subjects()
            n_needed = max(known.index(s) for s in subjects) + 1
            bunch = datasets.fetch_adhd(n_subjects=n_needed, data_dir=data_dir, url=url, verbose=1)
            files = {
                s: {
                    "bold": bunch.func[known.index(s)],
                    "confounds": bunch.confounds[known.index(s)],
                }
                for s in subjects
            }
            # <adhd>/data/<id>/<file>: the phenotypic table is at the top of <adhd>.
            dataset_files["phenotypic"] = str(Path(bunch.func[0]).parents[2] / ADHD_PHENOTYPIC)
    except requests.RequestException as exc:
        hint = " (the url of a copy of the dataset)"
        if fetcher == "haxby":
            # fetch_haxby takes the whole-brain mask from NITRC whatever its url.
            hint += (
                "; fetch.url does not cover mask.nii.gz, which always comes from "
                f"www.nitrc.org: if only it fails, copy it into {data_dir / 'haxby2001'}"
            )
        raise _network_error(fetcher, exc, hint) from exc
    except ValueError as exc:
        if is_checksum_error(exc):
            raise checksum_error(f"the {fetcher} dataset", data_dir, exc, "fetch.url") from exc
        raise
    files = {s: {k: _as_text(v) for k, v in f.items() if v is not None} for s, f in files.items()}
    tr = MIYAWAKI_TR if fetcher == "miyawaki2008" else float(bunch.t_r)
    return {"tr": tr, "files": files, "dataset_files": dataset_files}


def _as_text(paths):
    return [str(p) for p in paths] if isinstance(paths, list | tuple) else str(paths)


def _miyawaki_files(bunch):
    return {
        "bold": list(bunch.func),
        "labels": list(bunch.label),
        "roi": bunch.mask,
        "anat": bunch.background,
    }


def role_paths(paths):
    """The files of one role: a list of run files, or a single file."""
    return list(paths) if isinstance(paths, list | tuple) else [paths]


def _haxby_files(bunch, k):
    return {
        "bold": bunch.func[k],
        "labels": bunch.session_target[k],
        "roi": bunch.mask_vt[k],
        "anat": bunch.anat[k],
    }


def file_paths(files):
    """Every path of a nested structure of files (mappings and lists of paths), in order."""
    if isinstance(files, dict):
        return [p for value in files.values() for p in file_paths(value)]
    if isinstance(files, list | tuple):
        return [p for value in files for p in file_paths(value)]
    return [str(files)]


def record_checksums(files, data_dir):
    """Hash every fetched file and check them against the download registry.

    The registry (``fmriflow-sha256.json`` in ``data_dir``) remembers the
    hash of each file the first time it is seen; a file whose content has
    changed since is reported, not silently re-used.

    Parameters
    ----------
    files : dict
        ``{subject: {role: path}}`` from :func:`download`, or any nesting of
        mappings and lists of paths (``{role: path}`` of a dataset's own
        files or of an atlas).
    data_dir : str or pathlib.Path
        The download folder.

    Returns
    -------
    dict
        ``{path: sha256}`` for every file.
    """
    registry_path = Path(data_dir) / REGISTRY
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {}
    checksums = {}
    for path in file_paths(files):
        if path not in checksums:
            digest = sha256sum(path)
            key = str(Path(path).resolve())
            if key in registry and registry[key] != digest:
                raise _changed_error(path, registry_path)
            registry[key] = digest
            checksums[path] = digest
    with atomic_output(registry_path) as tmp:
        tmp.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    return checksums


def _changed_error(path, registry_path):
    return InputError(
        path,
        "file changed since it was downloaded (its sha256 differs from "
        f"the one recorded in {registry_path})",
        "Delete the file (and its entry in the registry) and re-run to download it again",
    )


def check_registry(paths, data_dir):
    """Check files already in the download folder against the registry, before they are read.

    For a fetcher that parses its files itself (a changed file would make
    it fail with its own error): every one of ``paths`` that exists and is
    in the registry must still have its recorded sha256. Nothing is
    recorded.
    """
    registry_path = Path(data_dir) / REGISTRY
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {}
    for path in paths:
        key = str(Path(path).resolve())
        if key in registry and Path(path).is_file() and sha256sum(path) != registry[key]:
            raise _changed_error(str(path), registry_path)


def verify_checksum(path, expected):
    """Raise :class:`InputError` if a file's sha256 is not ``expected``."""
    if not Path(path).is_file():
        raise InputError(
            path,
            "downloaded file is missing",
            "Re-run the download rule (delete dataset.json to force it)",
        )
    actual = sha256sum(path)
    if actual != expected:
        raise InputError(
            path,
            f"file changed since it was downloaded (sha256 {actual[:12]}… "
            f"instead of {expected[:12]}…)",
            "Delete it and re-run the workflow to download it again",
        )


def checked_download(description, description_path, subject, role):
    """The downloaded file of a subject's role, after checking its sha256.

    Parameters
    ----------
    description : dict
        The dataset's ``dataset.json`` (written by the download node).
    description_path : str or pathlib.Path
        Its path, for messages.
    subject : str
        Subject label.
    role : str
        ``bold``, ``labels``, ``roi``, ``anat`` or ``confounds``.

    Returns
    -------
    str or list of str
        The path of the file in the download folder (the run files, in
        order, for a role with one file per run).
    """
    files = description["files"]
    if subject not in files:
        raise InputError(
            description_path,
            f"subject {subject!r} is not among the downloaded subjects {list(files)}",
            "Give one of them",
        )
    if role not in files[subject]:
        raise InputError(
            description_path,
            f"the download of subject {subject} has no {role} file "
            f"(it has {sorted(files[subject])})",
            "Re-run the download rule (delete dataset.json to force it)",
        )
    paths = files[subject][role]
    for path in role_paths(paths):
        verify_checksum(path, description["sha256"][path])
    return paths


def checked_dataset_file(description, description_path, role):
    """A downloaded file of the dataset itself (``dataset_files``), after checking its sha256.

    Parameters
    ----------
    description : dict
        The dataset's ``dataset.json`` (written by the download node).
    description_path : str or pathlib.Path
        Its path, for messages.
    role : str
        ``phenotypic`` (ADHD's phenotypic table).

    Returns
    -------
    str
        The path of the file in the download folder.
    """
    dataset_files = description.get("dataset_files", {})
    entry = dataset_files.get(role)
    if entry is None:
        raise InputError(
            description_path,
            f"the download has no {role} file (it has {sorted(dataset_files)})",
            "Re-run the download rule (delete dataset.json to force it)",
        )
    verify_checksum(entry["path"], entry["sha256"])
    return entry["path"]


def haxby_events(labels_path):
    """Convert Haxby's ``labels.txt`` to the canonical events table.

    ``labels.txt`` has a header ``labels chunks`` and one space-separated
    row per volume; ``chunks`` is the run.
    """
    from fmriflow.io import check_file_exists

    path = check_file_exists(labels_path, "Haxby labels file")
    frame = pd.read_csv(path, sep=r"\s+")
    if list(frame.columns[:2]) != ["labels", "chunks"]:
        raise InputError(
            path,
            f"expected the columns 'labels chunks', found {list(frame.columns)}",
            "This is not a Haxby labels.txt; re-download the dataset",
        )
    return pd.DataFrame({"label": frame["labels"].astype(str), "run": frame["chunks"].astype(int)})


def miyawaki_run_labels(path, n_volumes):
    """One run's Miyawaki label file as row-major pixels and rest flags.

    A label file has one comma-separated row of 100 integers per volume: the
    10x10 image in Fortran (column-major) order, 0/1 per pixel, or every
    value -1 while no stimulus is shown (rest).

    Parameters
    ----------
    path : str or pathlib.Path
        ``label/data_{figure,random}_runNN_label.csv``.
    n_volumes : int
        Volumes of the run's image (rows required).

    Returns
    -------
    pixels : numpy.ndarray, shape (n_volumes, 100)
        Row-major pixels (0 on rest volumes).
    rest : numpy.ndarray of bool
    """
    from fmriflow.io import check_file_exists

    path = check_file_exists(path, "Miyawaki label file")
    values = _read_label_rows(path)
    n_pixels = MIYAWAKI_SHAPE[0] * MIYAWAKI_SHAPE[1]
    if values.shape[1] != n_pixels:
        raise InputError(
            path,
            f"label rows have {values.shape[1]} values, which do not reshape to the "
            f"{MIYAWAKI_SHAPE[0]}x{MIYAWAKI_SHAPE[1]} stimulus grid ({n_pixels} values)",
            "This is not a Miyawaki label file; re-download the dataset",
        )
    if len(values) != n_volumes:
        raise InputError(
            path,
            f"label file has {len(values)} rows but its run's image has {n_volumes} volumes",
            "Each run needs one label row per volume; re-download the dataset",
        )
    rest = (values == -1).all(axis=1)
    if not np.isin(values[~rest], (0, 1)).all():
        raise InputError(
            path,
            "label rows must be 0/1 pixels, or all -1 for rest",
            "This is not a Miyawaki label file; re-download the dataset",
        )
    images = values.reshape(len(values), *MIYAWAKI_SHAPE, order="F")
    pixels = images.reshape(len(values), n_pixels)
    pixels[rest] = 0
    return pixels, rest


def _read_label_rows(path):
    try:
        frame = pd.read_csv(path, header=None, sep=",")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            path, f"not a comma-separated table of integers ({exc})", "Re-download the dataset"
        ) from exc
    values = frame.apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        raise InputError(
            path, "label file has empty or non-numeric values", "Re-download the dataset"
        )
    return values.to_numpy().astype(int)


def miyawaki_tables(label_paths, run_lengths):
    """The canonical ``events.tsv`` and ``stimuli.tsv`` of the Miyawaki subject.

    Parameters
    ----------
    label_paths : list of str
        The 32 label files in nilearn's order (12 figure runs, 20 random runs).
    run_lengths : list of int
        Volumes of each run's image, in the same order.

    Returns
    -------
    events, stimuli : pandas.DataFrame
        Runs numbered 1–32 in that order; events labelled ``figure``,
        ``random`` or ``rest``; figure runs are the test split.
    """
    from fmriflow.stimuli import grid_columns, stimulus_table

    kinds = [(name, split) for name, split, n in MIYAWAKI_RUNS for _ in range(n)]
    if len(label_paths) != len(kinds):
        raise InputError(
            "Miyawaki download",
            f"{len(label_paths)} label files instead of {len(kinds)}",
            "Re-download the dataset",
        )
    pixels, rest, runs, splits, labels = [], [], [], [], []
    for run, (path, n_volumes, (name, split)) in enumerate(
        zip(label_paths, run_lengths, kinds, strict=True), start=1
    ):
        run_pixels, run_rest = miyawaki_run_labels(path, n_volumes)
        pixels.append(run_pixels)
        rest.append(run_rest)
        runs.append(np.full(n_volumes, run))
        splits += [split] * n_volumes
        labels += ["rest" if r else name for r in run_rest]
    runs, rest = np.concatenate(runs), np.concatenate(rest)
    events = pd.DataFrame({"label": labels, "run": runs})
    stimuli = stimulus_table(np.vstack(pixels), runs, splits, rest, grid_columns(MIYAWAKI_SHAPE))
    return events, stimuli


def read_confound_table(path):
    """Read a confound table (tab- or comma-separated, with a header).

    Constant columns (an intercept, say) are dropped: detrending and
    standardisation already handle them. Non-numeric columns are dropped.
    """
    from fmriflow.io import check_file_exists

    path = check_file_exists(path, "confounds file")
    frame = pd.read_csv(path, sep=None, engine="python")
    numeric = frame.select_dtypes(include=[np.number])
    keep = [c for c in numeric.columns if numeric[c].nunique(dropna=True) > 1]
    return numeric[keep].reset_index(drop=True)


def link_or_copy(source, destination):
    """Hard-link ``source`` to ``destination`` (copy across file systems), atomically."""
    with atomic_output(destination) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return Path(destination)
