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
    config.clear()
    config.update(sorted_keys(checked))
    check_names_unique(config)
    check_datasets(config)
    check_analyses(config)
    check_searchlight_groups(config)
    check_clustering_requests(config)
    check_connectomes(config)


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
        if dataset["source"] == "local":
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
            f"datasets.{name}.local."
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
    """Group inference on searchlight maps needs permutation maps and several subjects."""
    for index, entry in enumerate(config["searchlight"]):
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
