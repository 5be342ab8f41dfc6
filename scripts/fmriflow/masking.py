"""Masking: a 4D BOLD image to a ``(time, voxel)`` matrix, and back.

nilearn's maskers load the whole 4D image and convert it to floating point
before taking the mask's voxels, which for a Haxby-sized run
(40 x 64 x 64 x 1452 int16) peaks near 2 GB. :func:`extract_masked` instead
streams the stored values a few volumes at a time, keeps only the mask's
voxels and converts only those to float32, writing straight into the output
matrix (which may be a memory-mapped ``.npy``). The values are those of
``nilearn.maskers.NiftiMasker`` to float32 precision and the columns are in
the same order (numpy's C order of the mask's voxels), so
:func:`unmask` and nilearn's ``inverse_transform`` agree.

Smoothing, when asked for, is applied volume by volume with the same
Gaussian kernel as ``nilearn.image.smooth_img`` (FWHM in millimetres,
converted to a per-axis sigma with the voxel sizes of the affine).
"""

import numpy as np
from nibabel.openers import ImageOpener

from fmriflow.errors import InputError
from fmriflow.io import CORRUPT_FILE_ERRORS, load_mask, load_nifti

#: Number of volumes read and converted at once when streaming a 4D image.
CHUNK_VOLUMES = 32

MASK_CHOICES = ("roi", "dataset", "epi", "mni_brain", "mni_gm")


def bold_geometry(bold_path):
    """Return the shape, affine and header of a 4D BOLD image without its data.

    Parameters
    ----------
    bold_path : str or pathlib.Path
        The 4D NIfTI image.

    Returns
    -------
    shape : tuple of int
        ``(x, y, z, time)``.
    affine : numpy.ndarray
        The voxel-to-world affine.
    header : nibabel.Nifti1Header
        The image header.
    """
    img = load_nifti(bold_path, "BOLD image", ndim=4)
    return tuple(int(n) for n in img.shape), img.affine, img.header


def iter_volume_chunks(bold_path, chunk_volumes=CHUNK_VOLUMES):
    """Stream a 4D image's stored values, a few volumes at a time.

    Parameters
    ----------
    bold_path : str or pathlib.Path
        A 4D NIfTI image, compressed or not.
    chunk_volumes : int, default=CHUNK_VOLUMES
        Number of volumes per chunk.

    Yields
    ------
    start : int
        Index of the first volume in the chunk.
    values : numpy.ndarray, shape (n_volumes_in_chunk, n_voxels_in_grid)
        The stored values (not yet scaled), one flattened volume per row in
        NIfTI (Fortran) voxel order.

    Raises
    ------
    fmriflow.io.InputError
        If the file ends early or its compressed stream is damaged, including
        damage that still decompresses (a gzip CRC mismatch, found after the
        last volume).
    """
    img = load_nifti(bold_path, "BOLD image", ndim=4)
    shape = img.shape
    n_grid = int(np.prod(shape[:3]))
    dtype = img.header.get_data_dtype()
    offset = int(img.dataobj.offset)
    try:
        with ImageOpener(bold_path, "rb") as stream:
            stream.seek(offset)
            for start in range(0, shape[3], chunk_volumes):
                n = min(chunk_volumes, shape[3] - start)
                expected = n * n_grid * dtype.itemsize
                buffer = stream.read(expected)
                if len(buffer) < expected:
                    raise EOFError(
                        f"volume {start + len(buffer) // (n_grid * dtype.itemsize)}"
                        f" of {shape[3]} is incomplete"
                    )
                yield start, np.frombuffer(buffer, dtype=dtype).reshape(n, n_grid)
            # Read on to the end: gzip checks its CRC there, which catches
            # damage that still decompresses (usually no bytes remain).
            while stream.read(1 << 20):
                pass
    except CORRUPT_FILE_ERRORS as exc:
        raise InputError(
            bold_path,
            f"BOLD image is truncated or corrupted ({exc})",
            "Download or copy the file again; a partial download or a full "
            "disk leaves files like this",
        ) from exc


def _scaling(img):
    """Return the effective (slope, intercept) of an image's stored values."""
    slope = float(img.dataobj.slope)
    inter = float(img.dataobj.inter)
    return slope, inter


def smoothing_sigmas(affine, fwhm):
    """Convert a FWHM in millimetres to Gaussian sigmas in voxels, per axis.

    Parameters
    ----------
    affine : numpy.ndarray
        Voxel-to-world affine; its 3 x 3 part gives the voxel sizes.
    fwhm : float
        Full width at half maximum of the kernel, in millimetres.

    Returns
    -------
    numpy.ndarray of shape (3,)
        Sigma along each voxel axis.
    """
    voxel_sizes = np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
    return float(fwhm) / (np.sqrt(8.0 * np.log(2.0)) * voxel_sizes)


def smooth_volume_in_place(volume, sigmas):
    """Smooth one 3D volume in place with separable Gaussian filters.

    Non-finite values are set to zero first, as nilearn does.
    """
    # Imported here: scipy.ndimage costs a job without smoothing 0.1 s.
    from scipy.ndimage import gaussian_filter1d

    volume[~np.isfinite(volume)] = 0.0
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            gaussian_filter1d(volume, sigma, axis=axis, output=volume)
    return volume


def mask_flat_indices(mask):
    """Positions of a 3D mask's voxels in a Fortran-flattened volume.

    The order is numpy's C order of ``mask`` (that of ``volume[mask]``), so
    matrix columns match nilearn's maskers.
    """
    coords = np.nonzero(mask)
    return np.ravel_multi_index(coords, mask.shape, order="F")


def extract_masked(bold_path, mask, out, smoothing_fwhm=None):
    """Fill ``out`` with the BOLD values inside ``mask``, one row per volume.

    Parameters
    ----------
    bold_path : str or pathlib.Path
        4D NIfTI image.
    mask : numpy.ndarray of bool, shape (x, y, z)
        Voxels to keep, on the image's grid.
    out : numpy.ndarray, shape (n_volumes, n_mask_voxels), float32
        Destination (may be a memory-mapped ``.npy``).
    smoothing_fwhm : float, optional
        Gaussian smoothing (mm) applied to each volume before masking.

    Returns
    -------
    mean_volume : numpy.ndarray, shape (x, y, z)
        The temporal mean of the unsmoothed image (float64), for display.
    """
    img = load_nifti(bold_path, "BOLD image", ndim=4)
    shape3 = img.shape[:3]
    if mask.shape != shape3:
        raise ValueError(f"mask shape {mask.shape} differs from image {shape3}")
    slope, inter = _scaling(img)
    scaled = (slope, inter) != (1.0, 0.0)
    columns = mask_flat_indices(mask)
    sigmas = None if smoothing_fwhm is None else smoothing_sigmas(img.affine, smoothing_fwhm)
    total = np.zeros(int(np.prod(shape3)), dtype=np.float64)
    for start, values in iter_volume_chunks(bold_path):
        n = values.shape[0]
        total += values.sum(axis=0, dtype=np.float64)
        if sigmas is None:
            chunk = values[:, columns]
            if scaled:
                chunk = chunk * slope + inter
            out[start : start + n] = chunk
        else:
            for i in range(n):
                volume = values[i].reshape(shape3, order="F").astype(np.float64)
                if scaled:
                    volume = volume * slope + inter
                out[start + i] = smooth_volume_in_place(volume, sigmas)[mask]
    mean = total / img.shape[3]
    if scaled:
        mean = mean * slope + inter
    return mean.reshape(shape3, order="F")


def mean_volume(bold_path):
    """Temporal mean of a 4D image, computed by streaming (float64, 3D)."""
    img = load_nifti(bold_path, "BOLD image", ndim=4)
    slope, inter = _scaling(img)
    total = np.zeros(int(np.prod(img.shape[:3])), dtype=np.float64)
    for _, values in iter_volume_chunks(bold_path):
        total += values.sum(axis=0, dtype=np.float64)
    mean = total / img.shape[3] * slope + inter
    return mean.reshape(img.shape[:3], order="F")


def same_grid(affine_a, shape_a, affine_b, shape_b, atol=1e-3):
    """Whether two 3D grids coincide (same shape, affines within ``atol`` mm)."""
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and np.allclose(affine_a, affine_b, atol=atol)


def grid_difference(affine_a, shape_a, affine_b, shape_b):
    """How two 3D grids differ, in words (shape, and the largest affine difference)."""
    parts = []
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        parts.append(f"shape {tuple(shape_a[:3])} against {tuple(shape_b[:3])}")
    difference = float(np.abs(np.asarray(affine_a) - np.asarray(affine_b)).max())
    if difference > 1e-3:
        parts.append(f"affines differ by up to {difference:.3g} (mm, or mm per voxel)")
    return "; ".join(parts)


def mask_on_grid(mask_img_or_path, affine, shape, role, allow_resample=True, target=None):
    """Return a mask as a boolean array on a target grid, resampling if needed.

    Parameters
    ----------
    mask_img_or_path : str, pathlib.Path or nibabel image
        The mask.
    affine, shape : numpy.ndarray, tuple
        Target grid (the BOLD image's).
    role : str
        What the mask is, for messages.
    allow_resample : bool
        Resample a mask on another grid (nearest neighbour); if False, such
        a mask stops with a message giving how the grids differ and how many
        of its voxels resampling would keep.
    target : str, optional
        The image that defines the target grid, for messages.

    Returns
    -------
    mask : numpy.ndarray of bool, shape ``shape[:3]``
    note : str or None
        A sentence describing the resampling and the overlap, if one was done.
    """
    if hasattr(mask_img_or_path, "affine"):
        img = mask_img_or_path
        data = np.asanyarray(img.dataobj) != 0
        name = role
    else:
        data, img = load_mask(mask_img_or_path, role)
        name = f"{role} {mask_img_or_path}"
    if same_grid(img.affine, img.shape, affine, shape):
        return data, None
    # Imported only now: nilearn.image costs a job 0.7 s.
    from nilearn.image import resample_img

    resampled = resample_img(
        img.__class__(data.astype(np.uint8), img.affine),
        target_affine=affine,
        target_shape=tuple(shape[:3]),
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    out = np.asanyarray(resampled.dataobj) != 0
    difference = grid_difference(img.affine, img.shape, affine, shape)
    onto = f"the grid of {target}" if target else "the BOLD grid"
    overlap = f"{int(data.sum())} voxels -> {int(out.sum())} on {onto}"
    if not allow_resample:
        raise InputError(
            str(mask_img_or_path) if not hasattr(mask_img_or_path, "affine") else role,
            f"the {role} is not on {onto} ({difference}); nearest-neighbour resampling "
            f"would give {overlap}",
            "Resample it to the BOLD image yourself (e.g. nilearn.image.resample_to_img with "
            "interpolation='nearest') if it is in the same space, or set "
            "preprocess.resample_masks: true to let the workflow do it",
        )
    if not out.any():
        raise InputError(
            str(mask_img_or_path) if not hasattr(mask_img_or_path, "affine") else role,
            f"the {role} does not overlap {onto} ({difference}): {overlap}",
            "Check that it belongs to this subject and space (a mask in another space or "
            "with a wrong affine lands outside the image)",
        )
    note = (
        f"{name} is not on {onto} ({difference}); resampled it with nearest-neighbour "
        f"interpolation: {overlap}"
    )
    return out, note


def template_mask(kind, space, affine, shape):
    """Nilearn's MNI152 brain or grey-matter mask on a target grid.

    When the target grid is one of nilearn's own template grids (as for
    data simulated on them), nilearn's mask at that resolution is used as
    is; otherwise the 1 mm mask is resampled with nearest neighbour.

    Parameters
    ----------
    kind : {"mni_brain", "mni_gm"}
        Which mask.
    space : str
        The dataset's space, from ``dataset.json``; must be an MNI space.
    affine, shape : numpy.ndarray, tuple
        Target grid.

    Returns
    -------
    mask : numpy.ndarray of bool
    note : str or None
        A sentence describing the resampling, if one was done.
    """
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_mask

    if not str(space).upper().startswith("MNI"):
        raise InputError(
            f"preprocess.mask: {kind}",
            f"the MNI template mask only fits data in MNI space, but this "
            f"dataset is in '{space}' space",
            "Choose mask 'epi', 'dataset' or 'roi' for data in native space",
        )
    load = load_mni152_brain_mask if kind == "mni_brain" else load_mni152_gm_mask
    voxel_sizes = np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
    resolution = int(round(voxel_sizes[0]))
    if np.allclose(voxel_sizes, resolution):
        native = load(resolution=resolution)
        if same_grid(native.affine, native.shape, affine, shape):
            return np.asanyarray(native.dataobj) != 0, None
    return mask_on_grid(load(), affine, shape, f"nilearn {kind} template mask")


def dataset_template_mask(kind, space, affine, shape, template_path=None):
    """An MNI template mask on a subject's grid, from the dataset's copy when it fits.

    Putting nilearn's template on a grid costs seconds (importing
    ``nilearn.datasets`` and a spline resampling of the 1 mm image), the
    same for every subject on that grid; the workflow does it once per
    dataset and each subject reads the result.

    Parameters
    ----------
    kind : {"mni_brain", "mni_gm"}
        Which mask.
    space : str
        The dataset's space (must be an MNI space).
    affine, shape : numpy.ndarray, tuple
        The subject's grid.
    template_path : str or pathlib.Path, optional
        The mask :func:`template_mask` gave on the dataset's grid.

    Returns
    -------
    mask : numpy.ndarray of bool
    note : str or None
        Where the mask came from, or the resampling done.
    """
    other_grid = None
    if template_path is not None:
        mask, img = load_mask(template_path, f"{kind} template mask")
        if same_grid(img.affine, img.shape, affine, shape):
            return mask, f"{kind} mask: {template_path} (the template on the dataset's grid)"
        other_grid = grid_difference(img.affine, img.shape, affine, shape)
    mask, note = template_mask(kind, space, affine, shape)
    if other_grid:
        differs = f"this subject's grid differs from the dataset's ({other_grid})"
        note = f"{differs}; {note}" if note else differs
    return mask, note


#: Iterations of the morphological opening of the EPI mask (nilearn's default).
EPI_OPENING = 2


def epi_mask(mean, affine, opening=EPI_OPENING):
    """The EPI mask of a mean image (nilearn's ``compute_epi_mask``), thin slabs included.

    nilearn cleans the thresholded mask morphologically (erosion by
    ``opening`` voxels, the largest connected part, dilation by twice as
    much, erosion again), which needs ``2 * opening + 1`` voxels along
    every axis: on a slab of fewer slices (partial coverage, a single
    slice) the erosion erases the whole mask. Along such short axes the
    same steps use no neighbours, so they work within slices.

    Parameters
    ----------
    mean : numpy.ndarray, shape (x, y, z)
        The mean EPI volume.
    affine : numpy.ndarray
        Its affine.
    opening : int
        Iterations of the opening.

    Returns
    -------
    mask : numpy.ndarray of bool
    note : str
        What was done, for the log.
    """
    from nilearn.masking import compute_epi_mask
    from scipy import ndimage

    image = nib_image(mean, affine)
    short = [axis for axis in range(3) if mean.shape[axis] < 2 * opening + 1]
    if not short:
        epi = compute_epi_mask(image, opening=opening)
        return np.asanyarray(epi.dataobj) != 0, "mask computed from the mean EPI"
    mask = np.asanyarray(compute_epi_mask(image, opening=False).dataobj) != 0
    structure = ndimage.generate_binary_structure(3, 1)
    for axis in short:
        # No neighbours along a short axis: the opening works within slices.
        index = [slice(None)] * 3
        index[axis] = [0, 2]
        structure[tuple(index)] = False
    eroded = ndimage.binary_erosion(mask, structure=structure, iterations=opening)
    if eroded.any():
        labels, _ = ndimage.label(eroded)
        eroded = labels == np.argmax(np.bincount(labels[labels > 0]))
    cleaned = ndimage.binary_dilation(eroded, structure=structure, iterations=2 * opening)
    cleaned = ndimage.binary_erosion(cleaned, structure=structure, iterations=opening)
    axes = ", ".join("xyz"[axis] for axis in short)
    return cleaned, (
        f"mask computed from the mean EPI of a thin slab ({mean.shape[0]} x {mean.shape[1]} x "
        f"{mean.shape[2]} voxels), cleaned within slices, not along {axes}"
    )


def check_mask_not_empty(mask, what, choice=None):
    """Raise :class:`InputError` if ``mask`` has no voxel."""
    if np.any(mask):
        return
    if choice == "epi":
        raise InputError(
            what,
            "the mask computed from the mean EPI is empty: the image shows no contrast "
            "between brain and background that nilearn's compute_epi_mask can threshold",
            "Give the dataset a brain mask (local.brain_mask, or bids.brain_mask) and set "
            "preprocess.mask: dataset, or set preprocess.mask: roi with a subject ROI (local.roi)",
        )
    raise InputError(
        what,
        "the mask is empty (no voxel inside it on the BOLD grid)",
        "Check that the mask belongs to this image (same space and field "
        "of view) or choose another preprocess.mask",
    )


def find_bad_voxels(matrix):
    """Columns of a ``(time, voxel)`` matrix that are non-finite or constant.

    Parameters
    ----------
    matrix : numpy.ndarray
        Time by voxel.

    Returns
    -------
    nonfinite : numpy.ndarray of bool
        Voxels with a NaN or infinite value at any time.
    constant : numpy.ndarray of bool
        Finite voxels whose value never changes.
    """
    nonfinite = np.zeros(matrix.shape[1], dtype=bool)
    constant = np.zeros(matrix.shape[1], dtype=bool)
    step = 8192
    for j in range(0, matrix.shape[1], step):
        block = np.asarray(matrix[:, j : j + step])
        finite = np.isfinite(block).all(axis=0)
        nonfinite[j : j + step] = ~finite
        with np.errstate(invalid="ignore"):
            constant[j : j + step] = finite & (block.max(axis=0) == block.min(axis=0))
    return nonfinite, constant


def unmask(matrix, mask):
    """Put a ``(..., voxel)`` matrix back into image space.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_voxels,) or (n_maps, n_voxels)
        Values for the mask's voxels, in the order of :func:`extract_masked`.
    mask : numpy.ndarray of bool, shape (x, y, z)
        The mask used to extract them.

    Returns
    -------
    numpy.ndarray
        3D array for a vector, 4D ``(x, y, z, n_maps)`` for a matrix; zero
        outside the mask, same dtype as ``matrix``.
    """
    matrix = np.asarray(matrix)
    n_voxels = int(mask.sum())
    if matrix.shape[-1] != n_voxels:
        raise ValueError(
            f"matrix has {matrix.shape[-1]} columns but the mask has {n_voxels} voxels"
        )
    if matrix.ndim == 1:
        out = np.zeros(mask.shape, dtype=matrix.dtype)
        out[mask] = matrix
        return out
    out = np.zeros(mask.shape + (matrix.shape[0],), dtype=matrix.dtype)
    out[mask] = matrix.T
    return out


def build_mask(
    choice,
    bold_path,
    roi_path=None,
    brain_mask_path=None,
    space="native",
    include_roi=False,
    resample_masks=False,
    template_path=None,
):
    """The boolean mask of one subject, on its BOLD grid.

    Parameters
    ----------
    choice : {"roi", "dataset", "epi", "mni_brain", "mni_gm"}
        ``roi``: the subject ROI; ``dataset``: the dataset's brain mask;
        ``epi``: computed from the mean EPI (``nilearn.masking.compute_epi_mask``);
        ``mni_brain``/``mni_gm``: nilearn's MNI152 brain or grey-matter mask.
    bold_path : str or pathlib.Path
        The subject's 4D image (defines the grid).
    roi_path, brain_mask_path : str or pathlib.Path, optional
        The subject ROI and dataset brain mask, if the dataset has them. The
        ROI is checked against the BOLD grid and the mask even when it is
        not used.
    space : str
        The dataset's space (``dataset.json``), for the MNI masks.
    include_roi : bool
        Add the ROI's voxels to the mask, so that ROI analyses can select
        them from the whole-brain matrix.
    resample_masks : bool
        Resample a subject ROI or dataset brain mask that is not on the BOLD
        grid (nearest neighbour); if False such a mask is an error.
    template_path : str or pathlib.Path, optional
        ``mni_brain``/``mni_gm``: the template mask already computed on the
        dataset's grid (:func:`template_mask`, written once per dataset);
        used when the subject is on that grid, recomputed otherwise.

    Returns
    -------
    mask : numpy.ndarray of bool
    notes : list of str
        What was done (union, the template's resampling), for the log.
    warnings : list of str
        Resampled user masks with their overlap: for the terminal too.
    """
    shape, affine, _ = bold_geometry(bold_path)
    notes, warnings = [], []
    if choice not in MASK_CHOICES:
        raise InputError(
            f"config key preprocess.mask: {choice!r}",
            f"unknown mask choice; expected one of {list(MASK_CHOICES)}",
            "Fix the config",
        )
    if choice in ("roi", "dataset"):
        path = roi_path if choice == "roi" else brain_mask_path
        if path is None:
            what = (
                "subject ROI (roi.nii.gz)" if choice == "roi" else "brain mask (brainmask.nii.gz)"
            )
            raise InputError(
                f"config key preprocess.mask: {choice}",
                f"this dataset has no {what} for {bold_path}",
                "Choose preprocess.mask: epi (computed from the data) or provide the file",
            )
        mask, note = mask_on_grid(path, affine, shape, f"{choice} mask", resample_masks, bold_path)
        warnings += [note] if note else []
        note = None
    elif choice == "epi":
        mask, note = epi_mask(mean_volume(bold_path).astype(np.float32), affine)
    else:
        mask, note = dataset_template_mask(choice, space, affine, shape, template_path)
    notes += [note] if note else []
    check_mask_not_empty(mask, f"{choice} mask for {bold_path}", choice)
    if roi_path is not None and choice != "roi":
        roi, note = mask_on_grid(roi_path, affine, shape, "ROI", resample_masks, bold_path)
        warnings += [note] if note else []
        outside = int((roi & ~mask).sum())
        if include_roi:
            notes.append(f"added {outside} ROI voxels outside the {choice} mask")
            mask = mask | roi
        elif outside == int(roi.sum()):
            warnings.append(
                f"none of the ROI's {outside} voxels is inside the {choice} mask, and "
                "include_roi is false: analyses on the ROI (voxels: roi, centres: roi) will "
                "fail; set preprocess.include_roi: true"
            )
    return mask, notes, warnings


def nib_image(data, affine):
    """A NIfTI image of an array (small helper for nilearn calls)."""
    import nibabel as nib

    return nib.Nifti1Image(data, affine)


def roi_columns(mask, affine, roi_path):
    """Which columns of a ``(time, voxel)`` matrix lie in a subject ROI.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        The preprocessing mask (the matrix columns).
    affine : numpy.ndarray
        Its affine.
    roi_path : str or pathlib.Path
        The subject ROI (``roi.nii.gz`` of the canonical layout); resampled
        to the mask's grid with nearest neighbour if needed.

    Returns
    -------
    columns : numpy.ndarray of bool, shape (n_mask_voxels,)
    notes : list of str
        What was done (resampling, ROI voxels outside the mask), for the log.
    """
    from pathlib import Path

    if not Path(roi_path).exists():
        raise InputError(
            roi_path,
            "the analysis uses the subject ROI but this subject has none",
            "Use the whole preprocessing mask (decoding voxels: mask, searchlight centres: "
            "mask), or provide an ROI (roi.nii.gz)",
        )
    roi, note = mask_on_grid(roi_path, affine, mask.shape, "ROI")
    notes = [note] if note else []
    outside = int((roi & ~mask).sum())
    if outside:
        notes.append(
            f"{outside} ROI voxels are outside the preprocessing mask and are not used "
            "(set preprocess.include_roi: true to keep them)"
        )
    columns = roi[mask]
    if not columns.any():
        raise InputError(
            roi_path,
            f"none of the ROI's {int(roi.sum())} voxels is inside the preprocessing mask "
            f"({int(mask.sum())} voxels)",
            "Set preprocess.include_roi: true (the default) to add the ROI to the mask, or use "
            "a mask that covers it",
        )
    return columns, notes
