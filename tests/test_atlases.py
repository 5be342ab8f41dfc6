"""Standard atlases and participants tables: nilearn's real fetchers on stand-ins, offline.

The MSDL and Schaefer stand-ins (``standins.make_msdl``,
``standins.make_schaefer``) are written where nilearn's atlas fetchers look,
and the network is blocked at the socket level (the fixtures of
``test_fetch.py``), so ``fetch_atlas_msdl`` and ``fetch_atlas_schaefer_2018``
run as they are and find their files. The canonical files are checked
against the source files read another way (the csv module, scipy's centre of
mass), never against stored numbers. The same goes for ADHD's phenotypic
table and a lab's own ``participants.tsv``.
"""

import csv
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import requests
import test_fetch
import yaml
from scipy import ndimage

from fmriflow import atlases, fetch
from fmriflow.errors import InputError
from fmriflow.local import missing_files
from fmriflow.participants import adhd_participants, import_participants

import standins
from conftest import AUDIT, SCRIPTS, run_snakemake

# The network fixtures and node runners of the fetch tests.
network, offline = test_fetch.network, test_fetch.offline
ADHD_IDS, URL = test_fetch.ADHD_IDS, test_fetch.URL
download_node, node = test_fetch.download_node, test_fetch.node

SCHAEFER = {
    "source": "atlas",
    "atlas": "schaefer",
    "n_rois": 400,
    "yeo_networks": 7,
    "resolution_mm": 2,
}
SCHAEFER_ID = "schaefer_400_7_2mm"
MSDL = {"source": "atlas", "atlas": "msdl"}


@pytest.fixture(scope="session")
def pristine_atlases(tmp_path_factory):
    """Stand-ins of MSDL and Schaefer (400 regions, 7 networks, 2 mm), built once."""
    root = tmp_path_factory.mktemp("pristine-atlases")
    standins.make_msdl(root)
    standins.make_schaefer(root, n_rois=400, yeo_networks=7, resolution_mm=2)
    return root


@pytest.fixture
def downloads(pristine_atlases, tmp_path):
    """A private copy of the atlas stand-ins, which a test may alter."""
    return Path(shutil.copytree(pristine_atlases, tmp_path / "downloads"))


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def schaefer_source(downloads, n_rois=400, yeo_networks=7, resolution_mm=2):
    folder = downloads / "schaefer_2018"
    stem = f"Schaefer2018_{n_rois}Parcels_{yeo_networks}Networks_order"
    return folder / f"{stem}.txt", folder / f"{stem}_FSLMNI152_{resolution_mm}mm.nii.gz"


def msdl_source(downloads):
    folder = downloads / "msdl_atlas" / "MSDL_rois"
    return folder / "msdl_rois_labels.csv", folder / "msdl_rois.nii"


def atlas_node(folder, download_dir, settings):
    """Run scripts/download_atlas.py's node in this process, as from the command line."""
    node(
        "download_atlas",
        "--image",
        folder / "atlas.nii.gz",
        "--regions",
        folder / "regions.tsv",
        "--description",
        folder / "atlas.json",
        "--settings",
        json.dumps(settings),
        "--download-dir",
        download_dir,
    )
    return folder


def read_rows(path, delimiter):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


# --- ids and settings ------------------------------------------------------------------


def test_atlas_ids_name_the_atlas_and_its_parameters():
    assert atlases.atlas_id(MSDL) == "msdl"
    assert atlases.atlas_id(MSDL | {"n_rois": 100}) == "msdl"
    assert atlases.atlas_id(SCHAEFER | {"resolution_mm": 2}) == SCHAEFER_ID
    other = {"source": "atlas", "atlas": "schaefer", "n_rois": 100, "yeo_networks": 17}
    assert atlases.atlas_id(other | {"resolution_mm": 1}) == "schaefer_100_17_1mm"
    # Settings of other region sources do not change the download.
    with_ica_keys = SCHAEFER | {"resolution_mm": 2, "threshold": 3.0, "url": None}
    assert atlases.atlas_settings(with_ica_keys) == atlases.atlas_settings(
        SCHAEFER | {"resolution_mm": 2}
    )
    with pytest.raises(InputError, match="regions.atlas"):
        atlases.atlas_id({"source": "atlas", "atlas": "aal"})
    with pytest.raises(InputError, match="regions.source"):
        atlases.atlas_id({"source": "ica", "atlas": "msdl"})
    with pytest.raises(InputError, match="regions.resolution_mm"):
        atlases.atlas_id(
            {"source": "atlas", "atlas": "schaefer", "n_rois": 100, "yeo_networks": 7}
        )


# --- the stand-ins -------------------------------------------------------------------------


def test_atlas_standins_follow_the_real_formats(pristine_atlases):
    labels_txt, image = schaefer_source(pristine_atlases)
    rows = read_rows(labels_txt, "\t")
    assert len(rows) == 400 and all(len(row) == 6 for row in rows)
    assert [int(row[0]) for row in rows] == list(range(1, 401))
    assert rows[0][1] == "7Networks_LH_Vis_1" and rows[-1][1].startswith("7Networks_RH_Default")
    assert all(row[5] == "0" for row in rows)
    with gzip.open(image) as handle:
        assert handle.read(4) == (348).to_bytes(4, "little")
    img = nib.load(image)
    assert img.get_data_dtype() == np.int32 and img.ndim == 3
    assert np.array_equal(np.unique(np.asanyarray(img.dataobj)), np.arange(401))

    labels_csv, maps = msdl_source(pristine_atlases)
    assert maps.read_bytes()[:4] == (348).to_bytes(4, "little"), "uncompressed NIfTI-1"
    assert read_rows(labels_csv, ",")[0] == ["x", "y", "z", "name", "net name"]
    img = nib.load(maps)
    assert img.shape[3] == 39 and np.issubdtype(img.get_data_dtype(), np.floating)
    data = img.get_fdata()
    assert (data < 0).any() and (data > 0).any(), "signed weights, as the real maps"


# --- the node on the stand-ins, offline ----------------------------------------------------


def test_schaefer_gives_the_canonical_files(offline, downloads, tmp_path):
    folder = atlas_node(tmp_path / "data" / "atlases" / SCHAEFER_ID, downloads, SCHAEFER)
    labels_txt, image = schaefer_source(downloads)
    source = nib.load(image)
    expected = np.asanyarray(source.dataobj)

    written = nib.load(folder / "atlas.nii.gz")
    assert written.get_data_dtype() == np.int32
    labels = np.asanyarray(written.dataobj)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(written.affine, source.affine)
    assert labels.max() == 400 and len(np.unique(labels)) == 401
    assert {128, 255, 256, 300, 400} <= set(np.unique(labels).tolist())

    header, *rows = read_rows(folder / "regions.tsv", "\t")
    assert header == ["index", "name", "network", "x", "y", "z"]
    source_rows = read_rows(labels_txt, "\t")
    assert [int(r[0]) for r in rows] == [int(r[0]) for r in source_rows]
    assert [r[1] for r in rows] == [r[1] for r in source_rows]
    assert [r[2] for r in rows] == [r[1].split("_")[2] for r in source_rows]
    assert {r[2] for r in rows} == set(standins.SCHAEFER_NETWORKS[7])
    # Each label's centre of mass, by scipy, in mm.
    index = [int(r[0]) for r in source_rows]
    centres = ndimage.center_of_mass(np.ones(expected.shape), expected, index)
    reference = nib.affines.apply_affine(source.affine, np.array(centres))
    np.testing.assert_allclose(np.array([r[3:] for r in rows], float), reference, atol=0.006)

    description = json.loads((folder / "atlas.json").read_text())
    assert description["kind"] == "labels" and description["id"] == SCHAEFER_ID
    assert description["fetcher"] == "nilearn.datasets.fetch_atlas_schaefer_2018"
    assert description["parameters"] == {"n_rois": 400, "yeo_networks": 7, "resolution_mm": 2}
    assert description["space"] == "MNI152" and "Schaefer" in description["citation"]
    assert description["n_regions"] == 400
    files = {Path(p).resolve() for p in description["files"].values()}
    assert files == {labels_txt.resolve(), image.resolve()}
    for path, digest in description["sha256"].items():
        assert digest == sha256(path)
    registry = json.loads((downloads / fetch.REGISTRY).read_text())
    assert {registry[str(p)] for p in files} == set(description["sha256"].values())
    assert (folder / "download_atlas.provenance.json").is_file()


def test_msdl_gives_the_canonical_files(offline, downloads, tmp_path):
    folder = atlas_node(tmp_path / "msdl", downloads, MSDL)
    labels_csv, maps = msdl_source(downloads)
    source = nib.load(maps)

    written = nib.load(folder / "atlas.nii.gz")
    assert written.get_data_dtype() == np.float32 and written.shape == source.shape
    weights = np.asanyarray(written.dataobj)
    np.testing.assert_array_equal(weights, source.get_fdata().astype(np.float32))
    np.testing.assert_array_equal(np.sign(weights), np.sign(source.get_fdata()))
    assert weights.min() < -0.1

    header, *rows = read_rows(folder / "regions.tsv", "\t")
    assert header == ["index", "name", "network", "x", "y", "z"]
    _, *source_rows = read_rows(labels_csv, ",")
    assert [int(r[0]) for r in rows] == list(range(1, 40))
    assert [r[1] for r in rows] == [r[3].strip() for r in source_rows]
    assert [r[2] for r in rows] == [r[4].strip() for r in source_rows]
    np.testing.assert_array_equal(
        np.array([r[3:] for r in rows], float), np.array([r[:3] for r in source_rows], float)
    )
    description = json.loads((folder / "atlas.json").read_text())
    assert description["kind"] == "maps" and description["parameters"] == {}
    assert description["fetcher"] == "nilearn.datasets.fetch_atlas_msdl"
    assert sorted(description["sha256"].values()) == sorted([sha256(labels_csv), sha256(maps)])


def test_the_same_atlas_twice_gives_the_same_bytes(offline, downloads, tmp_path):
    first = atlas_node(tmp_path / "first", downloads, SCHAEFER)
    second = atlas_node(tmp_path / "second", downloads, SCHAEFER)
    for name in ("atlas.nii.gz", "regions.tsv", "atlas.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.parametrize(("settings", "changed"), [(SCHAEFER, 0), (MSDL, 1)])
def test_a_file_changed_after_download_is_caught_on_reuse(
    offline, downloads, tmp_path, capsys, settings, changed
):
    atlas_node(tmp_path / "first", downloads, settings)
    source = (schaefer_source if settings is SCHAEFER else msdl_source)(downloads)[changed]
    with source.open("ab") as handle:
        handle.write(b"\0")
    folder = tmp_path / "second"
    with pytest.raises(SystemExit) as exit_info:
        atlas_node(folder, downloads, settings)
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert str(source) in message and "changed since it was downloaded" in message
    assert not folder.exists() or not any(folder.iterdir()), "nothing half-done is left"


@pytest.mark.parametrize(
    ("settings", "file_name"),
    [(MSDL, "MSDL_rois.zip"), (SCHAEFER, "Schaefer2018_400Parcels_7Networks_order.txt")],
)
@pytest.mark.parametrize("mirror", [None, "https://mirror.example.org/atlases"])
def test_offline_without_files_is_one_input_error(network, tmp_path, settings, file_name, mirror):
    empty = tmp_path / "downloads"
    with pytest.raises(InputError) as error:
        atlases.fetch_atlas(settings | {"url": mirror}, empty)
    assert network, "the fetcher should have tried (and failed) to connect"
    assert isinstance(error.value.__cause__, requests.RequestException)
    urls = URL.findall(error.value.what)
    assert urls and urls[0].endswith(file_name)
    if mirror is not None:
        assert urls[0] == f"{mirror}/{file_name}"
    hosts = {a[1][0] for a in network if a[0] == "getaddrinfo"}
    hosts |= {a[1][0][0] for a in network if a[0] != "getaddrinfo"}
    assert urlparse(urls[0]).hostname in hosts
    message = str(error.value)
    assert "retry" in message and "regions.url" in message
    folder = "msdl_atlas" if settings is MSDL else "schaefer_2018"
    assert str(empty / folder) in error.value.fix


def test_offline_atlas_node_stops_with_one_line_and_writes_nothing(network, tmp_path, capsys):
    folder = tmp_path / "out"
    with pytest.raises(SystemExit):
        atlas_node(folder, tmp_path / "downloads", SCHAEFER)
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and URL.search(lines[0]) and "regions.url" in lines[0]
    assert not (folder / "atlas.nii.gz").exists() and not (folder / "atlas.json").exists()


# --- the library's checks ------------------------------------------------------------------


def test_label_centres_need_the_table_and_the_image_to_match():
    labels = np.zeros((4, 4, 4), dtype=np.int32)
    labels[0, 0, 0], labels[3, 3, 3], labels[1:3, 0, 0] = 1, 300, 2
    centres = atlases.label_centres(labels, np.diag([2.0, 2.0, 2.0, 1.0]), [2, 300, 1], "lut")
    np.testing.assert_allclose(centres, [[3.0, 0.0, 0.0], [6.0, 6.0, 6.0], [0.0, 0.0, 0.0]])
    with pytest.raises(InputError, match=r"\[7\] of the look-up table have no voxel") as error:
        atlases.label_centres(labels, np.eye(4), [1, 2, 7, 300], "lut.txt")
    assert error.value.what == "lut.txt"
    with pytest.raises(InputError, match=r"\[300\] of the image are not in the look-up table"):
        atlases.label_centres(labels, np.eye(4), [1, 2], "lut.txt")


def test_labels_stored_as_floats_become_int32_and_fractions_are_refused(tmp_path):
    data = np.zeros((3, 3, 3))
    data[0, 0, 0], data[1, 1, 1] = 1000.0, 257.0
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), path)
    image, _ = atlases.atlas_image({"kind": "labels", "files": {"image": str(path)}})
    assert image.dtype == np.int32 and image.max() == 1000 and image[1, 1, 1] == 257
    data[2, 2, 2] = 2.5
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), path)
    with pytest.raises(InputError, match="not labels") as error:
        atlases.atlas_image({"kind": "labels", "files": {"image": str(path)}})
    assert error.value.what == str(path)


def test_schaefer_networks_are_the_third_field_of_the_names():
    assert atlases.schaefer_network("7Networks_LH_Vis_1") == "Vis"
    assert atlases.schaefer_network("17Networks_RH_DefaultA_PFCm_2") == "DefaultA"
    assert atlases.schaefer_network("Background") is None


# --- the node from the command line -------------------------------------------------------

OFFLINE_SITE = """\
import socket


def _blocked(*args, **kwargs):
    raise ConnectionRefusedError("network access blocked in tests")


socket.socket.connect = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
"""


def test_the_node_runs_standalone_from_the_command_line(downloads, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(OFFLINE_SITE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SCRIPTS)])}
    command = [sys.executable, str(SCRIPTS / "download_atlas.py")]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0
    for option in ("--image", "--regions", "--description", "--settings", "--download-dir"):
        assert option in shown.stdout
    folder = tmp_path / "atlases" / "msdl"
    arguments = ["--image", folder / "atlas.nii.gz", "--regions", folder / "regions.tsv"]
    arguments += ["--description", folder / "atlas.json", "--download-dir", downloads]
    result = subprocess.run(
        [*command, *map(str, arguments), "--settings", "{source: atlas, atlas: msdl}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(folder / "regions.tsv", sep="\t").shape == (39, 6)
    assert (folder / "download_atlas.provenance.json").is_file()
    # Without the files and without network: one line naming the URL, exit status 1.
    empty = tmp_path / "empty"
    arguments[arguments.index(downloads)] = empty
    result = subprocess.run(
        [*command, *map(str, arguments), "--settings", "{source: atlas, atlas: msdl}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 1 and len(errors) == 1
    assert "MSDL_rois.zip" in errors[0] and "retry" in errors[0]


# --- participants: ADHD's phenotypic table, a lab's participants.tsv ------------------------


@pytest.fixture(scope="session")
def adhd_downloads(tmp_path_factory):
    root = tmp_path_factory.mktemp("adhd")
    standins.make_adhd(root, subjects=3, n_volumes=10)
    return root


def test_adhd_phenotypes_become_participants(offline, adhd_downloads, tmp_path, capsys):
    downloads = Path(shutil.copytree(adhd_downloads, tmp_path / "downloads"))
    description = tmp_path / "data" / "adhd" / "dataset.json"
    download_node(description, downloads, "adhd", 3)
    phenotypic = downloads / "adhd" / standins.ADHD_PHENOTYPIC
    info = json.loads(description.read_text())
    recorded = info["dataset_files"]["phenotypic"]
    assert Path(recorded["path"]).resolve() == phenotypic.resolve()
    assert recorded["sha256"] == sha256(phenotypic)

    participants = description.parent / "participants.tsv"
    node(
        "import_download_participants",
        "--description",
        description,
        "--participants",
        participants,
    )
    header, *rows = read_rows(participants, "\t")
    source_header, *source_rows = read_rows(phenotypic, ",")
    assert header == ["participant_id"] + source_header[1:]
    # The subject folders are sub-<ID as nilearn spells it>, leading zeros kept.
    assert [r[0] for r in rows] == [f"sub-{s}" for s in ADHD_IDS[:3]]
    by_number = {int(r[0]): r[1:] for r in source_rows}
    for row, subject in zip(rows, ADHD_IDS[:3], strict=True):
        assert row[1:] == by_number[int(subject)]
    adhd = [int(r[0]) for r in source_rows if r[source_header.index("adhd")] == "1"]
    assert len(adhd) == 20, "the stand-in's diagnoses are balanced"

    phenotypic.write_text(phenotypic.read_text().replace("NYU", "NKI", 1))
    with pytest.raises(SystemExit):
        node(
            "import_download_participants",
            "--description",
            description,
            "--participants",
            participants.with_name("again.tsv"),
        )
    message = capsys.readouterr().err
    assert str(phenotypic) in message and "changed since it was downloaded" in message


def test_adhd_participants_need_a_row_per_subject(adhd_downloads, tmp_path):
    source = adhd_downloads / "adhd" / standins.ADHD_PHENOTYPIC
    table = adhd_participants(source, [ADHD_IDS[5], ADHD_IDS[0]])
    assert list(table["participant_id"]) == [f"sub-{ADHD_IDS[5]}", f"sub-{ADHD_IDS[0]}"]
    partial = tmp_path / "phenotypic.csv"
    partial.write_text("".join(source.read_text().splitlines(keepends=True)[:3]))
    with pytest.raises(InputError, match="no row for subject") as error:
        adhd_participants(partial, ADHD_IDS[:4])
    assert error.value.what == str(partial) and ADHD_IDS[2] in error.value.problem


def write_participants_tsv(path, rows):
    path.write_text("participant_id\tgroup\tage\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def test_local_participants_keep_the_dataset_subjects_in_order(tmp_path):
    source = write_participants_tsv(
        tmp_path / "participants.tsv",
        [("sub-05", "patient", "31"), ("sub-02", "control", "n/a"), ("sub-01", "patient", "40")],
    )
    out = tmp_path / "data" / "lab" / "participants.tsv"
    node(
        "import_local_participants",
        "--source",
        source,
        "--participants",
        out,
        "--subjects",
        "['01', '02']",
    )
    assert read_rows(out, "\t") == [
        ["participant_id", "group", "age"],
        ["sub-01", "patient", "40"],
        ["sub-02", "control", "n/a"],
    ]
    assert source.read_text().startswith("participant_id\tgroup"), "the lab's file is only read"


def test_local_participants_missing_a_subject_is_one_message(tmp_path, capsys):
    source = write_participants_tsv(tmp_path / "participants.tsv", [("sub-01", "patient", "40")])
    out = tmp_path / "participants.tsv.out"
    with pytest.raises(SystemExit) as exit_info:
        node(
            "import_local_participants",
            "--source",
            source,
            "--participants",
            out,
            "--subjects",
            "['01', '03']",
        )
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert str(source) in errors[0] and "'03'" in errors[0] and "participant_id" in errors[0]
    assert not out.exists()
    with pytest.raises(InputError, match="no row for subject"):
        import_participants(source, ["01", "03"])


def test_a_missing_participants_table_is_listed_with_the_missing_files(tmp_path):
    settings = {"subjects": ["01"], "runs": None, "participants": str(tmp_path / "nope.tsv")}
    problems = missing_files(settings, ["01"])
    assert problems == [
        f"participants table {tmp_path / 'nope.tsv'} not found (local.participants)"
    ]


# --- the workflow: planning and running the new jobs ------------------------------------

#: Blocks the network and, like tests/audit/sitecustomize.py, records every job's files.
WORKFLOW_SITE = """\
import os
import socket


def _blocked(*args, **kwargs):
    if args and getattr(args[0], "family", None) == socket.AF_UNIX:
        return _connect(*args, **kwargs)
    raise ConnectionRefusedError("network access blocked in tests")


_connect = socket.socket.connect
socket.socket.connect = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
exec(open(os.environ["FMRIFLOW_AUDIT_HOOK"]).read())
"""


def workflow_env(tmp_path, workdir):
    site = tmp_path / "workflow-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WORKFLOW_SITE)
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "FMRIFLOW_AUDIT_HOOK": str(AUDIT / "sitecustomize.py"),
        "FMRIFLOW_AUDIT_DIR": str(workdir / "audit"),
    }


def tiny_bold(path):
    data = np.random.default_rng(0).standard_normal((4, 4, 4, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def acquisition_config(path, downloads, lab):
    """ADHD (2 subjects), a lab's rest data, and connectomes on two atlases (three entries)."""
    config = {
        "download_dir": str(downloads),
        "datasets": {
            "adhd": {"source": "fetch", "fetch": {"fetcher": "adhd", "subjects": 2}},
            "lab": {
                "source": "local",
                "local": {
                    "kind": "rest",
                    "space": "MNI152NLin2009cAsym",
                    "subjects": ["01", "02"],
                    "bold": str(lab / "sub-{subject}_bold.nii.gz"),
                    "participants": str(lab / "participants.tsv"),
                },
            },
        },
        "connectomes": [
            {"name": "msdl", "dataset": "adhd", "regions": MSDL, "sparse": False},
            {"name": "schaefer", "dataset": "adhd", "regions": SCHAEFER, "sparse": False},
            {"name": "again", "dataset": "lab", "regions": SCHAEFER, "sparse": False},
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.workflow
def test_the_workflow_downloads_each_atlas_once_and_imports_participants(tmp_path):
    from test_fetch_workflow import planned_jobs
    from test_outputs import undeclared_accesses

    downloads = tmp_path / "downloads"
    standins.make_adhd(downloads, subjects=2, n_volumes=10)
    standins.make_msdl(downloads)
    standins.make_schaefer(downloads)
    lab = tmp_path / "lab"
    lab.mkdir()
    for subject in ("01", "02"):
        tiny_bold(lab / f"sub-{subject}_bold.nii.gz")
    write_participants_tsv(lab / "participants.tsv", [("sub-02", "b", "2"), ("sub-01", "a", "1")])
    config = acquisition_config(tmp_path / "config.yaml", downloads, lab)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = workflow_env(tmp_path, workdir)

    plan = run_snakemake(workdir, "-n", configfile=config, env=env, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = planned_jobs(plan.stdout + plan.stderr)
    assert sorted(d for r, d, _ in jobs if r == "import_download_participants") == ["adhd"]
    assert sorted(d for r, d, _ in jobs if r == "import_local_participants") == ["lab"]
    assert len([r for r, _, _ in jobs if r == "download_atlas"]) == 2

    targets = [
        f"data/atlases/{a}/{f}"
        for a in ("msdl", SCHAEFER_ID)
        for f in ("atlas.nii.gz", "regions.tsv", "atlas.json")
    ]
    targets += ["data/adhd/participants.tsv", "data/lab/participants.tsv"]
    result = run_snakemake(
        workdir, "--cores", "2", *targets, configfile=config, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-5000:]
    lab_table = pd.read_csv(workdir / "data" / "lab" / "participants.tsv", sep="\t")
    assert list(lab_table["participant_id"]) == ["sub-01", "sub-02"]
    adhd_table = pd.read_csv(workdir / "data" / "adhd" / "participants.tsv", sep="\t", dtype=str)
    assert list(adhd_table["participant_id"]) == [f"sub-{s}" for s in ADHD_IDS[:2]]
    for rule in ("download_atlas", "import_download_participants", "import_local_participants"):
        assert list(workdir.glob(f"logs/{rule}/*.log")) and list(
            workdir.glob(f"logs/benchmark/{rule}/*.tsv")
        )

    records = [json.loads(p.read_text()) for p in (workdir / "audit").glob("*.json")]
    rules = sorted(r["rule"] for r in records)
    assert rules.count("download_atlas") == 2 and "import_local_participants" in rules
    assert {
        f"{r['rule']} {r['wildcards']}": undeclared_accesses(r)
        for r in records
        if undeclared_accesses(r)
    } == {}

    again = run_snakemake(workdir, "-n", *targets, configfile=config, env=env, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.workflow
def test_a_missing_participants_table_stops_the_workflow_before_any_job(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    for subject in ("01", "02"):
        tiny_bold(lab / f"sub-{subject}_bold.nii.gz")
    config = acquisition_config(tmp_path / "config.yaml", tmp_path / "downloads", lab)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_snakemake(workdir, "-n", configfile=config, timeout=300)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert str(lab / "participants.tsv") in message and "local.participants" in message
    assert not (workdir / "data").exists()
