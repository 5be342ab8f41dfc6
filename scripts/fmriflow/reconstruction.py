"""Stimulus reconstruction from visual cortex (Miyawaki et al., 2008).

A binary image of ``n_rows x n_cols`` pixels is shown; each local decoder
predicts, from the voxels, whether one patch of the image is on. Patches
come in several scales (:data:`SCALES`: 1x1, 1x2, 2x1 and 2x2 pixels, every
position); a patch is on when more than half of its pixels are, off when
fewer are, and undecided when exactly half are: a training image where a
patch is half on is left out of that patch's decoder, so that patches of an
even number of pixels are not biased towards on (or off).

* Each scale gives a pixel estimate: the mean of the predictions of the
  patches of that scale covering the pixel (:func:`pixel_estimates`).
* The scales are combined with non-negative least-squares weights
  (:func:`fit_scale_weights`) fitted on *cross-validated* predictions of
  the training set, by run, never on the test set (:func:`reconstruct`).
* The decoders are registry classifiers (:mod:`fmriflow.classifiers`) with
  their C set (:func:`make_pixel_model`); ANOVA selection, when asked for,
  is a step of each decoder's pipeline, so it is fitted on the decoder's own
  training set and target.
* :func:`model_table` compares classifiers and C values with pixel
  decoders cross-validated by run, as in Table 1 of Abraham et al. (2014).

Images are arrays ``(n_samples, n_rows, n_cols)`` of 0 and 1; flattened,
pixels are in row-major order.
"""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmriflow import classifiers
from fmriflow.errors import InputError

logger = logging.getLogger("fmriflow.reconstruction")

#: Patch heights and widths, in pixels, as in Miyawaki et al. (2008).
SCALES = ((1, 1), (1, 2), (2, 1), (2, 2))
#: The target of a patch exactly half on (left out of its decoder's training).
UNDECIDED = -1

#: Columns of a patch layout (see :func:`patch_layout`).
LAYOUT_COLUMNS = ("scale", "height", "width", "row", "col")


def scale_name(height, width):
    """The name of a scale, e.g. ``"1x2"`` (height x width)."""
    return f"{int(height)}x{int(width)}"


def patch_layout(shape, scales=SCALES):
    """Every patch of every scale on an image grid.

    Parameters
    ----------
    shape : tuple of int
        ``(n_rows, n_cols)`` of the images.
    scales : sequence of (int, int)
        Patch ``(height, width)`` in pixels.

    Returns
    -------
    pandas.DataFrame
        One row per patch, scale by scale, and in each scale top-left
        corners in row-major order: ``scale`` (e.g. ``"1x2"``), ``height``,
        ``width``, ``row`` and ``col`` (the top-left pixel). Its row number
        is the patch's column in :func:`patch_targets`. On 10x10 images,
        :data:`SCALES` gives 100, 90, 90 and 81 patches.
    """
    n_rows, n_cols = _check_shape(shape)
    scales = [tuple(scale) for scale in scales]
    if not scales:
        raise InputError("patch scales", "no scale given", f"Give scales such as {SCALES}")
    for scale in scales:
        if len(scale) != 2 or not all(
            isinstance(size, int | np.integer) and size >= 1 for size in scale
        ):
            raise InputError(
                f"patch scale {scale}",
                "a scale is a (height, width) pair of positive integers",
                f"Give scales such as {SCALES}",
            )
        if scale[0] > n_rows or scale[1] > n_cols:
            raise InputError(
                f"patch scale {scale}",
                f"larger than the {n_rows}x{n_cols} image",
                "Use patches that fit in the image",
            )
    if len(set(scales)) != len(scales):
        raise InputError(f"patch scales {scales}", "a scale is repeated", "Give each scale once")
    records = [
        (scale_name(height, width), height, width, row, col)
        for height, width in scales
        for row in range(n_rows - height + 1)
        for col in range(n_cols - width + 1)
    ]
    layout = pd.DataFrame.from_records(records, columns=list(LAYOUT_COLUMNS))
    return layout.astype({name: int for name in LAYOUT_COLUMNS[1:]})


def scale_names(layout):
    """The scales of a layout, in their order of appearance."""
    return tuple(dict.fromkeys(pd.DataFrame(layout)["scale"]))


def patch_targets(images, layout):
    """Whether each patch of each image is on.

    Parameters
    ----------
    images : numpy.ndarray, shape (n_samples, n_rows, n_cols)
        Binary images (0 and 1).
    layout : pandas.DataFrame
        From :func:`patch_layout`.

    Returns
    -------
    numpy.ndarray of int, shape (n_samples, n_patches)
        1 where the mean of the patch's pixels is above 0.5, 0 where it is
        below, :data:`UNDECIDED` (-1) where it is exactly 0.5.
    """
    images = check_images(images, "images")
    layout = _check_layout(layout, images.shape[1:])
    targets = np.empty((images.shape[0], len(layout)), dtype=int)
    for (height, width), patches in layout.groupby(["height", "width"], sort=False):
        windows = np.lib.stride_tricks.sliding_window_view(images, (height, width), axis=(1, 2))
        twice = windows.sum(axis=(3, 4)) * 2
        state = np.where(twice > height * width, 1, np.where(twice < height * width, 0, UNDECIDED))
        targets[:, patches.index] = state[:, patches["row"].to_numpy(), patches["col"].to_numpy()]
    return targets


def make_pixel_model(classifier, C, seed=0, selection=None, n_features=None):
    """A local decoder: a registry classifier with its C set.

    Parameters
    ----------
    classifier : str
        A registry name (:mod:`fmriflow.classifiers`), e.g. ``logreg_l1``,
        ``logreg_l2``, ``linear_svc_l1`` or ``linear_svc``.
    C : float
        The inverse regularisation, set through the entry's ``search_path``.
    seed : int
        Random state of the classifier.
    selection : tuple (str, float), optional
        ``(method, value)`` of an ANOVA F-test selection
        (:func:`fmriflow.classifiers.anova_selector`), put before the
        classifier unless the entry has its own (which then uses it).
    n_features : int, optional
        Number of voxels, to cap the number of voxels selected.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted; its last step is ``clf``, its selection (if any) the
        ``anova`` step, fitted inside whatever training set the pipeline is
        fitted on.
    """
    entry = classifiers.get(classifier)
    if not entry.search_path.endswith("__C"):
        raise InputError(
            f"classifier {classifier!r}",
            f"it is tuned by {entry.search_path.rsplit('__', 1)[1]!r}, not C",
            "Choose a classifier with a C, e.g. logreg_l1, logreg_l2, linear_svc_l1, linear_svc",
        )
    C = _check_C(C)
    method, value = _check_selection(selection)
    pipeline = classifiers.make_classifier(
        classifier,
        seed=seed,
        n_features=n_features,
        selection_method=method,
        selection_value=value,
    )
    if selection is not None and "anova" not in pipeline.named_steps:
        pipeline.steps.insert(0, ("anova", classifiers.anova_selector(method, value, n_features)))
    return pipeline.set_params(**{entry.search_path: C})


def fit_predict_patches(X_train, targets_train, X_test, model):
    """Fit one decoder per patch and predict the test samples.

    Parameters
    ----------
    X_train : numpy.ndarray, shape (n_train, n_features)
    targets_train : numpy.ndarray, shape (n_train, n_patches)
        0/1 patch targets of the training samples (:func:`patch_targets`);
        samples where a patch is :data:`UNDECIDED` are left out of its fit.
    X_test : numpy.ndarray, shape (n_test, n_features)
    model : sklearn estimator
        Cloned for every patch (e.g. from :func:`make_pixel_model`).

    Returns
    -------
    predicted : numpy.ndarray of int, shape (n_test, n_patches)
    constant : numpy.ndarray of bool, shape (n_patches,)
        Patches with one value over the training samples (or none decided):
        no decoder is fitted, that value (or 0) is predicted.
    """
    X_train, X_test = _check_features(X_train, X_test)
    targets_train = _check_targets(targets_train, X_train)
    predicted = np.empty((X_test.shape[0], targets_train.shape[1]), dtype=int)
    constant = np.zeros(targets_train.shape[1], dtype=bool)
    with classifiers.repeated_fits(X_train, X_test, what="pixel decoder features"):
        _fit_patches(X_train, targets_train, X_test, model, predicted, constant)
    if constant.any():
        logger.debug(
            "%d patch(es) have a single value in training; that value is predicted",
            int(constant.sum()),
        )
    return predicted, constant


def _fit_patches(X_train, targets_train, X_test, model, predicted, constant):
    """Fill ``predicted`` and ``constant`` patch by patch (see :func:`fit_predict_patches`).

    A one-step pipeline is fitted as its classifier, liblinear's and libsvm's
    without scikit-learn's per-call overhead (:func:`fmriflow.fits.fold_fit_predict`:
    the same predictions).
    """
    from fmriflow.fits import fold_fit_predict

    model = classifiers.bare_estimator(model)
    for column, y in enumerate(targets_train.T):
        decided = y != UNDECIDED
        values = np.unique(y[decided])
        if len(values) < 2:
            constant[column] = True
            predicted[:, column] = values[0] if len(values) else 0
        elif decided.all():
            predicted[:, column] = fold_fit_predict(model, y)(X_train, X_test)
        else:
            fit_predict = fold_fit_predict(model, y[decided])
            predicted[:, column] = fit_predict(X_train[decided], X_test)


def pixel_estimates(predicted, layout, shape):
    """Pixel estimates of each scale from patch predictions.

    Parameters
    ----------
    predicted : numpy.ndarray, shape (n_samples, n_patches)
        Patch predictions (0/1, or probabilities), columns as in ``layout``.
    layout : pandas.DataFrame
        From :func:`patch_layout`.
    shape : tuple of int
        ``(n_rows, n_cols)`` of the images.

    Returns
    -------
    numpy.ndarray, shape (n_samples, n_scales, n_rows, n_cols)
        For each scale (in :func:`scale_names` order), the mean of the
        predictions of the patches of that scale covering each pixel.
    """
    shape = _check_shape(shape)
    layout = _check_layout(layout, shape)
    predicted = np.asarray(predicted, dtype=float)
    if predicted.ndim != 2 or predicted.shape[1] != len(layout):
        raise InputError(
            f"patch predictions of shape {predicted.shape}",
            f"expected (n_samples, {len(layout)}), one column per patch of the layout",
            "Predict every patch of the layout (fit_predict_patches)",
        )
    names = scale_names(layout)
    estimates = np.zeros((predicted.shape[0], len(names), *shape))
    counts = np.zeros((len(names), *shape))
    for index, name in enumerate(names):
        patches = layout[layout["scale"] == name]
        values = predicted[:, patches.index]
        height, width = int(patches["height"].iloc[0]), int(patches["width"].iloc[0])
        # Within one offset, the covered pixels of distinct patches are distinct.
        for drow in range(height):
            for dcol in range(width):
                rows = patches["row"].to_numpy() + drow
                cols = patches["col"].to_numpy() + dcol
                estimates[:, index, rows, cols] += values
                counts[index, rows, cols] += 1
    if np.any(counts == 0):
        scale, row, col = np.argwhere(counts == 0)[0]
        raise InputError(
            f"patch layout, scale {names[scale]}",
            f"pixel ({row}, {col}) is covered by no patch",
            "Use a layout from patch_layout, which covers every pixel at every scale",
        )
    return estimates / counts


def fit_scale_weights(estimates, images):
    """Non-negative weights of the scales that best fit the images.

    Miyawaki et al. (2008) combine the decoders of the scales linearly; the
    weights minimise the squared error to the true images over all samples
    and pixels (``scipy.optimize.nnls``). Fit them on cross-validated
    predictions of the training set only (as :func:`reconstruct` does),
    never on test data.

    Parameters
    ----------
    estimates : numpy.ndarray, shape (n_samples, n_scales, n_rows, n_cols)
        From :func:`pixel_estimates`.
    images : numpy.ndarray, shape (n_samples, n_rows, n_cols)
        The true images of those samples.

    Returns
    -------
    numpy.ndarray, shape (n_scales,)
    """
    from scipy.optimize import nnls

    images = check_images(images, "images")
    estimates = _check_estimates(estimates, images.shape[1:])
    _check_same_samples(estimates, images, "scale estimates", "images")
    design = np.moveaxis(estimates, 1, -1).reshape(-1, estimates.shape[1])
    weights, _ = nnls(design, images.reshape(-1).astype(float))
    return weights


def combine_scales(estimates, weights):
    """The weighted sum of the scale estimates.

    Parameters
    ----------
    estimates : numpy.ndarray, shape (n_samples, n_scales, n_rows, n_cols)
    weights : numpy.ndarray, shape (n_scales,)

    Returns
    -------
    numpy.ndarray, shape (n_samples, n_rows, n_cols)
        Continuous; the binary reconstruction is where it is >= 0.5.
    """
    estimates = np.asarray(estimates, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if estimates.ndim != 4 or weights.shape != (estimates.shape[1],):
        raise InputError(
            f"scale weights of shape {weights.shape}",
            f"expected one weight per scale of estimates of shape {estimates.shape}",
            "Use the weights fitted on estimates of the same scales (fit_scale_weights)",
        )
    return np.tensordot(estimates, weights, axes=([1], [0]))


def pixel_accuracy(reconstructed_binary, images):
    """Accuracy of each pixel over samples.

    Parameters
    ----------
    reconstructed_binary, images : numpy.ndarray, shape (n_samples, n_rows, n_cols)
        Binary reconstructions and the true images.

    Returns
    -------
    numpy.ndarray, shape (n_rows, n_cols)
    """
    reconstructed = check_images(reconstructed_binary, "reconstructed images")
    images = check_images(images, "images")
    if reconstructed.shape != images.shape:
        raise InputError(
            f"reconstructed images of shape {reconstructed.shape}",
            f"the true images have shape {images.shape}",
            "Score the reconstructions of the same samples",
        )
    return np.mean(reconstructed == images, axis=0)


@dataclass
class Reconstruction:
    """A reconstruction of test images from their voxels.

    Attributes
    ----------
    scales : tuple of str
        Scale names, in the order of ``estimates`` and ``weights``.
    estimates : numpy.ndarray, shape (n_test, n_scales, n_rows, n_cols)
        Pixel estimates of each scale on the test samples.
    weights : numpy.ndarray, shape (n_scales,)
        Scale weights, fitted on cross-validated training predictions.
    combined : numpy.ndarray, shape (n_test, n_rows, n_cols)
        The weighted sum of the scale estimates.
    binary : numpy.ndarray of int, shape (n_test, n_rows, n_cols)
        ``combined >= 0.5``.
    layout : pandas.DataFrame
        The patches (:func:`patch_layout`).
    constant : numpy.ndarray of bool, shape (n_patches,)
        Patches with one value over all training samples.
    cv_estimates : numpy.ndarray, shape (n_train, n_scales, n_rows, n_cols)
        The cross-validated training estimates the weights were fitted on.
    """

    scales: tuple
    estimates: np.ndarray
    weights: np.ndarray
    combined: np.ndarray
    binary: np.ndarray
    layout: pd.DataFrame
    constant: np.ndarray
    cv_estimates: np.ndarray


def reconstruct(X_train, images_train, runs_train, X_test, model, cv, layout=None):
    """Reconstruct test images from their voxels.

    1. Patch decoders cross-validated over the training runs give
       out-of-fold pixel estimates of every training sample; the scale
       weights are fitted on them (:func:`fit_scale_weights`).
    2. Decoders fitted on all training samples predict the test samples at
       every scale.
    3. The scales are combined with those weights.

    The test images are not an input: score the result with
    :func:`score_reconstruction`.

    Parameters
    ----------
    X_train : numpy.ndarray, shape (n_train, n_features)
    images_train : numpy.ndarray, shape (n_train, n_rows, n_cols)
        Binary images of the training samples.
    runs_train : numpy.ndarray, shape (n_train,)
        Run of each training sample (the CV groups).
    X_test : numpy.ndarray, shape (n_test, n_features)
    model : sklearn estimator
        The decoder of each patch (:func:`make_pixel_model`).
    cv : splitter
        ``cv.split(X_train, None, runs_train)`` must put every training
        sample in exactly one test fold (e.g. ``GroupKFold``,
        ``LeaveOneGroupOut``).
    layout : pandas.DataFrame, optional
        The patches; :func:`patch_layout` with :data:`SCALES` by default.

    Returns
    -------
    Reconstruction
    """
    X_train, X_test = _check_features(X_train, X_test)
    images_train = check_images(images_train, "training images")
    _check_same_samples(X_train, images_train, "X_train", "images_train")
    runs_train = _check_runs(runs_train, X_train)
    shape = images_train.shape[1:]
    layout = patch_layout(shape) if layout is None else _check_layout(layout, shape)
    targets = patch_targets(images_train, layout)

    splits = run_splits(cv, X_train, runs_train, "reconstruction cv")
    times_tested = np.bincount(
        np.concatenate([test for _, test in splits]), minlength=len(X_train)
    )
    if np.any(times_tested != 1):
        raise InputError(
            "reconstruction cv",
            f"{int(np.sum(times_tested != 1))} training sample(s) are not in exactly one test "
            "fold, so the scale weights would not be fitted on one out-of-fold prediction each",
            "Use a partition of the runs (GroupKFold, LeaveOneGroupOut)",
        )
    cv_predicted = np.empty(targets.shape, dtype=int)
    for train, test in splits:
        cv_predicted[test], _ = fit_predict_patches(
            X_train[train], targets[train], X_train[test], model
        )
    cv_estimates = pixel_estimates(cv_predicted, layout, shape)
    weights = fit_scale_weights(cv_estimates, images_train)

    predicted, constant = fit_predict_patches(X_train, targets, X_test, model)
    estimates = pixel_estimates(predicted, layout, shape)
    combined = combine_scales(estimates, weights)
    return Reconstruction(
        scales=scale_names(layout),
        estimates=estimates,
        weights=weights,
        combined=combined,
        binary=(combined >= 0.5).astype(int),
        layout=layout,
        constant=constant,
        cv_estimates=cv_estimates,
    )


def run_splits(cv, X, runs, what):
    """The folds of ``cv.split(X, None, runs)``, refusing a run split across a fold.

    Parameters
    ----------
    cv : splitter
        E.g. ``GroupKFold`` or ``LeaveOneGroupOut``.
    X : numpy.ndarray, shape (n_samples, n_features)
    runs : numpy.ndarray, shape (n_samples,)
        The CV groups.
    what : str
        The analysis, for messages.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Training and test indices of each fold.
    """
    splits = [(np.asarray(train), np.asarray(test)) for train, test in cv.split(X, None, runs)]
    if not splits:
        raise InputError(what, "the cross-validation gave no fold", "Use at least two runs")
    for train, test in splits:
        if train.size == 0 or test.size == 0:
            raise InputError(what, "a fold has no training or no test sample", "Check the runs")
        shared = np.intersect1d(runs[train], runs[test])
        if shared.size:
            raise InputError(
                what,
                f"run(s) {shared[:5].tolist()} are in both the training and the test set of a "
                "fold: neighbouring volumes of a run are autocorrelated, which inflates accuracy",
                "Split by run, e.g. GroupKFold or LeaveOneGroupOut with the runs as groups",
            )
    return splits


def score_reconstruction(reconstruction, images_test):
    """Accuracy of each scale and of the combination on the test images.

    Parameters
    ----------
    reconstruction : Reconstruction
        From :func:`reconstruct`.
    images_test : numpy.ndarray, shape (n_test, n_rows, n_cols)
        The true test images.

    Returns
    -------
    table : pandas.DataFrame
        ``scale`` (each scale, then ``combined``) and ``accuracy`` (averaged
        over pixels); a scale's estimates are thresholded at 0.5.
    per_pixel : numpy.ndarray, shape (n_scales + 1, n_rows, n_cols)
        Accuracy of each pixel, in the rows' order.
    """
    images_test = check_images(images_test, "test images")
    if images_test.shape != reconstruction.binary.shape:
        raise InputError(
            f"test images of shape {images_test.shape}",
            f"the reconstruction has shape {reconstruction.binary.shape}",
            "Score the test samples the reconstruction was made of",
        )
    binaries = [
        (reconstruction.estimates[:, index] >= 0.5).astype(int)
        for index in range(len(reconstruction.scales))
    ]
    binaries.append(reconstruction.binary)
    per_pixel = np.stack([pixel_accuracy(binary, images_test) for binary in binaries])
    table = pd.DataFrame(
        {
            "scale": [*reconstruction.scales, "combined"],
            "accuracy": per_pixel.mean(axis=(1, 2)),
        }
    )
    return table, per_pixel


def model_table(X, images, runs, classifiers, Cs, cv, seed=0, selection=None):
    """Pixel decoders of several classifiers and C values, cross-validated by run.

    Table 1 of Abraham et al. (2014): each pixel is a binary target; its
    decoder (:func:`make_pixel_model`) is fitted on the training folds and
    predicts the test fold.

    The cost is one fit per classifier, C, fold and pixel, dominated by the
    solver: liblinear SVMs slow down steeply for large C (with 300 voxels
    and 320 training samples, C = 1 costs 25 to 45 times C = 0.016), so grids
    that stop where accuracy has peaked are much cheaper. Selection depends
    on each pixel's target, so nothing is shared between fits.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
    images : numpy.ndarray, shape (n_samples, n_rows, n_cols)
        Binary images.
    runs : numpy.ndarray, shape (n_samples,)
        Run of each sample (the CV groups).
    classifiers : list of str
        Registry names.
    Cs : list of float
        C values.
    cv : splitter
        Called as ``cv.split(X, None, runs)``, e.g. ``GroupKFold(5)``.
    seed : int
        Random state of the classifiers.
    selection : tuple (str, float), optional
        ANOVA selection inside each decoder (see :func:`make_pixel_model`).

    Returns
    -------
    pandas.DataFrame
        One row per classifier, C and fold: ``classifier``, ``C``, ``fold``,
        ``accuracy`` (over the fold's samples and all pixels), ``n_train``,
        ``n_test``, ``test_runs``, ``n_constant`` (pixels with one value in
        training) and ``constant_guess`` (:func:`constant_guess_accuracy`).
    """
    from fmriflow import classifiers as registry

    X = _check_matrix(X, "X")
    images = check_images(images, "images")
    _check_same_samples(X, images, "X", "images")
    runs = _check_runs(runs, X)
    names = [registry.get(name).name for name in classifiers]
    Cs = [_check_C(C) for C in Cs]
    if not names or not Cs:
        raise InputError("model table", "no classifier or no C value", "Give at least one of each")
    targets = images.reshape(images.shape[0], -1)
    folds = []
    for train, test in run_splits(cv, X, runs, "model table cv"):
        folds.append(
            {
                "train": train,
                "test": test,
                "X_train": X[train],
                "X_test": X[test],
                "n_train": int(train.size),
                "n_test": int(test.size),
                "test_runs": " ".join(str(r) for r in np.unique(runs[test])),
                "constant_guess": constant_guess_accuracy(images[train], images[test]),
            }
        )
    rows = []
    for name in names:
        for C in Cs:
            model = make_pixel_model(name, C, seed, selection, n_features=X.shape[1])
            for fold, split in enumerate(folds):
                predicted, constant = fit_predict_patches(
                    split["X_train"], targets[split["train"]], split["X_test"], model
                )
                rows.append(
                    {
                        "classifier": name,
                        "C": C,
                        "fold": fold,
                        "accuracy": float(np.mean(predicted == targets[split["test"]])),
                        "n_train": split["n_train"],
                        "n_test": split["n_test"],
                        "test_runs": split["test_runs"],
                        "n_constant": int(constant.sum()),
                        "constant_guess": split["constant_guess"],
                    }
                )
    return pd.DataFrame(rows)


def summarize_model_table(table):
    """Mean and standard deviation over folds of a :func:`model_table`.

    Returns
    -------
    pandas.DataFrame
        ``classifier``, ``C``, ``accuracy_mean``, ``accuracy_std`` (over
        folds, ``ddof=0``, as in :func:`fmriflow.decoding.summarize`),
        ``chance`` (0.5), ``constant_guess`` (mean over folds) and
        ``n_folds``, in the table's order.
    """
    grouped = table.groupby(["classifier", "C"], sort=False)
    summary = grouped.agg(
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", lambda values: float(np.std(values))),
        constant_guess=("constant_guess", "mean"),
        n_folds=("fold", "size"),
    ).reset_index()
    summary.insert(4, "chance", 0.5)
    return summary


def constant_guess_accuracy(images_train, images_test):
    """Accuracy of predicting each pixel's training majority, averaged over pixels.

    The reference to read next to 0.5 when test images are mostly
    background. A tie in training predicts 0.

    Parameters
    ----------
    images_train, images_test : numpy.ndarray, shape (n_samples, n_rows, n_cols)

    Returns
    -------
    float
    """
    images_train = check_images(images_train, "training images")
    images_test = check_images(images_test, "test images")
    if images_train.shape[1:] != images_test.shape[1:]:
        raise InputError(
            f"test images of shape {images_test.shape}",
            f"training images have shape {images_train.shape}",
            "Compare images of the same size",
        )
    majority = (images_train.mean(axis=0) > 0.5).astype(int)
    return float(np.mean(images_test == majority))


def check_images(images, what="images"):
    """Binary images as an int array, or an :class:`InputError`.

    Parameters
    ----------
    images : array-like, shape (n_samples, n_rows, n_cols)
        Values 0 and 1 (or booleans).
    what : str
        What they are, for messages.

    Returns
    -------
    numpy.ndarray of int
    """
    images = np.asarray(images)
    if images.ndim != 3 or 0 in images.shape:
        raise InputError(
            f"{what} of shape {images.shape}",
            "images must be a non-empty array (n_samples, n_rows, n_cols)",
            "Stack the images along a first axis",
        )
    if not (images.dtype == bool or np.issubdtype(images.dtype, np.number)):
        raise InputError(f"{what}", f"values of type {images.dtype}", "Give 0/1 images")
    binary = (images == 0) | (images == 1)
    if not binary.all():
        bad = np.unique(images[~binary])
        raise InputError(
            f"{what}",
            f"values other than 0 and 1 (e.g. {bad[:5].tolist()})",
            "Binarise the images (e.g. contrast > 0.5) before reconstruction",
        )
    return images.astype(int)


def _check_shape(shape):
    shape = tuple(shape)
    if len(shape) != 2 or not all(isinstance(n, int | np.integer) and n >= 1 for n in shape):
        raise InputError(
            f"image shape {shape}",
            "expected (n_rows, n_cols), positive integers",
            "Give the shape of one image",
        )
    return int(shape[0]), int(shape[1])


def _check_layout(layout, shape):
    layout = pd.DataFrame(layout)
    missing = [name for name in LAYOUT_COLUMNS if name not in layout.columns]
    if missing or layout.empty:
        raise InputError(
            "patch layout",
            f"missing column(s) {missing}" if missing else "no patch",
            "Use patch_layout",
        )
    layout = layout.reset_index(drop=True)
    n_rows, n_cols = shape
    outside = (
        (layout["row"] < 0)
        | (layout["col"] < 0)
        | (layout["row"] + layout["height"] > n_rows)
        | (layout["col"] + layout["width"] > n_cols)
    )
    if outside.any():
        raise InputError(
            "patch layout",
            f"{int(outside.sum())} patch(es) extend beyond the {n_rows}x{n_cols} images",
            "Build the layout for these images (patch_layout(images.shape[1:]))",
        )
    sizes = layout.groupby("scale")[["height", "width"]].nunique()
    if (sizes > 1).any(axis=None):
        raise InputError(
            "patch layout", "a scale has patches of several sizes", "Use patch_layout"
        )
    return layout


def _check_matrix(X, what):
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or 0 in X.shape:
        raise InputError(
            f"{what} of shape {X.shape}",
            "expected a non-empty matrix (n_samples, n_features)",
            "Give one row per sample and one column per voxel",
        )
    if not np.isfinite(X).all():
        raise InputError(
            what,
            f"{int(np.sum(~np.isfinite(X)))} non-finite value(s)",
            "Clean the data (or leave out the voxels with NaN) before reconstruction",
        )
    return X


def _check_features(X_train, X_test):
    X_train = _check_matrix(X_train, "X_train")
    X_test = _check_matrix(X_test, "X_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise InputError(
            f"X_test of shape {X_test.shape}",
            f"X_train has shape {X_train.shape}: the numbers of voxels differ",
            "Use the same voxels for training and test samples",
        )
    return X_train, X_test


def _check_same_samples(first, second, first_name, second_name):
    if first.shape[0] != second.shape[0]:
        raise InputError(
            f"{first_name} of shape {first.shape} and {second_name} of shape {second.shape}",
            "the numbers of samples differ",
            "Give one image per sample (row) of the data",
        )


def _check_targets(targets, X_train):
    targets = np.asarray(targets)
    if targets.ndim != 2:
        raise InputError(
            f"training targets of shape {targets.shape}",
            "expected (n_samples, n_patches)",
            "Use patch_targets",
        )
    _check_same_samples(X_train, targets, "X_train", "training targets")
    if not np.isin(targets, (0, 1, UNDECIDED)).all():
        raise InputError(
            "training targets", "values other than 0, 1 and -1 (undecided)", "Use patch_targets"
        )
    return targets.astype(int)


def _check_runs(runs, X):
    runs = np.asarray(runs)
    if runs.shape != (X.shape[0],):
        raise InputError(
            f"runs of shape {runs.shape}",
            f"expected one run per sample of data of shape {X.shape}",
            "Give the run of each sample",
        )
    return runs


def _check_estimates(estimates, shape):
    estimates = np.asarray(estimates, dtype=float)
    if estimates.ndim != 4 or estimates.shape[2:] != tuple(shape):
        raise InputError(
            f"scale estimates of shape {estimates.shape}",
            f"expected (n_samples, n_scales, {shape[0]}, {shape[1]})",
            "Use pixel_estimates",
        )
    return estimates


def _check_C(C):
    if (
        isinstance(C, bool)
        or not isinstance(C, int | float | np.number)
        or not (np.isfinite(C) and C > 0)
    ):
        raise InputError(f"C {C!r}", "C must be a positive finite number", "E.g. 0.1, 1 or 10")
    return float(C)


def _check_selection(selection):
    if selection is None:
        return "k", 500
    if (
        not isinstance(selection, tuple | list)
        or len(selection) != 2
        or selection[0] not in ("k", "percentile")
        or isinstance(selection[1], bool)
        or not isinstance(selection[1], int | float | np.number)
        or not selection[1] > 0
    ):
        raise InputError(
            f"selection {selection!r}",
            "expected (method, value) with method 'k' or 'percentile' and a positive value",
            "E.g. ('k', 200) or ('percentile', 10)",
        )
    return selection[0], selection[1]
