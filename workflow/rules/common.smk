# Config validation, path helpers and input functions shared by all rules.

import copy
import re
import sys
from pathlib import Path

import jsonschema
import jsonschema.exceptions
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The node library, for the few checks that must run before any job.
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

SCHEMA = "../schemas/config.schema.yaml"


def validate_config(config):
    """Validate the config against the schema, naming the faulty key.

    jsonschema finds the most relevant error (reported with its key path);
    Snakemake's validate then fills in the defaults.
    """
    import yaml

    schema_path = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(dict(config))
    )
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise WorkflowError(
            f"Invalid config at '{key}': {error.message}. Allowed keys, types "
            "and defaults are in workflow/schemas/config.schema.yaml."
        )
    validate(config, SCHEMA)


def sorted_keys(value):
    """A copy of nested mappings with their keys in sorted order (lists keep theirs)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return copy.deepcopy(value)


validate_config(config)
# One canonical key order, so that the rules' params (compared by Snakemake to
# decide re-runs) do not depend on the order of the keys in the config file or
# on which keys were filled in by defaults. The copy also stops defaults filled
# in by the validator from sharing objects between datasets.
_canonical = sorted_keys(dict(config))
config.clear()
config.update(_canonical)

DATASETS = config["datasets"]


def dataset_subjects(name):
    """Subject labels of a dataset, known before any job runs."""
    dataset = DATASETS[name]
    source = dataset["source"]
    if source == "simulate":
        from fmriflow.simulate import subject_labels

        return subject_labels(dataset["simulate"]["n_subjects"])
    if source == "fetch":
        from fmriflow.errors import InputError
        from fmriflow.fetch import fetch_subjects

        try:
            return fetch_subjects(dataset["fetch"]["fetcher"], dataset["fetch"]["subjects"])
        except InputError as exc:
            raise WorkflowError(f"Dataset '{name}': {exc}") from None
    return [str(s) for s in dataset["local"]["subjects"]]


def check_local_dataset(name):
    """Stop before any job if a local dataset's files are missing."""
    from fmriflow.local import missing_files

    settings = DATASETS[name]["local"]
    if not settings["subjects"]:
        raise WorkflowError(
            f"Invalid config at 'datasets.{name}.local.subjects': no subject "
            "listed. List the subject labels substituted for {subject}."
        )
    if not settings["bold"]:
        raise WorkflowError(
            f"Invalid config at 'datasets.{name}.local.bold': a template of "
            "the BOLD images is required."
        )
    from fmriflow.errors import InputError

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


for _name, _dataset in DATASETS.items():
    if _dataset["source"] == "local":
        check_local_dataset(_name)


ANALYSES = {analysis["name"]: analysis for analysis in config["decoding"]}
SEARCHLIGHTS = {analysis["name"]: analysis for analysis in config["searchlight"]}
ICAS = {analysis["name"]: analysis for analysis in config["ica"]}


def check_task_analyses(section):
    """Names unique, datasets known and with task labels, for one config section."""
    names = [a["name"] for a in config[section]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise WorkflowError(
            f"Invalid config at '{section}': analysis name(s) {twice} used more than "
            "once. Give every analysis its own name (it names its result folder)."
        )
    for index, analysis in enumerate(config[section]):
        where = f"{section}[{index}] ({analysis['name']})"
        dataset = DATASETS.get(analysis["dataset"])
        if dataset is None:
            raise WorkflowError(
                f"Invalid config at '{where}.dataset': unknown dataset "
                f"'{analysis['dataset']}'. Choose one of {sorted(DATASETS)}."
            )
        if dataset_kind(analysis["dataset"]) != "task":
            raise WorkflowError(
                f"Invalid config at '{where}.dataset': '{analysis['dataset']}' is "
                "resting-state data, which has no labels to decode. Choose a task dataset."
            )
        yield where, analysis


def check_group_analyses():
    """Stop before any job if a group ICA or clustering entry is inconsistent."""
    names = [a["name"] for a in config["ica"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise WorkflowError(
            f"Invalid config at 'ica': name(s) {twice} used more than once. Give every "
            "decomposition its own name (it names its result folder)."
        )
    seen = set()
    for section in ("ica", "clustering"):
        for index, analysis in enumerate(config[section]):
            if analysis["dataset"] not in DATASETS:
                raise WorkflowError(
                    f"Invalid config at '{section}[{index}].dataset': unknown dataset "
                    f"'{analysis['dataset']}'. Choose one of {sorted(DATASETS)}."
                )
            if section == "clustering":
                for n in analysis["n_clusters"]:
                    key = (analysis["dataset"], analysis["method"], n)
                    if key in seen:
                        raise WorkflowError(
                            f"Invalid config at 'clustering[{index}]': {analysis['method']} "
                            f"with {n} clusters of '{analysis['dataset']}' is asked for twice."
                        )
                    seen.add(key)


check_group_analyses()


def check_analyses():
    """Stop before any job if an analysis is inconsistent with the datasets."""
    for where, analysis in check_task_analyses("searchlight"):
        if analysis["permutations"] and analysis["classifier"] != "gnb":
            raise WorkflowError(
                f"Invalid config at '{where}.permutations': permutation maps are computed "
                "by the fast naive Bayes path only. Set classifier: gnb, or permutations: 0."
            )
    for where, analysis in check_task_analyses("decoding"):
        if analysis["cv"]["scheme"] == "kfold_volumes" and not analysis["cv"]["allow_leaky"]:
            raise WorkflowError(
                f"Invalid config at '{where}.cv.scheme': kfold_volumes splits "
                "neighbouring, autocorrelated volumes of one run between training and "
                "test sets, which inflates accuracy. Use leave_one_run_out, kfold_runs "
                "or repeated_stratified_runs (set cv.allow_leaky: true only to reproduce "
                "an analysis that did this)."
            )
        selection = analysis["feature_selection"]
        if selection["method"] == "percentile" and selection["value"] > 100:
            raise WorkflowError(
                f"Invalid config at '{where}.feature_selection.value': a percentile "
                f"must be at most 100, got {selection['value']}."
            )


def dataset_kind(name):
    """'task' or 'rest', from the config (known before any job runs)."""
    dataset = DATASETS[name]
    if dataset["source"] == "simulate":
        return dataset["simulate"]["kind"]
    if dataset["source"] == "fetch":
        return "task" if dataset["fetch"]["fetcher"] == "haxby" else "rest"
    return dataset["local"]["kind"]


check_analyses()


def datasets_from(*sources):
    """Regular expression matching the names of datasets from these sources."""
    names = [n for n, d in DATASETS.items() if d["source"] in sources]
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def subject_paths(pattern):
    """Expand a path pattern with {dataset} and {subject} over every subject."""
    return [
        pattern.format(dataset=name, subject=subject)
        for name in DATASETS
        for subject in dataset_subjects(name)
    ]


def final_targets():
    """Every result the default target produces, and the provenance table."""
    return analysis_targets() + ["results/provenance.tsv"]


def analysis_targets():
    """Every result of the config's datasets and analyses."""
    targets = subject_paths("results/{dataset}/sub-{subject}/clean.npy")
    for name, analysis in ANALYSES.items():
        folder = f"results/{analysis['dataset']}/group/decoding/{name}"
        targets += [f"{folder}/subjects.tsv", f"{folder}/summary.json", f"{folder}/accuracies.png"]
    targets += group_targets()
    for name, analysis in SEARCHLIGHTS.items():
        files = ["accuracy.nii.gz", "summary.json", "spheres.tsv", "map.png"]
        files += ["pvalues.nii.gz"] if analysis["permutations"] else []
        for subject in dataset_subjects(analysis["dataset"]):
            folder = f"results/{analysis['dataset']}/sub-{subject}/searchlight/{name}"
            targets += [f"{folder}/{file}" for file in files]
    return targets


def group_targets():
    """Every output of the group ICA and clustering entries."""
    targets = []
    for name, analysis in ICAS.items():
        folder = f"results/{analysis['dataset']}/group/ica/{name}"
        files = ["components.nii.gz", "components.tsv", "stability.tsv", "summary.json"]
        targets += [f"{folder}/{file}" for file in files + ["components.png", "maps"]]
    for analysis in config["clustering"]:
        for n in analysis["n_clusters"]:
            folder = f"results/{analysis['dataset']}/group/clustering/{analysis['method']}_{n}"
            files = ["labels.nii.gz", "stats.tsv", "summary.json", "labels.png"]
            targets += [f"{folder}/{file}" for file in files]
    return targets


def subject_components(analysis):
    """Components kept per subject by an ICA entry's per-subject PCA."""
    return analysis["n_subject_components"] or 3 * analysis["n_components"]


def ica_settings(wildcards):
    """The config entry of a group ICA, checked against the dataset in the path."""
    analysis = ICAS[wildcards.name]
    if analysis["dataset"] != wildcards.dataset:
        raise WorkflowError(
            f"Group ICA '{wildcards.name}' belongs to dataset '{analysis['dataset']}', "
            f"not '{wildcards.dataset}'."
        )
    return analysis


def group_inputs(wildcards, reduced):
    """Per-subject files of a group analysis: reductions (or cleaned data), masks, mean."""
    subjects = dataset_subjects(wildcards.dataset)
    folder = f"results/{wildcards.dataset}/sub-{{subject}}"
    data = f"{folder}/pca_{reduced}.npy" if reduced else f"{folder}/clean.npy"
    return {
        "data": [data.format(subject=s) for s in subjects],
        "clean": [f"{folder}/clean.npy".format(subject=s) for s in subjects],
        "masks": [f"{folder}/mask.nii.gz".format(subject=s) for s in subjects],
        "mean": f"{folder}/mean.nii.gz".format(subject=subjects[0]),
        "description": f"data/{wildcards.dataset}/dataset.json",
    }


def ica_inputs(wildcards):
    analysis = ica_settings(wildcards)
    reduced = None if analysis["method"] == "concat" else subject_components(analysis)
    return group_inputs(wildcards, reduced)


def clustering_settings(wildcards):
    """The clustering entry that asks for this method and number of clusters."""
    for analysis in config["clustering"]:
        if (
            analysis["dataset"] == wildcards.dataset
            and analysis["method"] == wildcards.method
            and int(wildcards.n_clusters) in analysis["n_clusters"]
        ):
            return analysis
    raise WorkflowError(
        f"No clustering entry asks for {wildcards.method} with {wildcards.n_clusters} "
        f"clusters of dataset '{wildcards.dataset}'."
    )


def clustering_inputs(wildcards):
    return group_inputs(wildcards, clustering_settings(wildcards)["n_features"])


def reduction_seed(wildcards):
    return preprocess_settings(wildcards)["reduction_seed"]


def searchlight_settings(wildcards):
    """The config entry of a searchlight analysis, checked against the dataset in the path."""
    analysis = SEARCHLIGHTS[wildcards.analysis]
    if analysis["dataset"] != wildcards.dataset:
        raise WorkflowError(
            f"Searchlight analysis '{wildcards.analysis}' belongs to dataset "
            f"'{analysis['dataset']}', not '{wildcards.dataset}'."
        )
    return analysis


def searchlights_with_permutations(with_permutations):
    """Regular expression matching the searchlight analyses with (or without) permutations."""
    names = [n for n, a in SEARCHLIGHTS.items() if bool(a["permutations"]) == with_permutations]
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def analysis_settings(wildcards):
    """The config entry of a decoding analysis, checked against the dataset in the path."""
    analysis = ANALYSES[wildcards.analysis]
    if analysis["dataset"] != wildcards.dataset:
        raise WorkflowError(
            f"Decoding analysis '{wildcards.analysis}' belongs to dataset "
            f"'{analysis['dataset']}', not '{wildcards.dataset}'."
        )
    return analysis


def analysis_summaries(wildcards):
    """Every subject's summary of one decoding analysis."""
    analysis = analysis_settings(wildcards)
    return [
        f"results/{wildcards.dataset}/sub-{subject}/decoding/{wildcards.analysis}/summary.json"
        for subject in dataset_subjects(analysis["dataset"])
    ]


# Parameters handed to nodes: plain values from the config, never lambdas.


def simulate_settings(wildcards):
    return DATASETS[wildcards.dataset]["simulate"]


def fetch_settings(wildcards):
    return DATASETS[wildcards.dataset]["fetch"]


def local_settings(wildcards):
    settings = dict(DATASETS[wildcards.dataset]["local"])
    settings["subjects"] = [str(s) for s in settings["subjects"]]
    return settings


def local_source_files(wildcards):
    """A local subject's source files, so that Snakemake re-runs when they change."""
    from fmriflow.local import subject_files

    settings = local_settings(wildcards)
    files = subject_files(settings, wildcards.subject)
    return files


def preprocess_settings(wildcards):
    return DATASETS[wildcards.dataset]["preprocess"]


def mask_choice(wildcards):
    return preprocess_settings(wildcards)["mask"]


def include_roi(wildcards):
    return preprocess_settings(wildcards)["include_roi"]


def smoothing_fwhm(wildcards):
    return preprocess_settings(wildcards)["smoothing_fwhm"]


def bad_voxels(wildcards):
    return preprocess_settings(wildcards)["bad_voxels"]


def clean_setting(key):
    def get(wildcards):
        return preprocess_settings(wildcards)["clean"][key]

    get.__name__ = f"clean_{key}"
    return get


# On a cluster, a job runs two Snakemake processes (about 200 MB each) around
# the rule's script, and the cluster counts them against the job's memory.
SNAKEMAKE_MB = 500


def mem_mb_from_input(base, factor):
    """Memory request (MB): the script's base plus a multiple of the inputs' size,
    plus the Snakemake processes, times the attempt (a retry asks for more)."""

    def mem_mb(wildcards, input, attempt):
        return int((SNAKEMAKE_MB + base + factor * input.size_mb) * attempt)

    return mem_mb


def mem_mb_fixed(base):
    """Memory request (MB) of a script whose size does not follow its inputs,
    plus the Snakemake processes, times the attempt (a retry asks for more)."""

    def mem_mb(wildcards, attempt):
        return int((SNAKEMAKE_MB + base) * attempt)

    return mem_mb


wildcard_constraints:
    dataset=r"[A-Za-z0-9]+",
    subject=r"[A-Za-z0-9]+",
    analysis=r"[A-Za-z0-9_]+",
    name=r"[A-Za-z0-9_]+",
    method=r"ward|kmeans|rena",
    n_clusters=r"[0-9]+",
    n_components=r"[0-9]+",
