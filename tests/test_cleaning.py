"""Cleaning: run-by-run equality with nilearn.signal.clean, and setting checks."""

import numpy as np
import pytest
from nilearn.signal import clean

from fmriflow import cleaning
from fmriflow.errors import InputError

SETTINGS = [
    {"detrend": True, "standardize": "zscore_sample"},
    {"detrend": False, "standardize": "zscore_sample"},
    {"detrend": True, "standardize": None},
    {"detrend": True, "standardize": "zscore_sample", "high_pass": 0.01, "low_pass": 0.1},
    {"detrend": False, "standardize": "psc", "high_pass": 0.02},
    {"detrend": True, "standardize": None, "low_pass": 0.08},
]


def drifting_runs(rng, n_voxels=37, lengths=(40, 55, 47)):
    """Data with a different offset and trend in each run, and two confounds."""
    blocks, confound_blocks = [], []
    for k, n in enumerate(lengths):
        t = np.linspace(0, 1, n)[:, None]
        confounds = rng.standard_normal((n, 2)).cumsum(axis=0)
        loadings = rng.standard_normal((2, n_voxels))
        blocks.append(
            100 * (k + 1) + 5 * k * t + confounds @ loadings + rng.standard_normal((n, n_voxels))
        )
        confound_blocks.append(confounds)
    runs = np.repeat(np.arange(len(lengths)), lengths)
    return np.vstack(blocks).astype(np.float32), runs, np.vstack(confound_blocks)


def run_by_run_reference(matrix, runs, tr, confounds=None, **settings):
    """nilearn.signal.clean applied to each run separately, then stacked."""
    parts = []
    for run in np.unique(runs):
        rows = runs == run
        parts.append(
            clean(
                matrix[rows].astype(np.float64),
                confounds=None if confounds is None else confounds[rows],
                t_r=tr,
                filter="butterworth"
                if settings.get("high_pass") or settings.get("low_pass")
                else False,
                **settings,
            )
        )
    return np.vstack(parts)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("with_confounds", [False, True])
def test_clean_runs_equals_nilearn_run_by_run(rng, settings, with_confounds):
    matrix, runs, confounds = drifting_runs(rng)
    confounds = confounds if with_confounds else None
    out = np.zeros_like(matrix)
    cleaning.clean_runs(matrix, runs, 2.0, out, confounds=confounds, **settings)
    reference = run_by_run_reference(matrix, runs, 2.0, confounds=confounds, **settings)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:When confounds are provided:UserWarning")
@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("with_confounds", [False, True])
@pytest.mark.parametrize("n_voxels", [37, 1203])
def test_clean_runs_is_nilearns_clean_with_runs_bit_for_bit(
    rng, settings, with_confounds, n_voxels
):
    """The whole-block filter gives exactly the values of clean(..., runs=...), which
    filters one column at a time; without a filter, our own steps give them too (1,203
    voxels: nilearn detrends those in 10 batches)."""
    matrix, runs, confounds = drifting_runs(rng, n_voxels=n_voxels)
    confounds = confounds if with_confounds else None
    out = np.zeros(matrix.shape, dtype=np.float64)
    cleaning.clean_runs(matrix, runs, 2.0, out, confounds=confounds, **settings)
    filtered = settings.get("high_pass") or settings.get("low_pass")
    reference = clean(
        matrix.astype(np.float64),
        runs=runs,
        confounds=confounds,
        t_r=2.0,
        filter="butterworth" if filtered else False,
        standardize_confounds=True,
        ensure_finite=False,
        **settings,
    )
    np.testing.assert_array_equal(out, reference)


def test_runs_in_any_order_are_cleaned_in_place(rng):
    """Run labels need not increase in time (a lab's runs: ['3', '1']): each volume's row
    keeps its place."""
    matrix, runs, _ = drifting_runs(rng)
    relabelled = np.array([2, 0, 1])[runs]  # time order 2, 0, 1
    out = np.zeros(matrix.shape, dtype=np.float64)
    cleaning.clean_runs(matrix, relabelled, 2.0, out, high_pass=0.02)
    expected = np.zeros_like(out)
    cleaning.clean_runs(matrix, runs, 2.0, expected, high_pass=0.02)
    np.testing.assert_array_equal(out, expected)


def test_runs_are_cleaned_independently(rng):
    """Changing one run's data does not change another run's cleaned values."""
    matrix, runs, _ = drifting_runs(rng)
    first = np.zeros_like(matrix)
    cleaning.clean_runs(matrix, runs, 2.0, first, high_pass=0.02)
    changed = matrix.copy()
    changed[runs == 2] += 5 * rng.standard_normal(changed[runs == 2].shape).astype(np.float32)
    second = np.zeros_like(matrix)
    cleaning.clean_runs(changed, runs, 2.0, second, high_pass=0.02)
    np.testing.assert_allclose(first[runs != 2], second[runs != 2], rtol=1e-5, atol=1e-5)
    assert np.abs(first[runs == 2] - second[runs == 2]).max() > 0.1


def test_block_size_does_not_change_the_result(rng, monkeypatch):
    matrix, runs, confounds = drifting_runs(rng, n_voxels=50)
    whole = np.zeros_like(matrix)
    cleaning.clean_runs(matrix, runs, 2.0, whole, confounds=confounds, low_pass=0.1)
    monkeypatch.setattr(cleaning, "CLEAN_BLOCK_VOXELS", 7)
    blocked = np.zeros_like(matrix)
    cleaning.clean_runs(matrix, runs, 2.0, blocked, confounds=confounds, low_pass=0.1)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-6)


def test_standardized_runs_have_zero_mean_unit_variance(rng):
    matrix, runs, _ = drifting_runs(rng)
    out = np.zeros_like(matrix)
    cleaning.clean_runs(matrix, runs, 2.0, out)
    for run in np.unique(runs):
        np.testing.assert_allclose(out[runs == run].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(out[runs == run].std(0, ddof=1), 1, atol=1e-4)


@pytest.mark.parametrize(
    ("high_pass", "low_pass", "message"),
    [
        (0.3, None, r"high_pass: 0.3 Hz is outside \(0, 0.25\) Hz"),
        (None, 0.25, "low_pass: 0.25 Hz is outside"),
        (0.1, 0.05, r"high_pass \(0.1 Hz\) must be below low_pass \(0.05 Hz\)"),
    ],
)
def test_filter_settings_are_checked(high_pass, low_pass, message):
    with pytest.raises(InputError, match=message):
        cleaning.check_filter_settings(2.0, high_pass, low_pass)


def test_short_runs_are_refused():
    with pytest.raises(InputError, match=r"run\(s\) \[3\] have fewer than 3 volumes"):
        cleaning.check_runs(np.array([1] * 10 + [3] * 2), "events.tsv")


def test_select_confounds_checks_columns_and_values():
    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, np.nan, 1.0]})
    np.testing.assert_array_equal(
        cleaning.select_confounds(frame, ["a"], "c.tsv"), [[1.0], [2.0], [3.0]]
    )
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['z'\]"):
        cleaning.select_confounds(frame, ["z"], "c.tsv")
    with pytest.raises(InputError, match="NaN or n/a"):
        cleaning.select_confounds(frame, None, "c.tsv")


@pytest.mark.parametrize("settings", [{"high_pass": 0.01}, {"high_pass": 0.01, "low_pass": 0.1}])
def test_a_run_too_short_for_the_filter_is_named_with_its_length(rng, settings):
    """scipy refuses to filter a run shorter than its padding; the message says which run."""
    matrix, runs, _ = drifting_runs(rng, lengths=(40, 12, 47))
    runs = runs + 1  # the lab's run labels
    with pytest.raises(ValueError) as raw:
        clean(matrix[runs == 2].astype(np.float64), t_r=2.0, filter="butterworth", **settings)
    padlen = raw.value.args[0].split("which is ")[-1].rstrip(".")
    with pytest.raises(InputError) as caught:
        cleaning.clean_runs(matrix, runs, 2.0, np.zeros_like(matrix), **settings)
    message = str(caught.value)
    assert message.startswith("run 2: it has 12 volumes")
    assert f"needs more than {padlen} volumes" in message


@pytest.mark.parametrize("band", [{}, {"high_pass": 0.01, "low_pass": 0.1}])
def test_cleaning_does_not_import_nilearn_signal(band):
    """Its imports (scikit-learn, pandas, scipy.signal) cost a job more than the cleaning
    itself; without a filter scipy.signal is not imported either."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from fmriflow import cleaning\n"
        "m = np.random.default_rng(0).standard_normal((200, 5)).astype(np.float32)\n"
        "out = np.zeros_like(m)\n"
        f"cleaning.clean_runs(m, np.repeat([0, 1], 100), 2.0, out, confounds=m[:, :2] ** 2, "
        f"**{band!r})\n"
        "print('nilearn.signal' in sys.modules, 'sklearn' in sys.modules,"
        " 'scipy.signal' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False", str(bool(band))], result
