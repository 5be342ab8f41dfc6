"""Fits of scikit-learn's liblinear and libsvm classifiers without per-call overhead.

A searchlight fits a classifier on every sphere of every fold, a
reconstruction on every pixel of every fold: thousands of small fits that
share one fold's labels. scikit-learn's ``fit`` validates the data, encodes
the labels, computes the class weights and draws a seed before calling
liblinear or libsvm, and on a few hundred samples that costs as much as the
solver or more. :func:`fold_fit_predict` prepares what depends only on the
labels once and calls the library as ``fit`` does, so the predictions are
scikit-learn's (tested model by model); any other estimator is cloned,
fitted and asked to predict.
"""

import numpy as np


def fold_fit_predict(estimator, y_train):
    """``(x_train, x_test) -> predictions`` of ``estimator`` fitted on one fold's labels.

    liblinear's classifiers and the linear-kernel SVC are called directly
    (:func:`liblinear_fold_fit`, :func:`libsvm_fold_fit`); any other
    estimator is cloned, fitted and asked to predict.
    """
    direct = liblinear_fold_fit(estimator, y_train) or libsvm_fold_fit(estimator, y_train)
    if direct is not None:
        return direct
    from sklearn.base import clone

    def fit_predict(x_train, x_test):
        return clone(estimator).fit(x_train, y_train).predict(x_test)

    return fit_predict


def liblinear_settings(estimator):
    """The arguments scikit-learn's fit gives liblinear for ``estimator``, or None.

    Parameters
    ----------
    estimator : sklearn classifier
        A ``LinearSVC`` (one-vs-rest), a ``LogisticRegression`` with the
        liblinear solver, or a ``OneVsRestClassifier`` of the latter.

    Returns
    -------
    dict or None
        ``penalty``, ``loss``, ``dual`` (possibly ``"auto"``), ``C``,
        ``tol``, ``max_iter``, ``fit_intercept``, ``intercept_scaling``, ``verbose``,
        ``class_weight``, ``random_state``, ``float64`` (whether ``fit``
        converts the data to float64) and ``one_vs_rest`` (a scikit-learn
        model per class, as ``OneVsRestClassifier`` fits them). None for any
        other estimator, for settings whose translation belongs to another
        scikit-learn version, a ``random_state`` that is neither an integer
        nor None, and when scikit-learn's private liblinear helpers are not
        there.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    try:
        from sklearn.svm import _liblinear  # noqa: F401
        from sklearn.svm._base import _get_liblinear_solver_type  # noqa: F401
        from sklearn.svm._classes import _validate_dual_parameter  # noqa: F401
    except ImportError:
        return None
    one_vs_rest = type(estimator) is OneVsRestClassifier
    if one_vs_rest:
        estimator = estimator.estimator
    p = estimator.get_params()
    if type(estimator) is LinearSVC and not one_vs_rest and p["multi_class"] == "ovr":
        penalty, loss, float64 = p["penalty"], p["loss"], True
    elif (
        type(estimator) is LogisticRegression
        and p["solver"] == "liblinear"
        and p.get("penalty") == "deprecated"
        and p["l1_ratio"] in (0, 1)
        and np.isfinite(p["C"])
    ):
        # scikit-learn >= 1.8: l1_ratio 0 or 1 is the L2 or L1 penalty.
        penalty, loss, float64 = (
            ("l1" if p["l1_ratio"] == 1 else "l2"),
            "logistic_regression",
            False,
        )
    else:
        return None
    if not (p["random_state"] is None or isinstance(p["random_state"], int | np.integer)):
        # A RandomState is copied into every clone (each fit draws the same
        # seed); drawing from it here would not.
        return None
    keys = ("dual", "C", "tol", "max_iter", "fit_intercept", "intercept_scaling", "verbose")
    return {
        **{key: p[key] for key in keys},
        "penalty": penalty,
        "loss": loss,
        "class_weight": p["class_weight"],
        "random_state": p["random_state"],
        "float64": float64,
        "one_vs_rest": one_vs_rest,
    }


def liblinear_fold_fit(estimator, y_train):
    """Fit and predict of a liblinear classifier on one fold's labels, minus overhead; or None.

    ``LinearSVC.fit`` and ``LogisticRegression.fit`` (liblinear solver)
    validate the data, encode the labels, compute the class weights and
    draw liblinear's seed, then call liblinear; ``predict`` takes the sign
    (or the largest) of ``x @ coef_.T + intercept_``. On a searchlight
    sphere (a few hundred volumes, tens of voxels) that overhead is 3–9
    times liblinear's own work. The labels, class weights and seed are the
    same for every sphere of a fold, so they are prepared once here as
    scikit-learn prepares them; each sphere then costs one liblinear call
    on the data as ``fit`` passes it and the same decision product, so the
    predictions are scikit-learn's (tested sphere by sphere, binary,
    one-vs-rest, class weights, ``OneVsRestClassifier`` of a logistic
    regression).

    Parameters
    ----------
    estimator : sklearn classifier
        See :func:`liblinear_settings`.
    y_train : numpy.ndarray
        The fold's training labels.

    Returns
    -------
    callable or None
        ``(x_train, x_test) -> predictions``; None when
        :func:`liblinear_settings` gives None, or the fold has one class
        (scikit-learn's own fit then says what is wrong).
    """
    settings = liblinear_settings(estimator)
    classes = np.unique(y_train)
    if settings is None or len(classes) < 2:
        return None
    if settings["one_vs_rest"]:
        # OneVsRestClassifier: a binary model per class (one for two classes),
        # on 0/1 targets; argmax of their decisions, or the sign of the one.
        targets = [y_train == classes[1]] if len(classes) == 2 else [y_train == c for c in classes]
        problems = [_liblinear_problem(settings, t.astype(np.int64)) for t in targets]
    else:
        problems = [_liblinear_problem(settings, y_train)]

    def fit_predict(x_train, x_test):
        x_train = _liblinear_data(x_train, settings["float64"])
        scores = [problem(x_train, x_test) for problem in problems]
        scores = scores[0] if len(scores) == 1 else np.column_stack([s[:, 0] for s in scores])
        if scores.shape[1] == 1:
            return classes[(scores[:, 0] > 0).astype(int)]
        return classes[scores.argmax(axis=1)]

    return fit_predict


def _liblinear_data(x, float64):
    """The training data as scikit-learn's fit hands them to liblinear.

    C order; float64 for ``LinearSVC``; float32 kept for
    ``LogisticRegression``, which also refuses values above 1e30 (liblinear
    would not return).
    """
    keep = not float64 and x.dtype in (np.float32, np.float64)
    x = np.ascontiguousarray(x, dtype=None if keep else np.float64)
    if not float64 and x.size and np.max(x) > 1e30:
        raise ValueError("liblinear cannot fit data with values above 1e30; rescale them")
    return x


def _liblinear_problem(settings, y_train):
    """``(x_train, x_test) -> decisions`` of one liblinear model on these labels.

    What ``sklearn.svm._base._fit_liblinear`` does, with everything that
    depends only on the labels done once.
    """
    from sklearn.svm import _liblinear
    from sklearn.svm._base import _get_liblinear_solver_type
    from sklearn.svm._classes import _validate_dual_parameter
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_class_weight

    classes, encoded = np.unique(y_train, return_inverse=True)
    labels = np.require(encoded.astype(np.float64), requirements="CW")
    class_weight = compute_class_weight(settings["class_weight"], classes=classes, y=y_train)
    sample_weight = np.ones(len(y_train))
    bias = settings["intercept_scaling"] if settings["fit_intercept"] else -1.0
    random_state = settings["random_state"]
    fixed_seed = isinstance(random_state, int | np.integer)

    def seed():
        # _fit_liblinear draws one seed per fit; from an integer it is always the same.
        return check_random_state(random_state).randint(np.iinfo("i").max)

    first_seed = seed() if fixed_seed else None
    names = ("penalty", "loss")

    def decisions(x_train, x_test):
        dual = _validate_dual_parameter(
            settings["dual"], settings["loss"], settings["penalty"], "ovr", x_train
        )
        solver = _get_liblinear_solver_type("ovr", *(settings[n] for n in names), dual)
        _liblinear.set_verbosity_wrap(settings["verbose"])  # quiet unless asked, as fit does
        raw_coef, n_iter = _liblinear.train_wrap(
            x_train,
            labels,
            False,
            solver,
            settings["tol"],
            bias,
            settings["C"],
            class_weight,
            settings["max_iter"],
            first_seed if fixed_seed else seed(),
            0.1,  # epsilon, unused by classifiers (_fit_liblinear's default)
            sample_weight,
        )
        if n_iter.max() >= settings["max_iter"]:
            _not_converged("Liblinear failed to converge, increase the number of iterations.")
        if settings["fit_intercept"]:
            coef = raw_coef[:, :-1]
            intercept = settings["intercept_scaling"] * raw_coef[:, -1]
        else:
            coef, intercept = raw_coef, 0.0
        return x_test @ coef.T + intercept

    return decisions


def libsvm_fold_fit(estimator, y_train):
    """Fit and predict of a linear-kernel SVC on one fold's labels, minus overhead; or None.

    What ``SVC.fit`` and ``SVC.predict`` call libsvm with (labels encoded,
    class weights, the seed drawn from ``random_state``, ``gamma``), with
    what depends only on the labels done once per fold; libsvm's own
    prediction on its own solution, as ``predict`` makes it. libsvm's
    iterations are most of such a fit (about 70 % at 200 volumes and 19
    voxels), so this saves less than for liblinear; the predictions are
    scikit-learn's (tested sphere by sphere).

    Parameters
    ----------
    estimator : sklearn classifier
        ``SVC(kernel="linear")`` without probabilities, with an integer or no
        ``random_state``, and ``break_ties`` off (or two classes).
    y_train : numpy.ndarray
        The fold's training labels.

    Returns
    -------
    callable or None
        ``(x_train, x_test) -> predictions``; None for any other estimator,
        a fold with one class, or without scikit-learn's private libsvm
        module.
    """
    from sklearn.svm import SVC

    classes = np.unique(y_train)
    if type(estimator) is not SVC or len(classes) < 2:
        return None
    p = estimator.get_params()
    random_state = p["random_state"]
    if (
        p["kernel"] != "linear"
        or p.get("probability", False) not in ("deprecated", False)
        or (p["break_ties"] and len(classes) > 2)
        or not (random_state is None or isinstance(random_state, int | np.integer))
    ):
        return None
    try:
        from sklearn.svm import _libsvm
    except ImportError:
        return None
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(np.searchsorted(classes, y_train), dtype=np.float64, order="C")
    class_weight = compute_class_weight(p["class_weight"], classes=classes, y=y_train)
    shared = {
        "svm_type": 0,  # c_svc
        "kernel": "linear",
        "degree": p["degree"],
        "coef0": p["coef0"],
        "cache_size": p["cache_size"],
    }

    def fit_predict(x_train, x_test):
        x_train = np.ascontiguousarray(x_train, dtype=np.float64)
        # SVC.fit: one seed drawn per fit (the same from an integer); gamma as
        # fit computes it (a linear kernel does not use it).
        seed = check_random_state(random_state).randint(np.iinfo("i").max)
        gamma = _svc_gamma(p["gamma"], x_train)
        _libsvm.set_verbosity_wrap(p["verbose"])  # quiet unless asked, as fit does
        model = _libsvm.fit(
            x_train,
            labels,
            sample_weight=np.empty(0),
            class_weight=class_weight,
            C=p["C"],
            nu=0.0,
            probability=False,
            shrinking=p["shrinking"],
            tol=p["tol"],
            gamma=gamma,
            epsilon=0.0,
            max_iter=p["max_iter"],
            random_seed=seed,
            **shared,
        )
        support, vectors, n_support, dual_coef, intercept, prob_a, prob_b, status = model[:8]
        if status == 1:
            _not_converged(
                f"Solver terminated early (max_iter={p['max_iter']}).  Consider pre-processing "
                "your data with StandardScaler or MinMaxScaler."
            )
        if not (np.isfinite(intercept).all() and np.isfinite(dual_coef).all()):
            raise ValueError("The dual coefficients or intercepts are not finite")
        predicted = _libsvm.predict(
            np.ascontiguousarray(x_test, dtype=np.float64),
            support,
            vectors,
            n_support,
            dual_coef,
            intercept,
            prob_a,
            prob_b,
            gamma=gamma,
            **shared,
        )
        return classes.take(np.asarray(predicted, dtype=np.intp))

    return fit_predict


def _svc_gamma(gamma, x_train):
    """``SVC``'s ``gamma`` as its fit computes it."""
    if gamma == "scale":
        variance = x_train.var()
        return 1.0 / (x_train.shape[1] * variance) if variance != 0 else 1.0
    if gamma == "auto":
        return 1.0 / x_train.shape[1]
    return gamma


def _not_converged(message):
    """The ``ConvergenceWarning`` of scikit-learn's fit when the solver stops at max_iter."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.warn(message, ConvergenceWarning, stacklevel=3)
