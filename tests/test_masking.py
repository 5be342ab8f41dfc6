"""Masking: streamed extraction against nilearn's masker, round trips, mask choices."""

import gzip

import nibabel as nib
import numpy as np
import pytest
from nilearn.maskers import NiftiMasker
from nilearn.masking import compute_epi_mask

from fmriflow import masking
from fmriflow.errors import InputError

from conftest import write_image


def random_bold(rng, shape=(9, 11, 8), n_volumes=45):
    """Integer BOLD-like data: a positive baseline plus noise."""
    return (1000 + 50 * rng.standard_normal(shape + (n_volumes,))).astype(np.int16)


def blob_mask(shape):
    grid = np.indices(shape)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    return (((grid - centre) / (np.array(shape)[:, None, None, None] / 2.5)) ** 2).sum(0) <= 1


def extract(path, mask, smoothing_fwhm=None):
    n_volumes = nib.load(path).shape[3]
    out = np.zeros((n_volumes, int(mask.sum())), dtype=np.float32)
    mean = masking.extract_masked(path, mask, out, smoothing_fwhm)
    return out, mean


@pytest.mark.parametrize(
    ("dtype", "slope", "suffix"),
    [(np.int16, None, ".nii.gz"), (np.int16, 0.5, ".nii.gz"), (np.float32, None, ".nii")],
)
def test_extract_equals_nilearn_masker(tmp_path, rng, anisotropic_affine, dtype, slope, suffix):
    data = random_bold(rng)
    path = write_image(
        tmp_path / f"bold{suffix}", data, anisotropic_affine, dtype=dtype, slope=slope, inter=3.0
    )
    mask = blob_mask(data.shape[:3])
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), anisotropic_affine)

    ours, mean = extract(path, mask)
    reference = NiftiMasker(mask_img=mask_img, standardize=None).fit().transform(path)

    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-4)
    stored = nib.load(path).get_fdata()
    np.testing.assert_allclose(mean, stored.mean(axis=3), rtol=1e-10)


def test_extract_with_smoothing_equals_nilearn(tmp_path, rng, anisotropic_affine):
    data = random_bold(rng)
    path = write_image(tmp_path / "bold.nii.gz", data, anisotropic_affine)
    mask = blob_mask(data.shape[:3])
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), anisotropic_affine)

    ours, _ = extract(path, mask, smoothing_fwhm=6.0)
    reference = (
        NiftiMasker(mask_img=mask_img, smoothing_fwhm=6.0, standardize=None).fit().transform(path)
    )
    unsmoothed, _ = extract(path, mask)

    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-3)
    # The comparison can fail: smoothing really changed the values.
    assert np.abs(ours - unsmoothed).max() > 10


def test_extract_spans_several_chunks(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(masking, "CHUNK_VOLUMES", 4)
    data = random_bold(rng, n_volumes=23)
    path = write_image(tmp_path / "bold.nii.gz", data)
    mask = blob_mask(data.shape[:3])
    ours, _ = extract(path, mask)
    np.testing.assert_array_equal(ours, data[mask].T.astype(np.float32))


def test_unmask_round_trips_exactly_and_matches_nilearn(rng, anisotropic_affine):
    mask = blob_mask((9, 11, 8))
    matrix = rng.standard_normal((5, int(mask.sum()))).astype(np.float32)
    image = masking.unmask(matrix, mask)
    assert image.shape == mask.shape + (5,)
    np.testing.assert_array_equal(image[mask].T, matrix)
    assert np.all(image[~mask] == 0)

    masker = NiftiMasker(nib.Nifti1Image(mask.astype(np.uint8), anisotropic_affine)).fit()
    reference = masker.inverse_transform(matrix).get_fdata()
    np.testing.assert_array_equal(image, reference)
    np.testing.assert_array_equal(masking.unmask(matrix[0], mask), image[..., 0])


def test_unmask_refuses_wrong_width():
    mask = blob_mask((6, 6, 6))
    with pytest.raises(ValueError, match="columns but the mask has"):
        masking.unmask(np.zeros((2, int(mask.sum()) + 1)), mask)


def test_mask_on_grid_resamples_with_nearest_and_says_so(tmp_path, anisotropic_affine):
    fine = np.zeros((18, 22, 16), dtype=np.uint8)
    fine[4:14, 6:16, 4:12] = 1
    fine_affine = anisotropic_affine.copy()
    fine_affine[:3, :3] /= 2
    path = write_image(tmp_path / "roi.nii.gz", fine, fine_affine)

    mask, note = masking.mask_on_grid(path, anisotropic_affine, (9, 11, 8, 10), "ROI")

    assert note is not None and "resampled" in note and "nearest" in note
    # Nearest-neighbour reference computed by hand: the fine voxel at the
    # coarse voxel's centre.
    ijk = np.indices((9, 11, 8)).reshape(3, -1).T
    world = ijk @ anisotropic_affine[:3, :3].T + anisotropic_affine[:3, 3]
    fine_ijk = np.round(
        (world - fine_affine[:3, 3]) @ np.linalg.inv(fine_affine[:3, :3]).T
    ).astype(int)
    inside = np.all((fine_ijk >= 0) & (fine_ijk < fine.shape), axis=1)
    expected = np.zeros(len(ijk), dtype=bool)
    expected[inside] = fine[tuple(fine_ijk[inside].T)] > 0
    np.testing.assert_array_equal(mask.reshape(-1), expected)


def test_mask_on_same_grid_is_unchanged(tmp_path, anisotropic_affine):
    data = blob_mask((9, 11, 8))
    path = write_image(tmp_path / "roi.nii.gz", data.astype(np.uint8), anisotropic_affine)
    mask, note = masking.mask_on_grid(path, anisotropic_affine, (9, 11, 8), "ROI")
    assert note is None
    np.testing.assert_array_equal(mask, data)


def test_a_mask_off_the_bold_grid_is_refused_unless_resampling_is_allowed(
    tmp_path, rng, anisotropic_affine
):
    """A ROI shifted by 9 mm: the same shape, another affine. It stops, saying how the grids
    differ and what resampling would keep; allowed, it is resampled and the note says so."""
    data = random_bold(rng)
    bold = write_image(tmp_path / "bold.nii.gz", data, anisotropic_affine)
    roi = blob_mask(data.shape[:3])
    shifted = anisotropic_affine.copy()
    shifted[0, 3] += 9.0
    roi_path = write_image(tmp_path / "roi.nii.gz", roi.astype(np.uint8), shifted)
    with pytest.raises(InputError) as info:
        masking.build_mask("roi", bold, roi_path=roi_path)
    message = str(info.value)
    assert str(roi_path) in message and "affines differ by up to 9" in message
    reference, _ = masking.mask_on_grid(roi_path, anisotropic_affine, data.shape, "ROI")
    assert f"{int(roi.sum())} voxels -> {int(reference.sum())} on the grid of {bold}" in message
    assert "preprocess.resample_masks: true" in message
    mask, _, warnings = masking.build_mask("roi", bold, roi_path=roi_path, resample_masks=True)
    np.testing.assert_array_equal(mask, reference)
    assert len(warnings) == 1 and "resampled it with nearest-neighbour" in warnings[0]
    # Far away, nothing is left: an error even with resampling allowed.
    shifted[0, 3] += 500.0
    far = write_image(tmp_path / "far.nii.gz", roi.astype(np.uint8), shifted)
    with pytest.raises(InputError, match="does not overlap"):
        masking.build_mask("roi", bold, roi_path=far, resample_masks=True)


def test_build_mask_choices(tmp_path, rng, anisotropic_affine):
    data = random_bold(rng)
    brain = blob_mask(data.shape[:3])
    data[~brain] = 0
    bold = write_image(tmp_path / "bold.nii.gz", data, anisotropic_affine)
    roi = np.zeros(brain.shape, dtype=bool)
    roi[:2, :2, :2] = True  # outside the brain on purpose
    roi_path = write_image(tmp_path / "roi.nii.gz", roi.astype(np.uint8), anisotropic_affine)
    brain_path = write_image(tmp_path / "brain.nii.gz", brain.astype(np.uint8), anisotropic_affine)

    mask, _, _ = masking.build_mask("roi", bold, roi_path=roi_path)
    np.testing.assert_array_equal(mask, roi)
    mask, notes, warnings = masking.build_mask(
        "dataset", bold, roi_path=roi_path, brain_mask_path=brain_path, include_roi=True
    )
    np.testing.assert_array_equal(mask, brain | roi)
    assert any("added 8 ROI voxels" in n for n in notes) and warnings == []
    # Without include_roi, an ROI wholly outside the mask is said before any analysis.
    mask, _, warnings = masking.build_mask(
        "dataset", bold, roi_path=roi_path, brain_mask_path=brain_path, include_roi=False
    )
    np.testing.assert_array_equal(mask, brain)
    assert warnings and "none of the ROI's 8 voxels is inside the dataset mask" in warnings[0]
    mask, _, _ = masking.build_mask("epi", bold)
    # nilearn computes the EPI mask from the 4D image itself.
    reference = compute_epi_mask(bold).get_fdata() > 0
    np.testing.assert_array_equal(mask, reference)
    assert mask.any() and not mask[~brain].any()


@pytest.mark.filterwarnings("ignore:Computed an empty mask")
@pytest.mark.parametrize("n_slices", [1, 3])
def test_the_epi_mask_of_a_thin_slab_keeps_the_brain(tmp_path, rng, anisotropic_affine, n_slices):
    """One or three slices: nilearn's opening along z would erase everything; the mask is
    the bright disk (the planted brain), cleaned within slices."""
    shape = (24, 24, n_slices)
    ii, jj = np.indices(shape[:2])
    disk = (ii - 11.5) ** 2 + (jj - 11.5) ** 2 < 8**2
    brain = np.repeat(disk[..., None], n_slices, axis=2)
    data = rng.normal(50, 5, size=(*shape, 20)).astype(np.float32)
    data[brain] += 800
    bold = write_image(tmp_path / "slab.nii.gz", data, anisotropic_affine)
    nilearn_mask = compute_epi_mask(bold).get_fdata() > 0
    assert not nilearn_mask.any()  # the failure this handles
    mask, notes, _ = masking.build_mask("epi", bold)
    np.testing.assert_array_equal(mask, brain)
    assert any("thin slab" in note and "not along z" in note for note in notes)


def test_the_epi_mask_of_a_whole_brain_is_nilearns(tmp_path, rng, anisotropic_affine):
    data = random_bold(rng).astype(np.float32)
    data[~blob_mask(data.shape[:3])] *= 0.05
    bold = write_image(tmp_path / "bold.nii.gz", data, anisotropic_affine)
    mask, _, _ = masking.build_mask("epi", bold)
    assert mask.any()
    np.testing.assert_array_equal(mask, compute_epi_mask(bold).get_fdata() > 0)


@pytest.mark.filterwarnings("ignore:Computed an empty mask")
def test_an_empty_epi_mask_gives_advice_that_works(tmp_path, rng, anisotropic_affine):
    # Detrended, zero-mean data: no brain to threshold (nilearn warns of the same).
    noise = rng.normal(0, 1, size=(9, 11, 8, 10)).astype(np.float32)
    bold = write_image(tmp_path / "noise.nii.gz", noise, anisotropic_affine)
    with pytest.raises(InputError) as info:
        masking.build_mask("epi", bold)
    message = str(info.value)
    assert "computed from the mean EPI is empty" in message
    assert "local.brain_mask" in message and "preprocess.mask: roi" in message


def test_build_mask_errors(tmp_path, rng, anisotropic_affine):
    data = random_bold(rng)
    bold = write_image(tmp_path / "bold.nii.gz", data, anisotropic_affine)
    with pytest.raises(InputError, match="has no subject ROI"):
        masking.build_mask("roi", bold)
    with pytest.raises(InputError, match="only fits data in MNI space"):
        masking.build_mask("mni_gm", bold, space="native")
    empty = write_image(
        tmp_path / "empty.nii.gz", np.zeros(data.shape[:3], np.uint8), anisotropic_affine
    )
    with pytest.raises(InputError, match="the mask is empty"):
        masking.build_mask("roi", bold, roi_path=empty)


def test_template_mask_uses_nilearn_grid_when_it_matches():
    from nilearn.datasets import load_mni152_gm_mask

    reference = load_mni152_gm_mask(resolution=8)
    mask, note = masking.template_mask("mni_gm", "MNI152", reference.affine, reference.shape)
    assert note is None
    np.testing.assert_array_equal(mask, reference.get_fdata() > 0)


def test_the_datasets_template_mask_serves_subjects_on_its_grid_only(tmp_path):
    from nilearn.datasets import load_mni152_brain_mask

    reference = load_mni152_brain_mask(resolution=8)
    saved = tmp_path / "template_mask.nii.gz"
    # A file that differs from the template shows which source was read.
    marked = np.asarray(reference.dataobj) != 0
    marked[0, 0, 0] = True
    nib.save(nib.Nifti1Image(marked.astype(np.uint8), reference.affine), saved)
    mask, note = masking.dataset_template_mask(
        "mni_brain", "MNI152", reference.affine, reference.shape, saved
    )
    np.testing.assert_array_equal(mask, marked)
    assert "the template on the dataset's grid" in note
    # A subject on another grid gets the template put on its own grid.
    shifted = reference.affine.copy()
    shifted[:3, 3] += 8
    mask, note = masking.dataset_template_mask(
        "mni_brain", "MNI152", shifted, reference.shape, saved
    )
    expected, _ = masking.template_mask("mni_brain", "MNI152", shifted, reference.shape)
    np.testing.assert_array_equal(mask, expected)
    assert note.startswith("this subject's grid differs from the dataset's (affines differ by")


def test_truncated_image_is_reported(tmp_path, rng):
    path = write_image(tmp_path / "bold.nii.gz", random_bold(rng))
    raw = gzip.decompress(path.read_bytes())
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    mask = blob_mask((9, 11, 8))
    with pytest.raises(InputError, match="truncated or corrupted") as info:
        extract(truncated, mask)
    assert str(truncated) in str(info.value)


def test_damage_that_still_decompresses_is_reported(tmp_path, rng):
    # A wrong CRC in the gzip trailer is what a flipped bit inside a stored
    # deflate block leaves: every byte decompresses, only the check fails.
    path = write_image(tmp_path / "bold.nii.gz", random_bold(rng))
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match="truncated or corrupted") as info:
        extract(damaged, blob_mask((9, 11, 8)))
    assert str(damaged) in str(info.value)
    # The intact file goes through.
    extract(path, blob_mask((9, 11, 8)))


def test_three_dimensional_image_is_refused(tmp_path, rng):
    path = write_image(tmp_path / "vol.nii.gz", random_bold(rng)[..., 0])
    with pytest.raises(InputError, match=r"must be 4D .* but has shape \(9, 11, 8\)"):
        masking.bold_geometry(path)


def test_not_nifti_and_missing_files_are_reported(tmp_path):
    text = tmp_path / "bold.nii.gz"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not a readable NIfTI image"):
        masking.bold_geometry(text)
    with pytest.raises(InputError, match="BOLD image not found"):
        masking.bold_geometry(tmp_path / "missing.nii.gz")


def test_find_bad_voxels(rng):
    matrix = rng.standard_normal((20, 6)).astype(np.float32)
    matrix[:, 1] = 3.0
    matrix[5, 4] = np.nan
    matrix[7, 5] = np.inf
    nonfinite, constant = masking.find_bad_voxels(matrix)
    np.testing.assert_array_equal(nonfinite, [False, False, False, False, True, True])
    np.testing.assert_array_equal(constant, [False, True, False, False, False, False])
