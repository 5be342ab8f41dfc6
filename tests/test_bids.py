"""Tests of the 'bids' source: a BIDS tree with fMRIPrep derivatives, found by query.

The tree is the one of test_local (2 subjects x 3 runs, fMRIPrep-style
derivatives) made a valid BIDS dataset: dataset descriptions, raw BOLD
images, a task sidecar with the TR (inherited by every run), fMRIPrep's
per-run sidecars and a participants table. Every expectation is the path
the test itself wrote (test_local's templates), never what the index said
in a previous run.
"""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from test_local import (
    AFFINE,
    CONFOUND_COLUMNS,
    RUN_VOLUMES,
    RUNS,
    SUBJECTS,
    TEMPLATES,
    TR,
    build_tree,
    reference_confounds,
    reference_labels,
    save_image,
    snakemake,
)

from fmriflow import bids
from fmriflow.errors import InputError
from fmriflow.local import subject_files, subject_runs

REPO = Path(__file__).resolve().parents[1]
TASK = "objects"
SPACE = "MNI152NLin2009cAsym"
RAW_BOLD = "sub-{subject}/func/sub-{subject}_task-objects_run-{run}_bold.nii.gz"
PHENOTYPES = pd.DataFrame(
    {"participant_id": [f"sub-{s}" for s in SUBJECTS], "age": [31, 27], "group": ["a", "b"]}
)


def write_json(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_bids(root):
    """test_local's tree, made a BIDS dataset with fMRIPrep derivatives."""
    _, refs = build_tree(root)
    write_json({"Name": "objects", "BIDSVersion": "1.9.0"}, root / "dataset_description.json")
    write_json(
        {
            "Name": "fMRIPrep output",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.0"}],
        },
        root / "derivatives" / "fmriprep" / "dataset_description.json",
    )
    # Inherited by every run of the task (BIDS inheritance principle).
    write_json({"RepetitionTime": TR, "TaskName": TASK}, root / "task-objects_bold.json")
    for subject in SUBJECTS:
        for run in RUNS:
            save_image(
                refs["bold"][subject, run],
                AFFINE,
                root / RAW_BOLD.format(subject=subject, run=run),
                tr=TR,
            )
            derived = root / TEMPLATES["bold"].format(subject=subject, run=run)
            write_json(
                {"RepetitionTime": TR, "SkullStripped": False},
                derived.with_name(derived.name.replace(".nii.gz", ".json")),
            )
    PHENOTYPES.to_csv(root / "participants.tsv", sep="\t", index=False)
    return refs


@pytest.fixture(scope="module")
def bids_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids")
    refs = make_bids(root)
    return root, refs


def query(root, **changes):
    settings = {
        "root": str(root),
        "derivatives": str(root / "derivatives" / "fmriprep"),
        "task": TASK,
        "space": SPACE,
        "desc": "preproc",
        "kind": "task",
        "subjects": None,
        "sessions": None,
        "runs": None,
        "acquisition": None,
        "confounds": list(CONFOUND_COLUMNS),
        "rest_label": "rest",
        "tr_overrides_header": False,
        "brain_mask": None,
        "validate": True,
    }
    settings.update(changes)
    return settings


def expected(root, key, subject, runs=RUNS):
    return [str(root / TEMPLATES[key].format(subject=subject, run=run)) for run in runs]


@pytest.fixture
def copy_tree(bids_tree, tmp_path):
    """A private copy of the tree that a test may damage."""
    root, _ = bids_tree
    copy = tmp_path / "study"
    shutil.copytree(root, copy)
    return copy


# ---------------------------------------------------------------- index


def test_index_finds_every_run_its_events_confounds_and_the_sidecar_tr(bids_tree):
    root, _ = bids_tree
    index = bids.index_dataset(query(root))
    assert index["subjects"] == SUBJECTS
    assert index["tr"] == TR
    assert index["space"] == SPACE
    assert index["participants"] == str(root / "participants.tsv")
    for subject in SUBJECTS:
        files = index["files"][subject]
        assert files["bold"] == expected(root, "bold", subject)
        assert files["events"] == expected(root, "events", subject)
        assert files["confounds"] == expected(root, "confounds", subject)
        assert files["runs"] == RUNS


def test_the_query_imports_the_same_files_as_the_equivalent_templates(bids_tree):
    """A bids dataset becomes the local section that test_local's templates describe."""
    root, _ = bids_tree
    settings = bids.local_settings(query(root), bids.index_dataset(query(root)))
    templates = {key: str(root / TEMPLATES[key]) for key in ("bold", "events", "confounds")}
    by_templates = {"subjects": SUBJECTS, "runs": RUNS, **templates}
    for subject in SUBJECTS:
        assert subject_files(settings, subject) == subject_files(by_templates, subject)
        assert subject_runs(settings, subject) == RUNS
    assert settings["confound_columns"] == CONFOUND_COLUMNS
    assert settings["events_format"] == "bids"


def test_raw_data_without_derivatives_take_the_raw_bold(bids_tree):
    root, _ = bids_tree
    index = bids.index_dataset(query(root, derivatives=None, space=None, confounds=None))
    assert index["files"]["01"]["bold"] == [
        str(root / RAW_BOLD.format(subject="01", run=run)) for run in RUNS
    ]
    assert "confounds" not in index["files"]["01"]
    assert index["space"] == "native"


@pytest.mark.parametrize(
    "changes, runs",
    [({"runs": [1, 3]}, ["1", "3"]), ({"runs": ["2"]}, ["2"]), ({"subjects": ["02"]}, RUNS)],
)
def test_filters_select_runs_and_subjects(bids_tree, changes, runs):
    root, _ = bids_tree
    index = bids.index_dataset(query(root, **changes))
    subjects = changes.get("subjects", SUBJECTS)
    assert index["subjects"] == subjects
    for subject in subjects:
        assert index["files"][subject]["runs"] == runs
        assert index["files"][subject]["bold"] == expected(root, "bold", subject, runs)
        assert index["files"][subject]["events"] == expected(root, "events", subject, runs)


@pytest.mark.parametrize(
    "changes, key, named",
    [
        ({"runs": [4]}, "bids.runs", "['1', '2', '3']"),
        ({"sessions": ["02"]}, "bids.sessions", "absent"),
        ({"acquisition": "fast"}, "bids.acquisition", "absent"),
        ({"task": "rest"}, "bids.task", "['objects']"),
        ({"space": "T1w"}, "bids.space", "MNI152NLin2009cAsym"),
        ({"subjects": ["01", "03"]}, "bids.subjects", "['01', '02']"),
    ],
)
def test_a_filter_that_matches_nothing_names_the_entity_and_what_exists(
    bids_tree, changes, key, named
):
    root, _ = bids_tree
    with pytest.raises(InputError) as caught:
        bids.index_dataset(query(root, **changes))
    message = str(caught.value)
    assert message.startswith(key), message
    assert named in message


def test_a_folder_that_is_not_bids_is_refused(tmp_path, bids_tree):
    root, _ = bids_tree
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="no dataset_description.json"):
        bids.index_dataset(query(plain, derivatives=None, space=None, confounds=None))
    with pytest.raises(InputError, match="folder does not exist"):
        bids.index_dataset(query(tmp_path / "absent"))
    with pytest.raises(InputError, match="derivatives has no dataset_description.json"):
        bids.index_dataset(query(root, derivatives=str(root / "derivatives")))


def test_a_task_run_without_events_is_named_before_anything_is_imported(copy_tree):
    (copy_tree / TEMPLATES["events"].format(subject="02", run="2")).unlink()
    with pytest.raises(InputError) as caught:
        bids.index_dataset(query(copy_tree))
    message = str(caught.value)
    assert message.startswith(str(copy_tree / TEMPLATES["bold"].format(subject="02", run="2")))
    assert "sub-02_task-objects_run-2_events.tsv" in message
    assert "bids.kind: rest" in message
    # Rest data need no events.
    index = bids.index_dataset(query(copy_tree, kind="rest"))
    assert "events" not in index["files"]["02"]


def test_events_inherited_from_the_root_serve_every_run(copy_tree):
    for subject in SUBJECTS:
        for run in RUNS:
            (copy_tree / TEMPLATES["events"].format(subject=subject, run=run)).unlink()
    shared = copy_tree / "task-objects_events.tsv"
    shared.write_text("onset\tduration\ttrial_type\n2\t4\tface\n")
    index = bids.index_dataset(query(copy_tree))
    assert index["files"]["01"]["events"] == [str(shared)] * len(RUNS)


def test_a_missing_confound_column_names_the_table_and_its_columns(bids_tree):
    root, _ = bids_tree
    with pytest.raises(InputError) as caught:
        bids.index_dataset(query(root, confounds=["trans_x", "motion_outlier99"]))
    message = str(caught.value)
    assert message.startswith(expected(root, "confounds", "01")[0])
    assert "motion_outlier99" in message and "global_signal" in message
    with pytest.raises(InputError, match="no derivatives folder"):
        bids.index_dataset(query(root, derivatives=None, space=None))


def test_sidecars_that_disagree_on_the_tr_are_refused(copy_tree):
    sidecar = copy_tree / TEMPLATES["bold"].format(subject="02", run="3").replace(
        ".nii.gz", ".json"
    )
    write_json({"RepetitionTime": 2.5}, sidecar)
    with pytest.raises(InputError, match="RepetitionTime 2.5 s differs from 2 s"):
        bids.index_dataset(query(copy_tree))


def test_a_sidecar_that_disagrees_with_the_header_is_refused_unless_it_overrides(copy_tree):
    for subject in SUBJECTS:
        for run in RUNS:
            path = copy_tree / TEMPLATES["bold"].format(subject=subject, run=run)
            write_json({"RepetitionTime": 1.5}, Path(str(path).replace(".nii.gz", ".json")))
    with pytest.raises(InputError, match="header records a TR of 2 s but the sidecar"):
        bids.index_dataset(query(copy_tree))
    assert bids.index_dataset(query(copy_tree, tr_overrides_header=True))["tr"] == 1.5


def test_a_bold_name_that_does_not_validate_is_explained(tmp_path):
    root = tmp_path / "study"
    write_json({"Name": "x", "BIDSVersion": "1.9.0"}, root / "dataset_description.json")
    data = np.zeros((2, 2, 2, 3), np.float32)
    save_image(data, np.eye(4), root / "sub-01" / "func" / "sub-01_task-objects_rn-1_bold.nii.gz")
    settings = query(root, derivatives=None, space=None, confounds=None)
    with pytest.raises(InputError, match="were not indexed.*bids.validate: false"):
        bids.index_dataset(settings)


# ---------------------------------------------------------------- cache


def test_the_index_is_cached_until_a_file_of_the_dataset_changes(copy_tree, tmp_path, monkeypatch):
    settings = query(copy_tree)
    cache = tmp_path / "cache"
    messages = []
    first = bids.cached_index("lab", settings, cache, notify=messages.append)
    assert len(messages) == 1 and "first time" in messages[0]
    assert first == bids.index_dataset(settings)

    def no_indexing(settings):
        raise AssertionError("re-indexed although nothing changed")

    monkeypatch.setattr(bids, "index_dataset", no_indexing)
    assert bids.cached_index("lab", settings, cache, notify=messages.append) == first
    assert len(messages) == 1

    # Jobs trust the cache without listing the dataset, even when it changed since.
    removed = copy_tree / TEMPLATES["bold"].format(subject="02", run="3")
    removed.unlink()
    assert bids.cached_index("lab", settings, cache, check_signature=False) == first

    # The main process sees the change and indexes again.
    monkeypatch.undo()
    again = bids.cached_index("lab", settings, cache, notify=messages.append)
    assert "changed" in messages[-1]
    assert again["files"]["02"]["bold"] == expected(copy_tree, "bold", "02", ["1", "2"])
    # Another query of the same dataset has a cache file of its own.
    bids.cached_index("lab", query(copy_tree, runs=[1]), cache, notify=messages.append)
    assert len(list(cache.glob("lab-*.json"))) == 2


# ---------------------------------------------------------------- workflow


def example_config(root, path):
    """config/bids-example.yaml pointed at the synthetic tree.

    Two changes besides the paths, for the tree's tiny images: 7 x 8 x 6
    voxels are too few for the morphological opening of an EPI mask, so the
    dataset gets a brain mask (the images' bright ellipsoid) through
    bids.brain_mask; and runs of 14-18 volumes are shorter than the
    high-pass filter's padding, so it is off.
    """
    config = yaml.safe_load((REPO / "config" / "bids-example.yaml").read_text())
    dataset = config["datasets"]["objects"]
    mean = np.mean(nib.load(root / RAW_BOLD.format(subject="01", run="1")).get_fdata(), axis=3)
    brain = root / "derivatives" / "masks" / "brain_mask.nii.gz"
    save_image((mean > 400).astype(np.uint8), AFFINE, brain)
    dataset["bids"].update(
        root=str(root),
        derivatives=str(root / "derivatives" / "fmriprep"),
        brain_mask=str(brain),
    )
    dataset["preprocess"]["mask"] = "dataset"
    dataset["preprocess"]["clean"]["high_pass"] = None
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.workflow
def test_bids_example_config_runs_end_to_end_on_the_synthetic_tree(bids_tree, tmp_path):
    root, refs = bids_tree
    config = example_config(root, tmp_path / "bids.yaml")
    work = tmp_path / "work"
    work.mkdir()
    participants = "data/objects/participants.tsv"
    result = snakemake(work, config, "--cores", "2", "all", participants)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "indexing BIDS dataset 'objects'" in result.stderr

    example = yaml.safe_load((REPO / "config" / "bids-example.yaml").read_text())
    columns = example["datasets"]["objects"]["bids"]["confounds"]
    for subject in SUBJECTS:
        folder = work / "data" / "objects" / f"sub-{subject}"
        bold = np.asarray(nib.load(folder / "bold.nii.gz").dataobj)
        np.testing.assert_array_equal(
            bold, np.concatenate([refs["bold"][subject, r] for r in RUNS], axis=3)
        )
        events = pd.read_csv(folder / "events.tsv", sep="\t", dtype=str)
        labels = [
            label
            for run in RUNS
            for label in reference_labels(refs["events"][subject, run], RUN_VOLUMES[run], TR)
        ]
        assert events["label"].tolist() == labels
        assert events["run"].tolist() == [r for r in RUNS for _ in range(RUN_VOLUMES[r])]
        confounds = pd.read_csv(folder / "confounds.tsv", sep="\t")
        np.testing.assert_allclose(
            confounds[columns].to_numpy(), reference_confounds(refs, subject, columns)
        )
    table = pd.read_csv(work / participants, sep="\t", dtype=str)
    assert table["participant_id"].tolist() == PHENOTYPES["participant_id"].tolist()
    assert table["age"].tolist() == ["31", "27"]
    description = json.loads((work / "data" / "objects" / "dataset.json").read_text())
    assert description["source"] == "bids"
    assert description["provenance"]["bids"]["task"] == TASK
    summary = json.loads(
        (
            work / "results" / "objects" / "sub-01" / "decoding" / "face_vs_house" / "summary.json"
        ).read_text()
    )
    assert "chance" in json.dumps(summary)

    # A second run reads the cached index: nothing to do, no indexing.
    again = snakemake(work, config, "-n", "all", participants)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "indexing BIDS" not in again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.workflow
def test_a_run_without_events_stops_the_workflow_before_any_job(copy_tree, tmp_path):
    (copy_tree / TEMPLATES["events"].format(subject="01", run="3")).unlink()
    config = example_config(copy_tree, tmp_path / "bids.yaml")
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, config)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Dataset 'objects' (source bids)" in message
    assert "sub-01_task-objects_run-3_events.tsv" in message
    assert "Traceback" not in message
    assert not (work / "data").exists() and not (work / "results").exists()


def test_sessions_and_acquisitions_select_runs_in_acquisition_order(tmp_path):
    """Runs sort by session, then run index (run-10 after run-2), not by file name."""
    root = tmp_path / "study"
    write_json({"Name": "x", "BIDSVersion": "1.9.0"}, root / "dataset_description.json")
    write_json({"RepetitionTime": TR}, root / "task-objects_bold.json")
    data = np.zeros((2, 2, 2, 4), np.float32)
    names = {}
    for session in ("01", "02"):
        for acq in ("fast", "slow"):
            for run in (1, 2, 10):
                stem = f"sub-01_ses-{session}_task-objects_acq-{acq}_run-{run}"
                folder = root / "sub-01" / f"ses-{session}" / "func"
                save_image(data, np.eye(4), folder / f"{stem}_bold.nii.gz", tr=TR)
                (folder / f"{stem}_events.tsv").write_text("onset\tduration\ttrial_type\n")
                names[session, acq, run] = str(folder / f"{stem}_bold.nii.gz")
    raw = {"derivatives": None, "space": None, "confounds": None}
    index = bids.index_dataset(query(root, sessions=["02"], acquisition="fast", **raw))
    assert index["files"]["01"]["bold"] == [names["02", "fast", r] for r in (1, 2, 10)]
    assert index["files"]["01"]["runs"] == [
        "ses-02_acq-fast_run-1",
        "ses-02_acq-fast_run-2",
        "ses-02_acq-fast_run-10",
    ]
    both = bids.index_dataset(query(root, acquisition="slow", runs=[10, 2], **raw))
    assert both["files"]["01"]["bold"] == [
        names[s, "slow", r] for s in ("01", "02") for r in (2, 10)
    ]
