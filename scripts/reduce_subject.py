"""Node reduce_subject: one subject's principal components, cached for group analyses.

The first, per-subject stage of CanICA and of clustering: a (seeded) PCA of
the subject's cleaned (time x voxel) matrix, kept as the components scaled
by their singular values. A cohort of hundreds of subjects is a wide layer
of small, independent jobs; the group jobs read only these reductions.
"""

from fmriflow.decomposition import reduce_subject as reduce
from fmriflow.io import load_matrix, save_npy
from fmriflow.node import Node, Param, run


def reduce_subject(inputs, outputs, params, threads):
    matrix = load_matrix(inputs.clean, "cleaned data")
    save_npy(reduce(matrix, int(params.n_components), seed=params.seed), outputs.reduced)


NODE = Node(
    name="reduce_subject",
    description="Node reduce_subject: one subject's principal components, cached for group "
    "analyses.",
    function=reduce_subject,
    inputs={"clean": "the subject's clean.npy"},
    outputs={"reduced": "pca_{n}.npy to write (components x voxels)"},
    params={
        "n_components": Param(30, "components kept"),
        "seed": Param(0, "seed of the randomized SVD"),
    },
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
