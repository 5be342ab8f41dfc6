"""Standard brain atlases, fetched with nilearn and put in one canonical form.

Connectome analyses may take their regions from a standard atlas
(``regions: {source: atlas, ...}`` in a ``connectomes`` entry). Two are
supported, each through its nilearn fetcher:

* ``msdl`` — the MSDL atlas (Varoquaux et al. 2011): 39 probabilistic maps
  of resting-state networks, from :func:`nilearn.datasets.fetch_atlas_msdl`
  (``msdl_atlas/MSDL_rois/msdl_rois.nii``, a 4D float image whose weights
  are signed, and ``msdl_rois_labels.csv`` with the columns ``x, y, z,
  name, net name``);
* ``schaefer`` — the Schaefer et al. (2018) cortical parcellation, 100 to
  1000 regions annotated with 7 or 17 Yeo networks, from
  :func:`nilearn.datasets.fetch_atlas_schaefer_2018`
  (``schaefer_2018/Schaefer2018_{n}Parcels_{k}Networks_order.txt``:
  tab-separated rows ``index, name, r, g, b, 0`` without a header, names
  such as ``7Networks_LH_Vis_1`` whose third ``_``-field is the network;
  and ``..._order_FSLMNI152_{res}mm.nii.gz``, a 3D image of the labels).

Whatever the atlas, the download node leaves in ``data/atlases/{atlas}/``:

* ``atlas.nii.gz`` — the image: labels as int32 (never a narrower type,
  which would wrap labels above 127 or 255 around), maps as float32 with
  their signed weights;
* ``regions.tsv`` — one row per region: ``index`` (the label value of a
  labels atlas, 1..n for maps, in the order of the 4th axis), ``name``,
  ``network``, and ``x, y, z`` in MNI mm (the published coordinates of the
  MSDL maps; each label's centre of mass for a labels atlas);
* ``atlas.json`` — the kind (``maps`` or ``labels``), the fetcher and its
  parameters, space and template, the citation, and every fetched file
  with its sha256.

Downloads are those of :mod:`fmriflow.fetch`: files already in the download
folder are re-used, each file's sha256 is recorded in the folder's registry
and checked when the file is re-used, and an unreachable server stops with
one message naming the URL and what to do.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from fmriflow.errors import InputError, check_file_exists
from fmriflow.io import CORRUPT_FILE_ERRORS, load_nifti, save_nifti

#: The columns of ``regions.tsv``, in order.
REGION_COLUMNS = ("index", "name", "network", "x", "y", "z")

#: What the workflow knows of each atlas (nilearn's fetchers give the files).
ATLASES = {
    "msdl": {
        "kind": "maps",
        "fetcher": "nilearn.datasets.fetch_atlas_msdl",
        "space": "MNI152",
        "citation": (
            "Varoquaux G., Gramfort A., Pedregosa F., Michel V., Thirion B. (2011). "
            "Multi-subject dictionary learning to segment an atlas of brain spontaneous "
            "activity. Information Processing in Medical Imaging (IPMI), LNCS 6801, 562-573."
        ),
    },
    "schaefer": {
        "kind": "labels",
        "fetcher": "nilearn.datasets.fetch_atlas_schaefer_2018",
        "space": "MNI152",
        "citation": (
            "Schaefer A., Kong R., Gordon E. M., Laumann T. O., Zuo X.-N., Holmes A. J., "
            "Eickhoff S. B., Yeo B. T. T. (2018). Local-global parcellation of the human "
            "cerebral cortex from intrinsic functional connectivity MRI. Cerebral Cortex "
            "28(9):3095-3114."
        ),
    },
}

#: The MSDL archive and the files nilearn's fetcher takes from it.
MSDL_ARCHIVE = "MSDL_rois.zip"
MSDL_FOLDER = "MSDL_rois"
MSDL_FILES = ("msdl_rois_labels.csv", "msdl_rois.nii")
MSDL_COLUMNS = ("x", "y", "z", "name", "net name")
#: The file names of a Schaefer atlas in nilearn's ``schaefer_2018`` folder.
SCHAEFER_LABELS = "Schaefer2018_{n_rois}Parcels_{yeo_networks}Networks_order.txt"
SCHAEFER_IMAGE = (
    "Schaefer2018_{n_rois}Parcels_{yeo_networks}Networks_order_FSLMNI152_{resolution_mm}mm.nii.gz"
)
#: Where to say the files go when they cannot be downloaded.
DATASET_FOLDERS = {"msdl": Path("msdl_atlas") / MSDL_FOLDER, "schaefer": Path("schaefer_2018")}
#: The largest label an int32 image holds.
MAX_LABEL = np.iinfo(np.int32).max


def _check_settings(settings):
    """The atlas name of a ``regions`` config section, checked."""
    if settings.get("source", "atlas") != "atlas":
        raise InputError(
            "config key regions.source",
            f"'{settings.get('source')}' regions are not a standard atlas",
            "Give regions with source: atlas",
        )
    name = settings.get("atlas")
    if name not in ATLASES:
        raise InputError(
            "config key regions.atlas",
            f"unknown atlas {name!r}",
            f"Choose one of {sorted(ATLASES)}",
        )
    return name


def atlas_parameters(settings):
    """The parameters of the atlas' nilearn fetcher (none for MSDL).

    Parameters
    ----------
    settings : dict
        A ``regions`` config section with ``source: atlas``.

    Returns
    -------
    dict
        ``{}`` for ``msdl``; ``n_rois``, ``yeo_networks`` and
        ``resolution_mm`` for ``schaefer``.
    """
    if _check_settings(settings) == "msdl":
        return {}
    keys = ("n_rois", "yeo_networks", "resolution_mm")
    missing = [key for key in keys if settings.get(key) is None]
    if missing:
        raise InputError(
            f"config key regions.{missing[0]}",
            "the Schaefer atlas needs n_rois, yeo_networks and resolution_mm",
            "Give them (the config schema's defaults are 400, 7 and 2)",
        )
    return {key: int(settings[key]) for key in keys}


def atlas_id(settings):
    """A path-safe name of the atlas a ``regions`` section asks for.

    ``msdl``, or ``schaefer_{n_rois}_{yeo_networks}_{resolution_mm}mm``
    (``schaefer_400_7_2mm``): the folder ``data/atlases/{id}/``.
    """
    name = _check_settings(settings)
    parameters = atlas_parameters(settings)
    if not parameters:
        return name
    return "{}_{n_rois}_{yeo_networks}_{resolution_mm}mm".format(name, **parameters)


def atlas_settings(settings):
    """Only the keys of a ``regions`` section that decide the atlas and its download.

    Two connectome entries that use the same atlas with different region
    settings of other sources (an ICA threshold, say) share one download
    job, with these as its parameters.
    """
    name = _check_settings(settings)
    return {"source": "atlas", "atlas": name, "url": settings.get("url")} | atlas_parameters(
        settings
    )


def _mirror(url):
    """A mirror's base URL, ending with one slash (nilearn appends file names)."""
    return None if url is None else url.rstrip("/") + "/"


def _fetch_msdl_mirror(url, data_dir, verbose):
    """Fetch the MSDL archive from a mirror into the folder nilearn's fetcher reads.

    ``fetch_atlas_msdl`` (nilearn 0.13 and 0.14) ignores its
    ``url`` argument, so with a mirror the archive is fetched first, with
    nilearn's own downloader, into ``<data_dir>/msdl_atlas``; the fetcher
    then finds its files there.
    """
    from nilearn.datasets._utils import fetch_files, get_dataset_dir

    folder = get_dataset_dir("msdl_atlas", data_dir=data_dir, verbose=verbose)
    archive = _mirror(url) + MSDL_ARCHIVE
    files = [(str(Path(MSDL_FOLDER, f)), archive, {"uncompress": True}) for f in MSDL_FILES]
    fetch_files(folder, files, verbose=verbose)


def _fetch(name, parameters, url, data_dir):
    """Run the atlas' nilearn fetcher; return ``(files, template)``."""
    from nilearn import datasets

    if name == "msdl":
        if url is not None:
            _fetch_msdl_mirror(url, data_dir, verbose=1)
        bunch = datasets.fetch_atlas_msdl(data_dir=data_dir, verbose=1)
        image = Path(bunch.maps)
        files = {"image": str(image), "labels": str(image.with_name(MSDL_FILES[0]))}
    else:
        bunch = datasets.fetch_atlas_schaefer_2018(
            **parameters, data_dir=data_dir, base_url=_mirror(url), verbose=1
        )
        image = Path(bunch.maps)
        files = {
            "image": str(image),
            "labels": str(image.with_name(SCHAEFER_LABELS.format(**parameters))),
        }
    return files, bunch.get("template")


def fetch_atlas(settings, data_dir):
    """Fetch a standard atlas with nilearn and describe it.

    Parameters
    ----------
    settings : dict
        A ``regions`` config section with ``source: atlas`` (``atlas``,
        ``n_rois``, ``yeo_networks``, ``resolution_mm``, ``url``).
    data_dir : str or pathlib.Path
        nilearn's download folder; files already there are not downloaded.

    Returns
    -------
    dict
        The canonical description (``atlas.json`` without the sha256, which
        :func:`fmriflow.fetch.record_checksums` gives): ``id``, ``atlas``,
        ``kind`` (``maps`` or ``labels``), ``fetcher``, ``parameters``,
        ``url``, ``space``, ``template``, ``citation``, ``download_dir``,
        ``nilearn`` (its version) and ``files`` (``image`` and ``labels``:
        the fetched image and its region list).
    """
    import nilearn
    import requests

    from fmriflow.fetch import check_registry, checksum_error, is_checksum_error, network_error

    name = _check_settings(settings)
    parameters = atlas_parameters(settings)
    url = settings.get("url")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    folder = data_dir / DATASET_FOLDERS[name]
    # nilearn's fetchers parse the files they find: check them before they do.
    check_registry([folder / f for f in _file_names(name, parameters)], data_dir)
    what = f"the {atlas_id(settings)} atlas"
    try:
        files, template = _fetch(name, parameters, url, data_dir)
    except requests.RequestException as exc:
        advice = _offline_advice(name, parameters, folder)
        raise network_error(what, exc, advice, server="the atlas server") from exc
    except Exception as exc:
        if isinstance(exc, ValueError) and is_checksum_error(exc):
            raise checksum_error(what, data_dir, exc, "regions.url") from exc
        raise InputError(
            folder,
            f"nilearn's fetcher failed on the atlas files there ({type(exc).__name__}: {exc})",
            "Delete the folder and re-run the workflow to download the files again",
        ) from exc
    return {
        "id": atlas_id(settings),
        "atlas": name,
        "kind": ATLASES[name]["kind"],
        "fetcher": ATLASES[name]["fetcher"],
        "parameters": parameters,
        "url": url,
        "space": ATLASES[name]["space"],
        "template": template,
        "citation": ATLASES[name]["citation"],
        "download_dir": str(data_dir),
        "nilearn": nilearn.__version__,
        "files": files,
    }


def _offline_advice(name, parameters, folder):
    """What to do, besides retrying, when the atlas server cannot be reached."""
    files = " and ".join(_file_names(name, parameters))
    if name == "msdl":
        files += f" (from {MSDL_ARCHIVE})"
    return (
        "set regions.url of the connectome entry to a mirror of the atlas files (its base "
        f"URL); or copy {files} into {folder}"
    )


def _file_names(name, parameters):
    """The files of an atlas in its nilearn folder (:data:`DATASET_FOLDERS`)."""
    if name == "msdl":
        return list(MSDL_FILES)
    return [SCHAEFER_LABELS.format(**parameters), SCHAEFER_IMAGE.format(**parameters)]


def atlas_image(description):
    """The atlas image in its canonical type.

    Parameters
    ----------
    description : dict
        From :func:`fetch_atlas`.

    Returns
    -------
    data : numpy.ndarray
        4D float32 maps (weights kept with their sign), or 3D int32 labels
        (0 outside the regions).
    affine : numpy.ndarray
        The image's voxel-to-MNI affine.
    """
    path = description["files"]["image"]
    maps = description["kind"] == "maps"
    role = "atlas maps" if maps else "atlas labels image"
    img = load_nifti(path, role, ndim=4 if maps else 3)
    try:
        data = np.asanyarray(img.dataobj)
    except CORRUPT_FILE_ERRORS as exc:
        raise InputError(path, f"{role} is truncated or corrupted ({exc})", _REDOWNLOAD) from exc
    if not np.all(np.isfinite(data)):
        raise InputError(path, f"{role} has NaN or infinite values", _REDOWNLOAD)
    if maps:
        return data.astype(np.float32), img.affine
    return _as_labels(data, path), img.affine


_REDOWNLOAD = "Delete the file and re-run the workflow to download it again"


def _as_labels(data, path):
    """Label values as int32, checked to be whole, non-negative and within int32."""
    if data.size and (data.min() < 0 or data.max() > MAX_LABEL or np.any(data != np.round(data))):
        raise InputError(
            path,
            "atlas labels image has values that are not labels (negative, fractional or "
            f"above {MAX_LABEL})",
            _REDOWNLOAD,
        )
    return data.astype(np.int32)


def save_atlas_image(data, affine, path):
    """Write the canonical ``atlas.nii.gz``: int32 labels or float32 maps, atomically."""
    dtype = np.float32 if np.issubdtype(data.dtype, np.floating) else np.int32
    return save_nifti(data, affine, path, dtype=dtype)


def atlas_regions(description, data, affine):
    """The canonical region table of an atlas.

    Parameters
    ----------
    description : dict
        From :func:`fetch_atlas` (its ``labels`` file is read).
    data, affine
        From :func:`atlas_image`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REGION_COLUMNS`, one row per region.
    """
    path = description["files"]["labels"]
    if description["kind"] == "maps":
        return msdl_regions(path, data.shape[3])
    return schaefer_regions(path, data, affine)


def msdl_regions(path, n_maps):
    """MSDL's region list (``msdl_rois_labels.csv``) as the canonical region table.

    Names and networks lose their surrounding spaces (as nilearn's fetcher
    strips them); ``x, y, z`` are the file's MNI coordinates.
    """
    path = check_file_exists(path, "MSDL region list")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            path, f"not a readable comma-separated table ({exc})", _REDOWNLOAD
        ) from exc
    missing = [c for c in MSDL_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(path, f"MSDL region list lacks the column(s) {missing}", _REDOWNLOAD)
    if len(frame) != n_maps:
        raise InputError(
            path,
            f"MSDL region list has {len(frame)} rows for {n_maps} maps",
            _REDOWNLOAD,
        )
    coordinates = frame[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce")
    if coordinates.isna().any().any():
        raise InputError(path, "MSDL coordinates x, y, z are not all numbers", _REDOWNLOAD)
    table = pd.DataFrame(
        {
            "index": np.arange(1, n_maps + 1),
            "name": frame["name"].astype(str).str.strip(),
            "network": frame["net name"].astype(str).str.strip(),
        }
    )
    return pd.concat([table, coordinates.astype(float).reset_index(drop=True)], axis=1)


def schaefer_network(name):
    """The network of a Schaefer region: the third ``_``-field of its name.

    ``7Networks_LH_Vis_1`` → ``Vis``; ``17Networks_RH_DefaultA_PFCm_2`` →
    ``DefaultA``. Returns None for a name not of that form.
    """
    fields = str(name).split("_")
    if len(fields) < 4 or not fields[0].endswith("Networks") or fields[1] not in ("LH", "RH"):
        return None
    return fields[2]


def schaefer_regions(path, labels, affine):
    """A Schaefer look-up table as the canonical region table, with each label's centre.

    Parameters
    ----------
    path : str or pathlib.Path
        ``Schaefer2018_{n}Parcels_{k}Networks_order.txt``: tab-separated,
        no header, rows ``index, name, r, g, b, 0``.
    labels : numpy.ndarray of int
        The labels image (:func:`atlas_image`).
    affine : numpy.ndarray
        Its affine.

    Returns
    -------
    pandas.DataFrame
        One row per label of the table, in its order; every label must be in
        the image and every label of the image in the table.
    """
    path = check_file_exists(path, "Schaefer look-up table")
    try:
        lut = pd.read_csv(path, sep="\t", header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable tab-separated table ({exc})", _REDOWNLOAD) from exc
    index = pd.to_numeric(lut[0], errors="coerce") if lut.shape[1] >= 2 else None
    if index is None or index.isna().any() or not (index == index.round()).all():
        raise InputError(
            path,
            "look-up table rows must start with an integer label and a name (tab-separated)",
            _REDOWNLOAD,
        )
    index = index.astype(np.int64).to_numpy()
    names = lut[1].astype(str).str.strip().tolist()
    networks = [schaefer_network(n) for n in names]
    bad = [n for n, network in zip(names, networks, strict=True) if network is None]
    if bad:
        raise InputError(
            path,
            f"region names {bad[:3]} are not of the form <k>Networks_<LH|RH>_<network>_…",
            _REDOWNLOAD,
        )
    centres = label_centres(labels, affine, index, path)
    table = pd.DataFrame({"index": index, "name": names, "network": networks})
    return pd.concat([table, pd.DataFrame(centres, columns=["x", "y", "z"])], axis=1)


def label_centres(labels, affine, index, path="atlas"):
    """The centre of mass, in mm, of each label's voxels.

    Parameters
    ----------
    labels : numpy.ndarray of int
        3D labels (0 is background).
    affine : numpy.ndarray
        Voxel-to-world affine.
    index : sequence of int
        The labels of the look-up table, in order.
    path : str
        The look-up table, for messages.

    Returns
    -------
    numpy.ndarray, shape (len(index), 3)
        World coordinates, rounded to 0.01 mm.
    """
    import nibabel as nib

    index = np.asarray(index, dtype=np.int64)
    flat = labels.ravel().astype(np.int64)
    size = int(max(flat.max(initial=0), index.max(initial=0))) + 1
    counts = np.bincount(flat, minlength=size)
    in_image = set((np.flatnonzero(counts[1:]) + 1).tolist())
    absent = sorted(set(index.tolist()) - in_image)
    unnamed = sorted(in_image - set(index.tolist()))
    if absent or unnamed:
        problem = (
            f"label(s) {absent[:10]} of the look-up table have no voxel in the image"
            if absent
            else f"label(s) {unnamed[:10]} of the image are not in the look-up table"
        )
        raise InputError(path, problem, "The table and the image do not match: " + _REDOWNLOAD)
    grid = np.indices(labels.shape).reshape(3, -1)
    sums = np.stack([np.bincount(flat, weights=axis, minlength=size) for axis in grid], axis=1)
    voxels = sums[index] / counts[index][:, None]
    # + 0.0 turns -0.0 into 0.0, so the table's text does not depend on rounding's sign.
    return np.round(nib.affines.apply_affine(affine, voxels), 2) + 0.0
