"""The fetch configs as workflows: Snakemake on the stand-ins, network blocked.

Every Python process (Snakemake and each job it starts) imports a
``sitecustomize`` placed first on ``PYTHONPATH`` that makes socket
connections and name lookups fail and records them, so these tests show
that the Haxby and ADHD configs plan, and Haxby runs, without touching the
network once the files are in nilearn's download folder.
"""

import json
import os
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from nilearn.datasets.func import adhd_ids
from scipy.signal import detrend

import standins
from conftest import REPO, run_snakemake

pytestmark = pytest.mark.workflow


SITECUSTOMIZE = '''\
"""Test harness: no network for this process (written by test_fetch_workflow.py)."""

import os
import socket
import sys

_LOG = os.environ["FMRIFLOW_TEST_NETWORK_LOG"]


def _record(line):
    with open(_LOG, "a") as handle:
        handle.write(line + "\\n")


_record(f"started {os.getpid()} {sys.argv!r}")


class NetworkBlockedError(ConnectionRefusedError):
    """Raised instead of any network access."""


def _blocker(kind, original):
    def blocked(*args, **kwargs):
        if kind == "connect" and args[0].family == socket.AF_UNIX:
            return original(*args, **kwargs)
        _record(f"BLOCKED {kind} {args[1:] if kind == 'connect' else args!r} in {sys.argv!r}")
        raise NetworkBlockedError(f"network access blocked in tests: {kind}")

    return blocked


socket.socket.connect = _blocker("connect", socket.socket.connect)
socket.socket.connect_ex = _blocker("connect_ex", socket.socket.connect_ex)
socket.create_connection = _blocker("create_connection", socket.create_connection)
socket.getaddrinfo = _blocker("getaddrinfo", socket.getaddrinfo)
'''


@pytest.fixture
def offline_env(tmp_path):
    """Environment whose Python processes cannot reach the network; yields (env, log)."""
    site = tmp_path / "offline-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "network.log"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "FMRIFLOW_TEST_NETWORK_LOG": str(log),
    }
    yield env, log
    lines = log.read_text().splitlines() if log.exists() else []
    assert lines, "the offline sitecustomize was not loaded"
    blocked = [line for line in lines if line.startswith("BLOCKED")]
    assert not blocked, "network access was attempted:\n" + "\n".join(blocked)


def snakemake(env, workdir, configfile, *args):
    result = run_snakemake(workdir, *args, configfile=configfile, timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{output[-5000:]}"
    return output


def planned_jobs(output):
    """(rule, dataset, subject) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", output):
        match = re.match(r"rule (\w+):", block)
        if not match:
            continue
        wildcards = dict(re.findall(r"(\w+)=([^,\s]+)", _line(block, "wildcards:")))
        jobs.append((match.group(1), wildcards.get("dataset"), wildcards.get("subject")))
    return jobs


def _line(block, key):
    found = re.search(rf"^\s*{key}(.*)$", block, flags=re.MULTILINE)
    return found.group(1) if found else ""


def analysis_rules(config):
    """The rules a config's analysis sections call for, read from the config itself."""
    rules = set()
    if config.get("decoding"):
        rules |= {"decode", "decode_group"}
    for analysis in config.get("searchlight", []):
        rules.add("searchlight_permutations" if analysis.get("permutations") else "searchlight")
        rules.add("searchlight_part")
        if analysis.get("group"):
            rules.add("searchlight_group")
    for analysis in config.get("ica", []):
        rules |= {"group_ica"} | ({"reduce_subject"} if analysis["method"] != "concat" else set())
    if config.get("clustering"):
        rules |= {"parcellate", "reduce_subject"}
    if config.get("encoding"):
        rules.add("encode")
    if config.get("reconstruction"):
        rules |= {"reconstruct", "reconstruct_models"}
    for entry in connectome_entries(config):
        rules |= {"connectome_regions", "connectome_group"}
        if entry["sparse"]:
            rules |= {"connectome_subject_sparse", "connectome_sparse"}
        else:
            rules.add("connectome_subject")
        rules |= {"connectome_compare"} if entry["compare"] else set()
        rules |= {"connectome_predict"} if entry["predict"] else set()
    return rules | ({"provenance_table"} if rules else set())


def connectome_entries(config):
    """A config's connectome entries, with the schema's defaults."""
    from fmriflow.schema import validate

    return [validate(dict(entry), "connectome") for entry in config.get("connectomes", [])]


def config_atlases(config):
    """The ids of the standard atlases a config's connectome entries name."""
    from fmriflow.atlases import atlas_id

    entries = connectome_entries(config)
    return sorted({atlas_id(e["regions"]) for e in entries if e["regions"]["source"] == "atlas"})


@pytest.mark.parametrize(
    ("config", "dataset", "subjects"),
    [
        (
            "haxby.yaml",
            "haxby",
            lambda fetch: [str(s) for s in fetch["subjects"]],
        ),
        ("rest.yaml", "adhd", lambda fetch: list(adhd_ids())[: fetch["subjects"]]),
        ("miyawaki.yaml", "miyawaki", lambda fetch: ["1"]),
    ],
)
def test_dry_run_plans_every_subject(offline_env, tmp_path, config, dataset, subjects):
    env, _ = offline_env
    downloads = tmp_path / "downloads"
    standins.make_haxby(downloads, subjects=(1,))
    standins.make_adhd(downloads, subjects=1)
    standins.make_miyawaki(downloads)
    workdir = tmp_path / "work"
    workdir.mkdir()
    configfile = REPO / "config" / config
    output = snakemake(env, workdir, configfile, "-n", "--config", f"download_dir={downloads}")

    settings = yaml.safe_load(configfile.read_text())["datasets"][dataset]["fetch"]
    expected_subjects = subjects(settings)
    jobs = planned_jobs(output)
    assert sorted(j for j in jobs if j[0] == "download") == [("download", dataset, None)]
    for rule in ("import_download", "mask", "clean"):
        planned = sorted(s for r, d, s in jobs if r == rule and d == dataset)
        assert planned == sorted(expected_subjects), rule
    # The archives' optional files: Haxby's VT mask for everyone and an anatomy
    # for all but subject 6; ADHD's regressors; Miyawaki's visual-cortex mask,
    # background and stimulus table.
    optional = {
        "haxby": {
            "import_download_roi": expected_subjects,
            "import_download_anat": [s for s in expected_subjects if s != "6"],
        },
        "adhd": {"import_download_confounds": expected_subjects},
        "miyawaki": {
            "import_download_roi": expected_subjects,
            "import_download_anat": expected_subjects,
            "import_download_stimuli": expected_subjects,
        },
    }[dataset]
    for rule, files_of in optional.items():
        assert sorted(s for r, d, s in jobs if r == rule) == sorted(files_of), rule
    # ADHD's phenotypic table becomes the dataset's participants.tsv; every standard
    # atlas the connectome entries name is downloaded once.
    dataset_rules = {"adhd": ["import_download_participants"]}.get(dataset, [])
    for rule in dataset_rules:
        assert [(r, d) for r, d, _ in jobs if r == rule] == [(rule, dataset)], rule
    parsed = yaml.safe_load(configfile.read_text())
    atlases = re.findall(
        r"^rule download_atlas:\n(?:.*\n)*?\s*wildcards: atlas=(\S+)", output, re.M
    )
    assert sorted(atlases) == config_atlases(parsed)
    rules = {r for r, _, _ in jobs}
    acquisition = {"download", "import_download", "mask", "clean", "all", *optional}
    acquisition |= set(dataset_rules) | ({"download_atlas"} if atlases else set())
    # An MNI template mask is put on the dataset's grid once, for all its subjects.
    if parsed["datasets"][dataset].get("preprocess", {}).get("mask") in ("mni_brain", "mni_gm"):
        assert [(r, d) for r, d, _ in jobs if r == "template_mask"] == [("template_mask", dataset)]
        acquisition.add("template_mask")
    assert acquisition <= rules
    assert rules - acquisition == analysis_rules(parsed)
    assert not list(workdir.glob("data/*/dataset.json")), "a dry run must not download"


def test_haxby_runs_offline_on_standins(offline_env, tmp_path):
    env, log = offline_env
    downloads = tmp_path / "downloads"
    standins.make_haxby(downloads, subjects=(1, 6))
    config = yaml.safe_load((REPO / "config" / "haxby.yaml").read_text())
    config["download_dir"] = str(downloads)
    # Subject 6 (no anatomy) first: nilearn's lists must still be matched up.
    config["datasets"]["haxby"]["fetch"]["subjects"] = [6, 1]
    for analysis in config["decoding"]:  # the tutorial's analyses, fewer permutations
        analysis["permutations"] = min(analysis.get("permutations", 0), 10)
    configfile = tmp_path / "haxby-standins.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()

    snakemake(env, workdir, configfile, "--cores", "2")

    started = [line for line in log.read_text().splitlines() if line.startswith("started")]
    for script in ("download", "import_download", "mask", "clean", "decode", "decode_group"):
        pattern = re.compile(rf"[/.]{script}\.py'")
        assert any(pattern.search(line) for line in started), f"{script} ran without the block"
    for subject in ("1", "6"):
        source = downloads / "haxby2001" / f"subj{subject}"
        results = workdir / "results" / "haxby" / f"sub-{subject}"
        clean = np.load(results / "clean.npy")

        # Reference: the downloaded BOLD in the mask used, detrended and
        # z-scored (n - 1) run by run, with numpy/scipy instead of nilearn.
        mask = nib.load(results / "mask.nii.gz").get_fdata() != 0
        bold = nib.load(source / "bold.nii.gz").get_fdata()[mask].T
        lines = (source / "labels.txt").read_text().split("\n")[1:]
        runs = np.array([int(line.split()[1]) for line in lines if line.strip()])
        expected = np.empty_like(bold)
        for run in np.unique(runs):
            block = detrend(bold[runs == run], axis=0)
            expected[runs == run] = block / block.std(axis=0, ddof=1)
        assert clean.shape == expected.shape
        np.testing.assert_allclose(clean, expected, atol=2e-4)

        vt = nib.load(source / "mask4_vt.nii.gz").get_fdata() != 0
        assert np.all(mask[vt]), "include_roi: every VT voxel is kept"
        data = workdir / "data" / "haxby" / f"sub-{subject}"
        assert (data / "anat.nii.gz").exists() == (subject != "6")

    # Everything is up to date: a second plan has nothing to do.
    again = snakemake(env, workdir, configfile, "-n")
    assert "Nothing to be done" in again


def test_miyawaki_runs_offline_on_standins(offline_env, tmp_path):
    """Fetch, import, encode and reconstruct the Miyawaki stand-in with the network blocked."""
    env, log = offline_env
    downloads = tmp_path / "downloads"
    standins.make_miyawaki(downloads, n_volumes_random=30, n_volumes_figure=30)
    config = yaml.safe_load((REPO / "config" / "miyawaki.yaml").read_text())
    config["download_dir"] = str(downloads)
    config["encoding"][0] |= {"permutations": 5, "cv": {"scheme": "kfold_runs", "n_splits": 3}}
    config["reconstruction"][0]["models"] = {"classifiers": ["logreg_l1"], "C": [0.05]}
    config["reconstruction"][0]["cv"] = {"scheme": "kfold_runs", "n_splits": 3}
    configfile = tmp_path / "miyawaki-standins.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()

    snakemake(env, workdir, configfile, "--cores", "2")

    source = downloads / "miyawaki2008"
    data = workdir / "data" / "miyawaki" / "sub-1"
    stimuli = pd.read_csv(data / "stimuli.tsv", sep="\t")
    events = pd.read_csv(data / "events.tsv", sep="\t")
    # Reference: nilearn's order (12 figure runs, then 20 random runs), each
    # label row reshaped in Fortran order, rows of -1 as rest.
    names = [f"figure_run{i:02d}" for i in range(1, 13)]
    names += [f"random_run{i:02d}" for i in range(1, 21)]
    offset = 0
    for run, name in enumerate(names, start=1):
        labels = np.loadtxt(source / "label" / f"data_{name}_label.csv", delimiter=",", dtype=int)
        rows = stimuli.iloc[offset : offset + len(labels)]
        offset += len(labels)
        assert (rows["run"] == run).all()
        assert set(rows["split"]) == {"test" if name.startswith("figure") else "train"}
        rest = (labels == -1).all(axis=1)
        np.testing.assert_array_equal(rows["rest"].to_numpy(), rest.astype(int))
        pixels = rows.filter(like="px_").to_numpy().reshape(-1, 10, 10)
        expected = labels.reshape(-1, 10, 10, order="F").copy()
        expected[rest] = 0
        np.testing.assert_array_equal(pixels, expected)
    assert offset == len(stimuli) == len(events)
    bold = nib.load(data / "bold.nii.gz")
    assert bold.shape[3] == len(stimuli)

    results = workdir / "results" / "miyawaki" / "sub-1"
    summary = json.loads((results / "encoding" / "pixels_ridge" / "summary.json").read_text())
    assert summary["n_folds"] == 3 and summary["chance"]["r2_null_mean"] < 0.05
    accuracy = pd.read_csv(
        results / "reconstruction" / "pixels_logreg_l1" / "accuracy.tsv", sep="\t"
    )
    assert list(accuracy["scale"]) == ["1x1", "1x2", "2x1", "2x2", "combined"]
    assert (accuracy["chance"] == 0.5).all()
    # The sha256 of every fetched file is recorded, and checked on re-use.
    description = json.loads((workdir / "data" / "miyawaki" / "dataset.json").read_text())
    assert len(description["sha256"]) == 32 + 32 + 2
    again = snakemake(env, workdir, configfile, "-n")
    assert "Nothing to be done" in again
