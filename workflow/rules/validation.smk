# Validation of the config, before any job runs. The Snakefile calls
# validate_config(config) once, before it includes the stages:
#
# 1. the schema (workflow/schemas/config.schema.yaml): types, defaults,
#    conditions between keys and renamed keys, each failure naming its key;
# 2. the checks across entries that a schema cannot express: names unique
#    within a section, analyses naming datasets that exist and have what the
#    analysis needs (labels, an ROI, a brain mask, confounds), and the files
#    of local datasets and the subjects of fetched ones.
#
# This file only defines functions; nothing in it runs when it is included.

import copy
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The node library, for the checks that read the schema or the data sources.
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))


def load_config_file(path):
    """A YAML config file, or one message naming the file, the line and the fix."""
    from fmriflow.config_files import load_config_file as load
    from fmriflow.errors import InputError

    try:
        return load(path)
    except InputError as exc:
        raise WorkflowError(str(exc)) from None


def use_default_config(path, config):
    """Fill ``config`` from the default config file, keeping what --config set."""
    from snakemake.utils import update_config

    merged = load_config_file(path)
    update_config(merged, dict(config))
    config.clear()
    config.update(merged)


def validate_config(config):
    """Validate the config in place: fill in defaults, sort keys, check cross-references."""
    from fmriflow.errors import InputError
    from fmriflow.schema import validate

    try:
        checked = validate(dict(config))
    except InputError as exc:
        raise WorkflowError(str(exc)) from None
    # One canonical key order, so that the rules' params (compared by
    # Snakemake to decide re-runs) do not depend on the order of the keys in
    # the config file or on which keys were filled in by defaults.
    resolve_bids_datasets(checked)
    config.clear()
    config.update(sorted_keys(checked))
    check_names_unique(config)
    check_datasets(config)
    check_analyses(config)
    check_searchlight_groups(config)
    check_clustering_requests(config)
    check_connectomes(config)
    check_against_the_data(config)
    warn_too_few_permutations(config)


#: Where the indexes of BIDS datasets are cached (relative to the working directory).
BIDS_INDEX_CACHE = Path(".fmriflow") / "bids"


def resolve_bids_datasets(config):
    """Index each bids dataset (or read its cached index) and fill in its local section.

    The main process lists the dataset's files to see whether the cached
    index is still current; jobs (which Snakemake starts after the main
    process checked it) read the cache without looking at the dataset.
    """
    from fmriflow.bids import cached_index, local_settings
    from fmriflow.errors import InputError

    for name, dataset in config["datasets"].items():
        if dataset["source"] != "bids":
            continue
        settings = dataset["bids"]
        try:
            index = cached_index(
                name,
                settings,
                BIDS_INDEX_CACHE,
                check_signature=workflow.is_main_process,
                notify=lambda message: print(message, file=sys.stderr),
            )
        except InputError as exc:
            raise WorkflowError(f"Dataset '{name}' (source bids): {exc}") from None
        dataset["local"] = {**dataset["local"], **local_settings(settings, index)}


def check_against_the_data(config):
    """What the config and cheaply read facts of the data can tell before any job:
    filters against the TR, MNI masks against the space, searchlight radii against the
    voxel size, and decoding labels against the events."""
    from fmriflow.cleaning import check_filter_settings
    from fmriflow.errors import InputError

    for name, dataset in config["datasets"].items():
        where = f"datasets.{name}.preprocess"
        clean = dataset["preprocess"]["clean"]
        try:
            check_filter_settings(dataset_tr(name), clean["high_pass"], clean["low_pass"])
        except InputError as exc:
            raise WorkflowError(
                f"Invalid config at '{where}.clean' (TR {dataset_tr(name):g} s): {exc}"
            ) from None
        mask = dataset["preprocess"]["mask"]
        space = dataset_space(name)
        if mask.startswith("mni_") and not str(space).upper().startswith("MNI"):
            raise config_error(
                f"{where}.mask",
                f"{mask} is a template mask in MNI space, and dataset '{name}' is in "
                f"'{space}' space",
                "Choose epi (computed from the data), dataset or roi; or, if the images are "
                "in MNI space, say so (local.space: MNI152NLin2009cAsym)",
            )
    if not workflow.is_main_process:
        return  # the rest reads data files: checked before the jobs were started
    for section in ("decoding", "searchlight"):
        for index, entry in enumerate(config[section]):
            check_labels_in_events(f"{section}[{index}]", entry)
    for index, entry in enumerate(config["searchlight"]):
        check_searchlight_radius(f"searchlight[{index}]", entry)


def check_labels_in_events(where, entry):
    """The labels an analysis names are in every subject's events (local and known data)."""
    from fmriflow.local import event_labels
    from fmriflow.simulate import HAXBY_CATEGORIES

    if entry["labels"] == "all":
        return
    dataset = config["datasets"][entry["dataset"]]
    if imports_local_files(dataset):
        settings = dataset["local"]
        found = {s: event_labels(settings, s) for s in dataset_subjects(entry["dataset"])}
    else:
        found = {None: {*HAXBY_CATEGORIES, "rest"}}
    for subject, labels in found.items():
        missing = [label for label in entry["labels"] if label not in labels]
        if labels and missing:
            whose = "" if subject is None else f" (subject {subject})"
            raise config_error(
                f"{where}.labels",
                f"label(s) {missing} are not in the events of dataset '{entry['dataset']}'"
                f"{whose}, whose labels are {sorted(labels)}",
                "Name labels of the events, or 'all'",
            )


def check_searchlight_radius(where, entry):
    """A searchlight sphere spans more than its centre voxel."""
    import numpy as np

    from fmriflow.errors import InputError
    from fmriflow.fetch import FETCHED_VOXEL_SIZES
    from fmriflow.local import first_bold_voxel_sizes
    from fmriflow.searchlight.geometry import check_radius

    dataset = config["datasets"][entry["dataset"]]
    if dataset["source"] == "simulate":
        sizes = dataset["simulate"]["task"]["voxel_size"]
    elif dataset["source"] == "fetch":
        sizes = FETCHED_VOXEL_SIZES.get(dataset["fetch"]["fetcher"])
    else:
        sizes = first_bold_voxel_sizes(dataset["local"], dataset_subjects(entry["dataset"]))
    if sizes is None:
        return
    try:
        check_radius(entry["radius"], np.diag([*map(float, sizes), 1.0]))
    except InputError as exc:
        raise WorkflowError(f"Invalid config at '{where}.radius': {exc}") from None


def warn_too_few_permutations(config):
    """Warn (once, before any job) where no permutation p-value can reach its level."""
    from fmriflow.permutations import too_few_warning

    if not workflow.is_main_process:
        return
    warnings = []
    for index, entry in enumerate(config.get("decoding", [])):
        where = f"decoding[{index}] ({entry['name']})"
        warnings.append(too_few_warning(entry["permutations"], 0.05, where))
    for index, entry in enumerate(config.get("searchlight", [])):
        where = f"searchlight[{index}] ({entry['name']})"
        warnings.append(too_few_warning(entry["permutations"], entry["fwe_alpha"], where))
        if entry.get("group"):
            group = entry["group"]
            warnings.append(
                too_few_warning(group["draws"], group["alpha"], f"{where}.group", "draws")
            )
    for message in filter(None, warnings):
        print(f"fmriflow warning: {message}", file=sys.stderr)


def sorted_keys(value):
    """A copy of nested mappings with their keys in sorted order (lists keep theirs)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return copy.deepcopy(value)


def config_error(where, problem, fix):
    """The one message of an invalid config, naming the key."""
    return WorkflowError(f"Invalid config at '{where}': {problem}. {fix}.")


def check_names_unique(config):
    """Analysis names name result folders: each is used once within its section."""
    for section in ("decoding", "searchlight", "ica", "encoding", "reconstruction", "connectomes"):
        names = [entry["name"] for entry in config[section]]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise config_error(
                section,
                f"name(s) {twice} used more than once",
                "Give every entry its own name (it names its result folder)",
            )


def check_datasets(config):
    """The files of local datasets exist; the subjects of fetched ones are known."""
    for name, dataset in config["datasets"].items():
        # Raises a WorkflowError naming the dataset for unknown subjects.
        dataset_subjects(name)
        if imports_local_files(dataset):
            check_local_files(name, dataset["local"])


def check_local_files(name, settings):
    """Stop before any job if a local dataset's configured files are missing."""
    from fmriflow.errors import InputError
    from fmriflow.local import missing_files

    try:
        problems = missing_files(settings, dataset_subjects(name))
    except InputError as exc:
        raise WorkflowError(f"Invalid config in 'datasets.{name}.local': {exc}") from None
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise WorkflowError(
            f"Dataset '{name}': {len(problems)} configured file(s) not found:\n  "
            f"{shown}{more}\nFix the templates or the subject/run lists in "
            f"datasets.{name}.local.{numbers_hint(settings)}"
        )
    check_local_kind(name, settings)
    check_local_tr(name, settings)


def numbers_hint(settings):
    """A hint when YAML read subject or run labels as numbers (01 becomes 1)."""
    numbers = [
        f"{key} {value}"
        for key in ("subjects", "runs")
        for value in settings.get(key) or []
        if isinstance(value, int) and not isinstance(value, bool)
    ]
    if not numbers:
        return ""
    return (
        f"\nNote: {', '.join(numbers[:5])} "
        f"{'was read as a number' if len(numbers) == 1 else 'were read as numbers'}, and "
        "YAML drops leading zeros (01 becomes 1): write labels in quotes, e.g. "
        "subjects: ['01', '02']."
    )


def check_local_kind(name, settings):
    """Task data need events: without, every volume would be one 'rest' condition."""
    from fmriflow.local import has_role

    if settings["kind"] == "task" and not has_role(settings, "events"):
        raise WorkflowError(
            f"Invalid config in 'datasets.{name}.local': kind is task (the default) but no "
            "events are given, so no volume would have a condition. Give the template of the "
            "events tables (events: ...), or set kind: rest for resting-state data."
        )


def check_local_tr(name, settings):
    """The config's TR agrees with the BOLD headers, unless it says it overrides them."""
    from fmriflow.local import tr_disagreements

    if not workflow.is_main_process:
        return  # checked before the jobs were started; jobs need not read every header
    disagreeing = tr_disagreements(settings, dataset_subjects(name))
    if disagreeing:
        path, recorded = disagreeing[0]
        others = f" (and {len(disagreeing) - 1} more images)" if len(disagreeing) > 1 else ""
        raise WorkflowError(
            f"Dataset '{name}': datasets.{name}.local.tr is {settings['tr']:g} s but the header "
            f"of {path} records a TR of {recorded:g} s{others}; filters and event timing would "
            f"use the wrong one. Set tr: {recorded:g} if the header is right, or "
            "tr_overrides_header: true if the config is right (the imported image's header "
            "then records the config's TR)."
        )


def check_dataset_reference(config, where, name, kind=None):
    """An analysis names a dataset of the config (of the right kind)."""
    if name not in config["datasets"]:
        raise config_error(
            f"{where}.dataset",
            f"unknown dataset '{name}'",
            f"Choose one of {sorted(config['datasets'])}",
        )
    what = {
        "task": "labels to decode",
        "stimulus": "stimulus table (stimuli.tsv) to encode or reconstruct",
    }
    if kind is not None and dataset_kind(name) != kind:
        raise config_error(
            f"{where}.dataset",
            f"'{name}' is {dataset_kind(name)} data, which has no {what[kind]}",
            f"Choose a {kind} dataset "
            f"({', '.join(n for n in config['datasets'] if dataset_kind(n) == kind) or 'none yet'})",
        )


def check_needed_file(where, dataset, file, what, fix):
    """An analysis or preprocessing step needs a canonical file every subject has."""
    lacking = [s for s in dataset_subjects(dataset) if file not in subject_files(dataset, s)]
    if lacking:
        raise config_error(
            where,
            f"it needs {what}, which dataset '{dataset}' does not have "
            f"(subject(s) {', '.join(lacking[:5])}{' …' if len(lacking) > 5 else ''})",
            fix,
        )


def check_analyses(config):
    """Every analysis names an existing dataset that has what the analysis reads."""
    roi_fix = "Use the whole preprocessing mask instead, or give the dataset an ROI"
    for section, key in (("decoding", "voxels"), ("searchlight", "centres")):
        for index, entry in enumerate(config[section]):
            where = f"{section}[{index}]"
            check_dataset_reference(config, where, entry["dataset"], kind="task")
            if entry[key] == "roi":
                check_needed_file(
                    f"{where}.{key}", entry["dataset"], "roi.nii.gz", "a subject ROI", roi_fix
                )
    for section in ("ica", "clustering"):
        for index, entry in enumerate(config[section]):
            check_dataset_reference(config, f"{section}[{index}]", entry["dataset"])
    for index, entry in enumerate(config["ica"]):
        check_group_pca(f"ica[{index}]", entry)
    for section in ("encoding", "reconstruction"):
        for index, entry in enumerate(config[section]):
            where = f"{section}[{index}]"
            check_dataset_reference(config, where, entry["dataset"], kind="stimulus")
            if entry["voxels"] == "roi":
                check_needed_file(
                    f"{where}.voxels", entry["dataset"], "roi.nii.gz", "a subject ROI", roi_fix
                )
            if section == "reconstruction":
                check_tuned_by_c(where, entry)
            if section == "reconstruction" and stimulus_shape(entry["dataset"]) is None:
                raise config_error(
                    f"{where}.dataset",
                    f"reconstruction needs images, and the stimuli of '{entry['dataset']}' "
                    "have no image grid",
                    f"Give datasets.{entry['dataset']}.local.stimulus_shape (pixel columns "
                    "px_{row}_{col})",
                )
    for name, dataset in config["datasets"].items():
        where = f"datasets.{name}.preprocess"
        preprocess = dataset["preprocess"]
        if preprocess["mask"] == "roi":
            check_needed_file(f"{where}.mask", name, "roi.nii.gz", "a subject ROI", roi_fix)
        if preprocess["mask"] == "dataset" and not dataset_has_brain_mask(name):
            raise config_error(
                f"{where}.mask",
                f"'dataset' uses the dataset's brain mask, and dataset '{name}' has none",
                "Choose epi (computed from the data), or give local.brain_mask",
            )
        if isinstance(preprocess["clean"]["confounds"], list):
            check_needed_file(
                f"{where}.clean.confounds",
                name,
                "confounds.tsv",
                "confounds",
                "Set it to false, or give the dataset confounds",
            )


def check_searchlight_groups(config):
    """Group inference on searchlight maps needs permutation maps and several subjects;
    a map is split either into a number of chunks or by run time, not both."""
    for index, entry in enumerate(config["searchlight"]):
        if entry["chunk_minutes"] is not None and entry["chunks"] != 1:
            raise config_error(
                f"searchlight[{index}]",
                f"chunks: {entry['chunks']} and chunk_minutes: {entry['chunk_minutes']} both "
                "split the map",
                "Give one of them: a number of chunks, or a run time per chunk",
            )
        if entry["group"] is None:
            continue
        where = f"searchlight[{index}].group"
        if not entry["permutations"]:
            raise config_error(
                where,
                "group inference draws from every subject's permutation maps, and this "
                "analysis has none",
                "Set permutations (e.g. 100), or group: null",
            )
        n_subjects = len(dataset_subjects(entry["dataset"]))
        if n_subjects < 2:
            raise config_error(
                where,
                f"dataset '{entry['dataset']}' has {n_subjects} subject",
                "Group inference needs at least 2 subjects; set group: null",
            )


def check_group_pca(where, entry):
    """MIGP's rows: only with group_pca migp, and at least the entry's components."""
    from fmriflow.decomposition.pca import check_group_solver
    from fmriflow.errors import InputError

    try:
        check_group_solver(entry["group_pca"], entry["n_components"], entry["migp_rows"])
    except InputError as exc:
        raise config_error(f"{where}.{exc.what}", exc.problem, exc.fix) from None


def check_tuned_by_c(where, entry):
    """Reconstruction decoders are set by their C: each classifier named must have one."""
    from fmriflow import classifiers

    named = [("classifier", entry["classifier"])]
    named += [("models.classifiers", name) for name in entry["models"]["classifiers"]]
    for key, name in named:
        if not classifiers.get(name).search_path.endswith("__C"):
            with_c = [
                n for n in classifiers.names() if classifiers.get(n).search_path.endswith("__C")
            ]
            raise config_error(
                f"{where}.{key}",
                f"{name} has no C, which reconstruction sets",
                f"Choose one of {with_c}",
            )


def check_clustering_requests(config):
    """No parcellation (dataset, method, number of clusters) is asked for twice."""
    seen = set()
    for index, entry in enumerate(config["clustering"]):
        for n in entry["n_clusters"]:
            key = (entry["dataset"], entry["method"], n)
            if key in seen:
                raise config_error(
                    f"clustering[{index}]",
                    f"{entry['method']} with {n} clusters of '{entry['dataset']}' is asked "
                    "for twice",
                    "Ask for each parcellation once",
                )
            seen.add(key)


def check_connectomes(config):
    """Connectome analyses use rest data, regions that the config computes, and
    participants columns the dataset has."""
    for index, entry in enumerate(config["connectomes"]):
        where = f"connectomes[{index}]"
        dataset = entry["dataset"]
        check_dataset_reference(config, where, dataset)
        if dataset_kind(dataset) != "rest":
            raise config_error(
                f"{where}.dataset",
                f"'{dataset}' is {dataset_kind(dataset)} data; connectomes are computed "
                "from resting-state data",
                "Choose a rest dataset",
            )
        check_connectome_regions(config, f"{where}.regions", dataset, entry["regions"])
        columns = [entry["compare"]["column"]] if entry["compare"] else []
        columns += entry["predict"]["targets"] if entry["predict"] else []
        if columns:
            check_participant_columns(f"{where}", dataset, columns)


def check_connectome_regions(config, where, dataset, settings):
    """The ICA entry or the parcellation a connectome's regions come from is in the config."""
    if settings["source"] == "ica":
        names = [e["name"] for e in config["ica"] if e["dataset"] == dataset]
        if settings["ica"] not in names:
            raise config_error(
                f"{where}.ica",
                f"no ica entry '{settings['ica']}' of dataset '{dataset}'",
                f"Name one of {names}, or add that ica entry" if names else "Add an ica entry",
            )
    elif settings["source"] == "clustering":
        offered = sorted(
            (e["method"], n)
            for e in config["clustering"]
            if e["dataset"] == dataset
            for n in e["n_clusters"]
        )
        if (settings["method"], settings["n_clusters"]) not in offered:
            raise config_error(
                where,
                f"no clustering entry of dataset '{dataset}' computes {settings['method']} "
                f"with {settings['n_clusters']} clusters",
                f"Choose one of {[f'{m} {n}' for m, n in offered]}, or add it to 'clustering'",
            )


def check_participant_columns(where, dataset, columns):
    """The dataset has a participants table, with the columns named (when known up front)."""
    from fmriflow.errors import InputError

    if not dataset_has_participants(dataset):
        raise config_error(
            where,
            f"comparing or predicting phenotypes needs a participants table, which dataset "
            f"'{dataset}' does not have",
            f"Give datasets.{dataset}.local.participants (a BIDS participants.tsv)",
        )
    try:
        known = participant_columns(dataset)
    except InputError as exc:
        raise WorkflowError(f"Invalid config at '{where}': {exc}") from None
    unknown = [c for c in columns if known is not None and c not in known]
    if unknown:
        raise config_error(
            where,
            f"participants column(s) {unknown} not in dataset '{dataset}' "
            f"(it has {sorted(known)})",
            "Name columns of its participants table in compare.column and predict.targets",
        )
