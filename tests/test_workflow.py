"""The whole workflow on a tiny simulated config, and config validation.

The run is done once per test session (the ``tiny_run`` fixture); which
files it writes is checked in ``tests/test_outputs.py``.
"""

import re
from collections import Counter

import numpy as np
import pytest
import yaml

from fmriflow import simulate
from fmriflow.decomposition import subject_components
from fmriflow.schema import validate

from conftest import DEFAULT_CONFIG, REPO, TINY_CONFIG, run_snakemake

pytestmark = pytest.mark.workflow


def test_second_invocation_has_nothing_to_do(tiny_run):
    result = run_snakemake(tiny_run, "--cores", "2", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_every_job_has_a_log_and_a_benchmark(tiny_run):
    logs = {p.relative_to(tiny_run / "logs") for p in (tiny_run / "logs").rglob("*.log")}
    benchmarks = {
        p.relative_to(tiny_run / "logs" / "benchmark").with_suffix(".log")
        for p in (tiny_run / "logs" / "benchmark").rglob("*.tsv")
    }
    assert logs and logs == benchmarks


def test_cleaned_matrices_follow_the_masks(tiny_run):
    import nibabel as nib

    config = yaml.safe_load(TINY_CONFIG.read_text())
    n_runs = config["datasets"]["simtask"]["simulate"]["task"]["n_runs"]
    for subject in ("01", "02"):
        folder = tiny_run / "results" / "simtask" / f"sub-{subject}"
        mask = nib.load(folder / "mask.nii.gz").get_fdata() > 0
        brain = nib.load(tiny_run / "data" / "simtask" / "brainmask.nii.gz").get_fdata() > 0
        roi = nib.load(tiny_run / "data" / "simtask" / f"sub-{subject}" / "roi.nii.gz")
        np.testing.assert_array_equal(mask, brain | (roi.get_fdata() > 0))
        cleaned = np.load(folder / "clean.npy")
        assert cleaned.dtype == np.float32 and cleaned.shape[1] == mask.sum()
        runs = np.array_split(np.arange(cleaned.shape[0]), n_runs)
        for rows in runs:
            np.testing.assert_allclose(cleaned[rows].mean(0), 0, atol=1e-4)


def test_simulated_data_are_those_of_the_library(tiny_run):
    """The simulate rules write exactly what the library generates for that seed."""
    import nibabel as nib

    settings = yaml.safe_load(TINY_CONFIG.read_text())["datasets"]["simtask"]["simulate"]
    task = settings["task"]
    expected = simulate.simulate_task_subject(
        1,
        settings["seed"],
        tuple(task["shape"]),
        task["n_runs"],
        2.5,
        tuple(settings["snr"]),
        block_volumes=task["block_volumes"],
        rest_volumes=task["rest_volumes"],
    )
    bold = nib.load(tiny_run / "data" / "simtask" / "sub-02" / "bold.nii.gz")
    np.testing.assert_array_equal(np.asarray(bold.dataobj), expected.bold)
    assert bold.header.get_zooms()[3] == 2.5


def write_config(tmp_path, mutate):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    mutate(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


#: Config errors the schema catches: types, unknown and renamed keys, conditions.
SCHEMA_ERRORS = [
    (
        lambda c: c["datasets"]["simtask"].update(colour="blue"),
        ["datasets.simtask", "'colour' was unexpected"],
    ),
    (
        lambda c: c["datasets"]["simtask"]["simulate"].update(n_subjects="three"),
        ["datasets.simtask.simulate.n_subjects", "'three' is not of type 'integer'"],
    ),
    (
        lambda c: c["datasets"]["simtask"].update(source="ftp"),
        ["datasets.simtask.source", "'ftp' is not one of"],
    ),
    (
        lambda c: c["datasets"].update(lab={"source": "bids", "bids": {"task": "objects"}}),
        ["datasets.lab.bids.root", "the BIDS root folder", "is required"],
    ),
    (
        lambda c: c["datasets"].update(lab={"source": "bids", "bids": {"root": "/study"}}),
        ["datasets.lab.bids.task", "the task label is required"],
    ),
    (
        lambda c: c["datasets"].update(lab={"source": "local", "local": {"subjects": ["01"]}}),
        ["datasets.lab.local.bold", "template of the BOLD images", "listed in files"],
    ),
    (
        lambda c: c["datasets"].update(
            lab={"source": "local", "local": {"subjects": ["01"], "files": {"01": {}}}}
        ),
        ["datasets.lab.local.files.01", "'bold' is a required property"],
    ),
    (
        lambda c: c["datasets"]["simrest"]["preprocess"]["clean"].update(low_pass="fast"),
        ["datasets.simrest.preprocess.clean.low_pass", "'fast' is not of type"],
    ),
    # Renamed keys and values: one message naming the new name.
    (
        lambda c: c["decoding"][0].update(mask="roi"),
        ["decoding[0].mask", "'mask' was renamed to 'voxels'"],
    ),
    (
        lambda c: c["searchlight"][0].update(centres="brain"),
        ["searchlight[0].centres", "formerly called brain"],
    ),
    (
        lambda c: c["datasets"].update(
            lab={"source": "local", "local": {"subjects": ["01"], "bold": "b.nii", "mask": "m"}}
        ),
        ["datasets.lab.local.mask", "'mask' was renamed to 'roi'"],
    ),
    # Conditions the schema states once.
    (
        lambda c: c["decoding"][0].update(cv={"scheme": "kfold_volumes"}),
        ["decoding[0].cv.allow_leaky", "kfold_volumes splits neighbouring"],
    ),
    (
        lambda c: c["decoding"][1].update(
            feature_selection={"method": "percentile", "value": 150}
        ),
        ["decoding[1].feature_selection.value", "a percentile must be at most 100"],
    ),
    (
        lambda c: c["encoding"][0].update(cv={"scheme": "kfold_volumes"}),
        ["encoding[0].cv.allow_leaky", "kfold_volumes splits neighbouring"],
    ),
    (
        lambda c: c["reconstruction"][0].update(scales=[[1, 4]]),
        ["reconstruction[0].scales", "4 is greater than the maximum"],
    ),
    (
        lambda c: c["searchlight"][2].update(permutations=10),
        ["searchlight[2].permutations", "exact fast paths only"],
    ),
    (
        lambda c: c["datasets"].update(lab={"source": "local", "local": {"bold": "b.nii"}}),
        ["datasets.lab.local", "subjects"],
    ),
    (
        lambda c: c["ica"][0].update(group_pca="incremental"),
        ["ica[0].group_pca", "'incremental' is not one of ['auto', 'migp']"],
    ),
]

#: Config errors across entries, or about the data, that the workflow catches at parse time.
WORKFLOW_ERRORS = [
    (
        lambda c: c["searchlight"][1].update(permutations=0),
        ["searchlight[1].group", "every subject's permutation maps", "group: null"],
    ),
    (
        lambda c: c["datasets"].update(
            haxby={"source": "fetch", "fetch": {"fetcher": "haxby", "subjects": [7]}}
        ),
        ["haxby", "unknown subject(s) ['7']", "fetch.subjects"],
    ),
    (
        lambda c: c["decoding"][1].update(name="face_vs_house"),
        ["decoding", "['face_vs_house'] used more than once"],
    ),
    (
        lambda c: c["decoding"][0].update(dataset="simrest"),
        ["decoding[0].dataset", "'simrest' is rest data", "no labels to decode"],
    ),
    (
        lambda c: c["encoding"][0].update(dataset="simtask"),
        ["encoding[0].dataset", "'simtask' is task data", "no stimulus table", "simvision"],
    ),
    (
        lambda c: c["reconstruction"][0].update(classifier="gnb"),
        ["reconstruction[0].classifier", "gnb has no C", "logreg_l1"],
    ),
    (
        lambda c: c["searchlight"].append(
            {"name": "x", "dataset": "nowhere", "labels": ["face", "house"]}
        ),
        ["searchlight[3].dataset", "unknown dataset 'nowhere'"],
    ),
    (
        lambda c: c["datasets"]["simrest"]["preprocess"].update(mask="roi"),
        ["datasets.simrest.preprocess.mask", "a subject ROI", "'simrest' does not have"],
    ),
    (
        lambda c: c["datasets"]["simtask"]["preprocess"].update(clean={"confounds": ["csf"]}),
        ["datasets.simtask.preprocess.clean.confounds", "confounds"],
    ),
    (
        lambda c: c["connectomes"][0].update(dataset="simtask"),
        ["connectomes[0].dataset", "'simtask' is task data", "resting-state"],
    ),
    (
        lambda c: c["connectomes"][0]["regions"].update(ica="nope"),
        ["connectomes[0].regions.ica", "no ica entry 'nope'", "['canica']"],
    ),
    (
        lambda c: c["connectomes"][1]["regions"].update(n_clusters=7),
        ["connectomes[1].regions", "computes ward with 7 clusters", "ward 10"],
    ),
    (
        lambda c: c["connectomes"][0]["compare"].update(column="age"),
        ["connectomes[0]", "column(s) ['age'] not in dataset 'simrest'", "'group'"],
    ),
    # What the data's known facts contradict, before any preprocessing job.
    (
        lambda c: c["datasets"]["simtask"]["preprocess"].update(clean={"high_pass": 0.3}),
        ["datasets.simtask.preprocess.clean", "TR 2.5 s", "0.3 Hz is outside (0, 0.2)"],
    ),
    (
        lambda c: c["datasets"]["simtask"]["preprocess"].update(mask="mni_gm"),
        ["datasets.simtask.preprocess.mask", "template mask in MNI space", "'native' space"],
    ),
    (
        lambda c: c["searchlight"][0].update(radius=2.0),
        ["searchlight[0].radius", "smaller than the voxel size"],
    ),
    (
        lambda c: c["decoding"][0].update(labels=["face", "dog"]),
        ["decoding[0].labels", "label(s) ['dog'] are not in the events", "'face'"],
    ),
    (
        lambda c: c["ica"][0].update(group_pca="migp", migp_rows=2),
        ["ica[0].migp_rows", "keep 2 rows, fewer than the 3 group components", "at least"],
    ),
    (
        lambda c: c["ica"][0].update(migp_rows=12),
        ["ica[0].migp_rows", "the group PCA is 'auto'", "group_pca: migp"],
    ),
    (
        lambda c: c["searchlight"][0].update(chunk_minutes=10),
        ["searchlight[0]", "chunks: 3 and chunk_minutes: 10 both split the map", "Give one"],
    ),
]


def test_the_schema_read_by_libyaml_is_the_schema_read_by_pyyaml():
    from fmriflow.schema import SCHEMA_PATH, load_schema

    assert load_schema() == yaml.safe_load(SCHEMA_PATH.read_text())


@pytest.mark.parametrize(("mutate", "fragments"), SCHEMA_ERRORS)
def test_the_schema_names_the_faulty_key(mutate, fragments):
    """The validation the workflow runs first (fmriflow.schema), here in-process."""
    from fmriflow.errors import InputError
    from fmriflow.schema import validate

    config = yaml.safe_load(TINY_CONFIG.read_text())
    mutate(config)
    with pytest.raises(InputError) as info:
        validate(config)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("mutate", "fragments"), SCHEMA_ERRORS[:1] + SCHEMA_ERRORS[8:9] + WORKFLOW_ERRORS
)
def test_invalid_config_fails_before_any_job(tmp_path, mutate, fragments):
    config = write_config(tmp_path, mutate)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_snakemake(workdir, "--cores", "1", configfile=config)
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not (workdir / "data").exists() and not (workdir / "results").exists()


def test_too_few_permutations_are_a_warning_before_any_job(tmp_path):
    def mutate(config):
        config["searchlight"][0].update(permutations=5)
        config["decoding"][0].update(permutations=10)

    config = write_config(tmp_path, mutate)
    result = run_snakemake(tmp_path, "--dry-run", configfile=config)
    assert result.returncode == 0, result.stderr[-2000:]
    name = yaml.safe_load(config.read_text())["searchlight"][0]["name"]
    assert (
        f"fmriflow warning: searchlight[0] ({name}): with 5 permutations no p-value can be "
        "below 0.167, so nothing can reach 0.05; ask for at least 19"
    ) in result.stderr
    assert "decoding[0] (face_vs_house): with 10 permutations" in result.stderr


@pytest.mark.parametrize(
    ("name", "present", "absent"),
    [
        ("config.yaml", "simulate_subject", "download"),
        ("haxby.yaml", "import_download", "simulate_subject"),
        ("rest.yaml", "import_download", "simulate_subject"),
        ("miyawaki.yaml", "import_download_stimuli", "simulate_subject"),
    ],
)
def test_shipped_configs_plan_only_their_own_datasets(tmp_path, name, present, absent):
    """A --configfile replaces the default config; it is not merged with it."""
    result = run_snakemake(tmp_path, "--dry-run", configfile=REPO / "config" / name)
    assert result.returncode == 0, (name, result.stderr[-2000:])
    assert present in result.stdout and absent not in result.stdout


def planned_jobs(workdir, n_subjects):
    """Jobs by rule of a dry-run of config/config.yaml with simtask and simrest at
    ``n_subjects`` each."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for name in ("simtask", "simrest"):
        config["datasets"][name]["simulate"]["n_subjects"] = n_subjects
    path = workdir / f"config_{n_subjects}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake(
        workdir / str(n_subjects), "--dry-run", "--quiet", "rules", configfile=path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stats = result.stdout.split("Job stats:")[1].split("total")[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, flags=re.M)}


def jobs_per_subject(config):
    """Jobs each subject added to simtask and simrest brings, by rule, from the config."""
    task = {"simulate_subject": 1, "mask": 1, "clean": 1}
    rest = {"simulate_rest_subject": 1, "mask": 1, "clean": 1}
    of = {
        section: [e for e in config[section] if e["dataset"] == dataset]
        for section, dataset in [
            *[(section, "simtask") for section in ("decoding", "searchlight")],
            *[(section, "simrest") for section in ("ica", "clustering", "connectomes")],
        ]
    }
    task["decode"] = len(of["decoding"])
    task["searchlight_part"] = sum(entry["chunks"] for entry in of["searchlight"])
    task["searchlight_permutations"] = sum(bool(e["permutations"]) for e in of["searchlight"])
    task["searchlight"] = len(of["searchlight"]) - task["searchlight_permutations"]
    # One PCA per subject and size: the sizes group ICA and clustering read.
    sizes = {
        subject_components(e["n_components"], e["n_subject_components"])
        for e in of["ica"]
        if e["method"] != "concat"
    }
    rest["reduce_subject"] = len(sizes | {e["n_features"] for e in of["clustering"]})
    rest["connectome_subject"] = sum(not e["sparse"] for e in of["connectomes"])
    rest["connectome_subject_sparse"] = sum(bool(e["sparse"]) for e in of["connectomes"])
    return Counter(task) + Counter(rest)


def test_a_larger_cohort_adds_its_subjects_jobs_and_nothing_else(tmp_path):
    """The plan of 2 and of 7 subjects per dataset: every rule's job count grows by what
    the config asks of each subject, group rules not at all (a guard for the planning
    code, which a large cohort makes worth optimising: benchmarks/bench_dag.py)."""
    per_subject = jobs_per_subject(validate(yaml.safe_load(DEFAULT_CONFIG.read_text())))
    small, large = planned_jobs(tmp_path, 2), planned_jobs(tmp_path, 7)
    assert set(small) == set(large)
    assert {rule: large[rule] - small[rule] for rule in large} == {
        rule: 5 * per_subject.get(rule, 0) for rule in large
    }


def test_lint_is_clean():
    result = run_snakemake(REPO, "--lint", configfile=REPO / "config" / "config.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_failed_job_leaves_no_output(tmp_path):
    """Bad input in the middle of the DAG: one message, no half-written file."""
    workdir = tmp_path / "work"
    result = run_snakemake(workdir, "--cores", "1", "data/simtask/sub-01/events.tsv")
    assert result.returncode == 0, result.stderr
    events = workdir / "data" / "simtask" / "sub-01" / "events.tsv"
    lines = events.read_text().splitlines()
    events.write_text("\n".join(lines[:-3]) + "\n")
    result = run_snakemake(workdir, "--cores", "1", "results/simtask/sub-01/clean.npy")
    assert result.returncode != 0
    assert f"{len(lines) - 4} rows but the BOLD image has {len(lines) - 1} volumes" in (
        result.stderr
    )
    assert not (workdir / "results" / "simtask" / "sub-01" / "clean.npy").exists()
    leftovers = [p for p in (workdir / "results").rglob(".tmp-*")]
    assert leftovers == []


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    marker = "<!-- test-command -->"
    assert marker in readme, "README must mark its test command"
    block = readme.split(marker, 1)[1].split("```", 2)[1]
    command = [line for line in block.splitlines()[1:] if line.strip()][0].strip()
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert command in ci_lines, (command, ci_lines)
    assert ci_lines.index(command) == max(i for i, line in enumerate(ci_lines) if line), (
        "the README's test command must be the last thing CI runs"
    )


def test_decoding_results_equal_scikit_learn_on_the_cached_data(tiny_run):
    """Per-subject fold accuracies are those of cross_val_score on clean.npy."""
    import json

    import nibabel as nib
    import pandas as pd
    from scipy import stats
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
    from sklearn.svm import SVC

    accuracies, chances = [], []
    for subject in ("01", "02"):
        results = tiny_run / "results" / "simtask" / f"sub-{subject}"
        data = tiny_run / "data" / "simtask" / f"sub-{subject}"
        mask = nib.load(results / "mask.nii.gz").get_fdata() > 0
        roi = nib.load(data / "roi.nii.gz").get_fdata() > 0
        events = pd.read_csv(data / "events.tsv", sep="\t")
        rows = events["label"].isin(["face", "house"]).to_numpy()
        X = np.load(results / "clean.npy")[rows][:, roi[mask]]
        y, runs = events["label"].to_numpy()[rows], events["run"].to_numpy()[rows]
        reference = cross_val_score(SVC(kernel="linear"), X, y, groups=runs, cv=LeaveOneGroupOut())

        folder = results / "decoding" / "face_vs_house"
        folds = pd.read_csv(folder / "folds.tsv", sep="\t")
        np.testing.assert_array_equal(folds["accuracy"].to_numpy(), reference)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["accuracy_mean"] == pytest.approx(reference.mean())
        assert summary["chance"] == 0.5 and summary["n_voxels"] == roi.sum()
        assert summary["permutation"]["n_permutations"] == 20
        # 4 runs, one face and one house block each: blocks exchange labels.
        assert summary["permutation"]["permute"] == "block"
        null = np.asarray(summary["permutation"]["null"])
        assert summary["permutation"]["p_value_floor"] == 1 / 21
        assert summary["permutation"]["p_value_at_floor"] == bool(
            np.sum(null >= summary["permutation"]["score"]) == 0
        )
        assert summary["permutation"]["n_units"] == 8
        assert summary["permutation"]["distinct_labellings"] == "16"
        weights = nib.load(folder / "weights.nii.gz").get_fdata()
        assert weights.shape == mask.shape and not weights[~roi].any() and weights[roi].any()
        accuracies.append(reference.mean())
        chances.append(summary["chance"])

        multiclass = results / "decoding" / "all_brain"
        assert nib.load(multiclass / "weights.nii.gz").shape == mask.shape + (8,)
        confusion = pd.read_csv(multiclass / "confusion.tsv", sep="\t", index_col=0)
        assert confusion.to_numpy().sum() == (events["label"] != "rest").sum()

    group = tiny_run / "results" / "simtask" / "group" / "decoding" / "face_vs_house"
    table = pd.read_csv(group / "subjects.tsv", sep="\t", dtype={"subject": str})
    np.testing.assert_allclose(table["accuracy"], accuracies)
    summary = json.loads((group / "summary.json").read_text())
    reference = stats.ttest_1samp(np.subtract(accuracies, chances), 0, alternative="greater")
    assert summary["t"] == pytest.approx(reference.statistic)
    assert summary["p_value"] == pytest.approx(reference.pvalue)
    # Prevalence of the ROI accuracy: the minimum statistic's p-value against every
    # combination of one map per subject (observed or permuted), enumerated.
    maps = []
    for subject, accuracy in zip(("01", "02"), accuracies, strict=True):
        folder = tiny_run / "results" / "simtask" / f"sub-{subject}" / "decoding" / "face_vs_house"
        null = json.loads((folder / "summary.json").read_text())["permutation"]["null"]
        maps.append(np.r_[accuracy, null])
    minima = np.minimum.outer(maps[0], maps[1]).ravel()
    exact = np.mean(minima >= min(accuracies))
    prevalence = summary["prevalence"]
    assert prevalence["min_accuracy"] == pytest.approx(min(accuracies))
    assert abs(prevalence["p"] - exact) < 0.02
    assert 0 <= prevalence["gamma0"] <= prevalence["gamma_max"] < 1


def test_searchlight_maps_equal_nilearn_on_the_cached_data(tiny_run):
    """The written accuracy map is nilearn's SearchLight(GaussianNB), voxel for voxel."""
    import json
    import warnings

    import nibabel as nib
    import pandas as pd
    from nilearn.decoding import SearchLight
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.naive_bayes import GaussianNB

    results = tiny_run / "results" / "simtask" / "sub-01"
    data = tiny_run / "data" / "simtask" / "sub-01"
    mask_img = nib.load(results / "mask.nii.gz")
    mask = mask_img.get_fdata() > 0
    roi = nib.load(data / "roi.nii.gz").get_fdata() > 0
    events = pd.read_csv(data / "events.tsv", sep="\t")
    rows = events["label"].isin(["face", "house"]).to_numpy()
    clean = np.load(results / "clean.npy")[rows]
    volumes = np.zeros(mask.shape + (len(clean),), dtype=np.float32)
    volumes[mask] = clean.T
    centres = nib.Nifti1Image((roi & mask).astype(np.uint8), mask_img.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = SearchLight(
            mask_img,
            process_mask_img=centres,
            radius=5.6,
            estimator=GaussianNB(),
            cv=LeaveOneGroupOut(),
            scoring="accuracy",
        ).fit(
            nib.Nifti1Image(volumes, mask_img.affine),
            events["label"].to_numpy()[rows],
            groups=events["run"].to_numpy()[rows],
        )
    folder = results / "searchlight" / "fh_gnb"
    accuracy = nib.load(folder / "accuracy.nii.gz")
    assert accuracy.get_data_dtype() == np.float32
    # Written as float32 (nilearn's own image would round to the mask's integer type).
    np.testing.assert_array_equal(
        accuracy.get_fdata()[roi & mask],
        reference.masked_scores_.astype(np.float32),
    )
    pvalues = nib.load(folder / "pvalues.nii.gz").get_fdata()[mask]
    assert pvalues.min() >= 1 / 21 and pvalues.max() <= 1
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_centres"] == mask.sum() and summary["n_permutations"] == 20
    assert summary["permutation"]["permute"] == "block"
    spheres = pd.read_csv(folder / "spheres.tsv", sep="\t")
    np.testing.assert_array_equal(
        spheres["p_value_at_floor"], spheres["p_value"] <= 1 / 21 + 1e-12
    )
    assert summary["n_centres_p_at_floor"] == np.sum(pvalues <= 1 / 21 + 1e-6)
    roi_map = nib.load(results / "searchlight" / "fh_svc_roi" / "accuracy.nii.gz").get_fdata()
    assert not roi_map[~roi].any() and roi_map[roi & mask].min() > 0
    # Ridge in 2 parts, with permutations: the gathered null maps give the p-values.
    folder = results / "searchlight" / "fh_ridge"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["permutation"]["permute"] == "volume"
    null = nib.load(folder / "null.nii.gz").get_fdata()[mask]
    observed = nib.load(folder / "accuracy.nii.gz").get_fdata()[mask]
    assert null.shape == (mask.sum(), 20)
    # The maps are float32: a null accuracy equal to the observed one up to float64
    # rounding (as scikit-learn's permutation_test_score compares them) may go either way.
    p_values = nib.load(folder / "pvalues.nii.gz").get_fdata()[mask]
    at_least = (1.0 + np.sum(null >= observed[:, None] - 1e-6, axis=1)) / 21.0
    above = (1.0 + np.sum(null > observed[:, None] + 1e-6, axis=1)) / 21.0
    assert np.all(above - 1e-6 <= p_values) and np.all(p_values <= at_least + 1e-6)


def test_a_map_split_by_run_time_is_the_map_split_by_number(tiny_run, tmp_path):
    """chunk_minutes: a plan job times the analysis on a sample of centres and chooses the
    parts (a checkpoint); the gathered maps are those of the tiny run's chunks: 3."""
    import json

    import nibabel as nib

    def mutate(config):
        entry = next(e for e in config["searchlight"] if e["name"] == "fh_gnb")
        del entry["chunks"]
        entry["chunk_minutes"] = 0.001  # 0.06 s per part: several parts on any machine

    config = write_config(tmp_path, mutate)
    folder = "results/simtask/sub-01/searchlight/fh_gnb"
    maps = ("accuracy.nii.gz", "pvalues.nii.gz", "null.nii.gz")
    result = run_snakemake(
        tmp_path, "--cores", "2", *(f"{folder}/{name}" for name in maps), configfile=config
    )
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads((tmp_path / folder / "plan.json").read_text())
    expected_parts = int(
        np.ceil(plan["n_centres"] * plan["seconds_per_centre"] / (60 * plan["chunk_minutes"]))
    )
    assert plan["n_parts"] == min(max(expected_parts, 1), plan["n_centres"]) > 1
    parts = sorted((tmp_path / folder / "parts").glob("part-*.npz"))
    assert len(parts) == plan["n_parts"]
    for name in maps:
        planned = nib.load(tmp_path / folder / name).get_fdata()
        reference = nib.load(tiny_run / folder / name).get_fdata()
        np.testing.assert_array_equal(planned, reference)


def test_searchlight_group_finds_the_planted_region(tiny_run):
    """The group stage of the tiny ridge searchlight: its mean map is the subjects' mean,
    its significant cluster sits on the planted ROI, prevalence bounds stay below the
    largest bound two subjects can give."""
    import json

    import nibabel as nib
    import pandas as pd

    group = tiny_run / "results" / "simtask" / "group" / "searchlight" / "fh_ridge"
    subjects = [tiny_run / "results" / "simtask" / f"sub-{s}" for s in ("01", "02")]
    masks = [nib.load(s / "mask.nii.gz").get_fdata() > 0 for s in subjects]
    common = masks[0] & masks[1]
    maps = [nib.load(s / "searchlight" / "fh_ridge" / "accuracy.nii.gz") for s in subjects]
    mean = nib.load(group / "mean_accuracy.nii.gz")
    np.testing.assert_array_equal(mean.affine, maps[0].affine)
    expected = np.mean([m.get_fdata()[common] for m in maps], axis=0)
    np.testing.assert_allclose(mean.get_fdata()[common], expected, rtol=1e-6)
    summary = json.loads((group / "summary.json").read_text())
    assert summary["n_subjects"] == 2 and summary["n_voxels"] == common.sum()
    table = pd.read_csv(group / "clusters.tsv", sep="\t")
    draws = summary["cluster_inference"]["n_draws"]
    np.testing.assert_array_equal(
        table["fwe_p_at_floor"], table["fwe_p"] <= 1 / (draws + 1) + 1e-12
    )
    significant = table[table["significant"]]
    assert len(significant) >= 1 and (significant["fwe_p"] <= 0.05).all()
    roi = nib.load(tiny_run / "data" / "simtask" / "sub-01" / "roi.nii.gz")
    roi_mm = nib.affines.apply_affine(roi.affine, np.argwhere(roi.get_fdata() > 0))
    peak = significant[["x", "y", "z"]].to_numpy()[0]
    assert np.linalg.norm(roi_mm - peak, axis=1).min() <= 5.6
    labels = nib.load(group / "clusters.nii.gz").get_fdata()
    assert (labels == significant["cluster"].iloc[0]).sum() == significant["size_voxels"].iloc[0]
    prevalence = nib.load(group / "prevalence.nii.gz").get_fdata()
    gamma_max = summary["prevalence_inference"]["gamma_max"]
    assert 0 < prevalence.max() <= gamma_max + 1e-6
    i, j, k = significant[["i", "j", "k"]].to_numpy()[0]
    assert prevalence[i, j, k] > 0


def _stimulus_samples(tiny_run, voxels, lag, split, include_rest):
    """Voxels and stimuli of the tiny stimulus subject, paired by hand from the files."""
    import nibabel as nib
    import pandas as pd

    results = tiny_run / "results" / "simvision" / "sub-01"
    data = tiny_run / "data" / "simvision" / "sub-01"
    mask = nib.load(results / "mask.nii.gz").get_fdata() > 0
    columns = np.ones(int(mask.sum()), bool)
    if voxels == "roi":
        columns = (nib.load(data / "roi.nii.gz").get_fdata() > 0)[mask]
    clean = np.load(results / "clean.npy")[:, columns].astype(float)
    stimuli = pd.read_csv(data / "stimuli.tsv", sep="\t")
    pixels = stimuli.filter(like="px_").to_numpy(float)
    bold_rows, stimulus_rows = [], []
    for run in stimuli["run"].unique():
        rows = np.flatnonzero(stimuli["run"] == run)
        if stimuli["split"].iloc[rows[0]] != split:
            continue
        for volume, shown in zip(rows[lag:], rows[:-lag], strict=True):
            if include_rest or not stimuli["rest"].iloc[shown]:
                bold_rows.append(volume)
                stimulus_rows.append(shown)
    runs = stimuli["run"].to_numpy()[stimulus_rows]
    return clean[bold_rows], pixels[stimulus_rows], runs


def test_encoding_scores_equal_scikit_learn_on_the_cached_data(tiny_run):
    """Held-out R² of every voxel is that of scikit-learn's Ridge with the chosen penalty."""
    import json

    import pandas as pd
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV, GroupKFold, LeaveOneGroupOut

    Y, X, runs = _stimulus_samples(tiny_run, "mask", 2, "train", include_rest=True)
    folder = tiny_run / "results" / "simvision" / "sub-01" / "encoding" / "pixels"
    voxels = pd.read_csv(folder / "voxels.tsv", sep="\t")
    assert len(voxels) == Y.shape[1]
    chosen = np.random.default_rng(0).choice(Y.shape[1], 12, replace=False)
    predictions = np.zeros((len(Y), len(chosen)))
    for train, test in LeaveOneGroupOut().split(X, Y, runs):
        for index, voxel in enumerate(chosen):
            search = GridSearchCV(Ridge(), {"alpha": [1.0, 100.0]}, cv=GroupKFold(3), scoring="r2")
            search.fit(X[train], Y[train, voxel], groups=runs[train])
            predictions[test, index] = search.predict(X[test])
    reference = r2_score(Y[:, chosen], predictions, multioutput="raw_values")
    np.testing.assert_allclose(voxels["r2"].to_numpy()[chosen], reference, rtol=1e-6, atol=1e-9)
    # Voxels without a planted receptive field are at chance, those with one are found.
    planted = voxels["true_prf_row"].notna()
    assert voxels.loc[planted, "r2"].median() > 0.1
    assert voxels.loc[~planted, "r2"].median() < 0.02
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["chance"]["r2_null_mean"] < 0.02
    assert summary["truth"]["prf_centre_error_median"] < 1.0


def test_reconstruction_accuracies_equal_scikit_learn_on_the_cached_data(tiny_run):
    """Table 1 and the 1x1 reconstruction are scikit-learn's on the same samples and folds."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    X, pixels, runs = _stimulus_samples(tiny_run, "roi", 2, "train", include_rest=False)
    folder = tiny_run / "results" / "simvision" / "sub-01" / "reconstruction" / "pixels"
    table = pd.read_csv(folder / "models_folds.tsv", sep="\t")
    model = LogisticRegression(C=0.05, max_iter=5000)
    folds = list(GroupKFold(2).split(X, None, runs))
    predicted = np.column_stack(
        [cross_val_predict(model, X, pixels[:, p], cv=folds) for p in range(pixels.shape[1])]
    )
    expected = [np.mean(predicted[test] == pixels[test]) for _, test in folds]
    np.testing.assert_allclose(table["accuracy"], expected)

    X_test, pixels_test, _ = _stimulus_samples(tiny_run, "roi", 2, "test", include_rest=False)
    decoder = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=0.1, random_state=0)
    single = np.column_stack(
        [decoder.fit(X, pixels[:, p]).predict(X_test) for p in range(pixels.shape[1])]
    )
    accuracy = pd.read_csv(folder / "accuracy.tsv", sep="\t").set_index("scale")
    assert accuracy.loc["1x1", "accuracy"] == pytest.approx(np.mean(single == pixels_test))
    assert accuracy.loc["combined", "accuracy"] > 0.6 > accuracy.loc["combined", "chance"]


def workflow_copy(folder, default_config_text):
    """This workflow with another default config/config.yaml (code linked, not copied)."""
    folder.mkdir()
    for name in ("Snakefile", "workflow", "scripts", "profiles"):
        (folder / name).symlink_to(REPO / name)
    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(default_config_text)
    return folder / "Snakefile"


def test_a_yaml_mistake_in_the_default_config_names_the_file_and_line(tmp_path):
    text = (REPO / "config" / "config.yaml").read_text()
    broken = text.replace("n_subjects: 3", "n_subjects: [3", 1)
    line = next(i for i, row in enumerate(broken.splitlines(), 1) if "n_subjects: [3" in row)
    snakefile = workflow_copy(tmp_path / "wf", broken)
    workdir = tmp_path / "work"
    result = run_snakemake(workdir, "-n", configfile=None, snakefile=snakefile)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    path = tmp_path / "wf" / "config" / "config.yaml"
    assert f"Config file {path}, line " in message
    reported = int(message.split(f"{path}, line ")[1].split(",")[0])
    assert line <= reported <= line + 2  # where the parser notices the open bracket
    assert "not valid YAML" in message and "Traceback" not in message


def test_config_values_on_the_command_line_override_the_default_config(tmp_path):
    snakefile = workflow_copy(tmp_path / "wf", (REPO / "config" / "config.yaml").read_text())
    plain = run_snakemake(tmp_path / "a", "-n", configfile=None, snakefile=snakefile)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "searchlight_part" in plain.stdout
    emptied = run_snakemake(
        tmp_path / "b", "-n", "--config", "searchlight=[]", configfile=None, snakefile=snakefile
    )
    assert emptied.returncode == 0, emptied.stderr[-2000:]
    assert "searchlight_part" not in emptied.stdout and "decode" in emptied.stdout
