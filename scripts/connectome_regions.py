"""Node connectome_regions: the regions of one connectome analysis, on the data's voxels.

From the dataset's group ICA (components split into connected regions, as
nilearn's RegionExtractor does), one of its parcellations, or a standard
atlas resampled to the data's grid. Regions are restricted to the voxels
every subject has; those with nothing left there are named in the log and
dropped, so every subject's connectome has the same regions.
"""

import logging

import nibabel as nib
import numpy as np

from fmriflow import regions as reg
from fmriflow.connectome_figures import plot_regions
from fmriflow.connectome_files import read_region_table
from fmriflow.dataset import read_description
from fmriflow.errors import InputError
from fmriflow.group_space import common_mask
from fmriflow.io import load_nifti, save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run

logger = logging.getLogger("fmriflow.connectome_regions")


def connectome_regions(inputs, outputs, params, threads):
    entry = params.analysis
    source = entry["regions"]["source"]
    description = read_description(inputs.description)
    common = common_mask(list(inputs.masks), names=description["subjects"])
    mask_img = nib.Nifti1Image(common.mask.astype(np.uint8), common.affine)
    regions, method = build_regions(inputs, entry["regions"], common.mask, mask_img)
    if regions.dropped:
        logger.warning(
            "%d region(s) have no voxel or weight in the %d voxels every subject has, and "
            "are dropped for every subject: %s",
            len(regions.dropped),
            int(common.mask.sum()),
            ", ".join(regions.dropped),
        )
    if "networks" in inputs:
        planted = load_nifti(inputs.networks, "planted networks", ndim=4)
        names = description["ground_truth"]["names"]
        regions.table["network"] = reg.planted_networks_of(
            regions, np.asanyarray(planted.dataobj)[common.mask], names
        )
    image = region_image(regions, common.mask, common.affine)
    save_nifti(
        np.asanyarray(image.dataobj),
        common.affine,
        outputs.regions,
        dtype=np.int32 if regions.kind == "labels" else np.float32,
    )
    write_table(regions.table, outputs.table)
    write_json(
        {
            "source": source,
            "kind": regions.kind,
            "n_regions": len(regions.table),
            "dropped": regions.dropped,
            "resampling": method,
            "n_voxels": int(common.mask.sum()),
        },
        outputs.summary,
    )
    plot_regions(
        image,
        regions.kind,
        f"{entry['name']}: {len(regions.table)} regions ({source}, {regions.kind})",
        outputs.figure,
    )


def build_regions(inputs, settings, mask, mask_img):
    """The RegionSet of a source, and the resampling used (or None)."""
    source = settings["source"]
    affine = mask_img.affine
    if source == "ica":
        components = load_nifti(inputs.components, "group ICA components", ndim=4)
        regions_img, parents = reg.extract_component_regions(
            components,
            mask_img,
            threshold=settings["threshold"],
            extractor=settings["extractor"],
            min_region_size=settings["min_region_size"],
            smoothing_fwhm=settings["smoothing_fwhm"],
        )
        regions = reg.maps_regions(
            np.asanyarray(regions_img.dataobj),
            mask,
            affine,
            names=reg.component_region_names(parents),
            extra={"component": parents},
        )
        return regions, None
    if source == "clustering":
        labels = load_nifti(inputs.labels, "parcellation", ndim=3)
        check_grid(labels, mask_img, inputs.labels)
        return reg.labels_regions(np.asanyarray(labels.dataobj), mask, affine), None
    atlas = load_nifti(inputs.atlas_image, "atlas image")
    table = read_region_table(inputs.atlas_regions)
    kind = "maps" if atlas.ndim == 4 else "labels"
    resampled, method = reg.resample_atlas(atlas, kind, mask_img)
    logger.info("atlas resampled to the data's grid by %s interpolation", method)
    data = np.asanyarray(resampled.dataobj)
    names, networks = list(table["name"]), list(table["network"])
    if kind == "labels":
        index = table["index"].astype(int)
        regions = reg.labels_regions(
            np.rint(data).astype(np.int64),
            mask,
            affine,
            names=dict(zip(index, names, strict=True)),
            networks=dict(zip(index, networks, strict=True)),
            expected=index.tolist(),
        )
    else:
        regions = reg.maps_regions(data, mask, affine, names=names, networks=networks)
        coordinates = table.set_index("name")[["x", "y", "z"]]
        regions.table[["x", "y", "z"]] = coordinates.loc[regions.table["name"]].to_numpy()
    return regions, method


def check_grid(img, mask_img, path):
    if img.shape[:3] != mask_img.shape or not np.allclose(img.affine, mask_img.affine, atol=1e-3):
        raise InputError(
            path,
            f"is on a {img.shape[:3]} grid that is not the subjects' {mask_img.shape} grid",
            "Compute the parcellation from the same dataset",
        )


def region_image(regions, mask, affine):
    """The regions as an image: int labels (3D) or one map per region (4D)."""
    if regions.kind == "labels":
        return nib.Nifti1Image(unmask(regions.values.astype(np.int32), mask), affine)
    return nib.Nifti1Image(unmask(regions.values.T.astype(np.float32), mask), affine)


NODE = Node(
    name="connectome_regions",
    description="Node connectome_regions: the regions of one connectome analysis.",
    function=connectome_regions,
    inputs={
        "masks": "the subjects' preprocessing masks (their intersection is used)",
        "description": "the dataset's dataset.json",
        "components": "group ICA components.nii.gz (regions.source: ica)",
        "labels": "a parcellation's labels.nii.gz (regions.source: clustering)",
        "atlas_image": "data/atlases/{atlas}/atlas.nii.gz (regions.source: atlas)",
        "atlas_regions": "data/atlases/{atlas}/regions.tsv (regions.source: atlas)",
        "networks": "the planted networks.nii.gz (simulated data: ground truth)",
    },
    outputs={
        "regions": "regions.nii.gz to write (3D labels or 4D maps)",
        "table": "regions.tsv to write",
        "summary": "regions.json to write",
        "figure": "regions.png to write",
    },
    params={
        "analysis": Param(
            None,
            "the connectome config entry (a mapping, see $defs/connectome)",
            schema="connectome",
        )
    },
    lists=("masks",),
    optional_inputs=("components", "labels", "atlas_image", "atlas_regions", "networks"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
