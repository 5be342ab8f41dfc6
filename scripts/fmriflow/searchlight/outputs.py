"""Searchlight results as images and tables."""

import numpy as np


def to_volume(values, spheres, fill=0.0):
    """Per-centre values as a float32 volume on the data grid.

    Parameters
    ----------
    values : array-like, shape (n_centres,)
        One value per sphere (accuracy, p-value, ...).
    spheres : Spheres
        Gives the centres and the grid.
    fill : float
        Value outside the centres.

    Returns
    -------
    numpy.ndarray of float32, shape (x, y, z)
        Accuracies are not rounded (unlike nilearn's ``scores_img_``, which
        takes the mask's integer dtype).
    """
    values = np.asarray(values)
    if values.shape != (spheres.n_centres,):
        raise ValueError(f"{values.shape[0]} values for {spheres.n_centres} centres")
    out = np.full(spheres.mask.shape, fill, dtype=np.float32)
    out[spheres.centre_mask] = values
    return out


def best_spheres(scores, spheres, n=20, **columns):
    """The spheres with the highest scores, as a table.

    Parameters
    ----------
    scores : array-like, shape (n_centres,)
        One score per sphere.
    spheres : Spheres
        Gives centres, coordinates and sizes.
    n : int or None
        Number of rows (None: all spheres).
    **columns : array-like, shape (n_centres,)
        Extra per-centre columns (e.g. ``p_value=...``).

    Returns
    -------
    pandas.DataFrame
        ``i``, ``j``, ``k`` (centre voxel), ``x``, ``y``, ``z`` (world, mm),
        ``score``, ``n_voxels`` and the extra columns, by decreasing score
        (ties by centre order).
    """
    import pandas as pd

    scores = np.asarray(scores, dtype=np.float64)
    world = spheres.world
    table = pd.DataFrame(
        {
            "i": spheres.centres[:, 0],
            "j": spheres.centres[:, 1],
            "k": spheres.centres[:, 2],
            "x": world[:, 0],
            "y": world[:, 1],
            "z": world[:, 2],
            "score": scores,
            "n_voxels": spheres.sizes,
        }
        | {name: np.asarray(values) for name, values in columns.items()}
    )
    order = np.argsort(-scores, kind="stable")
    return table.iloc[order[:n] if n is not None else order].reset_index(drop=True)
