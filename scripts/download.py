"""Node download: fetch a real dataset with nilearn and describe it.

Runs on the machine with internet access (a local rule on clusters). Files
already in the download folder are re-used after their sha256 is checked;
``dataset.json`` records the TR, space, subjects, the fetched files and
their sha256.
"""

import nilearn

from fmriflow.dataset import write_description
from fmriflow.fetch import download as fetch_files
from fmriflow.fetch import fetch_subjects, record_checksums
from fmriflow.node import Node, Param, run
from fmriflow.simulate import HAXBY_CATEGORIES

DATASET_FACTS = {
    "haxby": {"kind": "task", "space": "native", "labels": list(HAXBY_CATEGORIES)},
    "adhd": {"kind": "rest", "space": "MNI152", "labels": []},
}


def download(inputs, outputs, params, threads):
    fetcher = params.settings["fetcher"]
    subjects = fetch_subjects(fetcher, params.settings["subjects"])
    fetched = fetch_files(fetcher, subjects, params.download_dir, params.settings["url"])
    checksums = record_checksums(fetched["files"], params.download_dir)
    write_description(
        outputs.description,
        name=params.name,
        source="fetch",
        tr=fetched["tr"],
        subjects=subjects,
        files=fetched["files"],
        sha256=checksums,
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
        "settings": Param(
            {"fetcher": "haxby", "subjects": None, "url": None},
            "the dataset's 'fetch' config section",
        ),
        "download_dir": Param("downloads", "nilearn's download folder"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
