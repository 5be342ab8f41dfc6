# Wiring shared by the stages: what the config says about each dataset, the
# jobs it asks for, input functions, parameters and resources.
#
# Every file a job reads under data/ or results/ is a declared input: which
# optional canonical files a subject has (ROI, anatomy, confounds, ground
# truth) is decided here from the config, before any job runs, and the input
# functions below ask for exactly those. This file only defines functions
# (and the wildcard constraints); nothing in it depends on the order of the
# includes.

import math
import re
from types import SimpleNamespace

from snakemake.io import Wildcards, apply_wildcards

# --- datasets --------------------------------------------------------------------


def dataset_subjects(name):
    """Subject labels of a dataset, known before any job runs."""
    dataset = config["datasets"][name]
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


def dataset_kind(name):
    """'task', 'rest' or 'stimulus', from the config."""
    dataset = config["datasets"][name]
    if dataset["source"] == "simulate":
        return dataset["simulate"]["kind"]
    if dataset["source"] == "fetch":
        from fmriflow.fetch import FETCHED_KIND

        return FETCHED_KIND[dataset["fetch"]["fetcher"]]
    return dataset["local"]["kind"]


def dataset_tr(name):
    """The repetition time (s) of a dataset, known before any job runs."""
    dataset = config["datasets"][name]
    if dataset["source"] == "simulate":
        return float(dataset["simulate"][dataset_kind(name)]["tr"])
    if dataset["source"] == "fetch":
        from fmriflow.fetch import FETCHED_TR

        return FETCHED_TR[dataset["fetch"]["fetcher"]]
    return float(dataset["local"]["tr"])


def dataset_space(name):
    """'native' or an MNI space name, from the config."""
    dataset = config["datasets"][name]
    if dataset["source"] == "simulate":
        return "MNI152" if dataset_kind(name) == "rest" else "native"
    if dataset["source"] == "fetch":
        from fmriflow.fetch import FETCHED_SPACE

        return FETCHED_SPACE[dataset["fetch"]["fetcher"]]
    return dataset["local"]["space"]


#: Sources whose files are the lab's own, imported by the local rules: given by
#: templates or lists (local), or found by a query (bids, resolved into the
#: dataset's local section by validate_config).
LOCAL_SOURCES = ("local", "bids")


def imports_local_files(dataset):
    """Whether a dataset's files are the lab's own (source local or bids)."""
    return dataset["source"] in LOCAL_SOURCES


def datasets_where(source, kind=None):
    """Names of the datasets from ``source`` (and of ``kind``); 'local' includes bids."""
    sources = LOCAL_SOURCES if source == "local" else (source,)
    return [
        name
        for name, dataset in config["datasets"].items()
        if dataset["source"] in sources and kind in (None, dataset_kind(name))
    ]


def dataset_has_brain_mask(name):
    """Whether ``data/{name}/brainmask.nii.gz`` exists in the canonical layout."""
    dataset = config["datasets"][name]
    if imports_local_files(dataset):
        return dataset["local"]["brain_mask"] is not None
    return dataset["source"] == "simulate"


def stimulus_shape(name):
    """The image grid of a stimulus dataset's features, or None if they are not pixels."""
    dataset = config["datasets"][name]
    if imports_local_files(dataset):
        shape = dataset["local"]["stimulus_shape"]
        return None if shape is None else list(shape)
    from fmriflow.fetch import MIYAWAKI_SHAPE

    # The simulator draws on Miyawaki's grid.
    return list(MIYAWAKI_SHAPE)


def dataset_has_networks(name):
    """Whether the dataset has planted network maps (simulated rest)."""
    return config["datasets"][name]["source"] == "simulate" and dataset_kind(name) == "rest"


def dataset_has_participants(name):
    """Whether ``data/{name}/participants.tsv`` exists in the canonical layout: simulated
    rest (the planted groups), a fetcher with a phenotypic table (ADHD), local.participants."""
    dataset = config["datasets"][name]
    if dataset["source"] == "simulate":
        return dataset_kind(name) == "rest"
    if dataset["source"] == "fetch":
        from fmriflow.fetch import FETCHED_PARTICIPANTS

        return dataset["fetch"]["fetcher"] in FETCHED_PARTICIPANTS
    return dataset["local"]["participants"] is not None


def datasets_with_participants(source):
    """Names of the datasets from ``source`` that have a participants table."""
    return [name for name in datasets_where(source) if dataset_has_participants(name)]


#: The optional canonical files of a subject, by the config key of a local
#: dataset that provides them.
LOCAL_FILES = {
    "roi": "roi.nii.gz",
    "anat": "anat.nii.gz",
    "confounds": "confounds.tsv",
    "stimuli": "stimuli.tsv",
}

#: The optional canonical files of a simulated subject, by kind.
SIMULATED_FILES = {
    "task": {"roi.nii.gz", "truth.nii.gz", "truth.json"},
    "rest": {"confounds.tsv", "truth.json"},
    "stimulus": {"roi.nii.gz", "stimuli.tsv", "truth.nii.gz", "truth.json"},
}


def subject_files(name, subject):
    """The optional canonical files of one subject (besides bold.nii.gz and events.tsv)."""
    dataset = config["datasets"][name]
    if dataset["source"] == "simulate":
        return SIMULATED_FILES[dataset_kind(name)]
    if dataset["source"] == "fetch":
        from fmriflow.fetch import subject_roles

        roles = subject_roles(dataset["fetch"]["fetcher"], subject)
        return {LOCAL_FILES[role] for role in roles}
    from fmriflow.local import subject_files as source_files

    roles = source_files(dataset["local"], subject)
    return {file for key, file in LOCAL_FILES.items() if key in roles}


def local_datasets_by_confounds(every_subject):
    """Local datasets where every subject has confound tables (``every_subject=True``:
    imported with the BOLD image, rule import_local_with_confounds), or the others
    (rules import_local and, for the subjects that have them, import_local_confounds)."""
    return [
        name
        for name in datasets_where("local")
        if every_subject
        == all("confounds.tsv" in subject_files(name, s) for s in dataset_subjects(name))
    ]


def has_file(wildcards, file):
    return file in subject_files(wildcards.dataset, wildcards.subject)


def names_pattern(names):
    """A regular expression matching exactly these names (of datasets or analyses)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def searchlights_with_permutations(with_permutations):
    """A wildcard constraint matching the searchlight analyses with (or without) permutations."""
    return names_pattern(
        [
            entry["name"]
            for entry in config["searchlight"]
            if bool(entry["permutations"]) == with_permutations
        ]
    )


# --- the jobs the config asks for -----------------------------------------------


def subject_jobs(datasets, file=None):
    """Wildcards of every subject of ``datasets`` (that has ``file``)."""
    return [
        {"dataset": name, "subject": subject}
        for name in datasets
        for subject in dataset_subjects(name)
        if file is None or file in subject_files(name, subject)
    ]


def analysis_jobs(section, permutations=None):
    """Wildcards of every subject of every entry of a per-subject section."""
    return [
        {"dataset": entry["dataset"], "subject": subject, "analysis": entry["name"]}
        for entry in config[section]
        if permutations is None or bool(entry["permutations"]) == permutations
        for subject in dataset_subjects(entry["dataset"])
    ]


def planned_by_run_time(entry):
    """Whether a searchlight entry's parts are chosen by a plan job (``chunk_minutes``)."""
    return entry["chunk_minutes"] is not None


def searchlight_part_jobs():
    """Wildcards of every part of every subject's searchlight map split into ``chunks``.

    The parts of a map split by run time are known once its plan job has run:
    the gathering job asks for them (``searchlight_parts``).
    """
    return [
        {"dataset": entry["dataset"], "subject": subject, "analysis": entry["name"]}
        | {"part": str(part)}
        for entry in config["searchlight"]
        if not planned_by_run_time(entry)
        for subject in dataset_subjects(entry["dataset"])
        for part in range(entry["chunks"])
    ]


def searchlight_plan_jobs():
    """Wildcards of the plan of every subject's searchlight map split by run time."""
    return [
        {"dataset": entry["dataset"], "subject": subject, "analysis": entry["name"]}
        for entry in config["searchlight"]
        if planned_by_run_time(entry)
        for subject in dataset_subjects(entry["dataset"])
    ]


def searchlight_parts(wildcards, output="scores"):
    """One output of every part of a subject's searchlight map, in part order.

    For a map split by run time, the number of parts is read from its plan
    (a checkpoint: Snakemake evaluates this again once the plan exists).
    """
    entry = searchlight_entry(wildcards)
    if planned_by_run_time(entry):
        from fmriflow.searchlight.parts import read_plan

        plan = checkpoints.searchlight_plan.get(**wildcards).output.plan
        n_parts = read_plan(plan)
    else:
        n_parts = entry["chunks"]
    pattern = getattr(rules.searchlight_part.output, output)
    return [apply_wildcards(pattern, {**wildcards, "part": str(part)}) for part in range(n_parts)]


def reduction_jobs():
    """Wildcards of every per-subject PCA that group ICA and clustering read."""
    sizes = {(entry["dataset"], n) for entry in config["ica"] for n in ica_reductions(entry)}
    sizes |= {
        (entry["dataset"], entry["n_features"])
        for entry in config["clustering"]
        if entry["subject_pca"]
    }
    return [
        job | {"n_components": str(n)}
        for dataset, n in sorted(sizes)
        for job in subject_jobs([dataset])
    ]


def clustering_jobs():
    return [
        {"dataset": entry["dataset"], "method": entry["method"], "n_clusters": str(n)}
        for entry in config["clustering"]
        for n in entry["n_clusters"]
    ]


def atlas_entries():
    """The standard atlases the connectome entries ask for: atlas id -> the settings of its
    download (those of the first entry that names it)."""
    from fmriflow.atlases import atlas_id, atlas_settings

    atlases = {}
    for entry in config["connectomes"]:
        if entry["regions"]["source"] == "atlas":
            atlases.setdefault(atlas_id(entry["regions"]), atlas_settings(entry["regions"]))
    return atlases


def atlas_jobs():
    """Wildcards of every atlas download (one per distinct atlas of the connectome entries)."""
    return [{"atlas": atlas} for atlas in sorted(atlas_entries())]


def atlas_files(settings):
    """The canonical files of the atlas a ``regions`` section (source atlas) names."""
    from fmriflow.atlases import atlas_id

    folder = f"data/atlases/{atlas_id(settings)}"
    return {"atlas_image": f"{folder}/atlas.nii.gz", "atlas_regions": f"{folder}/regions.tsv"}


def rule_jobs():
    """Every job the config asks for: rule name -> list of its wildcards."""
    simulated, fetched, local = (datasets_where(s) for s in ("simulate", "fetch", "local"))
    confounds_with_bold = local_datasets_by_confounds(every_subject=True)
    confounds_apart = local_datasets_by_confounds(every_subject=False)
    everyone = list(config["datasets"])
    return {
        "simulate_dataset": [{"dataset": d} for d in datasets_where("simulate", "task")],
        "simulate_rest_dataset": [{"dataset": d} for d in datasets_where("simulate", "rest")],
        "simulate_subject": subject_jobs(datasets_where("simulate", "task")),
        "simulate_rest_subject": subject_jobs(datasets_where("simulate", "rest")),
        "simulate_stimulus_dataset": [
            {"dataset": d} for d in datasets_where("simulate", "stimulus")
        ],
        "simulate_stimulus_subject": subject_jobs(datasets_where("simulate", "stimulus")),
        "download": [{"dataset": d} for d in fetched],
        "import_download": subject_jobs(fetched),
        "import_download_roi": subject_jobs(fetched, "roi.nii.gz"),
        "import_download_anat": subject_jobs(fetched, "anat.nii.gz"),
        "import_download_confounds": subject_jobs(fetched, "confounds.tsv"),
        "import_download_stimuli": subject_jobs(fetched, "stimuli.tsv"),
        "describe_local": [{"dataset": d} for d in local],
        "import_local": subject_jobs(confounds_apart),
        "import_local_with_confounds": subject_jobs(confounds_with_bold),
        "import_local_roi": subject_jobs(local, "roi.nii.gz"),
        "import_local_anat": subject_jobs(local, "anat.nii.gz"),
        "import_local_confounds": subject_jobs(confounds_apart, "confounds.tsv"),
        "import_local_stimuli": subject_jobs(local, "stimuli.tsv"),
        "import_local_brain_mask": [{"dataset": d} for d in local if dataset_has_brain_mask(d)],
        "import_download_participants": [
            {"dataset": d} for d in datasets_with_participants("fetch")
        ],
        "import_local_participants": [{"dataset": d} for d in datasets_with_participants("local")],
        "download_atlas": atlas_jobs(),
        "template_mask": [
            {"dataset": d}
            for d in everyone
            if config["datasets"][d]["preprocess"]["mask"] in TEMPLATE_MASKS
        ],
        "mask": subject_jobs(everyone),
        "clean": subject_jobs(everyone),
        "decode": analysis_jobs("decoding"),
        "decode_group": [
            {"dataset": entry["dataset"], "analysis": entry["name"]}
            for entry in config["decoding"]
        ],
        "searchlight_part": searchlight_part_jobs(),
        "searchlight_plan": searchlight_plan_jobs(),
        "searchlight_group": [
            {"dataset": entry["dataset"], "analysis": entry["name"]}
            for entry in config["searchlight"]
            if entry["group"] is not None
        ],
        "searchlight": analysis_jobs("searchlight", permutations=False),
        "searchlight_permutations": analysis_jobs("searchlight", permutations=True),
        "reduce_subject": reduction_jobs(),
        "group_ica": [{"dataset": e["dataset"], "name": e["name"]} for e in config["ica"]],
        "parcellate": clustering_jobs(),
        "encode": analysis_jobs("encoding"),
        "reconstruct": analysis_jobs("reconstruction"),
        "reconstruct_models": analysis_jobs("reconstruction"),
        **connectome_rule_jobs(),
    }


#: Rules whose jobs are not listed by rule_jobs: the target, and the table
#: that gathers the provenance of all the others.
GATHERING_RULES = ("all", "provenance_table")


def job_outputs(names=None):
    """Every output of every job the config asks for (of the named outputs only)."""
    jobs = rule_jobs()
    rules_without_jobs = {r.name for r in workflow.rules} - set(jobs) - set(GATHERING_RULES)
    if rules_without_jobs:
        raise WorkflowError(f"rules missing from rule_jobs(): {sorted(rules_without_jobs)}")
    outputs = []
    for each in workflow.rules:
        for wildcards in jobs.get(each.name, []):
            for name, pattern in each.output.items():
                if names is None or name in names:
                    outputs.append(apply_wildcards(str(pattern), wildcards))
    return outputs


def final_targets():
    """Every output of every job, and the provenance table.

    Snakemake looks for missing outputs only in the jobs of the targets: a
    deleted file is made again only if it is a target itself, even one that
    another job reads (a provenance sidecar, read by the provenance table;
    tests/test_reproducibility.py). Hence every output, not only the leaves.
    """
    return job_outputs() + ["results/provenance.tsv"]


def provenance_sidecars(wildcards):
    """The provenance sidecar of every job (the provenance table's inputs), with the
    parts of maps split by run time once their plans exist."""
    planned = [
        part
        for job in searchlight_plan_jobs()
        for part in searchlight_parts(Wildcards(fromdict=job), "provenance")
    ]
    return job_outputs(names={"provenance"}) + planned


# --- the entries of the config, from the wildcards ---------------------------------


def config_entry(section, wildcards, key="name"):
    """The entry of a decoding, searchlight or ica section named in the path."""
    name = getattr(wildcards, "analysis", None) or wildcards.name
    for entry in config[section]:
        if entry[key] == name and entry["dataset"] == wildcards.dataset:
            return entry
    raise WorkflowError(f"No {section} entry '{name}' for dataset '{wildcards.dataset}'.")


def decoding_entry(wildcards):
    return config_entry("decoding", wildcards)


def searchlight_entry(wildcards):
    return config_entry("searchlight", wildcards)


#: Voxels of a grid above which a decoding or searchlight job gets two threads.
TWO_THREAD_VOXELS = 20_000


def small_simulated_grid(dataset):
    """Whether a dataset is simulated task data on a grid of fewer than TWO_THREAD_VOXELS.

    Real images (fetched or the lab's own) count as large: a whole brain at
    3 mm has some 60,000 voxels in its mask.
    """
    settings = config["datasets"][dataset]
    if settings["source"] != "simulate" or settings["simulate"]["kind"] != "task":
        return False
    return math.prod(settings["simulate"]["task"]["shape"]) < TWO_THREAD_VOXELS


def decode_threads(wildcards):
    """Two threads for a decoding with permutations or a nested search on a large grid.

    A plain cross-validation fits one model per fold in well under a second:
    a second worker's start-up would cost more than it saves. Threads share
    the fits of a permutation test or a search at about 1.3 times the speed
    of one (measured on the default config's ROI and brain): where other
    jobs wait, as in the default run, the second core does more for them.
    """
    entry = decoding_entry(wildcards)
    if small_simulated_grid(entry["dataset"]):
        return 1
    return 2 if entry["permutations"] or entry["search"] else 1


def searchlight_threads(wildcards):
    """Two threads for a whole-brain searchlight part or one with permutations, else one.

    A searchlight centred on an ROI's few hundred voxels, or on the default
    config's small simulated grid, is seconds of work, less than starting a
    second worker process (an interpreter with scikit-learn) would take.
    """
    entry = searchlight_entry(wildcards)
    if small_simulated_grid(entry["dataset"]):
        return 1
    return 2 if entry["centres"] == "mask" or entry["permutations"] else 1


def ica_entry(wildcards):
    return config_entry("ica", wildcards)


def encoding_entry(wildcards):
    return config_entry("encoding", wildcards)


def reconstruction_entry(wildcards):
    return config_entry("reconstruction", wildcards)


def connectome_entry(wildcards):
    return config_entry("connectomes", wildcards)


def clustering_entry(wildcards):
    """The clustering entry that asks for this method and number of clusters."""
    for entry in config["clustering"]:
        if (
            entry["dataset"] == wildcards.dataset
            and entry["method"] == wildcards.method
            and int(wildcards.n_clusters) in entry["n_clusters"]
        ):
            return entry
    raise WorkflowError(
        f"No clustering entry asks for {wildcards.method} with {wildcards.n_clusters} "
        f"clusters of dataset '{wildcards.dataset}'."
    )


def ica_reductions(entry):
    """Components of the per-subject PCAs an ICA entry reads (none for concatenation)."""
    from fmriflow.decomposition import subject_components

    if entry["method"] == "concat":
        return []
    return [subject_components(entry["n_components"], entry["n_subject_components"])]


# --- input functions ----------------------------------------------------------------

SUBJECT_DATA = "data/{dataset}/sub-{subject}"
SUBJECT_RESULTS = "results/{dataset}/sub-{subject}"


def subject_path(wildcards, file, folder=SUBJECT_DATA):
    return f"{folder}/{file}".format(dataset=wildcards.dataset, subject=wildcards.subject)


def mask_inputs(wildcards):
    """The BOLD image, the subject ROI (used, or checked against the BOLD grid and the
    mask) and the brain mask when the preprocessing uses it."""
    preprocess = config["datasets"][wildcards.dataset]["preprocess"]
    files = {
        "bold": subject_path(wildcards, "bold.nii.gz"),
        "description": f"data/{wildcards.dataset}/dataset.json",
    }
    if has_file(wildcards, "roi.nii.gz"):
        files["roi"] = subject_path(wildcards, "roi.nii.gz")
    if preprocess["mask"] == "dataset":
        files["brain_mask"] = f"data/{wildcards.dataset}/brainmask.nii.gz"
    if preprocess["mask"] in TEMPLATE_MASKS:
        files["template"] = f"results/{wildcards.dataset}/template_mask.nii.gz"
    return files


TEMPLATE_MASKS = ("mni_brain", "mni_gm")


def template_mask_inputs(wildcards):
    """The grid the dataset's template mask is put on: its first subject's BOLD image."""
    first = dataset_subjects(wildcards.dataset)[0]
    return {
        "bold": f"{SUBJECT_DATA}/bold.nii.gz".format(dataset=wildcards.dataset, subject=first),
        "description": f"data/{wildcards.dataset}/dataset.json",
    }


def clean_inputs(wildcards):
    """The masked matrix, the runs, and the confounds when the cleaning regresses them."""
    preprocess = config["datasets"][wildcards.dataset]["preprocess"]
    files = {
        "matrix": subject_path(wildcards, "masked.npy", SUBJECT_RESULTS),
        "events": subject_path(wildcards, "events.tsv"),
        "description": f"data/{wildcards.dataset}/dataset.json",
    }
    if preprocess["clean"]["confounds"] and has_file(wildcards, "confounds.tsv"):
        files["confounds_table"] = subject_path(wildcards, "confounds.tsv")
    return files


def analysis_inputs(wildcards, uses_roi):
    """A subject's cleaned data for a decoding or searchlight analysis, and its figure's background."""
    files = {
        "clean": subject_path(wildcards, "clean.npy", SUBJECT_RESULTS),
        "mask": subject_path(wildcards, "mask.nii.gz", SUBJECT_RESULTS),
        "events": subject_path(wildcards, "events.tsv"),
    }
    if uses_roi:
        files["roi"] = subject_path(wildcards, "roi.nii.gz")
    if has_file(wildcards, "anat.nii.gz"):
        files["background"] = subject_path(wildcards, "anat.nii.gz")
    else:
        files["background"] = subject_path(wildcards, "mean.nii.gz", SUBJECT_RESULTS)
    return files


def decode_inputs(wildcards):
    return analysis_inputs(wildcards, decoding_entry(wildcards)["voxels"] == "roi")


def searchlight_plan_inputs(wildcards):
    """A subject's data for a searchlight map's plan or parts (no figure background)."""
    files = analysis_inputs(wildcards, searchlight_entry(wildcards)["centres"] == "roi")
    del files["background"]
    return files


def searchlight_part_inputs(wildcards):
    """A subject's data for one part of a searchlight map, and the plan that chose the
    parts of a map split by run time."""
    files = searchlight_plan_inputs(wildcards)
    if planned_by_run_time(searchlight_entry(wildcards)):
        files["plan"] = rules.searchlight_plan.output.plan.format(**wildcards)
    return files


def searchlight_group_inputs(wildcards):
    """Every subject's searchlight maps, null maps, summary, mask (and ROI) and background."""
    entry = searchlight_entry(wildcards)
    subjects = dataset_subjects(wildcards.dataset)
    files = {"accuracy": [], "null": [], "summaries": [], "masks": [], "backgrounds": []}
    if entry["centres"] == "roi":
        files["rois"] = []
    for subject in subjects:
        each = SimpleNamespace(dataset=wildcards.dataset, subject=subject)
        folder = f"results/{wildcards.dataset}/sub-{subject}/searchlight/{wildcards.analysis}"
        files["accuracy"].append(f"{folder}/accuracy.nii.gz")
        files["null"].append(f"{folder}/null.nii.gz")
        files["summaries"].append(f"{folder}/summary.json")
        files["masks"].append(subject_path(each, "mask.nii.gz", SUBJECT_RESULTS))
        if "rois" in files:
            files["rois"].append(subject_path(each, "roi.nii.gz"))
        background = analysis_inputs(each, False)["background"]
        files["backgrounds"].append(background)
    return files


def searchlight_inputs(wildcards):
    """Every part of a subject's searchlight map, in order, its data and background, and
    the plan of a map split by run time."""
    entry = searchlight_entry(wildcards)
    files = analysis_inputs(wildcards, entry["centres"] == "roi")
    if planned_by_run_time(entry):
        files["plan"] = rules.searchlight_plan.output.plan.format(**wildcards)
    return files | {"parts": searchlight_parts(wildcards)}


def stimulus_inputs(wildcards, uses_roi):
    """A subject's cleaned data and stimulus table for an encoding or reconstruction
    analysis, the dataset description (the stimulus grid), a figure background and,
    for simulated data, the planted receptive fields."""
    files = analysis_inputs(wildcards, uses_roi) | {
        "stimuli": subject_path(wildcards, "stimuli.tsv"),
        "description": f"data/{wildcards.dataset}/dataset.json",
    }
    if config["datasets"][wildcards.dataset]["source"] == "simulate":
        files["truth"] = subject_path(wildcards, "truth.nii.gz")
    return files


def encode_inputs(wildcards):
    return stimulus_inputs(wildcards, encoding_entry(wildcards)["voxels"] == "roi")


def reconstruct_inputs(wildcards):
    files = stimulus_inputs(wildcards, reconstruction_entry(wildcards)["voxels"] == "roi")
    files.pop("truth", None)
    files.pop("background")
    return files


def decoding_summaries(wildcards):
    """Every subject's summary of one decoding analysis."""
    return [
        f"results/{wildcards.dataset}/sub-{subject}/decoding/{wildcards.analysis}/summary.json"
        for subject in dataset_subjects(wildcards.dataset)
    ]


def group_inputs(wildcards, n_components):
    """Per-subject files of a group analysis: PCAs (or cleaned data), masks, a background."""
    subjects = dataset_subjects(wildcards.dataset)
    folder = f"results/{wildcards.dataset}/sub-{{subject}}"
    data = f"{folder}/pca_{n_components}.npy" if n_components else f"{folder}/clean.npy"
    files = {
        "data": [data.format(subject=s) for s in subjects],
        "clean": [f"{folder}/clean.npy".format(subject=s) for s in subjects],
        "masks": [f"{folder}/mask.nii.gz".format(subject=s) for s in subjects],
        "mean": f"{folder}/mean.nii.gz".format(subject=subjects[0]),
        "description": f"data/{wildcards.dataset}/dataset.json",
    }
    return files


def ica_inputs(wildcards):
    """Group inputs of an ICA entry, and the planted networks when the data have them."""
    reductions = ica_reductions(ica_entry(wildcards))
    files = group_inputs(wildcards, reductions[0] if reductions else None)
    if dataset_has_networks(wildcards.dataset):
        files["networks"] = f"data/{wildcards.dataset}/networks.nii.gz"
    return files


def clustering_inputs(wildcards):
    """The subjects' PCAs of a clustering entry (or their clean.npy without subject_pca)."""
    entry = clustering_entry(wildcards)
    return group_inputs(wildcards, entry["n_features"] if entry["subject_pca"] else None)


# --- connectomes ---------------------------------------------------------------------

CONNECTOME_RESULTS = "results/{dataset}/group/connectomes/{analysis}"


def connectome_option(entry, option):
    """Whether a connectome entry asks for ``sparse`` models, a ``compare`` or a ``predict``."""
    return bool(entry[option])


def connectomes_where(option, value):
    """A wildcard constraint matching the connectome analyses with (or without) an option."""
    return names_pattern(
        [e["name"] for e in config["connectomes"] if connectome_option(e, option) == value]
    )


def connectome_rule_jobs():
    """The jobs of the connectome stage, by rule."""
    entries = config["connectomes"]

    def group(option=None):
        return [
            {"dataset": e["dataset"], "analysis": e["name"]}
            for e in entries
            if option is None or connectome_option(e, option)
        ]

    def subjects(sparse):
        return [
            job | {"analysis": e["name"]}
            for e in entries
            if e["sparse"] == sparse
            for job in subject_jobs([e["dataset"]])
        ]

    return {
        "connectome_regions": group(),
        "connectome_subject": subjects(False),
        "connectome_subject_sparse": subjects(True),
        "connectome_group": group(),
        "connectome_compare": group("compare"),
        "connectome_sparse": group("sparse"),
        "connectome_predict": [
            {"dataset": e["dataset"], "analysis": e["name"], "target": target}
            for e in entries
            if e["predict"]
            for target in e["predict"]["targets"]
        ],
    }


def participant_columns(name):
    """The phenotype columns of a dataset's participants table, where known before any
    job runs (simulated groups; a local file's header), else None (a fetched table)."""
    dataset = config["datasets"][name]
    if dataset["source"] == "simulate":
        from fmriflow.simulate import PARTICIPANT_COLUMNS

        return list(PARTICIPANT_COLUMNS)
    if imports_local_files(dataset):
        from fmriflow.io import read_table

        table = read_table(dataset["local"]["participants"], "participants table")
        return [str(c) for c in table.columns if c != "participant_id"]
    return None


def connectome_subjects(wildcards):
    """The subjects of a connectome analysis, in the order of its per-subject inputs."""
    return dataset_subjects(wildcards.dataset)


def connectome_regions_inputs(wildcards):
    """The subjects' masks and the source of the regions: ICA maps, parcels or an atlas."""
    entry = connectome_entry(wildcards)
    settings = entry["regions"]
    group_folder = f"results/{wildcards.dataset}/group"
    files = {
        "masks": [
            f"results/{wildcards.dataset}/sub-{s}/mask.nii.gz"
            for s in dataset_subjects(wildcards.dataset)
        ],
        "description": f"data/{wildcards.dataset}/dataset.json",
    }
    if settings["source"] == "ica":
        files["components"] = f"{group_folder}/ica/{settings['ica']}/components.nii.gz"
    elif settings["source"] == "clustering":
        parcellation = f"{settings['method']}_{settings['n_clusters']}"
        files["labels"] = f"{group_folder}/clustering/{parcellation}/labels.nii.gz"
    else:
        files |= atlas_files(settings)
    if dataset_has_networks(wildcards.dataset):
        files["networks"] = f"data/{wildcards.dataset}/networks.nii.gz"
    return files


def connectome_subject_files(wildcards, *names):
    """Every subject's per-subject connectome files of an analysis, by name."""
    folder = "results/{dataset}/sub-{subject}/connectomes/{analysis}"
    return {
        name: [
            f"{folder}/{name}.tsv".format(
                dataset=wildcards.dataset, subject=s, analysis=wildcards.analysis
            )
            for s in dataset_subjects(wildcards.dataset)
        ]
        for name in names
    }


def connectome_group_file(wildcards, file):
    return f"{CONNECTOME_RESULTS}/{file}".format(
        dataset=wildcards.dataset, analysis=wildcards.analysis
    )


def connectome_subject_inputs(wildcards):
    return {
        "clean": subject_path(wildcards, "clean.npy", SUBJECT_RESULTS),
        "mask": subject_path(wildcards, "mask.nii.gz", SUBJECT_RESULTS),
        "regions": connectome_group_file(wildcards, "regions.nii.gz"),
        "table": connectome_group_file(wildcards, "regions.tsv"),
    }


def connectome_group_inputs(wildcards):
    files = connectome_subject_files(wildcards, "covariance", "correlation", "partial_correlation")
    return files | {"table": connectome_group_file(wildcards, "regions.tsv")}


def connectome_compare_inputs(wildcards):
    files = connectome_subject_files(wildcards, "correlation", "partial_correlation")
    return files | {
        "tangent": connectome_group_file(wildcards, "tangent.npy"),
        "table": connectome_group_file(wildcards, "regions.tsv"),
        "participants": f"data/{wildcards.dataset}/participants.tsv",
    }


def connectome_sparse_inputs(wildcards):
    files = connectome_subject_files(wildcards, "signals", "graphical_lasso")
    return files | {"table": connectome_group_file(wildcards, "regions.tsv")}


def connectome_predict_inputs(wildcards):
    files = connectome_subject_files(wildcards, "covariance", "correlation", "partial_correlation")
    return files | {
        "table": connectome_group_file(wildcards, "regions.tsv"),
        "participants": f"data/{wildcards.dataset}/participants.tsv",
    }


def local_sources(*keys):
    """An input function: a local subject's source files (``source_<key>``) from the templates."""

    def get(wildcards):
        from fmriflow.local import subject_files as template_files

        settings = config["datasets"][wildcards.dataset]["local"]
        files = template_files(settings, wildcards.subject)
        return {f"source_{key}": files[key] for key in keys if key in files}

    get.__name__ = "local_" + "_".join(keys)
    return get


def local_brain_mask_source(wildcards):
    """The brain mask a local dataset's config names."""
    return config["datasets"][wildcards.dataset]["local"]["brain_mask"]


def local_participants_source(wildcards):
    """The participants table a local dataset's config names."""
    return config["datasets"][wildcards.dataset]["local"]["participants"]


# --- parameters handed to nodes: plain values from the config, never lambdas ----------


def dataset_section(section):
    """A params function giving one section (simulate, fetch, local, preprocess) of the dataset."""

    def get(wildcards):
        return config["datasets"][wildcards.dataset][section]

    get.__name__ = f"{section}_settings"
    return get


def atlas_download_settings(wildcards):
    """The settings of an atlas download (see atlas_entries)."""
    return atlas_entries()[wildcards.atlas]


def dataset_subject_list(wildcards):
    """The subject labels of the dataset, in order."""
    return dataset_subjects(wildcards.dataset)


def local_setting(key):
    """A params function giving one setting of a local dataset."""

    def get(wildcards):
        return config["datasets"][wildcards.dataset]["local"][key]

    get.__name__ = f"local_{key}"
    return get


def dataset_source(wildcards):
    """The dataset's source (simulate, fetch, local or bids)."""
    return config["datasets"][wildcards.dataset]["source"]


def bids_query(wildcards):
    """A bids dataset's query (its bids section), else None."""
    dataset = config["datasets"][wildcards.dataset]
    return dataset["bids"] if dataset["source"] == "bids" else None


def local_subject_runs(wildcards):
    """A local subject's run labels (its own when the files are listed per subject)."""
    from fmriflow.local import subject_runs

    return subject_runs(config["datasets"][wildcards.dataset]["local"], wildcards.subject)


def preprocess_setting(*keys):
    """A params function giving one preprocessing setting of the dataset."""

    def get(wildcards):
        value = config["datasets"][wildcards.dataset]["preprocess"]
        for key in keys:
            value = value[key]
        return value

    get.__name__ = "_".join(keys)
    return get


# --- resources ----------------------------------------------------------------------

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
    atlas=r"[A-Za-z0-9_]+",
    target=r"[A-Za-z0-9_]+",
