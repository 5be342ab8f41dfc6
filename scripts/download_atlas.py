"""Node download_atlas: fetch a standard atlas with nilearn, in the canonical form.

Runs on the machine with internet access (a local rule on clusters). Files
already in the download folder are re-used after their sha256 is checked
against the folder's registry. Writes the atlas image (labels as int32,
maps as float32 with their signed weights), its region table (``index,
name, network, x, y, z``, coordinates in MNI mm) and ``atlas.json`` (kind,
fetcher and parameters, space, citation, every fetched file with its
sha256).
"""

from fmriflow.atlases import atlas_image, atlas_regions, fetch_atlas, save_atlas_image
from fmriflow.fetch import record_checksums
from fmriflow.io import write_json, write_table
from fmriflow.node import Node, Param, run


def download_atlas(inputs, outputs, params, threads):
    description = fetch_atlas(params.settings, params.download_dir)
    description["sha256"] = record_checksums(description["files"], params.download_dir)
    data, affine = atlas_image(description)
    regions = atlas_regions(description, data, affine)
    save_atlas_image(data, affine, outputs.image)
    write_table(regions, outputs.regions)
    description["n_regions"] = len(regions)
    description["shape"] = list(data.shape)
    write_json(description, outputs.description)


NODE = Node(
    name="download_atlas",
    description="Node download_atlas: fetch a standard atlas with nilearn, in the canonical form.",
    function=download_atlas,
    outputs={
        "image": "atlas.nii.gz to write (int32 labels or float32 maps)",
        "regions": "regions.tsv to write (index, name, network, x, y, z)",
        "description": "atlas.json to write (kind, fetcher, parameters, files and their sha256)",
    },
    params={
        "settings": Param(
            {"source": "atlas", "atlas": "msdl"},
            "the connectome entry's 'regions' section (source: atlas)",
            schema="connectome_regions",
        ),
        "download_dir": Param("downloads", "nilearn's download folder"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
