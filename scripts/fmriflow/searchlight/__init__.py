"""Searchlight decoding: a cross-validated accuracy for the sphere around every voxel.

The package, by what it holds:

* :mod:`~fmriflow.searchlight.geometry` — voxel sizes, world coordinates
  and the radius check (numpy only: what a config check needs);
* :mod:`~fmriflow.searchlight.spheres` — nilearn's spheres on any grid
  (:func:`make_spheres`), as a sparse ``(centre, voxel)`` matrix;
* :mod:`~fmriflow.searchlight.gnb` and
  :mod:`~fmriflow.searchlight.gnb_scoring` — Gaussian naive Bayes in every
  sphere at once, exactly (the scores equal ``nilearn.decoding.SearchLight``
  with ``GaussianNB``, predictions too close to call made by scikit-learn);
* :mod:`~fmriflow.searchlight.permutations` — its permutation maps (labels
  permuted within runs) with a max-statistic family-wise threshold;
* :mod:`~fmriflow.searchlight.closed_form` — ridge and nearest centroid in
  every sphere from per-fold sums, exactly, with permutation maps;
* :mod:`~fmriflow.searchlight.estimator` — any scikit-learn classifier
  fitted sphere by sphere (nilearn's scores);
* :mod:`~fmriflow.searchlight.outputs` — maps and tables of the results;
* :mod:`~fmriflow.searchlight.parts` — a map split into parts of centres
  (one job each) and gathered, and progress in the log;
* :mod:`~fmriflow.searchlight.group` — group inference on subjects' maps:
  permutation-based clusters (Stelzer et al. 2013) and prevalence
  (Allefeld et al. 2016).

:func:`searchlight_scores` picks the engine a registry classifier names
(:mod:`fmriflow.classifiers`).
"""

import importlib

import numpy as np

from fmriflow.errors import InputError

#: The module of the package that defines each of its public names. They are
#: imported when first used (PEP 562), so that a light module (the radius
#: check of a config, the plan of a map's parts) does not bring in every engine.
DEFINED_IN = {
    "ClusterResult": "group",
    "PermutationResult": "scores",
    "PrevalenceResult": "group",
    "Progress": "parts",
    "SearchlightResult": "scores",
    "Spheres": "spheres",
    "best_spheres": "outputs",
    "check_radius": "geometry",
    "closed_form_searchlight": "closed_form",
    "cluster_test": "group",
    "distinct_labellings": "permutations",
    "gather_parts": "parts",
    "gnb_permutation_test": "permutations",
    "gnb_searchlight": "gnb",
    "label_blocks": "permutations",
    "make_spheres": "spheres",
    "part_design": "parts",
    "part_rows": "parts",
    "peaks_mm": "group",
    "permutation_labels": "permutations",
    "permute_within_runs": "permutations",
    "plan_parts": "parts",
    "plan_sample": "parts",
    "prevalence_bound": "group",
    "prevalence_test": "group",
    "read_plan": "parts",
    "save_part": "parts",
    "searchlight": "estimator",
    "summarize_permutations": "permutations",
    "to_volume": "outputs",
    "voxel_sizes": "geometry",
    "world_coordinates": "geometry",
}

__all__ = sorted([*DEFINED_IN, "searchlight_scores"])


def __getattr__(name):
    """A public name of the package, imported from its module on first use."""
    if name not in DEFINED_IN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{DEFINED_IN[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def searchlight_scores(
    X,
    y,
    runs,
    spheres,
    classifier="gnb",
    cv=None,
    balance=False,
    seed=0,
    n_permutations=0,
    alpha=0.05,
    n_jobs=1,
    progress=None,
    blocks=None,
):
    """Searchlight accuracies of a registry classifier, by its searchlight engine.

    Parameters
    ----------
    X, y, runs, spheres, cv, n_jobs
        As in :func:`searchlight`.
    classifier : str
        A name of :data:`fmriflow.classifiers.REGISTRY`. Its entry says which
        engine serves it: ``"gnb"``, the exact all-spheres naive Bayes path
        (:func:`gnb_searchlight`, :func:`gnb_permutation_test`),
        ``"closed_form"``, ridge, shrinkage LDA and nearest centroid from per-fold sums
        (:func:`closed_form_searchlight`), or ``"sklearn"``, scikit-learn
        fitted sphere by sphere (:func:`searchlight`).
    balance : bool
        As in :func:`fmriflow.classifiers.make_classifier`. Ridge with class
        weights and LDA with uniform priors have no closed-form path: they
        are fitted sphere by sphere, and offer no permutation maps.
    seed : int
        Random state of estimators that use one, and of the permutations.
    n_permutations : int
        Label permutations within runs (engines with permutation maps only).
    blocks : array-like of int, optional
        Block of each sample (:func:`label_blocks`): permutations exchange the
        labels of blocks within runs rather than of single volumes.
    alpha : float
        Family-wise error rate of the permutation threshold.
    progress : callable, optional
        Called with the number of centres done, as they are done (the
        closed-form and general engines; see :class:`Progress`).

    Returns
    -------
    SearchlightResult, or PermutationResult with permutations
    """
    from fmriflow import classifiers
    from fmriflow.searchlight.closed_form import closed_form_searchlight
    from fmriflow.searchlight.estimator import searchlight
    from fmriflow.searchlight.gnb import gnb_searchlight
    from fmriflow.searchlight.permutations import gnb_permutation_test

    entry = classifiers.get(classifier)
    if entry.searchlight is None or (n_permutations and not entry.permutation_maps):
        offered = classifiers.names(searchlight=True, permutation_maps=bool(n_permutations))
        raise InputError(
            f"searchlight classifier {classifier!r}",
            "no searchlight engine serves it" + (" with permutations" if n_permutations else ""),
            f"Choose one of {offered}",
        )
    n_classes = len(np.unique(np.asarray(y)))
    weighted = classifier in ("ridge", "lda_shrinkage", "lda_auto") and balance
    if weighted and n_permutations:
        raise InputError(
            f"searchlight classifier {classifier!r} with balance: true",
            "class weights (uniform priors) change its fit with every permutation, so it has "
            "no permutation maps",
            "Set balance: false (chance is still each fold's majority), or drop permutations",
        )
    if entry.searchlight == "sklearn" or weighted:
        pipeline = classifiers.make_classifier(
            classifier,
            seed=seed,
            balance=balance,
            n_classes=n_classes,
            n_features=int(spheres.sizes.min()),
        )
        return searchlight(X, y, runs, spheres, pipeline, cv, n_jobs=n_jobs, progress=progress)
    settings = classifiers.engine_settings(classifier, balance, n_classes)
    if entry.searchlight == "closed_form":
        return closed_form_searchlight(
            X,
            y,
            runs,
            spheres,
            classifier,
            cv=cv,
            alpha=settings["alpha"],
            shrinkage=settings["shrinkage"],
            n_permutations=n_permutations,
            seed=seed,
            fwe_alpha=alpha,
            n_jobs=n_jobs,
            progress=progress,
            blocks=blocks,
        )
    if n_permutations:
        return gnb_permutation_test(
            X,
            y,
            runs,
            spheres,
            n_permutations,
            seed=seed,
            cv=cv,
            var_smoothing=settings["var_smoothing"],
            priors=settings["priors"],
            alpha=alpha,
            n_jobs=n_jobs,
            blocks=blocks,
        )
    return gnb_searchlight(
        X, y, runs, spheres, cv, settings["var_smoothing"], settings["priors"], n_jobs=n_jobs
    )
