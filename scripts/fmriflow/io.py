"""Reading and writing the workflow's files, safely.

Every writer here is atomic: it writes to a hidden temporary file in the
destination folder and renames it into place only once the file is complete,
so a job that fails or is killed never leaves a half-written file under the
final name. Every reader checks what it reads and raises
:class:`~fmriflow.errors.InputError` with the file name when the content is
not what the workflow needs.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
import zlib
from pathlib import Path

import numpy as np

from fmriflow.errors import InputError, check_file_exists

#: Errors that nibabel and the compression libraries raise on a damaged file.
CORRUPT_FILE_ERRORS = (EOFError, OSError, zlib.error, ValueError)


def sha256sum(path, block=1 << 20):
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path that is renamed to ``path`` on success.

    The temporary file sits in the same folder (so the rename is atomic) and
    keeps the full file name as its suffix, so libraries that infer the
    format from the extension (nibabel, numpy) behave as for ``path``.

    Parameters
    ----------
    path : str or pathlib.Path
        The final destination.

    Yields
    ------
    pathlib.Path
        Where to write. It is removed if the ``with`` block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:12]}-{path.name}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def save_nifti(data, affine, path, header=None, dtype=None):
    """Write an array as a NIfTI image, atomically.

    Parameters
    ----------
    data : numpy.ndarray
        3D or 4D array.
    affine : numpy.ndarray
        4 x 4 voxel-to-world affine.
    path : str or pathlib.Path
        Destination, usually ending in ``.nii.gz``.
    header : nibabel.Nifti1Header, optional
        Header to copy (TR, units); the data type is taken from ``data``.
    dtype : numpy dtype, optional
        Cast ``data`` to this type before writing.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import nibabel as nib

    data = np.asarray(data if dtype is None else np.asarray(data).astype(dtype))
    header = header.copy() if header is not None else None
    img = nib.Nifti1Image(data, affine, header=header)
    img.header.set_data_dtype(data.dtype)
    # Store the values exactly: no scaling, no NaN-to-zero surprises.
    img.header["scl_slope"] = np.nan
    img.header["scl_inter"] = np.nan
    with atomic_output(path) as tmp:
        nib.save(img, tmp)
    return Path(path)


#: Bytes read at a time when checking that an image file is complete.
CHECK_CHUNK_BYTES = 16 * 2**20


def gzip_recorded_size(path):
    """The uncompressed size a gzip file's trailer records (modulo 2**32), or None.

    A gzip stream ends with the CRC and the size of its data, modulo 2**32
    (RFC 1952, ISIZE); for a file of several members, that of the last one.
    None for a file too short to hold a header and a trailer.
    """
    with open(path, "rb") as stream:
        if stream.seek(0, os.SEEK_END) < 18:  # 10-byte header + 8-byte trailer
            return None
        stream.seek(-4, os.SEEK_END)
        return int.from_bytes(stream.read(4), "little")


def decompressed_size(path):
    """The size of a gzip file's data, decompressed to its end in chunks.

    Raises EOFError, OSError or zlib.error for a truncated or corrupt stream.
    """
    import gzip

    size = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(CHECK_CHUNK_BYTES):
            size += len(chunk)
    return size


def check_complete(path, role):
    """Stop unless an image file holds all the data its header announces.

    A ``.nii.gz`` whose gzip trailer records exactly the size the header
    announces (header and data) is complete: a truncated file ends in
    arbitrary compressed bytes, which match that size once in 2**32. Any
    other ``.nii.gz`` (several gzip members, bytes after the data, or
    truncated) is decompressed to its end, and a truncated or corrupt stream
    fails there. Corruption inside an intact stream is found by the stage
    that reads the data (the mask reads every volume and then the gzip
    trailer, whose CRC check fails, and names the file). A ``.nii`` is
    compared with its expected size. Only bytes are read, in chunks: memory
    stays small.

    Parameters
    ----------
    path : str or pathlib.Path
        A NIfTI image (checked readable with :func:`load_nifti` first).
    role : str
        What the image is for, used in messages.
    """
    import nibabel as nib

    img = nib.load(str(path))
    # Where the data start in the file (the header's own vox_offset may read 0).
    expected = int(img.dataobj.offset) + int(np.prod(img.shape) * img.get_data_dtype().itemsize)
    gzipped = str(path).endswith(".gz")
    if gzipped and gzip_recorded_size(path) == expected % 2**32:
        return
    try:
        size = decompressed_size(path) if gzipped else Path(path).stat().st_size
    except (EOFError, OSError, zlib.error) as exc:
        raise unreadable_to_the_end(path, role, exc) from None
    if size < expected:
        raise InputError(
            path,
            f"{role} holds {size} bytes of header and data but its header announces "
            f"{expected}: the file is truncated",
            "Copy it again from its source (an interrupted transfer leaves such files)",
        )


def read_image_data(img, path, role):
    """All the data of a loaded image, a truncated or corrupt file named in one message."""
    try:
        return np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise unreadable_to_the_end(path, role, exc) from None


def unreadable_to_the_end(path, role, exc):
    """The error of an image file whose data stop early (a truncated or corrupt file)."""
    return InputError(
        path,
        f"{role} cannot be read to its end ({type(exc).__name__}: {exc}): the file is "
        "truncated or corrupt",
        "Copy it again from its source (an interrupted transfer leaves such files)",
    )


def load_nifti(path, role, ndim=None):
    """Load a NIfTI image header, checking that it is usable.

    Parameters
    ----------
    path : str or pathlib.Path
        The image file.
    role : str
        What the image is for, used in messages (``"BOLD image"``).
    ndim : int, optional
        Required number of dimensions (3 or 4). A 4D image whose fourth
        dimension has length 1 is not accepted as 3D, and vice versa.

    Returns
    -------
    nibabel.Nifti1Image
        The image, with its data not yet read.
    """
    import nibabel as nib

    path = check_file_exists(path, role)
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types here
        raise InputError(
            path,
            f"{role} is not a readable NIfTI image ({exc})",
            "Give a .nii or .nii.gz file; convert other formats (e.g. with "
            "dcm2niix or nibabel) first",
        ) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(
            path,
            f"{role} is a {type(img).__name__}, not a NIfTI image",
            "Convert it to NIfTI (.nii.gz) first",
        )
    if ndim is not None and len(img.shape) != ndim:
        expected = "4D (x, y, z, time)" if ndim == 4 else "3D (x, y, z)"
        raise InputError(
            path,
            f"{role} must be {expected} but has shape {img.shape}",
            "Check that the right file is configured"
            + (
                "; a single volume cannot be cleaned or decoded"
                if ndim == 4
                else "; take one volume with nilearn.image.index_img"
            ),
        )
    return img


def load_volume(path, role):
    """Load a 3D image's data, reporting truncated or corrupted files.

    Parameters
    ----------
    path : str or pathlib.Path
        A 3D NIfTI image (mask, ROI, anatomy).
    role : str
        What the image is for, used in messages.

    Returns
    -------
    data : numpy.ndarray
        The voxel values as float64.
    img : nibabel.Nifti1Image
        The image (for its affine and header).
    """
    img = load_nifti(path, role, ndim=3)
    try:
        data = np.asanyarray(img.dataobj).astype(np.float64)
    except CORRUPT_FILE_ERRORS as exc:
        raise InputError(
            path,
            f"{role} is truncated or corrupted ({exc})",
            "Download or copy the file again",
        ) from exc
    return data, img


def load_mask(path, role="mask"):
    """Load a 3D mask image as a boolean array (non-zero voxels are in).

    Parameters
    ----------
    path : str or pathlib.Path
        A 3D NIfTI image.
    role : str, default="mask"
        What the mask is for, used in messages.

    Returns
    -------
    mask : numpy.ndarray of bool
        True inside the mask.
    img : nibabel.Nifti1Image
        The image (for its affine).
    """
    data, img = load_volume(path, role)
    if not np.all(np.isfinite(data)):
        raise InputError(path, f"{role} contains NaN or infinite values", "Fix the mask image")
    return data != 0, img


def save_mask(mask, affine, path):
    """Write a boolean mask as a uint8 NIfTI image (1 inside), atomically."""
    return save_nifti(np.asarray(mask, dtype=np.uint8), affine, path)


def save_npy(array, path):
    """Write an array as ``.npy``, atomically."""
    with atomic_output(path) as tmp:
        np.save(tmp, np.ascontiguousarray(array))
    return Path(path)


@contextlib.contextmanager
def npy_writer(path, shape, dtype):
    """Yield a writable memory-mapped ``.npy`` array, committed on success.

    Lets a node fill a large matrix piece by piece without holding it in
    memory twice.

    Parameters
    ----------
    path : str or pathlib.Path
        Final ``.npy`` destination.
    shape : tuple of int
        Array shape.
    dtype : numpy dtype
        Array type.

    Yields
    ------
    numpy.memmap
        The array to fill.
    """
    with atomic_output(path) as tmp:
        check_free_space(tmp, int(np.prod(shape)) * np.dtype(dtype).itemsize, path)
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        try:
            reserve_space(tmp, path)
            yield array
            array.flush()
        finally:
            del array


def _size_text(n_bytes):
    """A byte count for people (``1.5 GB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.3g} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1000


def check_free_space(tmp, n_bytes, path):
    """Stop before writing ``n_bytes`` where the disk has less free space."""
    free = shutil.disk_usage(Path(tmp).parent).free
    if free < n_bytes:
        raise InputError(
            path,
            f"writing it needs {_size_text(n_bytes)} but its disk has {_size_text(free)} free",
            "Free space on that disk, or run the workflow in a folder on a larger one "
            "(snakemake -d DIR)",
        )


def reserve_space(tmp, path):
    """Allocate a memory-mapped file's blocks now, so a full disk is an error here.

    A memory-mapped file is sparse until written: on a full disk the write
    to the mapping would kill the process with SIGBUS, with no message.
    """
    size = Path(tmp).stat().st_size
    if not hasattr(os, "posix_fallocate") or size == 0:
        return
    with open(tmp, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                return  # a file system without fallocate: written as before
            raise InputError(
                path,
                f"its disk is full: {_size_text(size)} could not be allocated ({exc.strerror})",
                "Free space on that disk, or run the workflow in a folder on a larger one "
                "(snakemake -d DIR)",
            ) from None


def load_matrix(path, role="data matrix", mmap=True):
    """Open a cached ``(time, voxel)`` matrix, memory-mapped by default."""
    path = check_file_exists(path, role)
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except CORRUPT_FILE_ERRORS as exc:
        raise InputError(
            path,
            f"{role} is not a readable .npy file ({exc})",
            "Delete it and re-run the workflow to recompute it",
        ) from exc


def write_json(obj, path):
    """Write JSON with sorted keys and a trailing newline, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def read_json(path, role="JSON file"):
    """Read a JSON file, naming it if it is missing or malformed."""
    path = check_file_exists(path, role)
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise InputError(
            path, f"{role} is not valid JSON ({exc})", "Fix or regenerate it"
        ) from exc


def write_table(frame, path):
    """Write a data frame as a tab-separated table, atomically."""
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n")
    return Path(path)


def read_table(path, role="table", required=()):
    """Read a tab-separated table and check its columns.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.tsv`` file.
    role : str, default="table"
        What the table is, for messages.
    required : sequence of str
        Columns that must be present.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    path = check_file_exists(path, role)
    try:
        frame = pd.read_csv(path, sep="\t", keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            path,
            f"{role} is not a readable tab-separated table ({exc})",
            "Fix the file: one header row, columns separated by tabs",
        ) from exc
    check_columns(
        frame, required, path, role, "Add the missing columns (tab-separated, with a header row)"
    )
    return frame


def write_matrix(matrix, names, path):
    """Write a square matrix as a table with region names as header and first column.

    Values keep full float64 precision (``repr``-exact round trip).
    """
    import pandas as pd

    frame = pd.DataFrame(np.asarray(matrix, dtype=np.float64), columns=list(names))
    frame.insert(0, "region", list(names))
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n", float_format="%.17g")
    return Path(path)


def read_matrix(path, names=None, role="connectivity matrix"):
    """Read a matrix written by :func:`write_matrix`, checking its region names.

    Returns
    -------
    matrix : numpy.ndarray, shape (n, n)
    names : list of str
    """
    frame = read_table(path, role, required=("region",))
    found = [str(n) for n in frame["region"]]
    if list(frame.columns[1:]) != found:
        raise InputError(
            path,
            f"{role} is not square with matching row and column names",
            "Regenerate it (delete the file and re-run the workflow)",
        )
    if names is not None and found != [str(n) for n in names]:
        raise InputError(
            path,
            f"{role} has regions {found[:3]}… where {list(names)[:3]}… were expected",
            "Every subject's matrices must come from the same regions: re-run the workflow",
        )
    return frame.iloc[:, 1:].to_numpy(dtype=np.float64), found


def check_columns(frame, columns, path, role, fix):
    """Raise :class:`InputError` naming the columns of ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            path, f"{role} lacks the column(s) {missing}; it has {list(frame.columns)}", fix
        )


def label_column(frame, path):
    """The ``label`` column of a per-volume table as text, checked for empty labels.

    Parameters
    ----------
    frame : pandas.DataFrame
        A table with one row per volume and a ``label`` column.
    path : str or pathlib.Path
        Its file, for messages.

    Returns
    -------
    numpy.ndarray of str
    """
    if frame["label"].isna().any():
        first = int(np.flatnonzero(frame["label"].isna())[0])
        raise InputError(
            path,
            f"events table has an empty label (first at volume {first}, row {first + 2} of "
            "the file)",
            "Give every volume a label; use 'rest' for volumes without a task",
        )
    return frame["label"].astype(str).to_numpy()


def run_column(frame, path):
    """The ``run`` column of a per-volume table as integers, checked for whole numbers."""
    import pandas as pd

    runs = pd.to_numeric(frame["run"], errors="coerce")
    if runs.isna().any() or not np.all(runs == np.round(runs)):
        raise InputError(
            path,
            "events table column 'run' must hold whole numbers",
            "Number the runs 0, 1, 2, … (or 1, 2, …), one value per volume",
        )
    return runs.to_numpy().astype(int)


def read_events(path, n_volumes=None):
    """Read a canonical ``events.tsv``: one row per volume, ``label`` and ``run``.

    Parameters
    ----------
    path : str or pathlib.Path
        The events file.
    n_volumes : int, optional
        The number of volumes of the matching BOLD image; the table must
        have exactly this many rows.

    Returns
    -------
    pandas.DataFrame
        Columns ``label`` (str) and ``run`` (int), in volume order.
    """
    import pandas as pd

    frame = read_table(path, "events table", required=("label", "run"))
    if n_volumes is not None and len(frame) != n_volumes:
        raise InputError(
            path,
            f"events table has {len(frame)} rows but the BOLD image has {n_volumes} volumes",
            "events.tsv needs exactly one row per volume (label, run); "
            "check that it belongs to this BOLD image and that no header "
            "or trailing line is missing",
        )
    return pd.DataFrame({"label": label_column(frame, path), "run": run_column(frame, path)})
