"""A searchlight split into parts of centres, each a job of its own, and gathered again.

Every engine scores a sphere from the sphere's own columns and the folds
(and labellings), whatever other spheres are scored with it, so a part's
accuracies are those of the same centres in the whole map: gathering the
parts in order gives the same map, bit for bit, whatever the number of
parts. The family-wise statistics, which need every centre, are computed
once the parts are gathered.
"""

import logging

import numpy as np

from fmriflow.errors import InputError
from fmriflow.io import atomic_output
from fmriflow.progress import Progress  # noqa: F401 (re-exported)
from fmriflow.searchlight.permutations import summarize_permutations
from fmriflow.searchlight.scores import SearchlightResult

logger = logging.getLogger("fmriflow.searchlight")


def part_rows(n_centres, n_parts, part):
    """Sphere rows of one part: consecutive, as equal in number as possible.

    Parameters
    ----------
    n_centres : int
        Spheres of the whole map.
    n_parts : int
        Parts the map is split into (at most ``n_centres`` are used).
    part : int
        Which part, from 0.

    Returns
    -------
    numpy.ndarray of int
    """
    if not 0 <= part < n_parts:
        raise InputError(
            f"searchlight part {part}", f"is not one of the {n_parts} parts", "Check 'chunks'"
        )
    return np.array_split(np.arange(n_centres), n_parts)[part]


#: Centres timed by a plan: enough to average over sphere sizes, few enough to be quick.
PLAN_SAMPLE_CENTRES = 64


def plan_sample(n_centres, n_sample=PLAN_SAMPLE_CENTRES):
    """Rows of the centres a plan times: evenly spread over the map.

    Parameters
    ----------
    n_centres : int
        Spheres of the whole map.
    n_sample : int
        At most this many (all of them for a smaller map).

    Returns
    -------
    numpy.ndarray of int
        Increasing, distinct rows.
    """
    if n_centres <= n_sample:
        return np.arange(n_centres)
    return np.unique(np.linspace(0, n_centres - 1, n_sample).round().astype(int))


def plan_parts(n_centres, seconds_per_centre, minutes_per_part):
    """Parts that keep each part's estimated run time within ``minutes_per_part``.

    Parameters
    ----------
    n_centres : int
        Spheres of the whole map.
    seconds_per_centre : float
        Measured cost of one centre (with its permutations).
    minutes_per_part : float
        The target run time of a part.

    Returns
    -------
    int
        ``ceil(n_centres * seconds_per_centre / (60 * minutes_per_part))``,
        at least 1 and at most ``n_centres``.
    """
    if not minutes_per_part > 0:
        raise InputError(
            f"chunk_minutes {minutes_per_part}", "must be positive", "e.g. chunk_minutes: 30"
        )
    if not np.isfinite(seconds_per_centre) or seconds_per_centre < 0:
        raise InputError(
            f"seconds per centre {seconds_per_centre}",
            "must be a finite time",
            "Re-run the searchlight plan",
        )
    wanted = int(np.ceil(n_centres * seconds_per_centre / (60.0 * minutes_per_part)))
    return int(min(max(wanted, 1), max(n_centres, 1)))


def read_plan(path):
    """The number of parts a searchlight plan chose (``plan.json``).

    Parameters
    ----------
    path : path
        Written by the ``searchlight_plan`` node.

    Returns
    -------
    int
    """
    from fmriflow.io import read_json

    plan = read_json(path, "searchlight plan")
    n_parts = plan.get("n_parts")
    if not isinstance(n_parts, int) or n_parts < 1:
        raise InputError(
            str(path),
            f"gives n_parts {n_parts!r}, not a positive whole number",
            "Re-run the searchlight plan (snakemake --forcerun searchlight_plan)",
        )
    return n_parts


def save_part(result, rows, n_centres, path, chance, n_folds):
    """Write one part's accuracies (and null accuracies) as ``.npz``, atomically.

    ``chance`` (the folds' mean majority-class accuracy) and ``n_folds``
    describe the cross-validation, so that the gathering job needs no
    splitter of its own.
    """
    arrays = {
        "rows": rows,
        "n_centres": np.array(n_centres),
        "scores": result.scores,
        "n_rechecked": np.array(result.n_rechecked),
        "chance": np.array(float(chance)),
        "n_folds": np.array(int(n_folds)),
    }
    if hasattr(result, "null"):
        arrays["null"] = result.null
    else:
        arrays |= {"fold_scores": result.fold_scores, "n_test": result.n_test}
    with atomic_output(path) as tmp:
        write_npz(arrays, tmp)


def write_npz(arrays, path):
    """An uncompressed ``.npz`` whose bytes depend on the arrays only.

    ``numpy.savez`` stamps every member with the time of writing, so two
    runs that compute the same arrays would write different files; here
    every member has the zip format's earliest date.
    """
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def part_design(paths):
    """The cross-validation's chance level and number of folds, as every part recorded them.

    Returns
    -------
    chance : float
    n_folds : int
    """
    found = set()
    for path in paths:
        with np.load(path) as data:
            if "chance" not in data.files:
                raise InputError(
                    str(path),
                    "is a searchlight part without its chance level (written by an older "
                    "fmriflow)",
                    "Re-run the searchlight parts (snakemake --forcerun searchlight_part)",
                )
            found.add((float(data["chance"]), int(data["n_folds"])))
    if len(found) != 1:
        raise InputError(
            "searchlight parts",
            f"disagree on the cross-validation (chance, folds): {sorted(found)}",
            "Re-run the searchlight parts of this analysis (snakemake --forcerun "
            "searchlight_part)",
        )
    return found.pop()


def gather_parts(paths, alpha=0.05):
    """The whole map from its parts, in order.

    Parameters
    ----------
    paths : list of path
        Every part's ``.npz``, in part order.
    alpha : float
        Family-wise error rate of the permutation threshold.

    Returns
    -------
    SearchlightResult, or PermutationResult when the parts hold null accuracies
    """
    parts = []
    for path in paths:
        with np.load(path) as data:
            parts.append({key: data[key] for key in data.files})
    n_centres = int(parts[0]["n_centres"])
    rows = np.concatenate([part["rows"] for part in parts])
    if not np.array_equal(rows, np.arange(n_centres)):
        raise InputError(
            "searchlight parts",
            f"cover {len(rows)} centres, not the map's {n_centres} in order",
            "Re-run the searchlight parts of this analysis (snakemake --forcerun "
            "searchlight_part)",
        )
    scores = np.concatenate([part["scores"] for part in parts])
    n_rechecked = sum(int(part["n_rechecked"]) for part in parts)
    if "null" not in parts[0]:
        fold_scores = np.concatenate([part["fold_scores"] for part in parts], axis=1)
        return SearchlightResult(scores, fold_scores, parts[0]["n_test"], n_rechecked)
    null = np.concatenate([part["null"] for part in parts], axis=1)
    return summarize_permutations(scores, null, alpha, n_rechecked)
