"""The regions of a connectome: from the workflow's own maps or from an atlas.

Three sources, one result — a region image on the data's grid, restricted
to the voxels every subject has, and a table naming each region:

* group ICA or dictionary-learning components, split into connected
  regions by :class:`nilearn.regions.RegionExtractor` (maps, signed
  weights kept);
* a parcellation of the clustering stage (labels);
* a standard atlas (MSDL maps, Schaefer labels), resampled to the data's
  grid — nearest neighbour for labels, continuous (spline) for maps.

Regions that vanish on the data's voxels (a label without a voxel in the
mask, a map without weight there) are dropped here, once, so every
subject's connectome has the same regions; the caller logs their names.
"""

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmriflow.errors import InputError

logger = logging.getLogger("fmriflow")

#: Table columns of every region set.
REGION_COLUMNS = ("index", "name", "network", "x", "y", "z", "n_voxels")


@dataclass
class RegionSet:
    """Regions on the data's voxels.

    Attributes
    ----------
    kind : {"labels", "maps"}
    values : numpy.ndarray
        ``labels``: int label of every mask voxel, shape ``(n_voxels,)`` (0
        outside every region); ``maps``: weights, ``(n_voxels, n_regions)``.
    table : pandas.DataFrame
        One row per region (:data:`REGION_COLUMNS`), in signal order.
    dropped : list of str
        Names of the regions with nothing left on the data's voxels.
    """

    kind: str
    values: np.ndarray
    table: pd.DataFrame
    dropped: list


def world_coordinates(mask, affine):
    """World (MNI) coordinates of the voxels of a mask.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (x, y, z)
        The voxels, in the order of ``volume[mask]``.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world transform.

    Returns
    -------
    numpy.ndarray, shape (n_voxels, 3)
    """
    ijk = np.argwhere(mask)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def label_centres(labels, xyz, values):
    """Centre of mass (mm) of each label among the voxels.

    Parameters
    ----------
    labels : numpy.ndarray, shape (n_voxels,)
        Label of each voxel.
    xyz : numpy.ndarray, shape (n_voxels, 3)
        World coordinates of the voxels.
    values : sequence of int
        The labels, in output order.

    Returns
    -------
    numpy.ndarray, shape (n_labels, 3)
    """
    return np.array([xyz[labels == value].mean(axis=0) for value in values])


def map_centres(maps, xyz):
    """Centre (mm) of each map, around its peak.

    The mean of the voxels of the peak's sign with at least half the peak's
    magnitude, weighted by the magnitude.

    Parameters
    ----------
    maps : numpy.ndarray, shape (n_voxels, n_maps)
        Weights of each map.
    xyz : numpy.ndarray, shape (n_voxels, 3)
        World coordinates of the voxels.

    Returns
    -------
    numpy.ndarray, shape (n_maps, 3)
    """
    centres = []
    for weights in maps.T:
        peak = weights[np.argmax(np.abs(weights))]
        strong = np.sign(weights) == np.sign(peak)
        strong &= np.abs(weights) >= 0.5 * abs(peak)
        w = np.abs(weights[strong])
        centres.append((xyz[strong] * w[:, None]).sum(axis=0) / w.sum())
    return np.array(centres)


def region_table(names, centres, sizes, networks=None, index=None):
    """The canonical region table (:data:`REGION_COLUMNS`).

    Parameters
    ----------
    names : sequence of str
        One per region.
    centres : numpy.ndarray, shape (n_regions, 3)
        Centres in mm (rounded to 0.01 mm).
    sizes : sequence of int
        Voxels of each region (with a non-zero weight, for maps).
    networks : sequence of str, optional
        Network of each region ("" without).
    index : sequence of int, optional
        The label of each region (labels), or its position from 1 (default).

    Returns
    -------
    pandas.DataFrame
    """
    n = len(names)
    return pd.DataFrame(
        {
            "index": np.arange(1, n + 1) if index is None else np.asarray(index, dtype=int),
            "name": [str(name) for name in names],
            "network": ["" if networks is None else str(v) for v in (networks or [None] * n)],
            "x": np.round(centres[:, 0], 2),
            "y": np.round(centres[:, 1], 2),
            "z": np.round(centres[:, 2], 2),
            "n_voxels": np.asarray(sizes, dtype=int),
        }
    )


def _check_mask(mask, shape, what):
    """The mask as booleans, if it is on the image's grid."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise InputError(
            what,
            f"is on a {tuple(shape)} grid, the mask on {mask.shape}",
            "Resample the regions to the data's grid first",
        )
    return mask.astype(bool)


def labels_regions(volume, mask, affine, names=None, networks=None, expected=None):
    """Regions of a labels image on a mask's voxels.

    Parameters
    ----------
    volume : numpy.ndarray of int, shape mask.shape
        Labels (0 = background), read as integers of full width (never
        wrapped to 8 bits); floats are accepted if they hold integers.
    mask : numpy.ndarray of bool
        The data's voxels.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world transform of the grid (for the centres).
    names, networks : dict, optional
        ``{label: name}`` and ``{label: network}``; labels without a name
        are called ``parcel_<label>``.
    expected : sequence of int, optional
        Every label the regions should have (an atlas' table): those
        missing from ``volume`` altogether (lost when the atlas was
        resampled to a coarser grid) are dropped and named too. By default,
        the labels found in ``volume``.

    Returns
    -------
    RegionSet
        ``values`` the int64 label of every mask voxel (0 outside the kept
        regions); the table's ``index`` is the label; ``dropped`` names the
        expected labels without a voxel in the mask.
    """
    volume = np.asarray(volume)
    mask = _check_mask(mask, volume.shape, "labels image")
    if not np.issubdtype(volume.dtype, np.integer):
        rounded = np.rint(volume)
        if not np.allclose(volume, rounded):
            raise InputError(
                "labels image", "has non-integer values", "Give a labels (parcellation) image"
            )
        volume = rounded
    volume = volume.astype(np.int64)
    names = names or {}
    everywhere = [int(v) for v in np.unique(volume) if v != 0]
    if expected is not None:
        everywhere = sorted({int(v) for v in expected} | set(everywhere))
    labels = volume[mask]
    present = set(np.unique(labels).tolist()) - {0}
    kept = [v for v in everywhere if v in present]
    dropped = [names.get(v, f"parcel_{v}") for v in everywhere if v not in present]
    if not kept:
        raise InputError(
            "labels image",
            "no region has a voxel in the data's mask",
            "Check that the atlas and the data are in the same space",
        )
    xyz = world_coordinates(mask, affine)
    table = region_table(
        [names.get(v, f"parcel_{v}") for v in kept],
        label_centres(labels, xyz, kept),
        [int((labels == v).sum()) for v in kept],
        [networks.get(v, "") for v in kept] if networks else None,
        index=kept,
    )
    labels = np.where(np.isin(labels, kept), labels, 0)
    return RegionSet("labels", labels, table, dropped)


def maps_regions(maps, mask, affine, names=None, networks=None, extra=None):
    """Regions of a 4D maps image on a mask's voxels (signed weights kept).

    Parameters
    ----------
    maps : numpy.ndarray, shape mask.shape + (n_maps,)
        One map per region, weights of either sign.
    mask : numpy.ndarray of bool
        The data's voxels.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world transform of the grid (for the centres).
    names, networks : list of str, optional
        One per map (default ``map_<k>`` from 1).
    extra : dict of list, optional
        More table columns, one value per map.

    Returns
    -------
    RegionSet
        ``values`` the weights of the kept maps on the mask's voxels,
        ``(n_voxels, n_kept)``; ``dropped`` names the maps without a
        non-zero weight in the mask.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4:
        raise InputError("maps image", f"is {maps.ndim}D", "Give a 4D image, one map per volume")
    mask = _check_mask(mask, maps.shape[:3], "maps image")
    values = maps[mask]
    n_maps = values.shape[1]
    names = list(names) if names is not None else [f"map_{k + 1}" for k in range(n_maps)]
    if len(names) != n_maps or (networks is not None and len(networks) != n_maps):
        raise InputError(
            "maps image",
            f"has {n_maps} maps but {len(names)} names"
            + ("" if networks is None else f" and {len(networks)} networks"),
            "Give one name (and network) per map",
        )
    alive = np.abs(values).max(axis=0) > 0
    if not alive.any():
        raise InputError(
            "maps image",
            "no map has weight in the data's mask",
            "Check that the atlas and the data are in the same space",
        )
    kept = np.flatnonzero(alive)
    xyz = world_coordinates(mask, affine)
    table = region_table(
        [names[k] for k in kept],
        map_centres(values[:, kept], xyz),
        (values[:, kept] != 0).sum(axis=0),
        [networks[k] for k in kept] if networks is not None else None,
    )
    for column, items in (extra or {}).items():
        table[column] = [items[k] for k in kept]
    dropped = [names[k] for k in np.flatnonzero(~alive)]
    return RegionSet("maps", values[:, kept], table, dropped)


def peak_scaled(components_img):
    """Each map of a 4D image divided by its largest absolute value (peak 1).

    Maps without weight are left at zero.
    """
    import nibabel as nib

    data = np.asarray(components_img.dataobj, dtype=np.float64)
    peaks = np.abs(data).max(axis=(0, 1, 2))
    peaks[peaks == 0] = 1.0
    return nib.Nifti1Image((data / peaks).astype(np.float32), components_img.affine)


def extract_component_regions(
    components_img,
    mask_img,
    threshold=0.3,
    extractor="connected_components",
    min_region_size=1350.0,
    smoothing_fwhm=6.0,
):
    """Split decomposition maps into regions with :class:`nilearn.regions.RegionExtractor`.

    Each map is first scaled to a peak of 1 (:func:`peak_scaled`), and the
    extractor keeps the voxels whose absolute weight is at least
    ``threshold`` (``thresholding_strategy="img_value"``, both signs). nilearn's
    default ``ratio_n_voxels`` counts every voxel of the 4D array, inside
    the brain or not, so on thresholded ICA maps (mostly zeros) it keeps
    everything non-zero, scattered noise voxels included; a fraction of
    each map's own peak does not depend on the field of view or on the
    other maps.

    Parameters
    ----------
    components_img : nibabel.Nifti1Image
        4D maps (group ICA or dictionary learning components).
    mask_img : nibabel.Nifti1Image
        The voxels the regions may cover.
    threshold : float
        Fraction of its map's peak a voxel needs, in (0, 1].
    extractor : {"connected_components", "local_regions"}
        Split by connectivity alone, or also around local maxima.
    min_region_size : float
        Smallest region kept, in mm³.
    smoothing_fwhm : float
        Smoothing before finding local maxima (``local_regions`` only).

    Returns
    -------
    regions_img : nibabel.Nifti1Image
        One 4D volume per region.
    components : list of int
        The component (from 1) each region comes from.

    Raises
    ------
    InputError
        If no region survives the threshold and the minimum size.
    """
    from nilearn.regions import RegionExtractor

    extraction = RegionExtractor(
        peak_scaled(components_img),
        mask_img=mask_img,
        threshold=threshold,
        thresholding_strategy="img_value",
        two_sided=True,
        extractor=extractor,
        min_region_size=min_region_size,
        smoothing_fwhm=smoothing_fwhm,
    )
    with warnings.catch_warnings():
        # nilearn warns, then fails to build a masker on no region: one message instead.
        warnings.filterwarnings("ignore", message="No supra threshold regions")
        try:
            extraction.fit()
        except TypeError:
            if getattr(extraction, "regions_img_", True) is not None:
                raise
    components = [int(k) + 1 for k in (extraction.index_ or [])]
    if extraction.regions_img_ is None or not components:
        raise InputError(
            "region extraction",
            "no region survived the threshold and the minimum region size",
            "Lower regions.min_region_size or raise regions.threshold",
        )
    return extraction.regions_img_, components


def component_region_names(components):
    """Names ``ic<component>_<k>``: the k-th region of each component.

    Parameters
    ----------
    components : sequence of int
        The component (from 1) of each region, as :func:`extract_component_regions`
        gives them.

    Returns
    -------
    list of str
    """
    counts, names = {}, []
    for component in components:
        counts[component] = counts.get(component, 0) + 1
        names.append(f"ic{component}_{counts[component]}")
    return names


def resample_atlas(atlas_img, kind, target_img):
    """An atlas on the data's grid: nearest neighbour for labels, continuous for maps.

    Parameters
    ----------
    atlas_img : nibabel.Nifti1Image
        3D labels or 4D maps.
    kind : {"labels", "maps"}
        What the atlas holds.
    target_img : nibabel.Nifti1Image
        An image on the data's grid (the mask).

    Returns
    -------
    resampled : nibabel.Nifti1Image
    method : str
        The interpolation used, for the log and the summary.
    """
    from nilearn.image import resample_to_img

    method = "nearest" if kind == "labels" else "continuous"
    resampled = resample_to_img(
        atlas_img, target_img, interpolation=method, force_resample=True, copy_header=True
    )
    return resampled, method


def planted_networks_of(regions, networks, names, minimum=0.2):
    """The planted network each region overlaps most (simulated data), or "".

    A region's overlap with a network is the network's mean planted weight
    over the region's voxels, weighted by the region's absolute weights (a
    plain mean for labels): a map's faint tail (a probabilistic atlas, the
    ringing of continuous resampling) counts in proportion to its weight.

    Parameters
    ----------
    regions : RegionSet
        The regions, on the voxels of ``networks``.
    networks : numpy.ndarray, shape (n_voxels, n_networks)
        Planted maps on the same voxels (peak 1).
    names : list of str
        Name of each network.
    minimum : float
        Overlap a region needs to be assigned its best network.

    Returns
    -------
    list of str
        One name (or "") per region, in table order.
    """
    networks = np.asarray(networks, dtype=np.float64)
    if regions.kind == "labels":
        values = regions.table["index"].to_numpy()
        weights = np.stack([regions.values == v for v in values], axis=1).astype(np.float64)
    else:
        weights = np.abs(np.asarray(regions.values, dtype=np.float64))
    weight = (weights.T @ networks) / weights.sum(axis=0)[:, None]
    best = weight.argmax(axis=1)
    return [names[b] if weight[k, b] >= minimum else "" for k, b in enumerate(best)]
