"""Searchlight spheres: the voxels within a radius of every centre, as nilearn builds them.

A sphere holds every voxel of the data mask whose centre lies within
``radius`` millimetres of the centre voxel, distances being computed in world
coordinates from the image affine (so anisotropic voxels such as Haxby's
3.5 x 3.75 x 3.75 mm are handled). The test is the one nilearn's
``SearchLight`` makes through a KD-tree (``dx**2 + dy**2 + dz**2 <=
radius**2`` on the same world coordinates), so the neighbourhoods are
nilearn's. Spheres are rows of a sparse ``(centre, voxel)`` CSR matrix;
columns are the data mask's voxels in numpy's C order (those of the
``(time, voxel)`` matrices), rows the voxels of the centre mask in C order.
"""

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from fmriflow.errors import InputError
from fmriflow.searchlight.geometry import check_radius, world_coordinates


@dataclass(frozen=True)
class Spheres:
    """Searchlight neighbourhoods on a grid.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of bool, shape (n_centres, n_voxels)
        ``matrix[i, j]`` is true when data voxel ``j`` lies in the sphere of
        centre ``i``; column indices are sorted within rows.
    centres : numpy.ndarray of int, shape (n_centres, 3)
        Voxel indices (i, j, k) of the centres, in C order.
    centre_columns : numpy.ndarray of int, shape (n_centres,)
        Column of each centre in the data matrix.
    mask, centre_mask : numpy.ndarray of bool, shape (x, y, z)
        The data mask (columns) and the centre mask (rows).
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine.
    radius : float
        Radius in millimetres.
    """

    matrix: sparse.csr_matrix
    centres: np.ndarray
    centre_columns: np.ndarray
    mask: np.ndarray
    centre_mask: np.ndarray
    affine: np.ndarray
    radius: float

    @property
    def n_centres(self):
        """Number of spheres."""
        return self.matrix.shape[0]

    @property
    def n_voxels(self):
        """Number of data voxels (columns of the data matrix)."""
        return self.matrix.shape[1]

    @property
    def sizes(self):
        """Number of voxels in each sphere."""
        return np.diff(self.matrix.indptr)

    @property
    def world(self):
        """World coordinates (mm) of the centres, shape (n_centres, 3)."""
        return world_coordinates(self.centres, self.affine)

    def select(self, rows):
        """The spheres of some centres (rows), on the same data columns.

        Parameters
        ----------
        rows : numpy.ndarray of int
            Sphere rows, increasing.

        Returns
        -------
        Spheres
            Its ``centre_mask`` holds the selected centres only.
        """
        rows = np.asarray(rows)
        centre_mask = np.zeros_like(self.centre_mask)
        centre_mask[tuple(self.centres[rows].T)] = True
        return Spheres(
            matrix=self.matrix[rows],
            centres=self.centres[rows],
            centre_columns=self.centre_columns[rows],
            mask=self.mask,
            centre_mask=centre_mask,
            affine=self.affine,
            radius=self.radius,
        )

    def padded_indices(self):
        """Sphere voxels as a dense index array.

        Returns
        -------
        numpy.ndarray of int, shape (n_centres, largest sphere size)
            Row ``i`` lists the columns of sphere ``i`` in increasing order,
            then ``n_voxels`` (one past the last column) as padding, for
            gathering from arrays extended with a neutral value.
        """
        sizes = self.sizes
        out = np.full((self.n_centres, int(sizes.max())), self.n_voxels, dtype=np.intp)
        rows = np.repeat(np.arange(self.n_centres), sizes)
        slots = np.arange(self.matrix.nnz) - np.repeat(self.matrix.indptr[:-1], sizes)
        out[rows, slots] = self.matrix.indices
        return out


def _check_masks(mask, centre_mask, what):
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise InputError(what, f"the data mask must be 3D, not {mask.ndim}D", "Give a 3D mask")
    if not mask.any():
        raise InputError(
            what,
            "the data mask is empty (no voxel inside it)",
            "Check that the mask belongs to this image (same space and field of view)",
        )
    if centre_mask is None:
        return mask, mask.copy()
    centre_mask = np.asarray(centre_mask) != 0
    if centre_mask.shape != mask.shape:
        raise InputError(
            what,
            f"the centre mask has shape {centre_mask.shape} but the data mask has shape "
            f"{mask.shape}",
            "Resample the centre mask to the data grid (nearest neighbour)",
        )
    n_centres = int(centre_mask.sum())
    if n_centres == 0:
        raise InputError(
            what, "the centre mask is empty", "Give a centre mask with at least one voxel"
        )
    outside = int((centre_mask & ~mask).sum())
    if outside == n_centres:
        raise InputError(
            what,
            f"all {n_centres} voxels of the centre mask lie outside the data mask",
            "The centre mask must be a subset of the data mask: check that both are on "
            "the same grid and in the same space",
        )
    if outside:
        raise InputError(
            what,
            f"{outside} of the {n_centres} voxels of the centre mask lie outside the data "
            "mask, where there is no data",
            "Intersect the centre mask with the data mask (centre_mask & mask) or use a "
            "larger data mask",
        )
    return mask, centre_mask


def make_spheres(mask, affine, radius, centre_mask=None, what="searchlight"):
    """The searchlight spheres of a data mask, as nilearn's ``SearchLight`` builds them.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (x, y, z)
        Data mask: the voxels (columns of the data matrix) spheres may hold.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world affine of the grid.
    radius : float
        Radius in millimetres; at least the smallest voxel size.
    centre_mask : numpy.ndarray of bool, optional
        Sphere centres (nilearn's ``process_mask_img``), a subset of
        ``mask`` on the same grid. Default: every voxel of ``mask``.
    what : str
        What the masks are, for messages.

    Returns
    -------
    Spheres

    Notes
    -----
    A voxel belongs to a sphere when ``dx**2 + dy**2 + dz**2 <= radius**2``
    in world coordinates (each difference taken between the coordinates of
    ``affine @ [i, j, k, 1]``), the test of nilearn's KD-tree. Like nilearn,
    the first mask voxel whose world coordinates truncate to the same
    integers as the centre's is added too (it is the centre itself unless
    voxels are smaller than 2 mm). On the rare grids where a voxel's
    squared distance is within one rounding of ``radius**2``, nilearn's
    KD-tree may decide that voxel by a bound on a whole tree node and
    disagree with the per-voxel test.
    """
    mask, centre_mask = _check_masks(mask, centre_mask, what)
    affine = np.asarray(affine, dtype=float)
    radius = check_radius(radius, affine)
    column_of = np.full(mask.shape, -1, dtype=np.int64)
    voxels = np.argwhere(mask)
    column_of[mask] = np.arange(len(voxels))
    centres = np.argwhere(centre_mask)
    voxel_world = world_coordinates(voxels, affine)
    centre_world = world_coordinates(centres, affine)
    world_of = np.zeros(mask.shape + (3,))
    world_of[mask] = voxel_world
    # Voxel offsets that can reach the sphere: |offset_i| <= radius * ||row i of A^-1||.
    reach = radius * np.sqrt(np.sum(np.linalg.inv(affine[:3, :3]) ** 2, axis=1))
    half = np.ceil(reach).astype(int) + 1
    offsets = np.stack(
        np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), -1
    ).reshape(-1, 3)
    r2 = radius * radius
    rows, cols = [], []
    step = max(1, int(1e6 // len(offsets)))
    shape = np.array(mask.shape)
    for start in range(0, len(centres), step):
        block = centres[start : start + step]
        candidates = block[:, None, :] + offsets[None, :, :]
        inside = np.all((candidates >= 0) & (candidates < shape), axis=-1)
        centre_index, offset_index = np.nonzero(inside)
        ijk = candidates[centre_index, offset_index]
        column = column_of[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        keep = column >= 0
        centre_index, ijk, column = centre_index[keep], ijk[keep], column[keep]
        diff = centre_world[start + centre_index] - world_of[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        squared = diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1]
        squared = squared + diff[:, 2] * diff[:, 2]
        within = squared <= r2
        rows.append(start + centre_index[within])
        cols.append(column[within])
    rows.append(np.arange(len(centres)))
    cols.append(_truncation_neighbours(voxel_world, centre_world))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    keep = cols >= 0
    matrix = sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (rows[keep], cols[keep])),
        shape=(len(centres), len(voxels)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = True
    matrix.sort_indices()
    return Spheres(
        matrix=matrix,
        centres=centres,
        centre_columns=column_of[centres[:, 0], centres[:, 1], centres[:, 2]],
        mask=mask,
        centre_mask=centre_mask,
        affine=affine,
        radius=radius,
    )


def _truncation_neighbours(voxel_world, centre_world):
    """Index of the first voxel whose truncated world coordinates equal each centre's.

    nilearn adds this voxel to every sphere ("the voxel containing the
    seed"); -1 where there is none.
    """
    keys = np.trunc(voxel_world).astype(np.int64)
    unique, first = np.unique(keys, axis=0, return_index=True)
    wanted = np.trunc(centre_world).astype(np.int64)
    lookup = {tuple(key): index for key, index in zip(unique.tolist(), first, strict=True)}
    return np.array([lookup.get(tuple(key), -1) for key in wanted.tolist()], dtype=np.int64)
