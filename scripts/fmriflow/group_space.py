"""The voxels every subject of a group has: one grid, the intersection of the masks.

Group ICA and clustering stack the subjects' matrices, so column ``j`` must
be the same voxel for everyone. :func:`check_common_space` stops subjects on
another grid with one message; :func:`common_mask` intersects their masks and
reads each subject's matrices on the common voxels (:class:`CommonMask`).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmriflow.errors import InputError
from fmriflow.streaming import ColumnSubset, open_matrix

logger = logging.getLogger("fmriflow")


def _grid_of(item):
    """(affine, shape, mask or None) of an image, a path or a tuple."""
    if isinstance(item, str | Path):
        from fmriflow.io import load_mask

        mask, img = load_mask(item, "subject mask")
        return np.asarray(img.affine, dtype=float), tuple(mask.shape), mask
    if hasattr(item, "affine") and hasattr(item, "dataobj"):
        mask = np.asanyarray(item.dataobj) != 0
        return np.asarray(item.affine, dtype=float), tuple(mask.shape[:3]), mask
    affine, shape, *rest = item
    mask = np.asarray(rest[0], dtype=bool) if rest and rest[0] is not None else None
    return np.asarray(affine, dtype=float), tuple(int(n) for n in shape[:3]), mask


def check_common_space(grids, names=None, atol=1e-3):
    """Check that every subject is on one grid, with one mask.

    Group decompositions stack the subjects' matrices, so column ``j`` must
    be the same voxel for everyone: same grid shape, same affine (within
    ``atol`` mm) and, when masks are given, the same mask.

    Parameters
    ----------
    grids : sequence
        One item per subject: a mask image (nibabel), the path of one, or a
        tuple ``(affine, shape)`` or ``(affine, shape, mask)``.
    names : sequence of str, optional
        Subject names for the messages (default: positions from 1).
    atol : float, default=1e-3
        Tolerance on the affines' entries, in millimetres.

    Returns
    -------
    affine : numpy.ndarray
        The common affine.
    shape : tuple of int
        The common 3D shape.
    mask : numpy.ndarray of bool or None
        The common mask, if masks were given.

    Raises
    ------
    InputError
        Naming the first subject that differs from the first one.
    """
    grids = [_grid_of(item) for item in grids]
    if not grids:
        raise InputError("group decomposition", "no subject was given", "List the subjects")
    names = (
        [str(n) for n in names] if names is not None else [str(i + 1) for i in range(len(grids))]
    )
    fix = (
        "Group ICA and clustering need every subject on one grid with one mask: "
        "resample the data to a common template (e.g. MNI) and use a template or "
        "group mask (preprocess.mask: mni_gm or mni_brain)"
    )
    affine0, shape0, mask0 = grids[0]
    for name, (affine, shape, mask) in zip(names[1:], grids[1:], strict=True):
        where = f"subject {name}"
        if shape != shape0:
            raise InputError(
                where,
                f"its grid has shape {shape} but subject {names[0]}'s has {shape0}: "
                "the subjects are not in a common space",
                fix,
            )
        if not np.allclose(affine, affine0, atol=atol):
            worst = float(np.max(np.abs(affine - affine0)))
            raise InputError(
                where,
                f"its affine differs from subject {names[0]}'s by up to {worst:.3g} mm: "
                "the subjects are not in a common space",
                fix,
            )
        if mask is not None and mask0 is not None and not np.array_equal(mask, mask0):
            differ = int(np.sum(mask != mask0))
            raise InputError(
                where,
                f"its mask ({int(mask.sum())} voxels) differs from subject {names[0]}'s "
                f"({int(mask0.sum())} voxels) in {differ} voxels, so the matrix columns "
                "are not the same voxels",
                fix,
            )
    return affine0, shape0, mask0


@dataclass
class CommonMask:
    """The voxels every subject has, and where they are in each subject's matrix.

    Attributes
    ----------
    affine : numpy.ndarray
        The common affine.
    mask : numpy.ndarray of bool
        The intersection of the subjects' masks (3D).
    columns : list of (numpy.ndarray of int or None)
        Per subject, the columns of its matrices that are the common voxels,
        in the mask's order; None when the subject's mask is the common one.
    dropped : list of int
        Per subject, how many of its voxels are not common.
    sizes : list of int
        Per subject, the number of voxels of its mask.
    names : list of str
        The subjects' names, for messages.
    """

    affine: np.ndarray
    mask: np.ndarray
    columns: list
    dropped: list
    sizes: list
    names: list

    def select(self, sources):
        """The subjects' matrices restricted to the common voxels (lazily).

        Raises
        ------
        InputError
            If a matrix does not have one column per voxel of its subject's mask.
        """
        selected = []
        for name, source, size, columns in zip(
            self.names, sources, self.sizes, self.columns, strict=True
        ):
            n_columns = open_matrix(source).shape[-1]
            if n_columns != size:
                where = f"subject {name}" + (
                    f" ({source})" if isinstance(source, str | Path) else ""
                )
                raise InputError(
                    where,
                    f"it has {n_columns} columns but the subject's mask has {size} voxels",
                    "Give each subject's own mask, or re-run its preprocessing",
                )
            selected.append(source if columns is None else ColumnSubset(source, columns))
        return selected


def common_mask(masks, names=None, atol=1e-3):
    """Intersect the subjects' masks after checking they share one grid.

    Real data in a template space rarely give identical masks (voxels
    dropped as constant at the edge of one subject's coverage), while the
    group stages need one set of voxels. The intersection is that set; each
    subject's matrices are read on it through :meth:`CommonMask.select`.

    Parameters
    ----------
    masks : sequence
        One mask per subject, as for :func:`check_common_space`.
    names : sequence of str, optional
        Subject names for the messages.
    atol : float, default=1e-3
        Tolerance on the affines' entries, in millimetres.

    Returns
    -------
    CommonMask

    Raises
    ------
    InputError
        If the grids differ, or if the subjects share no voxel.
    """
    grids = [_grid_of(item) for item in masks]
    names = (
        [str(n) for n in names] if names is not None else [str(i + 1) for i in range(len(grids))]
    )
    affine, _, _ = check_common_space([(a, s) for a, s, _ in grids], names, atol)
    subject_masks = [mask for _, _, mask in grids]
    common = np.logical_and.reduce(subject_masks)
    if not common.any():
        raise InputError(
            "group decomposition",
            f"the masks of subjects {', '.join(names)} have no voxel in common",
            "Check that the subjects are registered to the same template, or use a "
            "template mask (preprocess.mask: mni_gm or mni_brain)",
        )
    columns, dropped = [], []
    for name, mask in zip(names, subject_masks, strict=True):
        if np.array_equal(mask, common):
            columns.append(None)
            dropped.append(0)
            continue
        columns.append(np.flatnonzero(common[mask]))
        dropped.append(int(mask.sum() - common.sum()))
        logger.warning(
            "subject %s: %d of its %d voxels are not in every subject's mask; the group "
            "analysis uses the %d common voxels",
            name,
            dropped[-1],
            int(mask.sum()),
            int(common.sum()),
        )
    sizes = [int(mask.sum()) for mask in subject_masks]
    return CommonMask(affine, common, columns, dropped, sizes, names)
