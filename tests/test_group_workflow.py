"""Group ICA and clustering as the workflow runs them, checked from their files.

The default run's group ICA is scored against the simulator's planted
networks with an assignment computed here (scipy's Hungarian solver), and
against nilearn's CanICA fitted on the same cleaned data; the parcellations'
reported statistics are recomputed from the label image and the cleaned
data; and a group job given subjects that are not in one space stops with
one message and writes nothing.
"""

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from conftest import SCRIPTS, run_node_script

pytestmark = pytest.mark.workflow

REST = "simrest"
NAMES = ("pca_9.npy", "clean.npy")


def rest_mask(workdir):
    return nib.load(workdir / "results" / REST / "sub-01" / "mask.nii.gz").get_fdata() > 0


def planted_networks(workdir, mask):
    """Ground-truth maps (networks x voxels) and their names."""
    folder = workdir / "data" / REST
    truth = json.loads((folder / "dataset.json").read_text())["ground_truth"]
    maps = nib.load(folder / truth["networks"]).get_fdata()[mask].T
    return maps, truth["names"]


def best_match(components, networks):
    """Component -> network assignment maximising the summed correlation."""
    n = len(components)
    correlations = np.corrcoef(components, networks)[:n, n:]
    rows, columns = linear_sum_assignment(-correlations)
    return columns, correlations[rows, columns]


@pytest.mark.parametrize("name", ["canica", "dict_learning"])
def test_group_ica_recovers_the_planted_networks(default_run, name):
    mask = rest_mask(default_run)
    networks, names = planted_networks(default_run, mask)
    folder = default_run / "results" / REST / "group" / "ica" / name
    components = nib.load(folder / "components.nii.gz").get_fdata()[mask].T
    assert len(components) == len(networks)
    assert not nib.load(folder / "components.nii.gz").get_fdata()[~mask].any()
    matched, correlations = best_match(components, networks)
    # Every planted network is found, and the table names it as we do.
    assert correlations.min() > 0.5 and correlations.mean() > 0.7
    table = pd.read_csv(folder / "components.tsv", sep="\t")
    assert list(table["name"]) == [names[i] for i in matched]
    # Shuffling the truth's voxels destroys the match: the score is not trivial.
    rng = np.random.default_rng(0)
    _, null = best_match(components, np.array([rng.permutation(m) for m in networks]))
    assert null.mean() < 0.1
    stability = pd.read_csv(folder / "stability.tsv", sep="\t")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["stability_mean"] == pytest.approx(stability["reproducibility"].mean())
    assert len(list((folder / "maps").glob("component_*.png"))) == len(components)


def test_group_ica_recovers_the_networks_as_well_as_nilearns_canica(default_run):
    """nilearn's CanICA on the same cleaned volumes is the reference."""
    from nilearn.decomposition import CanICA

    mask_img = nib.load(default_run / "results" / REST / "sub-01" / "mask.nii.gz")
    mask = mask_img.get_fdata() > 0
    networks, _ = planted_networks(default_run, mask)
    images = []
    for subject in sorted((default_run / "results" / REST).glob("sub-*")):
        clean = np.load(subject / "clean.npy")
        volumes = np.zeros(mask.shape + (len(clean),), dtype=np.float32)
        volumes[mask] = clean.T
        images.append(nib.Nifti1Image(volumes, mask_img.affine))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        canica = CanICA(
            n_components=len(networks),
            mask=mask_img,
            standardize="zscore_sample",
            random_state=0,
            n_init=3,
        ).fit(images)
    reference = canica.components_
    _, theirs = best_match(reference, networks)
    ours = (
        nib.load(default_run / "results" / REST / "group" / "ica" / "canica" / "components.nii.gz")
        .get_fdata()[mask]
        .T
    )
    _, mine = best_match(ours, networks)
    assert mine.mean() >= theirs.mean() - 0.05, (mine.mean(), theirs.mean())


def regions_per_parcel(volume, mask):
    """Connected pieces (6-connectivity) of every parcel of a label image."""
    structure = ndimage.generate_binary_structure(3, 1)
    labels = np.unique(volume[mask])
    return {int(k): ndimage.label(volume == k, structure)[1] for k in labels}


def explicit_r2(workdir, labels):
    """1 - residual / total after replacing each voxel by its parcel mean, over subjects."""
    residual = total = 0.0
    for subject in sorted((workdir / "results" / REST).glob("sub-*")):
        data = np.load(subject / "clean.npy").astype(np.float64)
        data -= data.mean(axis=0)
        means = np.zeros_like(data)
        for parcel in np.unique(labels):
            columns = labels == parcel
            means[:, columns] = data[:, columns].mean(axis=1, keepdims=True)
        residual += np.sum((data - means) ** 2)
        total += np.sum(data**2)
    return 1 - residual / total


@pytest.mark.parametrize("n_clusters", [20, 100])
def test_parcellations_report_what_their_labels_show(default_run, n_clusters):
    mask = rest_mask(default_run)
    pieces = {}
    for method in ("ward", "kmeans"):
        folder = default_run / "results" / REST / "group" / "clustering" / f"{method}_{n_clusters}"
        volume = np.asarray(nib.load(folder / "labels.nii.gz").dataobj)
        assert not volume[~mask].any() and volume[mask].min() >= 1
        assert sorted(np.unique(volume[mask])) == list(range(1, n_clusters + 1))
        regions = regions_per_parcel(volume, mask)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["n_parcels"] == n_clusters
        assert summary["n_regions"] == sum(regions.values())
        assert summary["n_fragmented"] == sum(count > 1 for count in regions.values())
        sizes = np.bincount(volume[mask])[1:]
        assert (summary["size_min"], summary["size_max"]) == (sizes.min(), sizes.max())
        assert summary["r2"] == pytest.approx(explicit_r2(default_run, volume[mask]), rel=1e-6)
        stats = pd.read_csv(folder / "stats.tsv", sep="\t")
        assert stats.loc[0, "n_regions"] == summary["n_regions"]
        pieces[method] = summary["n_regions"]
    # Ward under spatial connectivity gives one region per parcel; K-means does not.
    assert pieces["ward"] == n_clusters and pieces["kmeans"] > n_clusters


def run_group_ica(tiny_run, tmp_path, second_mask, drop_voxel=None):
    """The group_ica node on the tiny run's rest subjects, sub-02's mask replaced.

    With ``drop_voxel`` (a position among sub-02's voxels), that voxel's column
    is removed from sub-02's matrices too, as if its preprocessing had dropped it.
    """
    results = tiny_run / "results" / REST
    tmp_path.mkdir(parents=True, exist_ok=True)
    mask_path = tmp_path / "sub-02_mask.nii.gz"
    nib.save(second_mask, mask_path)
    subjects = json.loads((tiny_run / "data" / REST / "dataset.json").read_text())["subjects"]
    folders = [f"sub-{s}" for s in subjects]
    assert folders[:2] == ["sub-01", "sub-02"]
    matrices = {name: [results / folder / name for folder in folders] for name in NAMES}
    masks = [results / folder / "mask.nii.gz" for folder in folders]
    masks[1] = mask_path
    if drop_voxel is not None:
        for name, paths in matrices.items():
            paths[1] = tmp_path / name
            np.save(paths[1], np.delete(np.load(results / "sub-02" / name), drop_voxel, axis=1))
    out = tmp_path / "ica"
    analysis = (
        "{name: canica, dataset: simrest, method: canica, n_components: 3, "
        "n_subject_components: null, threshold: auto, seeds: [0], stability: subjects, "
        "n_init: 1, alpha: 1.0}"
    )
    result = run_node_script(
        SCRIPTS / "group_ica.py",
        "--data", *matrices["pca_9.npy"],
        "--clean", *matrices["clean.npy"],
        "--masks", *masks,
        "--mean", results / "sub-01" / "mean.nii.gz",
        "--description", tiny_run / "data" / REST / "dataset.json",
        "--components", out / "components.nii.gz",
        "--table", out / "components.tsv",
        "--stability", out / "stability.tsv",
        "--summary", out / "summary.json",
        "--overlay", out / "components.png",
        "--maps", out / "maps",
        "--analysis", analysis,
        "--log", tmp_path / "group_ica.log",
    )  # fmt: skip
    return result, out


def test_subjects_not_in_one_space_stop_the_group_job(tiny_run, tmp_path):
    """sub-02's grid is shifted by 2 mm: one message naming it, nothing written."""
    image = nib.load(tiny_run / "results" / REST / "sub-02" / "mask.nii.gz")
    affine = image.affine.copy()
    affine[0, 3] += 2.0
    result, out = run_group_ica(tiny_run, tmp_path, nib.Nifti1Image(image.dataobj, affine))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("fmriflow group_ica: error: ")
    assert "subject 02" in lines[0] and "not in a common space" in lines[0], lines[0]
    assert not out.exists() or not any(out.rglob("*"))


def test_subjects_with_different_masks_share_their_common_voxels(tiny_run, tmp_path):
    """sub-02 lacks one voxel: the maps are zero there, and the log says sub-01 loses it."""
    image = nib.load(tiny_run / "results" / REST / "sub-02" / "mask.nii.gz")
    data = np.asarray(image.dataobj).copy()
    position = int(np.count_nonzero(data) // 2)
    voxel = tuple(np.argwhere(data)[position])
    data[voxel] = 0
    second = nib.Nifti1Image(data, image.affine)
    result, out = run_group_ica(tiny_run, tmp_path, second, drop_voxel=position)
    assert result.returncode == 0, result.stderr
    components = nib.load(out / "components.nii.gz").get_fdata()
    mask = rest_mask(tiny_run)
    assert not components[voxel].any()
    assert np.count_nonzero(np.abs(components).sum(axis=-1)[mask]) > mask.sum() // 2
    log = (tmp_path / "group_ica.log").read_text()
    assert "subject 01: 1 of its" in log and "common voxels" in log
    # A mask that does not describe its matrix is refused, naming the subject.
    result, out = run_group_ica(tiny_run, tmp_path / "wrong", second)
    assert result.returncode == 1 and "subject 02" in result.stderr
    assert "columns but the subject's mask has" in result.stderr
