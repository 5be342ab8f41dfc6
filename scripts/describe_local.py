"""Node describe_local: write dataset.json for a lab's own data.

Records TR, space, kind, subjects and the source templates (or the files a
BIDS query found, and the query), with the sha256 of every source file. The
files themselves are imported per subject (``import_local``,
``import_local_file``) and the dataset brain mask by
``import_local_brain_mask``.
"""

from fmriflow.dataset import write_description
from fmriflow.io import sha256sum
from fmriflow.local import check_source_file, origin, subject_files
from fmriflow.node import Node, Param, run


def describe_local(inputs, outputs, params, threads):
    settings = params.settings
    sha256 = {}
    for subject in settings["subjects"]:
        for key, paths in subject_files(settings, subject).items():
            for path in paths:
                sha256[path] = sha256sum(check_source_file(path, key, origin(settings, key)))
    if settings["brain_mask"]:
        path = check_source_file(settings["brain_mask"], "brain_mask", "local.brain_mask")
        sha256[settings["brain_mask"]] = sha256sum(path)
    write_description(
        outputs.description,
        name=params.name,
        source=params.source,
        kind=settings["kind"],
        tr=settings["tr"],
        space=settings["space"],
        subjects=[str(s) for s in settings["subjects"]],
        labels=settings["labels"],
        sha256=sha256,
        provenance={"templates": settings, **({"bids": params.query} if params.query else {})},
    )


NODE = Node(
    name="describe_local",
    description="Node describe_local: write dataset.json for a lab's own data.",
    function=describe_local,
    outputs={"description": "dataset.json to write"},
    params={
        "name": Param("lab", "dataset name"),
        "settings": Param({}, "the dataset's 'local' config section", schema="local"),
        "source": Param("local", "local, or bids when the files were found by a BIDS query"),
        "query": Param(None, "the dataset's 'bids' config section (source bids), else null"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
