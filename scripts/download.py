"""Node download: fetch a real dataset with nilearn and describe it.

Runs on the machine with internet access (a local rule on clusters). Files
already in the download folder are re-used after their sha256 is checked;
``dataset.json`` records the TR, space, subjects, the fetched files and
their sha256, and the dataset's own files (``dataset_files``: ADHD's
phenotypic table, which ``import_download_participants`` converts), each
with its sha256.
"""

import nilearn

from fmriflow.dataset import write_description
from fmriflow.fetch import (
    FETCHED_KIND,
    FETCHED_SPACE,
    MIYAWAKI_SHAPE,
    fetch_subjects,
    record_checksums,
)
from fmriflow.fetch import download as fetch_files
from fmriflow.node import Node, Param, run
from fmriflow.simulate import HAXBY_CATEGORIES

DATASET_FACTS = {
    "haxby": {"space": FETCHED_SPACE["haxby"], "labels": list(HAXBY_CATEGORIES)},
    "adhd": {"space": FETCHED_SPACE["adhd"], "labels": []},
    "miyawaki2008": {
        "space": FETCHED_SPACE["miyawaki2008"],
        "labels": ["random", "figure"],
        "stimulus": {"shape": list(MIYAWAKI_SHAPE), "features": "pixels"},
    },
}


def download(inputs, outputs, params, threads):
    fetcher = params.settings["fetcher"]
    subjects = fetch_subjects(fetcher, params.settings["subjects"])
    fetched = fetch_files(fetcher, subjects, params.download_dir, params.settings["url"])
    checksums = record_checksums(fetched["files"], params.download_dir)
    dataset_checksums = record_checksums(fetched["dataset_files"], params.download_dir)
    dataset_files = {
        role: {"path": path, "sha256": dataset_checksums[path]}
        for role, path in fetched["dataset_files"].items()
    }
    write_description(
        outputs.description,
        name=params.name,
        source="fetch",
        kind=FETCHED_KIND[fetcher],
        tr=fetched["tr"],
        subjects=subjects,
        files=fetched["files"],
        sha256=checksums,
        dataset_files=dataset_files,
        provenance={
            "fetcher": f"nilearn.datasets.fetch_{fetcher}",
            "nilearn": nilearn.__version__,
            "url": params.settings["url"],
            "download_dir": str(params.download_dir),
        },
        **DATASET_FACTS[fetcher],
    )


NODE = Node(
    name="download",
    description="Node download: fetch a real dataset with nilearn and describe it.",
    function=download,
    outputs={"description": "dataset.json to write"},
    params={
        "name": Param("haxby", "dataset name"),
        "settings": Param({}, "the dataset's 'fetch' config section", schema="fetch"),
        "download_dir": Param("downloads", "nilearn's download folder"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
