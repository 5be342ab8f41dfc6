"""Import a lab's own files, described by path templates, into the canonical layout.

Templates are Python format strings with ``{subject}`` and, for data stored
one file per run as in BIDS and fMRIPrep derivatives, ``{run}`` (format
specifications such as ``{run:02d}`` work with integer run labels; any
other placeholder is an error)::

    bold: /data/derivatives/fmriprep/sub-{subject}/func/
          sub-{subject}_task-objects_run-{run}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz

Runs are concatenated in time (the canonical ``bold.nii.gz`` holds all runs)
and numbered in ``events.tsv`` by the lab's own run labels (the configured
``runs``) when they are whole numbers, else 1, 2, … in their order, so that
messages and outputs name a run as the lab does.
Events may be given per volume (columns ``label`` and, optionally, ``run``;
one table per run, or one for all the runs of a subject) or as BIDS
events (``onset``, ``duration``, ``trial_type``), which are turned into
one label per volume: a volume acquired at time ``i * TR``
takes the ``trial_type`` of the event covering that time, or the rest label.
fMRIPrep confounds (``desc-confounds_timeseries.tsv``) are read with the
configured columns; their leading ``n/a`` (derivatives of the first
volume) become 0, any other ``n/a`` or text is an error. The lab's files
are only read, never written: a compressed BOLD image taken as is becomes
a symbolic link to the lab's file (:func:`link_source`; ``link_bold:
false`` copies it instead), anything else is copied, never hard-linked.
"""

import gzip
import os
import shutil
from pathlib import Path
from string import Formatter

import numpy as np
import pandas as pd

from fmriflow.dataset import REST_LABEL
from fmriflow.errors import InputError
from fmriflow.io import (
    atomic_output,
    check_columns,
    check_file_exists,
    label_column,
    load_nifti,
    read_image_data,
    read_table,
    run_column,
)

TEMPLATE_KEYS = ("bold", "events", "confounds", "roi", "anat", "stimuli")
PLACEHOLDERS = ("subject", "run")


def template_fields(template):
    """Names of the placeholders in a template, checked against {subject} and {run}."""
    try:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise InputError(
            f"config template {template!r}",
            f"the template is not a valid path template ({exc})",
            "Write placeholders as {subject} and {run}; double a brace that is part of the path",
        ) from exc
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        shown = ", ".join("{" + name + "}" for name in unknown)
        raise InputError(
            f"config template {template!r}",
            f"unknown placeholder(s) {shown}; templates take only {{subject}} and {{run}}",
            "Write the other parts of the path literally (e.g. ses-01), or "
            "double the braces ({{ }}) that belong to the file name",
        )
    return fields


def expand(template, subject, runs):
    """Paths of one subject's files from a template, one per run if it has ``{run}``.

    Parameters
    ----------
    template : str
        Format string with ``{subject}`` and optionally ``{run}`` (format
        specifications such as ``{run:02d}`` are allowed).
    subject : str
        Subject label.
    runs : list or None
        Run labels substituted for ``{run}``.

    Returns
    -------
    list of str
    """
    fields = template_fields(template)
    if "run" in fields:
        if not runs:
            raise InputError(
                f"config template {template!r}",
                "the template has {run} but local.runs is empty",
                "List the run labels in local.runs (e.g. [1, 2, 3] or ['01', '02'])",
            )
        values = [{"subject": subject, "run": run} for run in runs]
    else:
        values = [{"subject": subject}]
    try:
        return [template.format(**value) for value in values]
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"config template {template!r}",
            f"cannot fill it in for subject {subject!r} and runs {runs} ({exc})",
            "A numeric format such as {run:02d} needs integer run labels "
            "(local.runs: [1, 2, 3]); otherwise write {run} and zero-padded labels",
        ) from exc


def subject_files(settings, subject):
    """All source files of one subject, by role.

    Parameters
    ----------
    settings : dict
        A local dataset's config section: its templates, or ``files``, the
        explicit lists per subject (which a ``bids`` dataset's query fills in).
    subject : str
        Subject label.

    Returns
    -------
    dict
        Role (``bold``, ``events``, ``confounds``, ``roi``, ``anat``,
        ``stimuli``) to the list of paths, one per run or one per subject;
        roles the subject does not have are absent.
    """
    listed = settings.get("files")
    if listed:
        entry = listed[str(subject)]
        return {key: list(entry[key]) for key in TEMPLATE_KEYS if entry.get(key)}
    files = {}
    for key in TEMPLATE_KEYS:
        template = settings.get(key)
        if template:
            files[key] = expand(template, subject, settings.get("runs"))
    return files


def subject_runs(settings, subject):
    """The run labels of one subject: its own (``files``) or the configured ``runs``."""
    listed = settings.get("files")
    if listed:
        return listed[str(subject)].get("runs")
    return settings.get("runs")


def has_role(settings, key):
    """Whether the dataset's config gives files of one role (a template or listed files)."""
    listed = settings.get("files")
    if listed:
        return any(entry.get(key) for entry in listed.values())
    return bool(settings.get(key))


def origin(settings, key):
    """Where the config names the files of one role, for messages."""
    if settings.get("files"):
        return f"listed in local.files.{key}"
    return f"from template local.{key}: {settings.get(key)!r}"


def missing_files(settings, subjects):
    """Messages for every configured file that does not exist (for early checks)."""
    problems = []
    listed = settings.get("files") or {}
    for subject in subjects:
        if listed and str(subject) not in listed:
            problems.append(f"subject {subject}: no entry in local.files")
            continue
        for key, paths in subject_files(settings, subject).items():
            for path in paths:
                if not Path(path).is_file():
                    problems.append(
                        f"subject {subject}: {key} file {path} not found ({origin(settings, key)})"
                    )
    participants = settings.get("participants")
    if participants and not Path(participants).is_file():
        problems.append(f"participants table {participants} not found (local.participants)")
    return problems


#: Relative difference between the config's TR and a header's beyond which they disagree.
TR_TOLERANCE = 1e-3

#: Seconds per unit of a NIfTI header's time axis.
TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def header_tr(path):
    """Repetition time (seconds) recorded in a BOLD image's header, None if unrecorded.

    Parameters
    ----------
    path : str or pathlib.Path
        A 4D NIfTI image (only its header is read).

    Returns
    -------
    float or None
        The fourth voxel size in seconds (converted from the header's time
        unit), or None when it is 0, when it is 1 with no time unit (the
        value of a header nobody filled in, as nibabel writes by default)
        or when the image is not 4D.
    """
    import nibabel as nib

    img = nib.load(str(path))
    if len(img.shape) != 4:
        return None
    zoom = float(img.header.get_zooms()[3])
    unit = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
    if not zoom > 0 or (zoom == 1.0 and unit == "unknown"):
        return None
    return zoom * TIME_UNITS.get(unit, 1.0)


def tr_disagreements(settings, subjects):
    """The BOLD images whose header's TR differs from the config's ``tr``.

    Parameters
    ----------
    settings : dict
        A local dataset's config section (``tr``, ``bold``, ``runs``,
        ``tr_overrides_header``).
    subjects : list of str
        Its subjects.

    Returns
    -------
    list of tuple
        ``(path, header TR)`` for each disagreeing image (none when the
        config says its ``tr`` overrides the headers, or a header records no
        TR).
    """
    if settings.get("tr_overrides_header"):
        return []
    tr = float(settings["tr"])
    disagreeing = []
    for subject in subjects:
        for path in subject_files(settings, subject).get("bold", []):
            recorded = header_tr(path) if Path(path).is_file() else None
            if recorded is not None and abs(recorded - tr) > TR_TOLERANCE * tr:
                disagreeing.append((path, recorded))
    return disagreeing


def event_labels(settings, subject):
    """The labels a subject's events give its volumes, read cheaply before any job.

    Parameters
    ----------
    settings : dict
        A local dataset's config section (``events``, ``events_format``,
        ``rest_label``, ``runs``).
    subject : str
        The subject.

    Returns
    -------
    set of str
        BIDS ``trial_type`` values and the rest label, or the per-volume
        ``label`` values; empty without events.
    """
    labels = set()
    for path in subject_files(settings, subject).get("events", []):
        if not Path(path).is_file():
            continue
        frame = read_table(path, "events table")
        column = "trial_type" if settings["events_format"] == "bids" else "label"
        if column in frame.columns:
            labels |= {str(v) for v in frame[column].dropna()}
        if settings["events_format"] == "bids":
            labels.add(settings["rest_label"])
    return labels


def first_bold_voxel_sizes(settings, subjects):
    """Voxel sizes (mm) of the first subject's first BOLD image (its header); None if absent."""
    import nibabel as nib

    paths = subject_files(settings, subjects[0]).get("bold") if subjects else None
    if not paths:
        return None
    path = paths[0]
    if not Path(path).is_file():
        return None
    return tuple(float(z) for z in nib.load(path).header.get_zooms()[:3])


def run_lengths(paths):
    """Number of volumes of each BOLD run image, read from the headers."""
    return [load_nifti(path, "BOLD image", ndim=4).shape[3] for path in paths]


def concatenate_runs(paths):
    """Load one subject's run images and concatenate them in time.

    Returns
    -------
    image : nibabel.Nifti1Image
        All runs, in the stored data type.
    lengths : list of int
        Number of volumes per run.
    """
    import nibabel as nib

    images = [load_nifti(path, "BOLD image", ndim=4) for path in paths]
    first = images[0]
    for path, img in zip(paths[1:], images[1:], strict=True):
        if img.shape[:3] != first.shape[:3]:
            raise InputError(
                path,
                f"run image shape {img.shape[:3]} differs from the first run's "
                f"{first.shape[:3]} ({paths[0]})",
                "All runs of a subject must be on the same grid; resample them first",
            )
        if not np.allclose(img.affine, first.affine, atol=1e-3):
            shift = np.abs(img.affine - first.affine).max()
            raise InputError(
                path,
                f"run image has the first run's shape {img.shape[:3]} but its affine differs "
                f"from the first run's ({paths[0]}) by up to {shift:.3g} (mm, or mm per voxel)",
                "All runs of a subject must be on the same grid; realign or resample them first",
            )
    data = np.concatenate(
        [
            read_image_data(img, path, "BOLD image")
            for img, path in zip(images, paths, strict=True)
        ],
        axis=3,
    )
    image = nib.Nifti1Image(data, first.affine, header=first.header)
    return image, [img.shape[3] for img in images]


def bids_events_to_labels(frame, n_volumes, tr, path, rest_label=REST_LABEL, column="trial_type"):
    """One label per volume from BIDS events (onset, duration, trial type).

    Parameters
    ----------
    frame : pandas.DataFrame
        BIDS events table.
    n_volumes : int
        Volumes in the run.
    tr : float
        Repetition time (s).
    path : str
        The events file, for messages.
    rest_label : str
        Label of volumes not covered by an event.
    column : str
        Column holding the condition names.

    Returns
    -------
    numpy.ndarray of str
    """
    check_columns(
        frame,
        ("onset", "duration", column),
        path,
        "BIDS events table",
        "Give onset, duration and trial_type columns, or set "
        "local.events_format: per_volume for a label-per-volume table",
    )
    times = np.arange(n_volumes) * tr
    labels = np.full(n_volumes, rest_label, dtype=object)
    owner = np.full(n_volumes, -1)
    for row, event in frame.dropna(subset=[column]).iterrows():
        covered = (times >= event["onset"]) & (times < event["onset"] + event["duration"])
        clash = covered & (owner >= 0) & (labels != str(event[column]))
        if clash.any():
            first = int(np.flatnonzero(clash)[0])
            raise InputError(
                path,
                f"events overlap at volume {first} (t = {times[first]:g} s): "
                f"'{labels[first]}' and '{event[column]}'",
                "Remove overlapping events (e.g. responses) or give a "
                "per-volume label table (local.events_format: per_volume)",
            )
        labels[covered] = str(event[column])
        owner[covered] = row
    return labels.astype(str)


def _per_volume_labels(path, n_volumes, what):
    """Labels (and the run column, or None) of a per-volume events table."""
    frame = read_table(path, "events table")
    check_columns(
        frame,
        ["label"],
        path,
        "per-volume events table",
        "Add it, or set local.events_format: bids for onset/duration/trial_type",
    )
    if len(frame) != n_volumes:
        raise InputError(
            path,
            f"events table has {len(frame)} rows but {what} has {n_volumes} volumes",
            "Give one row per volume",
        )
    runs = run_column(frame, path) if "run" in frame.columns else None
    return label_column(frame, path), runs


def run_numbers(labels, n_runs):
    """The run numbers written to ``events.tsv``: the lab's own run labels where possible.

    Parameters
    ----------
    labels : list or None
        The configured run labels (``local.runs``), in acquisition order.
    n_runs : int
        Number of BOLD runs.

    Returns
    -------
    list of int
        The labels as whole numbers (``"02"`` is 2) when every label is one
        and they are distinct, so that messages and outputs name runs as the
        lab does; otherwise 1, 2, … in acquisition order.
    """
    if labels is not None and len(labels) == n_runs:
        texts = [str(label).strip() for label in labels]
        if all(text.isdigit() for text in texts) and len({int(t) for t in texts}) == n_runs:
            return [int(text) for text in texts]
    return list(range(1, n_runs + 1))


def events_table(paths, lengths, tr, events_format, rest_label, run_labels=None):
    """Canonical events (label, run) for a subject from its event files.

    Parameters
    ----------
    paths : list of str
        One events file per BOLD run, or a single per-volume table covering
        all runs of the subject.
    lengths : list of int
        Volumes of each BOLD run, in order; runs are numbered by
        :func:`run_numbers`. Only a single per-volume table for a single
        BOLD image keeps its own ``run`` column.
    tr : float
        Repetition time (s), for BIDS events.
    events_format : {"bids", "per_volume"}
        Format of the files.
    rest_label : str
        Label of volumes not covered by a BIDS event.
    run_labels : list, optional
        The configured run labels (``local.runs``).

    Returns
    -------
    pandas.DataFrame
        Columns ``label`` and ``run``, one row per volume.
    """
    numbers = run_numbers(run_labels, len(lengths))
    runs_of_bold = np.repeat(numbers, lengths)
    if len(paths) != len(lengths):
        if len(paths) == 1 and events_format == "per_volume":
            labels, _ = _per_volume_labels(paths[0], sum(lengths), "the subject's BOLD runs")
            return pd.DataFrame({"label": labels, "run": runs_of_bold})
        raise InputError(
            paths[0],
            f"{len(paths)} events file(s) for {len(lengths)} BOLD run(s)",
            "Give local.events a {run} placeholder exactly when local.bold has "
            "one; only a per-volume table (events_format: per_volume) may cover "
            "all the runs of a subject",
        )
    labels, runs = [], []
    for run, path, n_volumes in zip(numbers, paths, lengths, strict=True):
        if events_format == "bids":
            frame = read_table(path, "events table")
            run_labels = bids_events_to_labels(frame, n_volumes, tr, path, rest_label)
            run_index = np.full(n_volumes, run)
        else:
            run_labels, own_runs = _per_volume_labels(path, n_volumes, "the run")
            single = len(paths) == 1 and own_runs is not None
            run_index = own_runs if single else np.full(n_volumes, run)
        labels.append(run_labels)
        runs.append(run_index)
    return pd.DataFrame({"label": np.concatenate(labels), "run": np.concatenate(runs).astype(int)})


def stimuli_table(paths, lengths, shape=None, run_labels=None):
    """The canonical stimulus table of a subject from its own tables.

    Parameters
    ----------
    paths : list of str
        One tab-separated table per BOLD run, or a single table covering all
        runs (which then has a ``run`` column). Columns: ``split`` (train or
        test), optionally ``rest`` (1 for no stimulus; 0 if absent), then one
        column per stimulus feature.
    lengths : list of int
        Volumes of each BOLD run, in order; runs are numbered as in
        ``events.tsv`` (:func:`run_numbers`).
    shape : list of int, optional
        The image grid of pixel features (``local.stimulus_shape``).
    run_labels : list, optional
        The configured run labels (``local.runs``).

    Returns
    -------
    pandas.DataFrame
        The canonical ``stimuli.tsv`` (checked with
        :func:`fmriflow.stimuli.read_stimuli` when written).
    """
    from fmriflow.stimuli import DESIGN_COLUMNS, check_grid, check_split

    if len(paths) not in (1, len(lengths)):
        raise InputError(
            paths[0],
            f"{len(paths)} stimulus table(s) for {len(lengths)} BOLD run(s)",
            "Give local.stimuli a {run} placeholder exactly when local.bold has one",
        )
    frames = []
    numbers = run_numbers(run_labels, len(lengths))
    for index, path in enumerate(paths):
        run = numbers[index]
        frame = read_table(path, "stimulus table", required=("split",))
        n_volumes = lengths[index] if len(paths) == len(lengths) else sum(lengths)
        if len(frame) != n_volumes:
            raise InputError(
                path,
                f"stimulus table has {len(frame)} rows but its BOLD image(s) have {n_volumes} "
                "volumes",
                "Give one row per volume, in acquisition order",
            )
        if "run" not in frame.columns:
            if len(paths) != len(lengths) and len(lengths) > 1:
                raise InputError(
                    path,
                    "a single stimulus table for several runs needs a 'run' column",
                    "Add the run of each volume, or give one table per run ({run})",
                )
            frame = pd.concat([pd.DataFrame({"run": run}, index=frame.index), frame], axis=1)
        if "rest" not in frame.columns:
            frame = pd.concat([pd.DataFrame({"rest": 0}, index=frame.index), frame], axis=1)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    features = [c for c in table.columns if c not in DESIGN_COLUMNS]
    if shape is not None:
        check_grid(features, shape, paths[0])
    table["run"] = run_column(table, paths[0])
    check_split(table["split"].astype(str).to_numpy(), table["run"].to_numpy(), paths[0])
    return table[[*DESIGN_COLUMNS, *features]]


def confounds_table(paths, lengths, columns):
    """Selected confound columns of all runs, concatenated; leading n/a set to 0.

    ``paths`` has one table per BOLD run (``lengths``), or a single table
    covering all runs of the subject.
    """
    if len(paths) != len(lengths):
        if len(paths) != 1:
            raise InputError(
                paths[0],
                f"{len(paths)} confounds file(s) for {len(lengths)} BOLD run(s)",
                "Give local.confounds a {run} placeholder exactly when local.bold has one",
            )
        lengths = [sum(lengths)]
    frames = []
    for path, n_volumes in zip(paths, lengths, strict=True):
        frame = read_table(path, "confounds table")
        chosen = list(frame.columns) if columns is None else list(columns)
        check_columns(frame, chosen, path, "confounds table", "Fix local.confound_columns")
        if len(frame) != n_volumes:
            raise InputError(
                path,
                f"confounds table has {len(frame)} rows but the run has {n_volumes} volumes",
                "Give one row per volume",
            )
        raw = frame[chosen]
        values = raw.apply(pd.to_numeric, errors="coerce")
        text = values.isna() & raw.notna()
        if text.any().any():
            bad = values.columns[text.any()].tolist()
            first = int(np.flatnonzero(text.any(axis=1))[0])
            raise InputError(
                path,
                f"confound column(s) {bad} have non-numeric values (first at volume {first})",
                "Choose numeric columns in local.confound_columns",
            )
        # Only n/a at the start of a column (fMRIPrep's derivatives of the
        # first volume) are set to 0; a column of n/a only is not a confound.
        leading = values.isna().cumprod().astype(bool)
        empty = values.columns[leading.all()].tolist()
        if empty:
            raise InputError(
                path,
                f"confound column(s) {empty} hold no value (all n/a)",
                "Remove them from local.confound_columns",
            )
        values = values.mask(leading, 0.0)
        if values.isna().any().any():
            bad = values.columns[values.isna().any()].tolist()
            first = int(np.flatnonzero(values.isna().any(axis=1))[0])
            raise InputError(
                path,
                f"confound column(s) {bad} have missing (n/a) values after the "
                f"first rows (first at volume {first})",
                "Choose other columns or fill the gaps",
            )
        frames.append(values)
    return pd.concat(frames, ignore_index=True)


def check_source_file(path, key, where):
    """Check that a source file exists, naming where the config gives it (see ``origin``)."""
    if not Path(path).is_file():
        raise InputError(
            path,
            f"{key} file not found ({where})",
            "Fix the template or the subject/run lists in the config",
        )
    return check_file_exists(path, key)


#: The first bytes of a gzip stream.
GZIP_MAGIC = b"\x1f\x8b"


def is_gzipped(path):
    """Whether a file starts with the gzip magic number."""
    with open(path, "rb") as stream:
        return stream.read(2) == GZIP_MAGIC


def link_source(source, destination):
    """Make ``destination`` a symbolic link to one of the lab's files, atomically.

    The link holds the source's absolute path, so it works from any
    working directory and on the compute nodes of a cluster that see the
    same file system. Nothing can reach the lab's file through it: the
    workflow's writers replace a file by renaming (which replaces the link,
    not its target), Snakemake touches links themselves (``lutime``) and
    removes the link, not the target, when it deletes an output. A changed
    source is newer than the link, so Snakemake re-imports it.

    Parameters
    ----------
    source, destination : str or pathlib.Path
        The lab's file and the workflow's name for it.

    Returns
    -------
    pathlib.Path
        ``destination``.
    """
    target = Path(source).resolve()
    with atomic_output(destination) as tmp:
        os.symlink(target, tmp)
    return Path(destination)


def copy_source(source, destination):
    """Copy one of the lab's files into the workflow's folders, atomically.

    Never a hard link: Snakemake touches the outputs of a job, which would
    change the modification time of the lab's original file through the
    link, and anything later written in place would change the original.
    An uncompressed file (``.nii``) copied to a ``.gz`` name is compressed
    on the way (with no time stamp or name in the gzip header, so that re-runs
    write the same bytes).
    """
    compressed = is_gzipped(source)
    with atomic_output(destination) as tmp:
        if compressed or not str(destination).endswith(".gz"):
            shutil.copyfile(source, tmp)
        else:
            with open(source, "rb") as raw, open(tmp, "wb") as out:
                packing = {"filename": "", "mode": "wb", "compresslevel": 1, "mtime": 0}
                with gzip.GzipFile(fileobj=out, **packing) as packed:
                    shutil.copyfileobj(raw, packed, 1 << 22)
    return Path(destination)
