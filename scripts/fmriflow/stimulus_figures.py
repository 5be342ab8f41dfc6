"""Figures of the encoding and reconstruction stages: images on the stimulus grid.

Receptive fields, true and reconstructed images, accuracy per pixel and the
paper's Table 1 as a plot. Written with matplotlib (Agg backend, through
:mod:`fmriflow.figures`), each as one PNG with labelled colour bars.
"""

import textwrap

import numpy as np

from fmriflow.figures import plt, save_figure


def plot_receptive_fields(fields, voxels, shape, title, path):
    """Ridge and LassoLarsCV receptive fields of the best-predicted voxels.

    Parameters
    ----------
    fields : pandas.DataFrame
        One row per voxel and model (``voxel``, ``rank``, ``model``, then
        weights ``w_0`` …, row-major on the grid).
    voxels : pandas.DataFrame
        The voxel table (``r2``, ``i``, ``j``, ``k`` and, if fitted,
        ``prf_row``, ``prf_col``; ``true_prf_row``, ``true_prf_col`` for
        simulated data).
    shape : tuple of int
        The stimulus grid.
    title : str
        Figure title.
    path : str or pathlib.Path
        PNG to write.
    """
    ranks = sorted(fields["rank"].unique())
    models = ["ridge", "lasso"]
    weights = [c for c in fields.columns if c.startswith("w_")]
    figure, axes = plt.subplots(
        len(models), len(ranks), figsize=(2.1 * len(ranks) + 1.2, 4.6), squeeze=False
    )
    for col, rank in enumerate(ranks):
        for row, model in enumerate(models):
            record = fields[(fields["rank"] == rank) & (fields["model"] == model)].iloc[0]
            voxel = voxels.iloc[int(record["voxel"])]
            image = record[weights].to_numpy(dtype=float).reshape(shape)
            limit = float(np.max(np.abs(image))) or 1.0
            ax = axes[row, col]
            shown = ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
            _mark_centres(ax, voxel)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(
                    f"voxel ({voxel['i']},{voxel['j']},{voxel['k']})\nR² {voxel['r2']:.2f}",
                    fontsize=8,
                )
            if col == 0:
                ax.set_ylabel("ridge" if model == "ridge" else "LassoLarsCV", fontsize=9)
            figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="weight")
    figure.suptitle(
        textwrap.fill(
            f"{title}: receptive fields of the best-predicted voxels "
            "(× fitted pRF centre" + (", ○ planted" if "true_prf_row" in voxels else "") + ")",
            90,
        ),
        fontsize=9,
    )
    figure.tight_layout()
    save_figure(figure, path)


def _mark_centres(ax, voxel):
    if "prf_row" in voxel and np.isfinite(voxel["prf_row"]):
        ax.plot(voxel["prf_col"], voxel["prf_row"], "x", color="k", ms=7, mew=2)
    if "true_prf_row" in voxel and np.isfinite(voxel["true_prf_row"]):
        ax.plot(voxel["true_prf_col"], voxel["true_prf_row"], "o", mfc="none", color="g", ms=9)


def plot_reconstructions(true_images, rows, labels, title, path):
    """True images (top row) above their reconstructions (one row per estimate).

    Parameters
    ----------
    true_images : numpy.ndarray, shape (n_images, n_rows, n_cols)
        The images shown.
    rows : list of numpy.ndarray
        Reconstructions, each shaped like ``true_images`` (values in [0, 1]).
    labels : list of str
        A name per row of reconstructions.
    title : str
        Figure title.
    path : str or pathlib.Path
        PNG to write.
    """
    n = len(true_images)
    figure, axes = plt.subplots(
        1 + len(rows), n, figsize=(1.2 * n + 1.6, 1.3 * (1 + len(rows)) + 0.6), squeeze=False
    )
    for index in range(n):
        for row, (images, label) in enumerate(
            zip([true_images, *rows], ["shown", *labels], strict=True)
        ):
            ax = axes[row, index]
            shown = ax.imshow(images[index], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if index == 0:
                ax.set_ylabel(label, fontsize=8)
    figure.colorbar(shown, ax=axes, fraction=0.02, pad=0.02, label="pixel contrast (on = 1)")
    figure.suptitle(textwrap.fill(title, 90), fontsize=9)
    save_figure(figure, path)


def plot_pixel_accuracy(maps, names, chance, title, path):
    """Test accuracy of every pixel, one grid per scale (and combined).

    Parameters
    ----------
    maps : numpy.ndarray, shape (n_maps, n_rows, n_cols)
        Accuracy per pixel.
    names : list of str
        A name per map.
    chance : float
        Chance accuracy (centre of the colour scale).
    title : str
        Figure title.
    path : str or pathlib.Path
        PNG to write.
    """
    figure, axes = plt.subplots(1, len(maps), figsize=(2.3 * len(maps) + 1.4, 2.9), squeeze=False)
    for ax, image, name in zip(axes[0], maps, names, strict=True):
        shown = ax.imshow(image, cmap="RdBu_r", vmin=chance - 0.5, vmax=chance + 0.5)
        ax.set_title(f"{name}\nmean {np.mean(image):.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(
        shown, ax=axes, fraction=0.03, pad=0.02, label=f"test accuracy (chance {chance:.2f})"
    )
    figure.suptitle(textwrap.fill(title, 90), fontsize=9)
    save_figure(figure, path)


def plot_model_table(table, title, path):
    """The paper's Table 1 as lines: pixel-averaged accuracy against C, per classifier.

    Parameters
    ----------
    table : pandas.DataFrame
        ``classifier``, ``C``, ``accuracy_mean``, ``accuracy_std``, ``chance``.
    title : str
        Figure title.
    path : str or pathlib.Path
        PNG to write.
    """
    figure, axes = plt.subplots(figsize=(6, 3.8))
    for name, rows in table.groupby("classifier", sort=False):
        axes.errorbar(
            rows["C"], rows["accuracy_mean"], yerr=rows["accuracy_std"], marker="o", label=name
        )
    axes.axhline(float(table["chance"].iloc[0]), color="k", ls="--", lw=0.8, label="chance")
    axes.set_xscale("log")
    axes.set_xlabel("C (inverse penalty)")
    axes.set_ylabel("pixel-averaged accuracy\n(cross-validated by run)")
    axes.set_title(textwrap.fill(title, 70), fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
