"""Node encode: voxel-wise encoding models of one subject for one analysis.

Pairs every training volume with the stimulus shown ``lag_volumes`` before
it, fits ridge regression from the stimulus features to every voxel with
the penalty chosen per voxel by an inner cross-validation by run, and
scores held-out runs (R², correlation) against a null of circularly shifted
stimuli (per-voxel p-values, a family-wise threshold). A model fitted on
all training runs predicts the test runs; every voxel gets a Gaussian pRF
fit, and the best-predicted voxels their receptive fields (ridge weights
and LassoLarsCV). For simulated data the planted pRFs are compared.
"""

import logging

import nibabel as nib
import numpy as np
import pandas as pd

from fmriflow import encoding, entries, stimulus_figures
from fmriflow.dataset import read_description
from fmriflow.figures import plot_maps
from fmriflow.io import save_nifti, write_json, write_table
from fmriflow.masking import unmask
from fmriflow.node import Node, Param, run
from fmriflow.stimuli import load_stimulus_analysis, split_pairs, stimulus_grid

logger = logging.getLogger("fmriflow.encode")


def encode(inputs, outputs, params, threads):
    entry = params.analysis
    shape = stimulus_grid(read_description(inputs.description))
    data = load_stimulus_analysis(
        inputs.clean, inputs.events, inputs.stimuli, inputs.mask, shape, inputs.get("roi")
    )
    train = split_pairs(data.stimuli, entry["lag_volumes"], "train", entry["include_rest"])
    X, Y = data.stimuli.features[train.stimulus_rows], data.voxels(train.bold_rows)
    alphas = np.asarray(entry["alphas"], dtype=float)
    outer, inner = (
        entries.cross_validation(entry),
        entries.inner_cross_validation(entry, train.runs),
    )
    result = encoding.cross_validated_encoding(X, Y, train.runs, alphas, outer, inner)
    null = encoding.null_scores(
        X,
        Y,
        train.runs,
        alphas,
        outer,
        inner,
        entry["permutations"],
        entry["seed"],
        entry["min_shift"],
    )
    pvalues, threshold = encoding.permutation_pvalues(result.r2, null, 1 - entry["fwe_alpha"])
    voxels = voxel_table(data, X, Y, train, entry, alphas, result, pvalues, threshold, shape)
    truth = planted_fields(inputs.get("truth"), data)
    if truth is not None:
        voxels = pd.concat([voxels, truth], axis=1)
    fields = receptive_fields(X, Y, train.runs, voxels, entry, alphas)
    summary = summarize(entry, params.subject, result, null, threshold, voxels, alphas)
    write_table(voxels, outputs.voxels)
    write_table(fold_table(result, train.runs), outputs.folds)
    write_table(fields, outputs.receptive_fields)
    write_maps(data, voxels, outputs)
    title = f"{entry['name']}, sub-{params.subject}"
    plot_maps(
        nib.load(outputs.r2),
        nib.load(inputs.background),
        [f"{title}: cross-validated R² (FWE threshold {threshold:.3f})"],
        outputs.r2_png,
        symmetric=False,
        threshold=max(threshold, 1e-6),
        vmin=0,
        colorbar_label="cross-validated R²",
    )
    stimulus_figures.plot_receptive_fields(
        fields, voxels, shape, title, outputs.receptive_fields_png
    )
    write_json(summary, outputs.summary)
    logger.info(
        "R² median %.3f, %d of %d voxels above the FWE threshold %.3f (null mean R² %.3f)",
        summary["r2_median"],
        summary["n_significant"],
        summary["n_voxels"],
        threshold,
        summary["chance"]["r2_null_mean"],
    )


def voxel_table(data, X, Y, train, entry, alphas, result, pvalues, threshold, shape):
    """One row per voxel: position, scores, penalty, test-run scores and fitted pRF."""
    ijk = np.argwhere(data.mask)[data.columns]
    chosen = encoding.select_alphas(
        X, Y, train.runs, alphas, entries.inner_cross_validation(entry, train.runs)
    )
    table = pd.DataFrame(
        {
            "i": ijk[:, 0],
            "j": ijk[:, 1],
            "k": ijk[:, 2],
            "r2": result.r2,
            "correlation": result.correlation,
            "pvalue": pvalues,
            "significant": result.r2 > threshold,
            "alpha": alphas[chosen],
        }
    )
    test = split_pairs(data.stimuli, entry["lag_volumes"], "test", entry["include_rest"])
    coef, intercept = encoding.ridge_coefficients(X, Y, alphas[chosen])
    X_test, Y_test = data.stimuli.features[test.stimulus_rows], data.voxels(test.bold_rows)
    predicted = X_test @ coef + intercept
    table["test_r2"] = encoding.r2_columns(Y_test, predicted)
    table["test_correlation"] = encoding.correlation_columns(Y_test, predicted)
    if shape is not None:
        prf = encoding.fit_prf(X, Y, shape)
        table[["prf_row", "prf_col", "prf_size", "prf_correlation"]] = prf[
            ["row", "col", "size", "correlation"]
        ].to_numpy()
    return table


def planted_fields(truth_path, data):
    """The simulator's pRF of every analysed voxel (NaN where none), or None."""
    if truth_path is None:
        return None
    from fmriflow.io import load_nifti

    truth = np.asanyarray(load_nifti(truth_path, "planted receptive fields", ndim=4).dataobj)
    planted = truth[data.mask][data.columns]
    return pd.DataFrame(planted, columns=["true_prf_row", "true_prf_col", "true_prf_size"])


def receptive_fields(X, Y, runs, voxels, entry, alphas):
    """Ridge and LassoLarsCV weights of the best-predicted voxels, one row per voxel and model."""
    best = np.argsort(-voxels["r2"].to_numpy(), kind="stable")[: entry["receptive_fields"]]
    coef, _ = encoding.ridge_coefficients(X, Y[:, best], voxels["alpha"].to_numpy()[best])
    rows = []
    n_splits = min(entry["inner_folds"], len(np.unique(runs)))
    for rank, voxel in enumerate(best):
        lasso = encoding.lasso_receptive_field(X, Y[:, voxel], runs, n_splits=n_splits)
        for model, weights in (("ridge", coef[:, rank]), ("lasso", lasso)):
            rows.append(
                {"voxel": int(voxel), "rank": rank + 1, "model": model}
                | dict(zip([f"w_{f}" for f in range(X.shape[1])], weights.tolist(), strict=True))
            )
    return pd.DataFrame(rows)


def fold_table(result, runs):
    """One row per outer fold: held-out runs, sizes, mean R² over voxels, median penalty."""
    return pd.DataFrame(
        [
            {
                "fold": fold,
                "test_runs": " ".join(str(r) for r in np.unique(runs[test])),
                "n_train": len(train),
                "n_test": len(test),
                "r2_mean": float(np.mean(result.fold_r2[fold])),
                "alpha_median": float(np.median(result.alphas[result.alpha_index[fold]])),
            }
            for fold, (train, test) in enumerate(result.folds)
        ]
    )


def summarize(entry, subject, result, null, threshold, voxels, alphas):
    """Scores with their chance levels, and the planted pRFs' recovery when known."""
    summary = {
        "analysis": entry["name"],
        "subject": subject,
        "n_voxels": len(voxels),
        "n_train_volumes": int(len(result.predictions)),
        "n_folds": len(result.folds),
        "lag_volumes": entry["lag_volumes"],
        "r2_mean": float(np.mean(result.r2)),
        "r2_median": float(np.median(result.r2)),
        "r2_max": float(np.max(result.r2)),
        "correlation_median": float(np.median(result.correlation)),
        "test_r2_median": float(np.median(voxels["test_r2"])),
        "n_significant": int(voxels["significant"].sum()),
        "fwe_threshold": float(threshold),
        "fwe_alpha": entry["fwe_alpha"],
        "chance": {
            "r2_null_mean": float(np.mean(null)),
            "r2_null_95": float(np.quantile(null, 0.95)),
            "correlation": 0.0,
            "null": "stimuli circularly shifted within each run "
            f"(offsets of at least {entry['min_shift']} volumes), {len(null)} shifts",
        },
        "alphas": {str(a): int((voxels["alpha"] == a).sum()) for a in alphas},
    }
    if "true_prf_row" in voxels:
        summary["truth"] = truth_recovery(voxels)
    return summary


def truth_recovery(voxels):
    """How well the fitted pRFs recover the planted ones, and the no-pRF voxels' scores."""
    planted = voxels["true_prf_row"].notna()
    found = planted & voxels["significant"]
    error = np.hypot(
        voxels["prf_row"] - voxels["true_prf_row"], voxels["prf_col"] - voxels["true_prf_col"]
    )
    return {
        "n_planted": int(planted.sum()),
        "n_planted_significant": int(found.sum()),
        "prf_centre_error_median": float(np.median(error[found])) if found.any() else None,
        "prf_centre_error_90": float(np.quantile(error[found], 0.9)) if found.any() else None,
        "n_without_prf": int((~planted).sum()),
        "without_prf_significant": int((~planted & voxels["significant"]).sum()),
        "without_prf_p_below_05": float(np.mean(voxels["pvalue"][~planted] < 0.05))
        if (~planted).any()
        else None,
    }


def write_maps(data, voxels, outputs):
    """The per-voxel scores as images on the preprocessing mask's grid."""

    def full(values):
        column = np.full(int(data.mask.sum()), np.nan, dtype=np.float32)
        column[data.columns] = values
        return np.nan_to_num(column, nan=0.0)

    for name in ("r2", "correlation"):
        save_nifti(
            unmask(full(voxels[name]), data.mask), data.affine, outputs[name], dtype=np.float32
        )
    pvalues = np.ones(int(data.mask.sum()), dtype=np.float32)
    pvalues[data.columns] = voxels["pvalue"]
    save_nifti(unmask(pvalues, data.mask), data.affine, outputs.pvalues, dtype=np.float32)
    prf = np.stack([full(voxels.get(k, np.nan)) for k in ("prf_row", "prf_col", "prf_size")])
    save_nifti(unmask(prf, data.mask), data.affine, outputs.prf, dtype=np.float32)


NODE = Node(
    name="encode",
    description="Node encode: voxel-wise encoding models of one subject for one analysis.",
    function=encode,
    inputs=entries.STIMULUS_NODE_INPUTS
    | {
        "background": "the figure background: anat.nii.gz, or mean.nii.gz without anatomy",
        "truth": "truth.nii.gz of simulated data (planted pRF row, column, size)",
    },
    outputs={
        "voxels": "voxels.tsv to write",
        "folds": "folds.tsv to write",
        "summary": "summary.json to write",
        "r2": "r2.nii.gz to write",
        "correlation": "correlation.nii.gz to write",
        "pvalues": "pvalues.nii.gz to write",
        "prf": "prf.nii.gz to write (fitted pRF row, column, size)",
        "receptive_fields": "receptive_fields.tsv to write",
        "r2_png": "r2.png to write",
        "receptive_fields_png": "receptive_fields.png to write",
    },
    params={
        "analysis": Param(
            None, "the analysis' config entry (a mapping, see $defs/encoding)", schema="encoding"
        ),
        "subject": Param("01", "subject label", type=str),
    },
    optional_inputs=("roi", "truth"),
)

if __name__ == "__main__":
    run(NODE, globals().get("snakemake"))
