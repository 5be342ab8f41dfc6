"""Node describe_local: write dataset.json for a lab's own data.

Records TR, space, kind, subjects and the source templates, with the sha256
of every source file, and copies the dataset brain mask if one is given.
"""

from pathlib import Path

from fmriflow.dataset import BRAIN_MASK, write_description
from fmriflow.errors import check_file_exists
from fmriflow.fetch import sha256sum
from fmriflow.io import load_nifti
from fmriflow.local import check_source_file, copy_source, subject_files
from fmriflow.node import Node, Param, run


def describe_local(inputs, outputs, params, threads):
    settings = params.settings
    sha256 = {}
    for subject in settings["subjects"]:
        for key, paths in subject_files(settings, subject).items():
            for path in paths:
                sha256[path] = sha256sum(check_source_file(path, key, settings[key]))
    # The dataset folder holds a brain mask exactly when the config gives one.
    brain_copy = Path(outputs.description).parent / BRAIN_MASK
    if settings.get("brain_mask"):
        brain_mask = check_file_exists(
            settings["brain_mask"], "dataset brain mask (local.brain_mask)"
        )
        load_nifti(brain_mask, "dataset brain mask", ndim=3)
        sha256[settings["brain_mask"]] = sha256sum(brain_mask)
        copy_source(brain_mask, brain_copy)
    elif brain_copy.exists():
        brain_copy.unlink()
    write_description(
        outputs.description,
        name=params.name,
        source="local",
        kind=settings["kind"],
        tr=settings["tr"],
        space=settings["space"],
        subjects=[str(s) for s in settings["subjects"]],
        labels=settings.get("labels") or [],
        sha256=sha256,
        provenance={"templates": settings},
    )
    return [brain_copy] if brain_copy.exists() else []


NODE = Node(
    name="describe_local",
    description="Node describe_local: write dataset.json for a lab's own data.",
    function=describe_local,
    outputs={"description": "dataset.json to write"},
    params={
        "name": Param("lab", "dataset name"),
        "settings": Param(None, "the dataset's 'local' config section"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
