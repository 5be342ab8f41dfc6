"""Connectomes as the workflow computes them, checked from their files.

On the tiny run, every number the connectome stage writes is recomputed
another way from the workflow's own cached inputs: region signals with
nilearn's maskers on the cleaned data put back into images, matrices and
the tangent space with nilearn's ``ConnectivityMeasure``, sparse models
with scikit-learn's ``GraphicalLassoCV`` and nilearn's
``GroupSparseCovarianceCV``, edge-wise tests with scipy, and the
prediction's folds with scikit-learn's ``cross_val_score`` of a pipeline
whose tangent step is nilearn's. On the default run, the simulator's
ground truth is the reference: the planted coupling between two networks
is the group difference found, the planted grouping is predicted from the
connectomes and the null grouping is not.
"""

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.connectome import ConnectivityMeasure, GroupSparseCovarianceCV, prec_to_partial
from nilearn.maskers import NiftiLabelsMasker
from scipy import stats
from sklearn.covariance import GraphicalLassoCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from conftest import SCRIPTS, TINY_CONFIG, run_node_script

pytestmark = pytest.mark.workflow

REST = "simrest"


def config_entries(path):
    import yaml

    return {e["name"]: e for e in yaml.safe_load(path.read_text())["connectomes"]}


def subjects(workdir):
    return json.loads((workdir / "data" / REST / "dataset.json").read_text())["subjects"]


def group_folder(workdir, analysis):
    return workdir / "results" / REST / "group" / "connectomes" / analysis


def subject_folder(workdir, subject, analysis):
    return workdir / "results" / REST / f"sub-{subject}" / "connectomes" / analysis


def read_matrix(path):
    frame = pd.read_csv(path, sep="\t", index_col="region")
    assert list(frame.index.astype(str)) == list(frame.columns)
    return frame.to_numpy()


def signals_of(workdir, analysis):
    return [
        pd.read_csv(subject_folder(workdir, s, analysis) / "signals.tsv", sep="\t").to_numpy()
        for s in subjects(workdir)
    ]


def cleaned_image(workdir, subject):
    """The subject's cleaned matrix put back into a 4D image, and the subject's mask."""
    folder = workdir / "results" / REST / f"sub-{subject}"
    mask_img = nib.load(folder / "mask.nii.gz")
    mask = np.asarray(mask_img.dataobj) > 0
    clean = np.load(folder / "clean.npy")
    volumes = np.zeros(mask.shape + (len(clean),), dtype=np.float32)
    volumes[mask] = clean.T
    return nib.Nifti1Image(volumes, mask_img.affine), mask_img


def maps_reference(regions, image, mask_img):
    """Least squares of the maps on the subject's voxels, with numpy (nilearn's
    NiftiMapsMasker agrees since 0.14: tests/test_connectivity.py)."""
    mask = np.asarray(mask_img.dataobj) > 0
    maps = np.asarray(regions.dataobj, dtype=np.float64)[mask]
    data = np.asarray(image.dataobj, dtype=np.float64)[mask]
    return np.linalg.lstsq(maps, data, rcond=None)[0].T


@pytest.mark.parametrize("analysis", ["ica_regions", "ward"])
def test_signals_and_matrices_equal_their_references_on_the_cached_data(tiny_run, analysis):
    regions = nib.load(group_folder(tiny_run, analysis) / "regions.nii.gz")
    for subject in subjects(tiny_run):
        image, mask_img = cleaned_image(tiny_run, subject)
        if regions.ndim == 4:
            reference = maps_reference(regions, image, mask_img)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                masker = NiftiLabelsMasker(regions, mask_img=mask_img)
                reference = masker.fit_transform(image)
        folder = subject_folder(tiny_run, subject, analysis)
        signals = pd.read_csv(folder / "signals.tsv", sep="\t").to_numpy()
        np.testing.assert_allclose(signals, reference, rtol=1e-4, atol=1e-5)
        for kind, file in (
            ("covariance", "covariance.tsv"),
            ("correlation", "correlation.tsv"),
            ("partial correlation", "partial_correlation.tsv"),
        ):
            expected = ConnectivityMeasure(kind=kind).fit_transform([signals])[0]
            np.testing.assert_allclose(read_matrix(folder / file), expected, atol=1e-10)


@pytest.mark.parametrize("analysis", ["ica_regions", "ward"])
def test_group_matrices_equal_nilearn(tiny_run, analysis):
    folder = group_folder(tiny_run, analysis)
    signals = signals_of(tiny_run, analysis)
    tangent = ConnectivityMeasure(kind="tangent")
    expected = tangent.fit_transform(signals)
    np.testing.assert_allclose(np.load(folder / "tangent.npy"), expected, atol=1e-6)
    np.testing.assert_allclose(
        read_matrix(folder / "geometric_mean.tsv"), tangent.mean_, rtol=1e-6
    )
    correlations = ConnectivityMeasure(kind="correlation").fit_transform(signals)
    np.testing.assert_allclose(
        read_matrix(folder / "mean_correlation.tsv"), correlations.mean(axis=0), atol=1e-10
    )


def test_sparse_models_equal_scikit_learn_and_nilearn(tiny_run):
    """As nilearn's examples fit them: on signals standardised per region (nilearn's
    ``zscore_sample``, what ``standardize=True`` means since nilearn 0.14)."""
    from nilearn.signal import standardize_signal

    folder = group_folder(tiny_run, "ica_regions")
    signals = signals_of(tiny_run, "ica_regions")
    standardised = [standardize_signal(s, standardize="zscore_sample") for s in signals]
    for subject, data in zip(subjects(tiny_run), standardised, strict=True):
        estimator = GraphicalLassoCV(cv=3, max_iter=500).fit(data)
        found = read_matrix(
            subject_folder(tiny_run, subject, "ica_regions") / "graphical_lasso.tsv"
        )
        np.testing.assert_allclose(found, prec_to_partial(estimator.precision_), atol=1e-8)
    group = GroupSparseCovarianceCV(cv=3, verbose=0).fit(standardised)
    expected = np.array([prec_to_partial(p) for p in np.moveaxis(group.precisions_, -1, 0)])
    np.testing.assert_allclose(np.load(folder / "group_sparse.npy"), expected, atol=1e-8)
    summary = json.loads((folder / "sparse.json").read_text())
    assert summary["group_sparse_alpha"] == pytest.approx(group.alpha_)


def test_edge_tests_equal_scipy(tiny_run):
    folder = group_folder(tiny_run, "ica_regions")
    participants = pd.read_csv(tiny_run / "data" / REST / "participants.tsv", sep="\t")
    groups = participants.set_index("participant_id").loc[
        [f"sub-{s}" for s in subjects(tiny_run)], "group"
    ]
    correlations = np.array(
        [
            read_matrix(subject_folder(tiny_run, s, "ica_regions") / "correlation.tsv")
            for s in subjects(tiny_run)
        ]
    )
    i, j = np.triu_indices(correlations.shape[1], k=1)
    z = np.arctanh(correlations[:, i, j])
    control, coupled = z[groups.to_numpy() == "control"], z[groups.to_numpy() == "coupled"]
    t, p = stats.ttest_ind(coupled, control, equal_var=False)
    edges = pd.read_csv(folder / "edges.tsv", sep="\t")
    found = edges[edges["measure"] == "correlation"]
    np.testing.assert_allclose(found["t"], t, rtol=1e-6)
    np.testing.assert_allclose(found["p"], p, rtol=1e-6)
    np.testing.assert_allclose(
        found["p_corrected"], stats.false_discovery_control(p, method="bh"), rtol=1e-6
    )


def test_prediction_folds_equal_scikit_learn_with_nilearns_tangent_space(tiny_run):
    """The reference pipeline fits nilearn's tangent space inside each fold."""
    entry = config_entries(TINY_CONFIG)["ica_regions"]["predict"]
    folder = group_folder(tiny_run, "ica_regions") / "prediction" / "group"
    participants = pd.read_csv(tiny_run / "data" / REST / "participants.tsv", sep="\t")
    y = participants.set_index("participant_id").loc[
        [f"sub-{s}" for s in subjects(tiny_run)], "group"
    ]
    signals = signals_of(tiny_run, "ica_regions")
    smallest = int(y.value_counts().min())
    cv = RepeatedStratifiedKFold(
        n_splits=min(entry["n_splits"], smallest), n_repeats=entry["n_repeats"], random_state=0
    )
    folds = pd.read_csv(folder / "folds.tsv", sep="\t")
    for kind, measure in (("tangent", "tangent"), ("correlation", "correlation")):
        pipeline = make_pipeline(
            ConnectivityMeasure(kind=kind, vectorize=True, discard_diagonal=kind != "tangent"),
            LogisticRegression(max_iter=5000),
        )
        expected = cross_val_score(pipeline, signals, y.to_numpy(), cv=cv)
        found = folds[folds["measure"] == measure]["accuracy"].to_numpy()
        np.testing.assert_array_equal(found, expected)
    accuracy = pd.read_csv(folder / "accuracy.tsv", sep="\t").set_index("measure")
    assert set(accuracy.index) == {"correlation", "partial_correlation", "tangent"}
    # Chance: each fold's training majority guessed for its test subjects.
    labels = y.to_numpy()
    chance = []
    for train, test in cv.split(np.zeros(len(labels)), labels):
        values, counts = np.unique(labels[train], return_counts=True)
        chance.append(np.mean(labels[test] == values[np.argmax(counts)]))
    np.testing.assert_allclose(accuracy["chance"], np.mean(chance))
    np.testing.assert_allclose(folds[folds["measure"] == "tangent"]["chance"], chance)


def test_a_participants_table_without_a_subject_stops_prediction(tiny_run, tmp_path):
    folder = group_folder(tiny_run, "ica_regions")
    table = pd.read_csv(tiny_run / "data" / REST / "participants.tsv", sep="\t")
    short = tmp_path / "participants.tsv"
    table[table["participant_id"] != "sub-02"].to_csv(short, sep="\t", index=False)
    names = subjects(tiny_run)
    per_subject = {
        measure: [subject_folder(tiny_run, s, "ica_regions") / f"{measure}.tsv" for s in names]
        for measure in ("covariance", "correlation", "partial_correlation")
    }
    out = tmp_path / "out"
    result = run_node_script(
        SCRIPTS / "connectome_predict.py",
        "--covariance",
        *per_subject["covariance"],
        "--correlation",
        *per_subject["correlation"],
        "--partial-correlation",
        *per_subject["partial_correlation"],
        "--table",
        folder / "regions.tsv",
        "--participants",
        short,
        "--accuracy",
        out / "accuracy.tsv",
        "--folds",
        out / "folds.tsv",
        "--summary",
        out / "summary.json",
        "--figure",
        out / "accuracy.png",
        "--analysis",
        json.dumps(
            {
                "name": "x",
                "dataset": REST,
                "regions": {"source": "ica"},
                "predict": {"targets": ["group"], "n_splits": 2, "n_repeats": 1},
            }
        ),
        "--subjects",
        json.dumps(names),
        "--target",
        "group",
    )
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()
    assert len(message) == 1, result.stderr
    assert str(short) in message[0] and "no row for subject(s) ['02']" in message[0]
    assert not out.exists() or not any(out.iterdir())


# --- the default run: the simulator's ground truth ------------------------------------


def coupled_pair(workdir):
    truth = json.loads((workdir / "data" / REST / "dataset.json").read_text())["ground_truth"]
    return set(truth["coupled_networks"])


def test_ica_regions_are_the_planted_networks(default_run):
    table = pd.read_csv(group_folder(default_run, "ica_regions") / "regions.tsv", sep="\t")
    truth = json.loads((default_run / "data" / REST / "dataset.json").read_text())["ground_truth"]
    named = set(table["network"].dropna())
    assert set(truth["names"]) <= named, table


def test_the_planted_coupling_is_the_group_difference_found(default_run):
    """Significant edges link the two coupled networks' regions, in every measure
    that sees the coupling (correlation and tangent space)."""
    folder = group_folder(default_run, "ica_regions")
    table = pd.read_csv(folder / "regions.tsv", sep="\t").set_index("name")
    network = table["network"].fillna("")
    edges = pd.read_csv(folder / "edges.tsv", sep="\t")
    pair = coupled_pair(default_run)
    for measure in ("correlation", "tangent"):
        chosen = edges[(edges["measure"] == measure) & edges["significant"]]
        assert len(chosen) >= 1, measure
        links = [
            {network[a], network[b]}
            for a, b in zip(chosen["region_a"], chosen["region_b"], strict=True)
        ]
        assert np.mean([link == pair for link in links]) >= 0.8, (measure, links)
        # The coupled group's edges are the stronger ones.
        assert (chosen["t"] > 0).mean() >= 0.8


def test_ward_parcels_differ_where_they_overlap_the_coupled_networks(default_run):
    """The parcels of a significant edge overlap the two coupled networks (the overlap
    recomputed here from the parcels' image and the planted maps)."""
    folder = group_folder(default_run, "ward_parcels")
    truth = json.loads((default_run / "data" / REST / "dataset.json").read_text())["ground_truth"]
    labels = np.asarray(nib.load(folder / "regions.nii.gz").dataobj)
    planted = np.asarray(nib.load(default_run / "data" / REST / "networks.nii.gz").dataobj)
    table = pd.read_csv(folder / "regions.tsv", sep="\t").set_index("name")
    pair = [truth["names"].index(name) for name in truth["coupled_networks"]]

    def overlaps(name):
        weights = planted[labels == table.loc[name, "index"]].mean(axis=0)
        return {k for k in pair if weights[k] > 0.1}

    edges = pd.read_csv(folder / "edges.tsv", sep="\t")
    chosen = edges[(edges["measure"] == "correlation") & edges["significant"]]
    assert len(chosen) >= 1
    for a, b in zip(chosen["region_a"], chosen["region_b"], strict=True):
        assert overlaps(a) | overlaps(b) == set(pair) and overlaps(a) and overlaps(b), (a, b)


@pytest.mark.parametrize("analysis", ["ica_regions", "ward_parcels"])
def test_the_planted_grouping_is_predicted_and_the_null_grouping_is_not(default_run, analysis):
    folder = group_folder(default_run, analysis) / "prediction"
    planted = pd.read_csv(folder / "group" / "accuracy.tsv", sep="\t").set_index("measure")
    null = pd.read_csv(folder / "null_group" / "accuracy.tsv", sep="\t").set_index("measure")
    # The tangent space (Dadi et al. 2019's best) finds the planted grouping.
    assert planted.loc["tangent", "accuracy"] >= 0.8, planted
    assert planted.loc["tangent", "p_value"] <= 0.05, planted
    # The null grouping: no measure better than chance beyond what permutations give.
    assert (null["p_value"] > 0.01).all(), null
    assert (null["accuracy"] < planted.loc["tangent", "accuracy"]).all(), null
    n_subjects = len(subjects(default_run))
    assert (planted["chance"] == 0.5).all() and n_subjects % 2 == 0


# --- atlases, end to end on the stand-ins of nilearn's downloads ---------------------


def test_atlas_connectomes_run_offline_and_drop_vanished_regions_for_everyone(tmp_path):
    """ADHD stand-ins (6 subjects) with MSDL maps and Schaefer's 400 labels, network
    blocked: the atlases are resampled to the data's grid as nilearn resamples them, the
    Schaefer regions with no voxel in the group's mask are named in the log and in
    regions.json and dropped from every subject, and every job of the stage runs."""
    import yaml
    from nilearn.image import resample_to_img
    from test_atlases import MSDL, SCHAEFER, SCHAEFER_ID, workflow_env

    import standins
    from conftest import run_snakemake

    downloads = tmp_path / "downloads"
    standins.make_adhd(downloads, subjects=6, n_volumes=40)
    standins.make_msdl(downloads)
    standins.make_schaefer(downloads)
    predict = {"targets": ["adhd"], "n_splits": 3, "n_repeats": 1, "permutations": 5}
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "download_dir": str(downloads),
                "datasets": {
                    "adhd": {
                        "source": "fetch",
                        "fetch": {"fetcher": "adhd", "subjects": 6},
                        "preprocess": {"mask": "mni_brain", "clean": {"confounds": True}},
                    }
                },
                "connectomes": [
                    {
                        "name": "msdl",
                        "dataset": "adhd",
                        "regions": MSDL,
                        "sparse": True,
                        "compare": {"column": "adhd"},
                        "predict": predict,
                    },
                    {
                        "name": "schaefer",
                        "dataset": "adhd",
                        "regions": SCHAEFER,
                        "predict": predict,
                    },
                ],
            }
        )
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_snakemake(
        workdir, "--cores", "2", configfile=config, env=workflow_env(tmp_path, workdir)
    )
    assert result.returncode == 0, result.stderr[-5000:]

    group = workdir / "results" / "adhd" / "group" / "connectomes"
    ids = json.loads((workdir / "data" / "adhd" / "dataset.json").read_text())["subjects"]
    masks = [nib.load(workdir / "results" / "adhd" / f"sub-{s}" / "mask.nii.gz") for s in ids]
    common = np.logical_and.reduce([np.asarray(m.dataobj) > 0 for m in masks])
    common_img = nib.Nifti1Image(common.astype(np.uint8), masks[0].affine)

    # Schaefer: nearest-neighbour labels on the data's grid, vanished labels dropped.
    atlas = nib.load(workdir / "data" / "atlases" / SCHAEFER_ID / "atlas.nii.gz")
    resampled = np.asarray(
        resample_to_img(atlas, common_img, interpolation="nearest", force_resample=True).dataobj
    ).astype(int)
    present = set(np.unique(resampled[common])) - {0}
    table = pd.read_csv(group / "schaefer" / "regions.tsv", sep="\t")
    atlas_table = pd.read_csv(workdir / "data" / "atlases" / SCHAEFER_ID / "regions.tsv", sep="\t")
    vanished = sorted(set(atlas_table["index"]) - present)
    assert vanished and set(table["index"]) == present
    summary = json.loads((group / "schaefer" / "regions.json").read_text())
    by_index = dict(zip(atlas_table["index"], atlas_table["name"], strict=True))
    assert sorted(summary["dropped"]) == sorted(by_index[i] for i in vanished)
    assert summary["resampling"] == "nearest"
    log = (workdir / "logs" / "connectome_regions" / "adhd_schaefer.log").read_text()
    assert f"{len(vanished)} region(s)" in log and by_index[vanished[0]] in log
    assert "nearest" in log
    labels = np.asarray(nib.load(group / "schaefer" / "regions.nii.gz").dataobj)
    np.testing.assert_array_equal(
        labels[common], np.where(np.isin(resampled, list(present)), resampled, 0)[common]
    )
    for subject in ids:
        folder = workdir / "results" / "adhd" / f"sub-{subject}" / "connectomes"
        for analysis, regions in (("schaefer", table), ("msdl", None)):
            columns = pd.read_csv(folder / analysis / "signals.tsv", sep="\t", nrows=1).columns
            if regions is not None:
                assert list(columns) == list(regions["name"])

    # MSDL: continuous resampling keeps signed weights.
    maps = nib.load(workdir / "data" / "atlases" / "msdl" / "atlas.nii.gz")
    expected = np.asarray(
        resample_to_img(maps, common_img, interpolation="continuous", force_resample=True).dataobj
    )[common]
    found = np.asarray(nib.load(group / "msdl" / "regions.nii.gz").dataobj)[common]
    kept = pd.read_csv(group / "msdl" / "regions.tsv", sep="\t")
    msdl_names = pd.read_csv(workdir / "data" / "atlases" / "msdl" / "regions.tsv", sep="\t")[
        "name"
    ]
    columns = [list(msdl_names).index(n) for n in kept["name"]]
    np.testing.assert_allclose(found, expected[:, columns], rtol=1e-5, atol=1e-6)
    assert (found < 0).any()

    for analysis in ("msdl", "schaefer"):
        accuracy = pd.read_csv(group / analysis / "prediction" / "adhd" / "accuracy.tsv", sep="\t")
        assert set(accuracy["measure"]) == {"correlation", "partial_correlation", "tangent"}
    assert (group / "msdl" / "edges.tsv").exists() and (group / "msdl" / "sparse.png").exists()
