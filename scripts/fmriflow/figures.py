"""Figures for the report: brain maps with nilearn's plotting, tables with matplotlib.

Every function writes one PNG atomically and closes its figure. The
non-interactive Agg backend is used, so figures render on cluster nodes.
"""

import functools
import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fmriflow.io import atomic_output  # noqa: E402

#: PNG metadata without version or date, so re-runs give the same bytes.
PNG_METADATA = {"Software": None}


def save_figure(figure, path, dpi=100):
    """Save a matplotlib figure as PNG atomically and close it."""
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png", metadata=PNG_METADATA)
    plt.close(figure)


#: nilearn's 1 mm MNI152 T1 template, inside its package (``MNI152_FILE_PATH``).
MNI_TEMPLATE_FILE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def mni_template_path():
    """The file of nilearn's MNI152 T1 template, found without importing nilearn.

    Importing ``nilearn.datasets`` (which defines the path) imports
    scikit-learn: a second of a plotting job's start-up.
    """
    from importlib.util import find_spec
    from pathlib import Path

    return Path(find_spec("nilearn").origin).parent / MNI_TEMPLATE_FILE


@functools.lru_cache(maxsize=1)
def mni_background():
    """The MNI152 T1 template of nilearn at 2 mm, the background of maps in MNI space.

    The mean of every 2 x 2 x 2 block of the 1 mm template, scaled to
    [0, 1], outside the head masked: what nilearn shows by default (its
    template put on a 2 mm grid by spline interpolation), without the
    interpolation's working copies of the 1 mm volume, which were the
    largest allocation (about 100 MB) of the group jobs that draw maps. Computed once per process.

    Returns
    -------
    nibabel.Nifti1Image
    """
    import nibabel as nib
    from scipy import ndimage

    template = nib.load(mni_template_path())
    data = np.asarray(template.dataobj, dtype=np.float32)
    even = [size - size % 2 for size in data.shape]
    blocks = data[: even[0], : even[1], : even[2]].reshape(
        even[0] // 2, 2, even[1] // 2, 2, even[2] // 2, 2
    )
    volume = blocks.mean(axis=(1, 3, 5))
    volume /= volume.max()
    # Outside the head is masked (drawn as the page), as nilearn does for its
    # template; holes inside (ventricles) are filled so they stay drawn.
    head = ndimage.binary_fill_holes(volume > np.finfo(np.float32).eps)
    affine = template.affine.copy()
    # Block centres: half a 1 mm voxel along each axis from the first voxel.
    affine[:3, 3] += template.affine[:3, :3] @ np.full(3, 0.5)
    affine[:3, :3] *= 2
    return nib.Nifti1Image(np.ma.masked_array(volume, mask=~head), affine)


def background_arguments(background_img):
    """The nilearn plotting arguments for a background: the image, or the MNI template.

    ``background_img`` None means data in MNI space: :func:`mni_background`,
    on white.
    """
    background = mni_background() if background_img is None else background_img
    return {"bg_img": background, "black_bg": False}


def fit_title(figure, axes, title, fontsize=9, widths=(60, 52, 45, 38, 32, 26)):
    """Give ``axes`` the title ``title``, wrapped until it fits inside the figure.

    The layout is tightened after each try (``tight_layout``), so the title is
    measured where it will be drawn; the narrowest wrapping is kept if none fits.

    Returns
    -------
    matplotlib.text.Text
    """
    renderer = figure.canvas.get_renderer()
    for width in widths:
        text = axes.set_title(textwrap.fill(title, width), fontsize=fontsize)
        figure.tight_layout()
        box = text.get_window_extent(renderer)
        if box.x0 >= 0 and box.x1 <= figure.bbox.x1 and box.y1 <= figure.bbox.y1:
            break
    return text


def plot_maps(
    maps_img,
    background_img,
    titles,
    path,
    symmetric=True,
    threshold=None,
    vmin=None,
    colorbar_label=None,
):
    """One row per volume of a 4D image, over a background, in orthogonal slices.

    Drawn with matplotlib alone, as nilearn's ``plot_stat_map`` would (three
    views through the peak, or one for a thin slab, see
    :func:`display_views`; neurological orientation; values below the
    threshold left transparent): importing ``nilearn.plotting`` took 1.8 s
    and 150 MB of every job that draws a map.

    Parameters
    ----------
    maps_img : nibabel.Nifti1Image
        3D or 4D image of the maps.
    background_img : nibabel.Nifti1Image or None
        Anatomy or mean EPI shown underneath; None for nilearn's MNI152
        template (data in MNI space, :func:`mni_background`).
    titles : list of str
        One per map.
    path : str or pathlib.Path
        PNG to write.
    symmetric : bool
        Colour scale symmetric around zero (weights) or not (accuracies).
    threshold : float, optional
        Values with a smaller magnitude are not shown (default: only zeros
        are hidden, as nilearn's 1e-6).
    vmin : float, optional
        Bottom of the colour scale when it is not symmetric (e.g. chance).
    colorbar_label : str, optional
        What the colour bar measures.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    maps_img = axis_aligned(maps_img)
    background = axis_aligned(mni_background() if background_img is None else background_img)
    data = np.asanyarray(maps_img.dataobj, dtype=np.float64)
    volumes = [data[..., k] for k in range(data.shape[3])] if data.ndim == 4 else [data]
    figure = plt.figure(figsize=(9, 3.0 * len(volumes)))
    rows = figure.subfigures(len(volumes), 1, squeeze=False)[:, 0]
    cut = 1e-6 if threshold is None else float(threshold)
    for volume, title, row in zip(volumes, titles, rows, strict=True):
        image = nib_image(volume, maps_img.affine)
        mode, cuts = display_views(image)
        vmax = float(np.max(np.abs(volume))) or 1.0
        low = -vmax if symmetric else (np.nanmin(volume) if vmin is None else vmin)
        norm = Normalize(vmin=low, vmax=vmax if vmax > low else low + 1.0)
        cmap = "RdBu_r" if symmetric else "YlOrRd"
        shown = np.ma.masked_where(~np.isfinite(volume) | (np.abs(volume) < cut), volume)
        axes_list = row.subplots(
            1, 4 if mode == "ortho" else 2, width_ratios=_widths(mode, background)
        )
        views = zip("xyz", cuts, strict=True) if mode == "ortho" else [(mode, cuts[0])]
        for axes, (axis, world) in zip(axes_list[:-1], views, strict=True):
            _draw_background(axes, background, "xyz".index(axis), world)
            _draw_slice(axes, shown, maps_img.affine, "xyz".index(axis), world, cmap, norm)
        colorbar = row.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=axes_list[-1])
        if colorbar_label:
            colorbar.set_label(colorbar_label, fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
        row.suptitle(textwrap.fill(title, 100), fontsize=9, x=0.02, ha="left")
    save_figure(figure, path)


def _widths(mode, background):
    """Width ratios of a row: each view as wide as its slice's shape asks, then a colour bar.

    The slices are those of the (axis-aligned) background: sagittal is y by
    z millimetres, coronal x by z, axial x by y.
    """
    size = np.abs(np.diag(background.affine)[:3]) * np.asarray(background.shape[:3])
    ratios = {"x": size[1] / size[2], "y": size[0] / size[2], "z": size[0] / size[1]}
    views = [ratios[axis] for axis in ("xyz" if mode == "ortho" else mode)]
    return views + [0.05 * max(sum(views), 1.0)]


def nib_image(data, affine):
    """A NIfTI image of an array (float32) on ``affine``."""
    import nibabel as nib

    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)


def axis_aligned(image):
    """The image with voxel axes along world x, y and z, increasing (RAS).

    Flips and permutations only (``nibabel.as_closest_canonical``); an
    oblique image is resampled onto an axis-aligned grid (continuous
    interpolation), as nilearn's plotting does.
    """
    import nibabel as nib

    image = nib.as_closest_canonical(image)
    linear = image.affine[:3, :3]
    if np.allclose(linear, np.diag(np.diag(linear))):
        return image
    from nilearn.image import resample_img

    sizes = np.sqrt(np.sum(linear**2, axis=0))
    return nib.as_closest_canonical(
        resample_img(image, target_affine=np.diag(sizes), copy_header=True, force_resample=True)
    )


def _plane(data, affine, axis, world):
    """The 2D slice of ``data`` at world coordinate ``world`` along ``axis``, and its extent.

    ``data`` is axis-aligned (see :func:`axis_aligned`). Returns None when the
    coordinate falls outside the image. The slice is (vertical, horizontal)
    for ``imshow(origin="lower")``: sagittal y-z, coronal x-z, axial x-y.
    """
    index = int(round((world - affine[axis, 3]) / affine[axis, axis]))
    if not 0 <= index < data.shape[axis]:
        return None
    plane = np.take(data, index, axis=axis)
    first, second = [a for a in range(3) if a != axis]
    extent = []
    for a in (first, second):
        step, origin = affine[a, a], affine[a, 3]
        extent += [origin - step / 2, origin + step * (data.shape[a] - 0.5)]
    return plane.T, extent


def _draw_background(axes, background, axis, world):
    """The background's slice in grey, dimmed as nilearn does; outside the head left blank."""
    data = np.ma.masked_invalid(np.ma.asanyarray(background.dataobj, dtype=np.float64))
    data = np.ma.masked_where(np.ma.getmaskarray(data) | (data.filled(0) <= 0), data)
    found = _plane(data, background.affine, axis, world)
    axes.set_axis_off()
    if found is None or data.count() == 0:
        return
    plane, extent = found
    low, high = float(data.min()), float(data.max())
    mean, half = (low + high) / 2, (high - low) / 2
    axes.imshow(
        plane,
        origin="lower",
        extent=extent,
        cmap="gray",
        vmin=0.7 * mean - 1.6 * half,
        vmax=high,
        interpolation="nearest",
    )
    axes.set_xlim(extent[:2])
    axes.set_ylim(extent[2:])


def _draw_slice(axes, shown, affine, axis, world, cmap, norm):
    """The map's slice over the background, with its coordinate and orientation labels."""
    found = _plane(shown, affine, axis, world)
    axes.set_axis_off()
    if found is not None:
        plane, extent = found
        axes.imshow(
            plane, origin="lower", extent=extent, cmap=cmap, norm=norm, interpolation="nearest"
        )
        if not axes.get_images()[:-1]:
            axes.set_xlim(extent[:2])
            axes.set_ylim(extent[2:])
    axes.set_aspect("equal")
    axes.text(0.01, 0.01, f"{'xyz'[axis]}={world:.0f}", transform=axes.transAxes, fontsize=9)
    if axis != 0:
        axes.text(0.02, 0.92, "L", transform=axes.transAxes, fontsize=9)
        axes.text(0.95, 0.92, "R", transform=axes.transAxes, fontsize=9)


#: An image axis with fewer voxels than this is a thin slab: no view across it.
THIN_AXIS = 3


def display_views(volume):
    """Nilearn's display mode and cuts for a map: three views, or one for a thin slab.

    A single slice (or a slab of a few) shown in three orthogonal views has
    two views that cut across it, empty or a line, with the orientation
    labels over the data: such an image is shown in its own plane only.

    Parameters
    ----------
    volume : nibabel.Nifti1Image
        A 3D map.

    Returns
    -------
    mode : str
        ``"ortho"``, or ``"x"``, ``"y"`` or ``"z"`` (the world axis the slab
        is thin along).
    cuts : tuple or list
        The peak's world coordinates (``ortho``), or the slab's position
        along that axis.
    """
    peak = _peak_coords(volume)
    thin = [axis for axis, size in enumerate(volume.shape[:3]) if size < THIN_AXIS]
    if len(thin) != 1:
        return "ortho", peak
    # The world axis that the thin image axis runs along.
    world = int(np.argmax(np.abs(volume.affine[:3, thin[0]])))
    return "xyz"[world], [peak[world]]


def _peak_coords(volume):
    """World coordinates of the voxel with the largest magnitude."""
    data = np.abs(np.asanyarray(volume.dataobj))
    ijk = np.unravel_index(np.argmax(data), data.shape)
    return tuple(float(c) for c in volume.affine[:3, :3] @ np.asarray(ijk) + volume.affine[:3, 3])


def plot_confusion(matrix, classes, path, title):
    """A confusion matrix (rows: true, columns: predicted) as a heat map."""
    matrix = np.asarray(matrix, dtype=float)
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.6 * len(classes)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(fractions, vmin=0, vmax=1, cmap="viridis")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for (i, j), value in np.ndenumerate(matrix):
        colour = "black" if fractions[i, j] > 0.5 else "white"
        axes.text(j, i, f"{int(value)}", ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, ax=axes, label="fraction of true class")
    figure.tight_layout()
    save_figure(figure, path)


def plot_group_accuracies(table, path, title):
    """Per-subject accuracy (mean and spread over folds) with each subject's chance level.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``subject``, ``accuracy``, ``accuracy_std``, ``chance``.
    path : str or pathlib.Path
        PNG to write.
    title : str
        Figure title (the group test result, typically).
    """
    figure, axes = plt.subplots(figsize=(max(4, 0.6 * len(table) + 2), 3.5))
    x = np.arange(len(table))
    axes.errorbar(
        x, table["accuracy"], yerr=table["accuracy_std"], fmt="o", color="C0", label="accuracy"
    )
    axes.scatter(x, table["chance"], marker="_", s=400, color="k", label="chance")
    axes.axhline(float(np.mean(table["chance"])), color="k", lw=0.8, ls="--")
    axes.set_xticks(x, [f"sub-{s}" for s in table["subject"]], rotation=45, ha="right")
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("cross-validated accuracy")
    axes.legend(loc="lower right", fontsize=8)
    fit_title(figure, axes, title)
    save_figure(figure, path)


def plot_overlay(maps_img, background_img, path, title):
    """All maps of a 4D image at once, one colour each (nilearn ``plot_prob_atlas``).

    No colour bar: the colours tell the maps apart and measure nothing.
    """
    from nilearn import plotting

    figure = plt.figure(figsize=(9, 3.3))
    display = plotting.plot_prob_atlas(
        maps_img,
        figure=figure,
        draw_cross=False,
        colorbar=False,
        **background_arguments(background_img),
    )
    # The background's own grey colour bar (nilearn's plot_anat draws one) measures
    # nothing a reader needs.
    background_bar = getattr(display, "_colorbar_ax", None)
    if background_bar is not None:
        background_bar.remove()
    figure.suptitle(textwrap.fill(title, 100), fontsize=9, x=0.02, ha="left")
    save_figure(figure, path)


def plot_parcels(labels_img, background_img, title, path, seed=0):
    """A label image with one random colour per parcel (seeded)."""
    from matplotlib.colors import ListedColormap
    from nilearn import plotting

    n_labels = int(np.max(np.asanyarray(labels_img.dataobj)))
    colours = np.random.default_rng(seed).uniform(0.15, 1.0, (n_labels, 3))
    figure = plt.figure(figsize=(9, 3))
    plotting.plot_roi(
        labels_img,
        figure=figure,
        cmap=ListedColormap(colours),
        title=textwrap.fill(title, 80),
        draw_cross=False,
        **background_arguments(background_img),
    )
    save_figure(figure, path)
