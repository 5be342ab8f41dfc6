"""Fits of scikit-learn's liblinear, libsvm and lbfgs classifiers without per-call overhead.

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

    liblinear's classifiers, the linear-kernel SVC and the lbfgs logistic
    regression are called directly (:func:`liblinear_fold_fit`,
    :func:`libsvm_fold_fit`, :func:`lbfgs_fold_fit`); any other estimator
    is cloned, fitted and asked to predict.
    """
    for direct_fit in (liblinear_fold_fit, libsvm_fold_fit, lbfgs_fold_fit):
        direct = direct_fit(estimator, y_train)
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
        return _classes_from_decisions(classes, scores)

    return fit_predict


def _classes_from_decisions(classes, scores):
    """Predicted classes from a linear model's decisions, as its ``predict``.

    Parameters
    ----------
    classes : numpy.ndarray, shape (n_classes,)
        The sorted class labels.
    scores : numpy.ndarray, shape (n_samples, 1) or (n_samples, n_classes)
        One column (two classes: positive means ``classes[1]``) or one per
        class (the largest wins, the first on ties).

    Returns
    -------
    numpy.ndarray, shape (n_samples,)
    """
    if scores.shape[1] == 1:
        return classes[(scores[:, 0] > 0).astype(int)]
    return classes[scores.argmax(axis=1)]


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

    The kernel may also be ``"precomputed"`` (a permutation test's Gram
    matrix): ``x_train`` is then the training block of the Gram matrix,
    ``x_test`` the test rows of its training columns.

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
        ``SVC(kernel="linear")`` or ``SVC(kernel="precomputed")`` without
        probabilities, with an integer or no ``random_state``, and
        ``break_ties`` off (or two classes).
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
        p["kernel"] not in ("linear", "precomputed")
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
        "kernel": p["kernel"],
        "degree": p["degree"],
        "coef0": p["coef0"],
        "cache_size": p["cache_size"],
    }

    def fit_predict(x_train, x_test):
        x_train = np.ascontiguousarray(x_train, dtype=np.float64)
        # SVC.fit: one seed drawn per fit (the same from an integer); gamma as
        # fit computes it (neither kernel uses it).
        seed = check_random_state(random_state).randint(np.iinfo("i").max)
        gamma = 0.0 if p["kernel"] == "precomputed" else _svc_gamma(p["gamma"], x_train)
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


def lbfgs_fold_fit(estimator, y_train):
    """Fit and predict of an L2 logistic regression (lbfgs) on one fold's labels, minus overhead.

    ``LogisticRegression.fit`` with the lbfgs solver validates the data and
    the labels, builds the class weights, the 0/1 (or class index) targets
    and scikit-learn's loss object, then hands that loss and its gradient to
    ``scipy.optimize.minimize(method="L-BFGS-B")``; on a connectome's dozen
    subjects or a searchlight sphere that preparation and ``predict``'s
    checks cost about as much as the optimisation. Here what depends only
    on the labels is prepared once per fold (and data type) as
    ``sklearn.linear_model._logistic._logistic_regression_path`` prepares
    it, and each fit is the same ``minimize`` call on the same function,
    starting point, arguments and options, so the coefficients and the
    predictions are scikit-learn's (tested bit for bit, binary and
    multinomial, with and without class weights, float32 and float64).

    Parameters
    ----------
    estimator : sklearn classifier
        A ``LogisticRegression`` with the lbfgs solver, the L2 penalty
        (``l1_ratio=0``) and a finite ``C``, no ``n_jobs``, no callbacks.
    y_train : numpy.ndarray
        The fold's training labels.

    Returns
    -------
    callable or None
        ``(x_train, x_test) -> predictions``; None for any other estimator
        or settings (scikit-learn before 1.8 among them), a fold with one
        class, or without scikit-learn's private helpers.
    """
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y_train)
    if type(estimator) is not LogisticRegression or len(classes) < 2:
        return None
    p = estimator.get_params()
    if not (
        p["solver"] == "lbfgs"
        and p.get("penalty") == "deprecated"
        and p["l1_ratio"] == 0
        and np.isfinite(p["C"])
        and not p["dual"]
        and p["n_jobs"] is None
        and not hasattr(estimator, "_skl_callbacks")
    ):
        return None
    try:
        decisions = _lbfgs_problem(p, classes, y_train)
    except ImportError:
        return None

    def fit_predict(x_train, x_test):
        return _classes_from_decisions(classes, decisions(x_train, x_test))

    return fit_predict


def _lbfgs_problem(params, classes, y_train):
    """``(x_train, x_test) -> decisions`` of one lbfgs logistic regression on these labels.

    What ``LogisticRegression.fit`` (through ``_logistic_regression_path``)
    and ``decision_function`` do, with everything that depends only on the
    labels done once; the decisions have one column for two classes.
    Raises ImportError without scikit-learn's private helpers.
    """
    from scipy import optimize
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
    from sklearn.linear_model._linear_loss import LinearModelLoss
    from sklearn.linear_model._logistic import _LOGISTIC_SOLVER_CONVERGENCE_MSG
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    from sklearn.utils.optimize import _check_optimize_result

    binary = len(classes) == 2
    encoded = np.searchsorted(classes, y_train)
    fit_intercept = params["fit_intercept"]
    loss = LinearModelLoss(
        base_loss=HalfBinomialLoss() if binary else HalfMultinomialLoss(n_classes=len(classes)),
        fit_intercept=fit_intercept,
    )
    iprint = [-1, 50, 1, 100, 101][np.searchsorted(np.array([0, 1, 2, 3]), params["verbose"])]
    options = {
        "maxiter": params["max_iter"],
        "maxls": 50,
        "gtol": params["tol"],
        "ftol": 64 * np.finfo(float).eps,
        **_get_additional_lbfgs_options_dict("iprint", iprint),
    }
    problems = {}

    def problem(dtype):
        # The targets (0/1, or class indices), sample weights and penalty as
        # _logistic_regression_path makes them for data of this type.
        if dtype not in problems:
            target = (encoded == 1) if binary else encoded
            sample_weight = None
            if params["class_weight"] is not None:
                sample_weight = np.ones(len(y_train), dtype=dtype)
                weights = compute_class_weight(
                    params["class_weight"], classes=classes, y=y_train, sample_weight=sample_weight
                )
                sample_weight *= np.asarray(weights[encoded], dtype=dtype)
            sw_sum = len(y_train) if sample_weight is None else float(np.sum(sample_weight))
            problems[dtype] = (target.astype(dtype), sample_weight, 1.0 / (params["C"] * sw_sum))
        return problems[dtype]

    def decisions(x_train, x_test):
        keep = x_train.dtype in (np.float32, np.float64)
        x_train = np.ascontiguousarray(x_train, dtype=None if keep else np.float64)
        target, sample_weight, l2_reg_strength = problem(x_train.dtype)
        n_coef = x_train.shape[1] + int(fit_intercept)
        start = np.zeros(n_coef if binary else len(classes) * n_coef, dtype=x_train.dtype)
        result = optimize.minimize(
            loss.loss_gradient,
            start,
            method="L-BFGS-B",
            jac=True,
            args=(x_train, target, sample_weight, l2_reg_strength, 1),
            options=options,
        )
        _check_optimize_result(
            "lbfgs", result, params["max_iter"], extra_warning_msg=_LOGISTIC_SOLVER_CONVERGENCE_MSG
        )
        weights = np.asarray(result.x, dtype=x_train.dtype)
        # Binary: one row; multinomial: the classes' rows of a Fortran-ordered vector.
        weights = weights[None, :] if binary else weights.reshape((len(classes), -1), order="F")
        if not fit_intercept:  # decision_function adds intercept_, zeros
            return x_test @ weights.T + np.zeros(len(weights), dtype=weights.dtype)
        return x_test @ weights[:, :-1].T + weights[:, -1]

    return decisions


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
