"""One row of statistics per component of a decomposition."""

import numpy as np

from fmriflow.decomposition.ica import skewness


def component_table(
    decomposition, mask, affine, reproducibility=None, z_threshold=3.0, names=None
):
    """One row of statistics per component.

    Parameters
    ----------
    decomposition : Decomposition
        The maps (statistics use ``raw_maps``, except ``nonzero_voxels``).
    mask : numpy.ndarray of bool
        The mask whose voxels are the maps' columns.
    affine : numpy.ndarray
        Voxel-to-world (MNI) affine of the mask.
    reproducibility : numpy.ndarray, optional
        Per-component stability (:attr:`Stability.reproducibility`).
    z_threshold : float, default=3.0
        ``size_voxels`` counts the voxels where the map, divided by its
        standard deviation over the mask, is at least this.
    names : sequence of str, optional
        Names of the components (e.g. the matched ground-truth networks).

    Returns
    -------
    pandas.DataFrame
        Columns ``component`` (0-based, in the maps' order),
        ``explained_variance``, ``skewness``, ``peak_x``, ``peak_y``,
        ``peak_z`` (world millimetres of the maximum), ``peak_value`` (in
        standard deviations), ``size_voxels``, ``size_mm3``,
        ``nonzero_voxels`` (of the final, possibly thresholded maps), and
        ``reproducibility`` and ``name`` when given.
    """
    import pandas as pd

    raw = np.asarray(decomposition.raw_maps, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if raw.shape[1] != int(mask.sum()):
        raise ValueError(f"maps have {raw.shape[1]} voxels but the mask has {int(mask.sum())}")
    affine = np.asarray(affine, dtype=float)
    std = raw.std(axis=1, keepdims=True)
    z = raw / np.where(std > 0, std, 1.0)
    ijk = np.argwhere(mask)
    peaks = np.argmax(z, axis=1)
    xyz = ijk[peaks] @ affine[:3, :3].T + affine[:3, 3]
    voxel_volume = float(abs(np.linalg.det(affine[:3, :3])))
    size = np.sum(z >= z_threshold, axis=1)
    table = pd.DataFrame(
        {
            "component": np.arange(raw.shape[0]),
            "explained_variance": decomposition.explained_variance,
            "skewness": skewness(raw),
            "peak_x": xyz[:, 0],
            "peak_y": xyz[:, 1],
            "peak_z": xyz[:, 2],
            "peak_value": z[np.arange(raw.shape[0]), peaks],
            "size_voxels": size,
            "size_mm3": size * voxel_volume,
            "nonzero_voxels": np.count_nonzero(decomposition.maps, axis=1),
        }
    )
    if reproducibility is not None:
        table["reproducibility"] = np.asarray(reproducibility, dtype=float)
    if names is not None:
        table["name"] = list(names)
    return table
