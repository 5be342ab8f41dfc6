"""Config entries unpacked into library calls, for the nodes that share them.

The library takes explicit, named parameters; only nodes know the shape of
the config. Where two nodes unpack the same keys of an entry the same way
(decoding and searchlight analyses both select labels and runs, and both
cross-validate by run; the reconstruction and its Table 1 both pair voxels
with images), the unpacking is written once, here.
"""

from dataclasses import dataclass

import numpy as np

from fmriflow import decoding

#: The inputs of a searchlight node that reads a subject's data, as the nodes describe them.
SEARCHLIGHT_DATA_INPUTS = {
    "clean": "clean.npy (time x voxel)",
    "mask": "the preprocessing mask.nii.gz (matrix columns)",
    "events": "the subject's events.tsv",
    "roi": "the subject's roi.nii.gz (spheres centred in the ROI)",
}
#: The plan input of the parts and the gathering node of a map split by run time.
SEARCHLIGHT_PLAN_INPUT = {
    "plan": "plan.json of an analysis split by run time (chunk_minutes): the parts",
}


def subject_analysis(inputs, entry):
    """A subject's data for a decoding or searchlight entry.

    Parameters
    ----------
    inputs : mapping
        The node's inputs: ``clean``, ``events``, ``mask`` and, for an
        analysis on the subject ROI, ``roi``.
    entry : dict
        The analysis' config entry (``labels``, ``drop_incomplete_runs``).

    Returns
    -------
    fmriflow.decoding.SubjectAnalysis
    """
    return decoding.load_subject_analysis(
        inputs["clean"],
        inputs["events"],
        inputs["mask"],
        entry["labels"],
        entry["drop_incomplete_runs"],
        roi_path=inputs.get("roi"),
    )


def permutation_blocks(data, entry):
    """The exchangeable blocks of an analysis' permutations (None: single volumes).

    Parameters
    ----------
    data : fmriflow.decoding.SubjectAnalysis
        From :func:`subject_analysis` (its ``rows`` are volume indices).
    entry : dict
        The analysis' config entry (``permute``: ``block`` or ``volume``).

    Returns
    -------
    numpy.ndarray of int or None
        Block of each of the analysis' volumes.
    """
    from fmriflow.permutations import unit_blocks

    return unit_blocks(entry["permute"], data.y, data.runs, data.rows)


def searchlight_spheres(data, entry, uses_roi):
    """The spheres of a searchlight entry: around every mask voxel, or every ROI voxel.

    Parameters
    ----------
    data : fmriflow.decoding.SubjectAnalysis
        From :func:`subject_analysis`.
    entry : dict
        The searchlight entry (``radius``).
    uses_roi : bool
        Centres in the subject ROI (the data's columns) rather than the mask.

    Returns
    -------
    fmriflow.searchlight.Spheres
    """
    from fmriflow.masking import unmask
    from fmriflow.searchlight import make_spheres

    centres = unmask(data.columns, data.mask) if uses_roi else data.mask
    return make_spheres(data.mask, data.affine, entry["radius"], centres)


def score_searchlight_rows(data, entry, spheres, rows, cv, n_jobs=1, progress=None):
    """The accuracies (and null accuracies) of some centres of a searchlight entry.

    What a part of the map computes, and what a plan times.

    Parameters
    ----------
    data : fmriflow.decoding.SubjectAnalysis
        From :func:`subject_analysis`.
    entry : dict
        The searchlight entry.
    spheres : fmriflow.searchlight.Spheres
        From :func:`searchlight_spheres`.
    rows : numpy.ndarray of int
        The centres (rows of ``spheres``) to score; at least one.
    cv : splitter
        From :func:`cross_validation`.
    n_jobs : int
        Workers.
    progress : callable, optional
        Called with the number of centres done.

    Returns
    -------
    SearchlightResult or PermutationResult
    """
    from fmriflow import searchlight as sl

    return sl.searchlight_scores(
        data.matrix[data.rows],
        data.y,
        data.runs,
        spheres.select(rows),
        entry["classifier"],
        cv=cv,
        balance=entry["balance"],
        seed=entry["seed"],
        n_permutations=entry["permutations"],
        alpha=entry["fwe_alpha"],
        n_jobs=n_jobs,
        progress=progress,
        blocks=permutation_blocks(data, entry),
    )


def cross_validation(entry):
    """The splitter of an entry's ``cv`` section and ``seed`` (see ``decoding.make_cv``)."""
    return decoding.make_cv(**entry["cv"], seed=entry["seed"])


def inner_cross_validation(entry, runs):
    """The inner folds by run (``GroupKFold(inner_folds)``) that choose an encoding's penalties.

    Parameters
    ----------
    entry : dict
        The encoding entry (``inner_folds``, ``cv``).
    runs : numpy.ndarray
        The run of each training sample.

    Returns
    -------
    sklearn.model_selection.GroupKFold
    """
    from sklearn.model_selection import GroupKFold

    from fmriflow.errors import InputError

    outer = cross_validation(entry)
    fewest = min(len(np.unique(runs[train])) for train, _ in outer.split(runs, runs, runs))
    if fewest < entry["inner_folds"]:
        raise InputError(
            f"encoding entry {entry['name']!r}: inner_folds {entry['inner_folds']}",
            f"an outer training set has only {fewest} runs, fewer than the inner folds",
            f"Set inner_folds to at most {fewest}, or use fewer outer folds",
        )
    return GroupKFold(n_splits=entry["inner_folds"])


def selection(entry):
    """A reconstruction entry's ANOVA selection as ``(method, value)``, or None."""
    chosen = entry["feature_selection"]
    return None if chosen is None else (chosen["method"], chosen["value"])


def pixel_model(entry, classifier, C, n_features):
    """The decoder of one pixel or patch of a reconstruction entry."""
    from fmriflow.reconstruction import make_pixel_model

    return make_pixel_model(classifier, C, entry["seed"], selection(entry), n_features)


@dataclass
class ImageSamples:
    """Voxels and the images seen, for one split of a reconstruction."""

    X: object
    images: object
    runs: object
    bold_rows: object


def reconstruction_data(inputs, entry, shape):
    """The training and test samples of a reconstruction entry (rest left out).

    Parameters
    ----------
    inputs : mapping
        The node's inputs: ``clean``, ``events``, ``stimuli``, ``mask`` and,
        on the subject ROI, ``roi``.
    entry : dict
        The reconstruction entry (``lag_volumes``).
    shape : tuple of int
        The stimulus grid.

    Returns
    -------
    train, test : ImageSamples
    """
    from fmriflow.errors import InputError
    from fmriflow.stimuli import load_stimulus_analysis, split_pairs

    if shape is None:
        raise InputError(
            inputs["stimuli"],
            "reconstruction needs images, and the dataset's stimuli have no image grid",
            "Give the dataset a stimulus grid (local.stimulus_shape)",
        )
    data = load_stimulus_analysis(
        inputs["clean"],
        inputs["events"],
        inputs["stimuli"],
        inputs["mask"],
        shape,
        inputs.get("roi"),
    )
    samples = []
    for split in ("train", "test"):
        pairs = split_pairs(data.stimuli, entry["lag_volumes"], split, False, inputs["stimuli"])
        images = data.stimuli.images(pairs.stimulus_rows)
        if not np.isin(images, (0, 1)).all():
            raise InputError(
                inputs["stimuli"],
                "reconstruction decodes binary pixels, and some stimulus values are not 0 or 1",
                "Binarize the images, or use an encoding analysis for graded features",
            )
        X = data.voxels(pairs.bold_rows)
        samples.append(ImageSamples(X, images.astype(int), pairs.runs, pairs.bold_rows))
    return tuple(samples)


#: The inputs every encoding and reconstruction node reads (its Node declaration).
STIMULUS_NODE_INPUTS = {
    "clean": "clean.npy (time x voxel)",
    "mask": "the preprocessing mask.nii.gz (matrix columns)",
    "events": "the subject's events.tsv (runs)",
    "stimuli": "the subject's stimuli.tsv",
    "description": "dataset.json (the stimulus grid)",
    "roi": "the subject's roi.nii.gz (analyses on the ROI's voxels)",
}
