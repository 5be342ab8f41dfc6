"""Geometry of a searchlight's grid: voxel sizes, world coordinates, the radius check.

Kept apart from :mod:`~fmriflow.searchlight.spheres` (which builds the
spheres with scipy's sparse matrices) so that checking a config's radius
before any job imports numpy alone.
"""

import numpy as np

from fmriflow.errors import InputError


def voxel_sizes(affine):
    """Voxel sizes along the three axes of an affine.

    Parameters
    ----------
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine.

    Returns
    -------
    numpy.ndarray, shape (3,)
        Length (mm) of a one-voxel step along each axis.
    """
    return np.sqrt(np.sum(np.asarray(affine, dtype=float)[:3, :3] ** 2, axis=0))


def world_coordinates(ijk, affine):
    """World coordinates (mm) of voxel indices, as nilearn computes them.

    Parameters
    ----------
    ijk : numpy.ndarray of int, shape (n, 3)
        Voxel indices.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        ``affine @ [i, j, k, 1]`` for every voxel, with the same matrix
        product as ``nilearn.image.coord_transform`` (so that distances
        equal to the radius fall on the same side).
    """
    ijk = np.asarray(ijk)
    coords = np.c_[ijk[:, 0], ijk[:, 1], ijk[:, 2], np.ones_like(ijk[:, 2])].T
    return np.dot(np.asarray(affine, dtype=float), coords)[:3].T


def format_sizes(sizes):
    """Voxel sizes as ``"3.5 x 3.75 x 3.75"`` (mm, rounded to 4 decimals)."""
    return " x ".join(f"{s:g}" for s in np.round(sizes, 4))


def check_radius(radius, affine):
    """Raise :class:`InputError` unless a sphere of ``radius`` mm spans several voxels.

    Parameters
    ----------
    radius : float
        Searchlight radius in millimetres.
    affine : numpy.ndarray
        Voxel-to-world affine of the data.

    Returns
    -------
    float
        The radius.
    """
    sizes = voxel_sizes(affine)
    try:
        radius = float(radius)
    except (TypeError, ValueError):
        radius = float("nan")
    if not np.isfinite(radius) or radius < sizes.min():
        raise InputError(
            f"searchlight radius {radius:g} mm",
            f"smaller than the voxel size ({format_sizes(sizes)} mm), so every "
            "sphere would hold only its centre voxel",
            f"Choose a radius of at least {sizes.min():g} mm (nilearn's Haxby "
            "example uses 5.6 mm)",
        )
    return radius
