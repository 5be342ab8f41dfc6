"""Comparing sets of spatial maps: correlations and one-to-one (Hungarian) matching."""

from dataclasses import dataclass

import numpy as np


def spatial_correlation(maps_a, maps_b):
    """Pearson correlation across voxels between every pair of maps.

    Parameters
    ----------
    maps_a : numpy.ndarray, shape (n_a, n_voxels)
    maps_b : numpy.ndarray, shape (n_b, n_voxels)

    Returns
    -------
    numpy.ndarray, shape (n_a, n_b)
        Signed correlations; 0 for a constant map.
    """

    def standardized(maps):
        maps = np.atleast_2d(np.asarray(maps, dtype=np.float64))
        centred = maps - maps.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        return centred / np.where(norms > 0, norms, 1.0)

    return standardized(maps_a) @ standardized(maps_b).T


@dataclass
class Matching:
    """One-to-one matching of estimated maps to reference maps.

    Attributes
    ----------
    estimated : numpy.ndarray of int
        Index of each matched estimated map.
    reference : numpy.ndarray of int
        Index of the reference map it is matched to.
    correlations : numpy.ndarray
        Absolute spatial correlation of each pair.
    mean : float
        Mean of ``correlations``.
    """

    estimated: np.ndarray
    reference: np.ndarray
    correlations: np.ndarray
    mean: float

    @property
    def pairs(self):
        """The matched pairs as a list of ``(estimated, reference)`` indices."""
        return [(int(a), int(b)) for a, b in zip(self.estimated, self.reference, strict=True)]


def match_components(estimated, reference):
    """Match maps one to one by absolute spatial correlation (Hungarian).

    ``min(n_estimated, n_reference)`` pairs maximise the summed absolute
    correlation (``scipy.optimize.linear_sum_assignment``); with more
    estimated maps than reference maps (the usual case against ground
    truth) the extra ones are left out.

    Parameters
    ----------
    estimated : numpy.ndarray, shape (n_estimated, n_voxels)
        E.g. group ICA maps.
    reference : numpy.ndarray, shape (n_reference, n_voxels)
        E.g. the planted network maps.

    Returns
    -------
    Matching
        Pairs ordered by reference index.
    """
    from scipy.optimize import linear_sum_assignment

    similarity = np.abs(spatial_correlation(estimated, reference))
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    order = np.argsort(columns)
    rows, columns = rows[order], columns[order]
    correlations = similarity[rows, columns]
    return Matching(rows, columns, correlations, float(correlations.mean()))


def reproducibility(reference, others):
    """Per-component reproducibility of a decomposition across runs.

    For each map of the reference run and each other run, the largest
    absolute spatial correlation with that run's maps (best match, not one
    to one); then the mean over runs.

    Parameters
    ----------
    reference : numpy.ndarray, shape (n_components, n_voxels)
        Maps of the reference run.
    others : sequence of numpy.ndarray
        Maps of the other runs.

    Returns
    -------
    mean : numpy.ndarray, shape (n_components,)
        Mean best-match correlation of each reference map.
    per_run : numpy.ndarray, shape (n_runs, n_components)
        Best-match correlation in each run.
    """
    per_run = np.array(
        [np.abs(spatial_correlation(reference, other)).max(axis=1) for other in others]
    ).reshape(len(others), np.atleast_2d(reference).shape[0])
    mean = per_run.mean(axis=0) if len(others) else np.full(per_run.shape[1], np.nan)
    return mean, per_run
