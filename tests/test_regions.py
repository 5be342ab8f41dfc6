"""Regions of a connectome: labels and maps on the data's voxels, region extraction and
atlas resampling against nilearn, and the naming of planted networks."""

import warnings

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine
from nilearn.image import resample_to_img
from nilearn.maskers import NiftiLabelsMasker
from nilearn.regions import RegionExtractor, img_to_signals_maps

from fmriflow import regions
from fmriflow.errors import InputError
from fmriflow.masking import unmask

SHAPE = (14, 12, 10)


@pytest.fixture(scope="module")
def grid():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2:-2, 2:-2, 2:-2] = True
    affine = np.diag([3.0, 3.5, 4.0, 1.0])
    affine[:3, 3] = [-21.0, -17.5, -16.0]
    return mask, affine


def world(mask, affine):
    """Coordinates of the mask's voxels, computed with nibabel."""
    return apply_affine(affine, np.argwhere(mask))


# --- labels ------------------------------------------------------------------------------


def wide_labels_volume(mask, rng):
    """int16 labels: inside the mask 1..5, 127, 128, 255, 256, 300, 1000 and 30000;
    outside it only, 400 (named) and 2000 (unnamed)."""
    inside = np.array([1, 2, 3, 4, 5, 127, 128, 255, 256, 300, 1000, 30000])
    volume = np.zeros(mask.shape, dtype=np.int16)
    voxels = np.flatnonzero(mask)
    volume.flat[voxels] = rng.permutation(np.resize(inside, voxels.size))
    volume[0, 0, :3] = 400
    volume[-1, -1, -3:] = 2000
    return volume, inside


def test_labels_regions_keep_full_width_labels_and_name_the_dropped(grid):
    """The references are nilearn's NiftiLabelsMasker (the labels kept, ``region_ids_``,
    and its masked atlas, ``region_atlas_``, which before nilearn 0.14 was cast to int8:
    128 became -128 and 256 became 0) and numpy."""
    mask, affine = grid
    volume, inside = wide_labels_volume(mask, np.random.default_rng(0))
    names = {1: "one", 300: "three hundred", 400: "outside", 30000: "far"}
    networks = {1: "visual", 30000: "default"}
    result = regions.labels_regions(volume, mask, affine, names=names, networks=networks)
    assert result.kind == "labels"
    assert result.values.dtype == np.int64
    np.testing.assert_array_equal(result.values, volume[mask].astype(np.int64))
    assert result.table["index"].tolist() == inside.tolist()
    assert result.dropped == ["outside", "parcel_2000"]
    assert result.table["name"].tolist()[:2] == ["one", "parcel_2"]
    assert result.table.set_index("index").loc[30000, "name"] == "far"
    assert result.table.set_index("index").loc[30000, "network"] == "default"
    assert result.table.set_index("index").loc[2, "network"] == ""

    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    masker = NiftiLabelsMasker(nib.Nifti1Image(volume, affine), mask_img=mask_img)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn's note of the labels the mask removes
        masker.fit_transform(nib.Nifti1Image(np.ones(SHAPE + (3,), np.float32), affine))
    kept = [v for k, v in masker.region_ids_.items() if k != "background"]
    assert result.table["index"].tolist() == kept
    masked_atlas = np.asarray(masker.region_atlas_.dataobj)
    np.testing.assert_array_equal(result.values, masked_atlas[mask])

    xyz = world(mask, affine)
    for row in result.table.itertuples():
        inside_label = volume[mask] == row.index
        assert row.n_voxels == inside_label.sum()
        np.testing.assert_allclose(
            [row.x, row.y, row.z], xyz[inside_label].mean(axis=0), atol=0.005
        )


def test_labels_lost_before_the_mask_are_dropped_and_named_too(grid):
    """An atlas label that resampling to a coarse grid erased entirely (absent from
    the volume) is as gone as one outside the mask: both are named, once."""
    mask, affine = grid
    volume = np.zeros(SHAPE, dtype=np.int32)
    volume[mask] = 7
    volume[0, 0, 0] = 9  # outside the mask
    names = {7: "kept", 9: "outside", 300: "erased"}
    found = regions.labels_regions(volume, mask, affine, names=names, expected=[7, 9, 300])
    assert list(found.table["name"]) == ["kept"]
    assert found.dropped == ["outside", "erased"]
    without = regions.labels_regions(volume, mask, affine, names=names)
    assert without.dropped == ["outside"]


def test_labels_regions_accept_integer_floats_and_refuse_the_rest(grid):
    mask, affine = grid
    volume, _ = wide_labels_volume(mask, np.random.default_rng(1))
    as_float = regions.labels_regions(volume.astype(np.float32), mask, affine)
    np.testing.assert_array_equal(as_float.values, volume[mask])
    with pytest.raises(InputError, match="non-integer values"):
        regions.labels_regions(volume + 0.3, mask, affine)
    outside = np.zeros(SHAPE, dtype=np.int16)
    outside[0, 0, 0] = 7
    with pytest.raises(InputError, match="no region has a voxel in the data's mask"):
        regions.labels_regions(outside, mask, affine)
    with pytest.raises(InputError, match=r"is on a \(14, 12, 9\) grid"):
        regions.labels_regions(volume[..., :-1], mask, affine)


# --- maps ----------------------------------------------------------------------------------


def signed_maps(mask, rng, n_maps=5):
    """Sparse signed maps; map 3 has weight only outside the mask."""
    maps = rng.standard_normal(SHAPE + (n_maps,))
    maps[np.abs(maps) < 1.0] = 0.0
    maps[mask, 2] = 0.0
    maps[~mask, 2] = 1.0
    return maps


@pytest.mark.filterwarnings("ignore:After applying mask to the maps image:UserWarning")
def test_maps_regions_keep_signed_weights_and_drop_maps_without_weight(grid):
    """Kept maps as nilearn's ``img_to_signals_maps`` finds them (from absolute sums,
    right for signed maps); weights as numpy indexes them."""
    mask, affine = grid
    maps = signed_maps(mask, np.random.default_rng(2))
    names = [f"m{k}" for k in range(5)]
    result = regions.maps_regions(
        maps,
        mask,
        affine,
        names=names,
        networks=list("abcde"),
        extra={"component": [1, 1, 2, 3, 3]},
    )
    assert result.kind == "maps"
    _, kept = img_to_signals_maps(
        nib.Nifti1Image(np.zeros(SHAPE + (2,), np.float32), affine),
        nib.Nifti1Image(maps, affine),
        mask_img=nib.Nifti1Image(mask.astype(np.uint8), affine),
    )
    assert kept == [0, 1, 3, 4]
    np.testing.assert_array_equal(result.values, maps[mask][:, kept])
    assert (result.values < 0).any() and (result.values > 0).any()
    assert result.dropped == ["m2"]
    assert result.table["name"].tolist() == ["m0", "m1", "m3", "m4"]
    assert result.table["network"].tolist() == list("abde")
    assert result.table["component"].tolist() == [1, 1, 3, 3]
    assert result.table["index"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(result.table["n_voxels"], (maps[mask][:, kept] != 0).sum(0))
    # Each centre lies among the strong voxels of its peak's sign.
    xyz = world(mask, affine)
    for k, row in enumerate(result.table.itertuples()):
        weights = result.values[:, k]
        peak = weights[np.argmax(np.abs(weights))]
        strong = (np.sign(weights) == np.sign(peak)) & (np.abs(weights) >= abs(peak) / 2)
        expected = np.average(xyz[strong], axis=0, weights=np.abs(weights[strong]))
        np.testing.assert_allclose([row.x, row.y, row.z], expected, atol=0.005)


def test_maps_regions_refuse_maps_outside_the_mask_and_wrong_names(grid):
    mask, affine = grid
    maps = np.zeros(SHAPE + (2,))
    maps[~mask] = 1.0
    with pytest.raises(InputError, match="no map has weight in the data's mask"):
        regions.maps_regions(maps, mask, affine)
    with pytest.raises(InputError, match="has 5 maps but 2 names"):
        regions.maps_regions(signed_maps(mask, np.random.default_rng(3)), mask, affine, ["a", "b"])


# --- region extraction and resampling --------------------------------------------------------


def components_image(affine):
    """Two components: one with two blobs of opposite signs, one with a single blob."""
    rng = np.random.default_rng(4)
    maps = np.zeros(SHAPE + (2,), dtype=np.float32)
    maps[3:7, 3:7, 3:7, 0] = 2.0
    maps[8:12, 6:10, 5:8, 0] = -3.0
    maps[3:8, 6:10, 2:5, 1] = 1.5
    maps *= rng.uniform(0.8, 1.2, maps.shape).astype(np.float32)  # zero outside the blobs
    return nib.Nifti1Image(maps, affine)


@pytest.mark.parametrize("extractor", ["connected_components", "local_regions"])
def test_extract_component_regions_equals_region_extractor(grid, extractor):
    mask, affine = grid
    components = components_image(affine)
    mask_img = nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine)
    found, parents = regions.extract_component_regions(
        components, mask_img, threshold=0.5, extractor=extractor, min_region_size=400.0
    )
    # The reference: each map divided by its own peak, written out here, then
    # nilearn's extractor with the same fraction as an absolute threshold.
    data = components.get_fdata()
    scaled = nib.Nifti1Image(
        (data / np.abs(data).max(axis=(0, 1, 2))).astype(np.float32), components.affine
    )
    reference = RegionExtractor(
        scaled,
        mask_img=mask_img,
        threshold=0.5,
        thresholding_strategy="img_value",
        two_sided=True,
        extractor=extractor,
        min_region_size=400.0,
        smoothing_fwhm=6.0,
    ).fit()
    np.testing.assert_array_equal(found.get_fdata(), reference.regions_img_.get_fdata())
    assert parents == [int(k) + 1 for k in reference.index_]
    values = found.get_fdata()
    negative = [(values[..., k] < 0).sum() for k in range(values.shape[-1])]
    if extractor == "connected_components":
        # Three blobs, three regions; the negative blob is one, its weights negative.
        assert parents == [1, 1, 2] and sorted(negative) == [0, 0, 48]
        assert regions.component_region_names(parents) == ["ic1_1", "ic1_2", "ic2_1"]
    else:
        # nilearn seeds the random walker at the smoothed maps' local maxima, so a
        # negative blob yields no region: the same here as in RegionExtractor.
        assert parents == [1, 2] and negative == [0, 0]


def test_region_threshold_is_a_fraction_of_each_maps_own_peak(grid):
    """Scaling one map does not change its regions, and a faint speckle of noise
    voxels (as thresholded ICA maps keep) below the fraction makes no region."""
    _, affine = grid
    mask_img = nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine)
    data = components_image(affine).get_fdata()
    speckle = np.zeros(SHAPE, dtype=bool)
    speckle[::3, ::3, ::3] = True
    noisy = data.copy()
    noisy[speckle & (data[..., 1] == 0), 1] = 0.2  # 0.2 / peak ~1.8 < 0.3: dropped
    scaled = noisy.copy()
    scaled[..., 0] *= 1000.0
    kept = []
    for volume in (data, noisy, scaled):
        image = nib.Nifti1Image(volume.astype(np.float32), affine)
        found, parents = regions.extract_component_regions(
            image, mask_img, threshold=0.3, min_region_size=400.0
        )
        kept.append((np.abs(found.get_fdata()) > 0, parents))
    for support, parents in kept[1:]:
        np.testing.assert_array_equal(support, kept[0][0])
        assert parents == kept[0][1]


def test_extract_component_regions_says_when_nothing_survives(grid):
    _, affine = grid
    mask_img = nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine)
    with pytest.raises(InputError, match="no region survived the threshold"):
        regions.extract_component_regions(
            components_image(affine), mask_img, threshold=0.5, min_region_size=1e6
        )


def nearest_reference(source, source_affine, target_affine, target_shape):
    """Nearest-neighbour resampling written out: each target voxel takes the source
    voxel its centre falls in (0 outside the source)."""
    ijk = np.indices(target_shape).reshape(3, -1).T
    inverse = np.linalg.inv(source_affine) @ target_affine
    source_ijk = np.rint(apply_affine(inverse, ijk)).astype(int)
    inside = np.all((source_ijk >= 0) & (source_ijk < source.shape), axis=1)
    out = np.zeros(len(ijk), dtype=source.dtype)
    out[inside] = source[tuple(source_ijk[inside].T)]
    return out.reshape(target_shape)


def test_resample_atlas_nearest_for_labels_continuous_for_maps(grid):
    """Against resample_to_img with the same interpolation, and the labels against a
    nearest-neighbour written out in numpy (no label wraps, none is invented)."""
    mask, affine = grid
    fine = np.diag([2.0, 2.0, 2.0, 1.0])
    fine[:3, 3] = [-21.7, -18.1, -16.3]  # no target centre half-way between source voxels
    rng = np.random.default_rng(5)
    values = np.array([1, 128, 256, 300, 30000], dtype=np.int16)
    labels = rng.choice(values, size=(22, 22, 22)).astype(np.int16)
    target = nib.Nifti1Image(mask.astype(np.uint8), affine)

    resampled, method = regions.resample_atlas(nib.Nifti1Image(labels, fine), "labels", target)
    assert method == "nearest"
    expected = resample_to_img(
        nib.Nifti1Image(labels, fine),
        target,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    np.testing.assert_array_equal(resampled.get_fdata(), expected.get_fdata())
    np.testing.assert_allclose(resampled.affine, affine)
    direct = nearest_reference(labels, fine, affine, SHAPE)
    np.testing.assert_array_equal(np.rint(resampled.get_fdata()).astype(int), direct)
    assert set(np.unique(direct)) <= set(values.tolist()) | {0}
    assert {128, 256, 30000} <= set(np.unique(direct))

    maps = rng.standard_normal((22, 22, 22, 3)).astype(np.float32)
    resampled, method = regions.resample_atlas(nib.Nifti1Image(maps, fine), "maps", target)
    assert method == "continuous"
    expected = resample_to_img(
        nib.Nifti1Image(maps, fine),
        target,
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    )
    np.testing.assert_allclose(resampled.get_fdata(), expected.get_fdata(), rtol=1e-6)
    # Continuous, not nearest: new values appear.
    assert not np.isin(resampled.get_fdata()[..., 0], maps[..., 0]).all()


# --- planted networks ---------------------------------------------------------------------------


def planted_maps(mask):
    """Three planted networks (peak 1) in separate thirds of the mask, as (voxels, networks)."""
    ijk = np.argwhere(mask)
    centres = np.array([[5, 4, 4], [9, 8, 5], [6, 8, 6]])
    distance = np.linalg.norm(ijk[:, None, :] - centres[None], axis=2)
    return np.exp(-(distance**2) / (2 * 1.2**2))


def test_planted_networks_of_labels_and_maps(grid):
    mask, affine = grid
    networks = planted_maps(mask)
    names = ["visual", "motor", "default"]
    closest = networks.argmax(axis=1)
    strong = networks.max(axis=1) > 0.6
    labels = np.where(strong, closest + 1, 0)
    labels[(labels == 2) & (np.argwhere(mask)[:, 2] > 5)] = 4  # the motor network in two parcels
    labels[~strong & (np.argwhere(mask)[:, 0] == 2)] = 9  # a parcel far from every network
    volume = unmask(labels, mask)
    label_set = regions.labels_regions(volume, mask, affine)
    found = regions.planted_networks_of(label_set, networks, names)
    assert dict(zip(label_set.table["index"], found, strict=True)) == {
        1: "visual",
        2: "motor",
        3: "default",
        4: "motor",
        9: "",
    }

    # Maps: a network's map, sign-flipped or not, with a faint tail over the whole mask
    # (a probabilistic atlas, spline ringing): the tail counts by its weight only.
    rng = np.random.default_rng(6)
    maps = np.column_stack([networks[:, 2], -2 * networks[:, 0], rng.random(len(networks))])
    maps[:, :2] += 0.02 * rng.random((len(networks), 2))
    map_set = regions.maps_regions(unmask(maps.T, mask).astype(np.float64), mask, affine)
    assert regions.planted_networks_of(map_set, networks, names) == ["default", "visual", ""]
