"""A BIDS dataset (raw, or with fMRIPrep derivatives) found by query, indexed once.

The config's ``bids`` section names a root, a task, a space and optional
filters (subjects, sessions, runs, acquisition); :func:`index_dataset`
queries the dataset with pybids and returns, per subject, the BOLD image,
events table and confounds table of every selected run, in acquisition
order, with the repetition time read from the sidecar JSON (BIDS
inheritance applies). :func:`local_settings` turns that index into the
``local`` section the import rules already read (``files`` listed per
subject), so a BIDS dataset is imported exactly as a lab's own files are.

Indexing a large dataset takes a while, and on a cluster Snakemake parses the
workflow again in every job: :func:`cached_index` keeps the index in a JSON
file keyed by the query, with a signature of the dataset's files (names,
sizes, modification times); the main process re-indexes only when the
signature changed, and jobs read the index without looking at the dataset.
"""

import hashlib
import json
import os
from pathlib import Path

from fmriflow.errors import InputError

#: Format of the cached index; a change re-indexes every dataset.
INDEX_VERSION = 1

#: Entities that tell the runs of a subject apart, in acquisition order.
RUN_ENTITIES = ("session", "acquisition", "run")

#: Suffixes of fMRIPrep's confound tables (``regressors`` before fMRIPrep 1.4).
CONFOUND_SUFFIXES = ("timeseries", "regressors")

#: Relative difference between a sidecar's and a header's TR beyond which they disagree.
TR_TOLERANCE = 1e-3

#: Folders of a BIDS root that hold no data of the query (skipped by the signature).
SKIPPED_FOLDERS = ("sourcedata", "code", "stimuli")


def _error(what, problem, fix):
    return InputError(what, problem, fix)


def check_description(folder, role, fix):
    """A BIDS (or derivatives) folder exists and has its dataset_description.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _error(folder, f"the {role} folder does not exist", fix)
    description = folder / "dataset_description.json"
    if not description.is_file():
        raise _error(
            folder,
            f"the {role} has no dataset_description.json, so it is not a valid BIDS dataset",
            'Add one ({"Name": "...", "BIDSVersion": "1.9.0"}; derivatives also '
            '"DatasetType": "derivative" and "GeneratedBy") or ' + fix,
        )
    try:
        json.loads(description.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _error(description, f"not valid JSON ({exc})", "Fix the file") from None


def open_layout(settings):
    """The pybids layout of the root (and derivatives), with one message on failure."""
    from bids import BIDSLayout
    from bids.exceptions import PyBIDSError

    check_description(settings["root"], "BIDS root", "fix bids.root")
    if settings.get("derivatives"):
        check_description(settings["derivatives"], "derivatives", "fix bids.derivatives")
    try:
        return BIDSLayout(
            settings["root"],
            derivatives=settings.get("derivatives") or False,
            validate=settings.get("validate", True),
        )
    except (PyBIDSError, ValueError) as exc:
        raise _error(
            settings["root"],
            f"pybids cannot index the dataset: {str(exc).splitlines()[0]}",
            "Fix the dataset (the BIDS validator names each problem), or set "
            "bids.validate: false to index files whose names do not validate",
        ) from None


def _entities(file):
    return {key: file.entities.get(key) for key in ("subject", "task", *RUN_ENTITIES)}


def _order(file):
    entities = file.entities
    run = entities.get("run")
    return (
        str(entities.get("session") or ""),
        str(entities.get("acquisition") or ""),
        int(run) if run is not None else -1,
        file.path,
    )


def _labels(values):
    return sorted({str(v) for v in values if v is not None})


def _same_run(candidate, entities):
    """Whether a file belongs to a run: each entity it has equals the run's (inheritance)."""
    for key, value in entities.items():
        own = candidate.entities.get(key)
        if own is not None and str(own) != str(value):
            return False
    return True


def _nearest(candidates, entities):
    """The most specific file of ``candidates`` that belongs to the run, or None."""
    matching = [c for c in candidates if _same_run(c, entities)]
    if not matching:
        return None
    return max(matching, key=lambda c: sum(c.entities.get(k) is not None for k in entities))


def _filters(settings):
    """The pybids filters of the config's query (entities the user restricted)."""
    filters = {"task": settings["task"]}
    if settings.get("subjects"):
        filters["subject"] = [str(s) for s in settings["subjects"]]
    if settings.get("sessions"):
        filters["session"] = [str(s) for s in settings["sessions"]]
    if settings.get("runs"):
        filters["run"] = [int(r) for r in settings["runs"]]
    if settings.get("acquisition"):
        filters["acquisition"] = settings["acquisition"]
    return filters


FILTER_KEYS = {
    "task": "task",
    "subject": "subjects",
    "session": "sessions",
    "run": "runs",
    "acquisition": "acquisition",
}


def _bold_files(layout, settings):
    """The selected BOLD images (derivatives or raw), or a message naming the empty filter."""
    derived = bool(settings.get("derivatives"))
    query = {"suffix": "bold", "extension": [".nii", ".nii.gz"]}
    if derived:
        query |= {"scope": "derivatives", "desc": settings.get("desc", "preproc")}
        from bids.layout import Query

        query["space"] = settings["space"] if settings.get("space") else Query.NONE
    else:
        query["scope"] = "raw"
    filters = _filters(settings)
    files = layout.get(**query, **filters)
    if files:
        return sorted(files, key=lambda f: (str(f.entities["subject"]), _order(f)))
    # Say which filter emptied the selection, with the values that exist.
    where = (
        "derivatives " + str(settings["derivatives"]) if derived else "root " + settings["root"]
    )
    for entity in FILTER_KEYS:
        if entity not in filters:
            continue
        relaxed = {k: v for k, v in filters.items() if k != entity}
        found = layout.get(**query, **relaxed)
        if found:
            present = _labels(f.entities.get(entity) for f in found)
            raise _error(
                f"bids.{FILTER_KEYS[entity]}",
                f"{entity} {filters[entity]} matches no BOLD image in the {where} "
                f"(the other filters leave {len(found)}, whose {entity} labels are "
                f"{present or 'absent'})",
                f"Choose among those labels, or remove bids.{FILTER_KEYS[entity]}",
            )
    everything = layout.get(suffix="bold", extension=[".nii", ".nii.gz"], scope=query["scope"])
    if derived and everything:
        spaces = _labels(f.entities.get("space") for f in everything)
        descs = _labels(f.entities.get("desc") for f in everything)
        raise _error(
            "bids.space",
            f"no BOLD image of task {settings['task']!r} with space "
            f"{settings.get('space')!r} and desc {settings.get('desc', 'preproc')!r} in the "
            f"{where} (spaces there: {spaces or 'none'}; descs: {descs or 'none'})",
            "Set bids.space (and bids.desc) to one of those",
        )
    unindexed = sorted(
        str(p) for p in Path(settings["root"]).glob("sub-*/**/*_bold.nii*") if p.is_file()
    )
    hint = (
        f"; {len(unindexed)} file(s) named *_bold.nii* were not indexed, e.g. {unindexed[0]} "
        "(a name that does not validate: set bids.validate: false to take it)"
        if unindexed and not everything
        else ""
    )
    raise _error(
        settings["root"],
        f"no BOLD image in the {where}{hint}",
        "Check bids.root (and bids.derivatives: fMRIPrep's output folder)",
    )


def _repetition_time(layout, bold, raw):
    """RepetitionTime from the derivative's sidecar, else the raw image's (inherited)."""
    for file in (bold, raw):
        if file is None:
            continue
        value = layout.get_metadata(file.path).get("RepetitionTime")
        if value is not None:
            return float(value), file.path
    return None, bold.path


def _header_tr(path):
    from fmriflow.local import header_tr

    try:
        return header_tr(path)
    except Exception as exc:  # nibabel raises several kinds for a damaged file
        raise _error(
            path, f"the image's header cannot be read ({exc})", "Replace the damaged file"
        ) from None


def _check_confound_columns(path, columns):
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        shown = ", ".join(header[:12]) + (", …" if len(header) > 12 else "")
        raise _error(
            path,
            f"confound column(s) {missing} not in the table (its columns: {shown})",
            "Fix bids.confounds",
        )


def bids_subjects(layout, settings):
    """Labels of the subjects with a BOLD image that matches the query."""
    return _labels(f.entities["subject"] for f in _bold_files(layout, settings))


def index_dataset(settings):
    """Query a BIDS dataset once: every selected run's files, per subject.

    Parameters
    ----------
    settings : dict
        The dataset's ``bids`` config section (``root``, ``derivatives``,
        ``task``, ``space``, ``desc``, ``kind``, ``subjects``, ``sessions``,
        ``runs``, ``acquisition``, ``confounds``, ``tr_overrides_header``,
        ``validate``).

    Returns
    -------
    dict
        ``subjects`` (labels, sorted), ``tr`` (seconds), ``space``,
        ``participants`` (the root's participants.tsv or None) and ``files``:
        per subject, ``runs`` (run labels), ``bold``, ``events`` (task data)
        and ``confounds`` (when columns are asked for), one path per run in
        acquisition order.

    Raises
    ------
    InputError
        When the root or derivatives are not BIDS datasets, a filter matches
        nothing, a requested subject has no run, a task run has no events, a
        confounds table or column is missing, the runs' sidecars disagree on
        the TR, or a sidecar disagrees with its image's header.
    """
    layout = open_layout(settings)
    bolds = _bold_files(layout, settings)
    wanted = [str(s) for s in settings.get("subjects") or []]
    found = _labels(f.entities["subject"] for f in bolds)
    absent = [s for s in wanted if s not in found]
    if absent:
        others = bids_subjects(layout, {**settings, "subjects": None})
        raise _error(
            "bids.subjects",
            f"subject(s) {absent} have no BOLD image of task {settings['task']!r} that matches "
            f"the query (subjects with one: {others})",
            "Remove them from bids.subjects or fix the other filters",
        )
    raw_bolds = layout.get(
        suffix="bold", extension=[".nii", ".nii.gz"], scope="raw", task=settings["task"]
    )
    events = layout.get(suffix="events", extension=".tsv", scope="raw", task=settings["task"])
    confounds = []
    if settings.get("confounds"):
        if not settings.get("derivatives"):
            raise _error(
                "bids.confounds",
                "confound columns are asked for but no derivatives folder is given",
                "Set bids.derivatives to fMRIPrep's output folder, or bids.confounds: null",
            )
        confounds = layout.get(
            desc="confounds",
            suffix=list(CONFOUND_SUFFIXES),
            extension=".tsv",
            scope="derivatives",
            task=settings["task"],
        )
    files, trs = {}, []
    for bold in bolds:
        entities = _entities(bold)
        subject = str(entities["subject"])
        entry = files.setdefault(subject, {"runs": [], "bold": []})
        entry["bold"].append(bold.path)
        entry["runs"].append(_run_label(entities))
        raw = _nearest(raw_bolds, entities) if settings.get("derivatives") else bold
        tr, source = _repetition_time(layout, bold, raw)
        if tr is None:
            raise _error(
                bold.path,
                "no RepetitionTime in its sidecar JSON (nor in an inherited one)",
                "Add RepetitionTime to the run's *_bold.json (or to the task's "
                "task-<label>_bold.json at the root)",
            )
        trs.append((tr, source, bold.path))
        if settings.get("kind", "task") == "task":
            table = _nearest(events, entities)
            if table is None:
                raise _error(
                    bold.path,
                    f"this run of task {settings['task']!r} has no events table "
                    f"({_expected_name(entities, 'events.tsv')} or an inherited one)",
                    "Add the run's *_events.tsv, leave the run out (bids.runs / bids.sessions), "
                    "or set bids.kind: rest if the data are resting state",
                )
            entry.setdefault("events", []).append(table.path)
        if settings.get("confounds"):
            table = _nearest(confounds, entities)
            if table is None:
                raise _error(
                    bold.path,
                    "this run has no confounds table "
                    f"({_expected_name(entities, 'desc-confounds_timeseries.tsv')}) in the "
                    "derivatives",
                    "Run fMRIPrep on it, or set bids.confounds: null",
                )
            _check_confound_columns(table.path, settings["confounds"])
            entry.setdefault("confounds", []).append(table.path)
    for entry in files.values():
        if all(label is None for label in entry["runs"]):
            entry["runs"] = None  # one image per subject, no run entity
    tr = _common_tr(trs, settings.get("tr_overrides_header", False))
    participants = Path(settings["root"]) / "participants.tsv"
    space = settings.get("space") if settings.get("derivatives") else None
    return {
        "subjects": sorted(files),
        "tr": tr,
        "space": space if space and space.upper().startswith("MNI") else "native",
        "participants": str(participants) if participants.is_file() else None,
        "files": {s: files[s] for s in sorted(files)},
    }


def _run_label(entities):
    """The run's label: its run index, with the session (and acquisition) when there are."""
    parts = []
    if entities.get("session") is not None:
        parts.append(f"ses-{entities['session']}")
    if entities.get("acquisition") is not None:
        parts.append(f"acq-{entities['acquisition']}")
    if entities.get("run") is not None:
        parts.append(str(int(entities["run"])) if not parts else f"run-{int(entities['run'])}")
    return "_".join(parts) if parts else None


def _expected_name(entities, suffix):
    parts = [f"sub-{entities['subject']}"]
    if entities.get("session") is not None:
        parts.append(f"ses-{entities['session']}")
    parts.append(f"task-{entities['task']}")
    if entities.get("acquisition") is not None:
        parts.append(f"acq-{entities['acquisition']}")
    if entities.get("run") is not None:
        parts.append(f"run-{entities['run']}")
    return "_".join(parts) + "_" + suffix


def _common_tr(trs, overrides_header):
    """One TR for the dataset: every sidecar agrees, and agrees with its image's header."""
    first, source, _ = trs[0]
    for tr, other, _ in trs[1:]:
        if abs(tr - first) > TR_TOLERANCE * first:
            raise _error(
                other,
                f"RepetitionTime {tr:g} s differs from {first:g} s in {source}",
                "Select runs with one TR (bids.sessions, bids.acquisition, bids.runs): the "
                "workflow filters and times events with one TR per dataset",
            )
    if not overrides_header:
        for tr, sidecar, image in trs:
            recorded = _header_tr(image)
            if recorded is not None and abs(recorded - tr) > TR_TOLERANCE * tr:
                raise _error(
                    image,
                    f"its header records a TR of {recorded:g} s but the sidecar ({sidecar}) "
                    f"says RepetitionTime {tr:g} s",
                    "Fix the one that is wrong; if the sidecar is right, set "
                    "bids.tr_overrides_header: true (the imported image then records it)",
                )
    return first


def local_settings(settings, index):
    """The ``local`` config section that imports the indexed runs (``files`` per subject).

    Parameters
    ----------
    settings : dict
        The dataset's ``bids`` section.
    index : dict
        What :func:`index_dataset` returned.

    Returns
    -------
    dict
        ``kind``, ``tr``, ``tr_overrides_header``, ``link_bold``, ``space``, ``subjects``,
        ``files``, ``events_format`` (bids), ``rest_label``,
        ``confound_columns``, ``brain_mask`` and ``participants``.
    """
    return {
        "kind": settings.get("kind", "task"),
        "tr": index["tr"],
        "tr_overrides_header": settings.get("tr_overrides_header", False),
        "link_bold": settings.get("link_bold", True),
        "space": index["space"],
        "subjects": list(index["subjects"]),
        "files": index["files"],
        "events_format": "bids",
        "rest_label": settings.get("rest_label", "rest"),
        "confound_columns": list(settings["confounds"]) if settings.get("confounds") else None,
        "brain_mask": settings.get("brain_mask"),
        "participants": index["participants"],
    }


def dataset_signature(settings):
    """A digest of the names, sizes and modification times of the dataset's files.

    Cheap next to indexing (no file is opened); it changes when a file is
    added, removed, replaced or edited under the root or the derivatives.
    """
    digest = hashlib.sha256()
    for folder in filter(None, (settings.get("root"), settings.get("derivatives"))):
        folder = Path(folder)
        for top, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS)
            for name in sorted(names):
                path = Path(top) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                relative = path.relative_to(folder).as_posix()
                digest.update(
                    f"{folder}\0{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
                )
    return digest.hexdigest()


def query_key(settings):
    """A digest of the query (the ``bids`` section) that names its cache file."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(f"{INDEX_VERSION}\0{text}".encode()).hexdigest()[:16]


def cached_index(name, settings, cache_dir, check_signature=True, notify=print):
    """The dataset's index, from the cache when the dataset has not changed.

    Parameters
    ----------
    name : str
        The dataset's name in the config (names the cache file).
    settings : dict
        Its ``bids`` section.
    cache_dir : str or pathlib.Path
        Folder of the cached indexes (``.fmriflow/bids`` of the working directory).
    check_signature : bool, default=True
        Compare the dataset's current signature with the cached one (the main
        Snakemake process); False trusts the cache without listing the
        dataset (jobs, which the main process started after checking it).
    notify : callable, default=print
        Called with a one-line message when the dataset is (re-)indexed.

    Returns
    -------
    dict
        As :func:`index_dataset`.
    """
    path = Path(cache_dir) / f"{name}-{query_key(settings)}.json"
    cached = None
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except ValueError:
            cached = None
    if cached is not None and not check_signature:
        return cached["index"]
    signature = dataset_signature(settings)
    if cached is not None and cached.get("signature") == signature:
        return cached["index"]
    notify(
        f"fmriflow: indexing BIDS dataset '{name}' at {settings['root']} with pybids "
        f"({'the dataset changed since the cached index' if cached else 'first time'}); "
        f"the index is cached in {path}"
    )
    index = index_dataset(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(
        json.dumps({"signature": signature, "settings": settings, "index": index}, indent=1)
    )
    os.replace(temporary, path)
    return index
