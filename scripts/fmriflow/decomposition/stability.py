"""Stability of a decomposition across seeds or subject samples.

The best-match correlation of each component of the reference run with the
components of the runs with other seeds (or other samples of the subjects).
"""

from dataclasses import dataclass

import numpy as np

from fmriflow.decomposition.dictionary import dict_learning
from fmriflow.decomposition.ica import Decomposition, group_ica
from fmriflow.decomposition.matching import reproducibility
from fmriflow.errors import InputError


@dataclass
class Stability:
    """A decomposition repeated with several seeds.

    Attributes
    ----------
    reference : Decomposition
        The run with the first seed.
    runs : list of Decomposition
        All runs, reference first.
    reproducibility : numpy.ndarray, shape (n_components,)
        Mean best-match absolute correlation of each reference map with the
        other runs' maps (:func:`reproducibility`, on the maps before
        thresholding).
    per_run : numpy.ndarray, shape (n_seeds - 1, n_components)
        The same, run by run.
    seeds : list of int
    """

    reference: Decomposition
    runs: list
    reproducibility: np.ndarray
    per_run: np.ndarray
    seeds: list


def stability(
    subjects,
    n_components,
    seeds=(0, 1, 2, 3, 4),
    method="ica",
    resample_subjects=False,
    **options,
):
    """Run the group stage with several seeds and measure its reproducibility.

    The subjects' reductions are fixed (they are cached once). By default
    what varies is the group stage's randomness: the randomized group SVD's
    test matrix and FastICA's (and dictionary learning's) initialisation.
    Beyond the real components the group spectrum is flat, so the noise
    directions that complete the subspace change from seed to seed: real
    components score near 1 and noise components clearly lower (see the
    tests). With ``solver="exact", n_init=1`` only FastICA's initialisation
    varies, and when it converges every component may score about 1.

    With ``resample_subjects``, every run but the reference also draws its
    subjects with replacement (a bootstrap, from its seed), so the score
    says which components are reproducible across subject samples: planted
    networks then score high and noise components low (see the tests).

    Parameters
    ----------
    subjects : sequence of numpy.ndarray or path
        As for :func:`group_ica` or :func:`dict_learning`.
    n_components : int
        Number of components.
    seeds : sequence of int, default=(0, 1, 2, 3, 4)
        The first is the reference run (on all subjects).
    method : {"ica", "dict_learning"}, default="ica"
        Which decomposition.
    resample_subjects : bool, default=False
        Bootstrap the subjects in the other runs.
    **options
        Passed to :func:`group_ica` or :func:`dict_learning`.

    Returns
    -------
    Stability
    """
    functions = {"ica": group_ica, "dict_learning": dict_learning}
    if method not in functions:
        raise InputError(
            f"decomposition method {method!r}", f"expected one of {sorted(functions)}", "Fix it"
        )
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise InputError(
            f"stability seeds {seeds}",
            "at least two different seeds are needed",
            "List two or more distinct seeds",
        )
    subjects = list(subjects)
    runs = []
    for position, seed in enumerate(seeds):
        sample = subjects
        if resample_subjects and position > 0:
            picks = np.random.default_rng(seed).integers(0, len(subjects), len(subjects))
            sample = [subjects[i] for i in picks]
        runs.append(functions[method](sample, n_components, seed=seed, **options))
    mean, per_run = reproducibility(runs[0].raw_maps, [run.raw_maps for run in runs[1:]])
    return Stability(runs[0], runs, mean, per_run, seeds)
