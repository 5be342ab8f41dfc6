"""Figures of the connectome stage.

Regions, matrices, glass-brain connectomes, group differences and
prediction accuracies.

Matrices are drawn with :func:`nilearn.plotting.plot_matrix` (region names
on the axes up to :data:`MAX_LABELLED` regions), connectomes with
:func:`nilearn.plotting.plot_connectome` at the regions' centres. Every
colour scale has a labelled colour bar.
"""

import textwrap

import numpy as np

from fmriflow.figures import plt, save_figure

#: Up to this many regions, matrices show the region names.
MAX_LABELLED = 40


def plot_regions(regions_img, kind, title, path):
    """Regions over the MNI template, one colour per region (``regions.tsv`` names them).

    Parameters
    ----------
    regions_img : nibabel.Nifti1Image
        3D labels or 4D maps.
    kind : {"labels", "maps"}
        Which of the two.
    title, path : str
        Figure title and file.
    """
    from nilearn import plotting

    figure = plt.figure(figsize=(10, 3.4))
    title = f"{title}; one colour per region"
    if kind == "maps":
        plotting.plot_prob_atlas(
            regions_img, figure=figure, draw_cross=False, colorbar=False, title=title
        )
    else:
        plotting.plot_roi(
            regions_img, figure=figure, draw_cross=False, title=title, cmap="tab20", colorbar=False
        )
    save_figure(figure, path)


def _draw_matrix(matrix, names, axes, title, label, vmax=None, cmap="RdBu_r"):
    from nilearn import plotting

    labels = names if len(names) <= MAX_LABELLED else False
    vmax = float(np.max(np.abs(matrix))) if vmax is None else vmax
    vmax = vmax or 1.0
    display = plotting.plot_matrix(
        matrix,
        labels=labels,
        axes=axes,
        vmin=-vmax,
        vmax=vmax,
        cmap=cmap,
        colorbar=False,
        title=None,
    )
    axes.set_title(textwrap.fill(title, 40), fontsize=9)
    colorbar = axes.figure.colorbar(display, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label(label, fontsize=8)
    if labels:
        axes.tick_params(labelsize=max(3, 8 - len(names) // 8))


def plot_matrices(matrices, names, title, path):
    """Several matrices side by side (one panel per item of ``matrices``).

    Parameters
    ----------
    matrices : list of (str, numpy.ndarray, str)
        ``(panel title, matrix, colour-bar label)``; diagonals are blanked.
    names : list of str
        Region names.
    """
    n = len(matrices)
    side = 4.6 if len(names) <= MAX_LABELLED else 3.8
    figure, axes = plt.subplots(1, n, figsize=(side * n, side), squeeze=False)
    for ax, (panel, matrix, label) in zip(axes[0], matrices, strict=True):
        shown = np.array(matrix, dtype=float)
        np.fill_diagonal(shown, 0.0)
        _draw_matrix(shown, names, ax, panel, label)
    figure.suptitle(textwrap.fill(title, 120), fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)


def _edge_colorbar(figure, rect, vmax, label, cmap="RdBu_r"):
    """A labelled colour bar for edges drawn with ``edge_vmin=-vmax, edge_vmax=vmax``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    axes = figure.add_axes(rect)
    mappable = ScalarMappable(norm=Normalize(-vmax, vmax), cmap=cmap)
    colorbar = figure.colorbar(mappable, cax=axes)
    colorbar.set_label(label, fontsize=8)
    colorbar.ax.tick_params(labelsize=7)


def _draw_glass(matrix, coords, axes, title, edge_threshold, vmax, cmap="RdBu_r"):
    """Edges of a symmetric matrix on the glass brain, nodes at the regions' centres."""
    from nilearn import plotting

    plotting.plot_connectome(
        matrix,
        np.asarray(coords, dtype=float),
        edge_threshold=edge_threshold,
        edge_vmin=-vmax,
        edge_vmax=vmax,
        edge_cmap=cmap,
        axes=axes,
        title=title,
        colorbar=False,
        node_size=12,
        node_color="k",
    )


def plot_connectome_glass(matrix, coords, title, path, edge_threshold="90%", label="edge weight"):
    """Strongest edges on the glass brain, nodes at the regions' centres.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_regions, n_regions)
        Symmetric edge weights (the diagonal is ignored).
    coords : numpy.ndarray, shape (n_regions, 3)
        Region centres in mm.
    title, path : str
        Figure title and file.
    edge_threshold : str or float
        Edges drawn: a percentile of the absolute weights, or a value.
    label : str
        What the colour bar shows.
    """
    shown = np.array(matrix, dtype=float)
    np.fill_diagonal(shown, 0.0)
    vmax = float(np.max(np.abs(shown))) or 1.0
    figure = plt.figure(figsize=(10, 3.6))
    brain = figure.add_axes([0.0, 0.0, 0.9, 0.88])
    _draw_glass(shown, coords, brain, None, edge_threshold, vmax)
    _edge_colorbar(figure, [0.92, 0.12, 0.015, 0.7], vmax, label)
    figure.suptitle(textwrap.fill(title, 110), fontsize=9)
    save_figure(figure, path)


def plot_group_difference(t_matrix, significant, names, coords, title, path, label="Welch t"):
    """Edge-wise t of the group difference: all edges, and the significant ones on the brain.

    Parameters
    ----------
    t_matrix : numpy.ndarray, shape (n_regions, n_regions)
        The t of every edge (symmetric).
    significant : numpy.ndarray of bool, same shape
        Edges that survive the correction.
    names : list of str
        Region names.
    coords : numpy.ndarray, shape (n_regions, 3)
        Region centres in mm.
    title, path : str
        Figure title and file.
    label : str
        What the colour bars show.
    """
    t_matrix = np.array(t_matrix, dtype=float)
    np.fill_diagonal(t_matrix, 0.0)
    shown = np.where(significant, t_matrix, 0.0)
    vmax = float(np.max(np.abs(t_matrix))) or 1.0
    figure = plt.figure(figsize=(13, 4.4))
    left = figure.add_axes([0.04, 0.1, 0.3, 0.8])
    _draw_matrix(t_matrix, names, left, "t, every edge", label, vmax=vmax)
    brain = figure.add_axes([0.38, 0.05, 0.55, 0.82])
    n_significant = int(np.triu(significant, 1).sum())
    _draw_glass(shown, coords, brain, f"{n_significant} significant edge(s)", None, vmax)
    _edge_colorbar(figure, [0.945, 0.15, 0.012, 0.65], vmax, f"{label}, significant edges")
    figure.suptitle(textwrap.fill(title, 140), fontsize=10)
    save_figure(figure, path)


def plot_prediction(table, title, path):
    """Accuracy per measure (mean and spread over folds) with chance and p-values.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per measure: ``measure``, ``accuracy``, ``std``, ``chance``,
        ``p_value``.
    """
    figure, axes = plt.subplots(figsize=(6, 4.2))
    x = np.arange(len(table))
    axes.bar(x, table["accuracy"], yerr=table["std"], color="#4c72b0", capsize=4, label="accuracy")
    for k, row in enumerate(table.itertuples()):
        axes.hlines(row.chance, k - 0.4, k + 0.4, colors="k", linestyles="--")
        text = f"{row.accuracy:.2f}" + (
            "" if row.p_value is None or row.p_value != row.p_value else f"\np={row.p_value:.3f}"
        )
        axes.text(k, min(row.accuracy + row.std + 0.03, 1.02), text, ha="center", fontsize=8)
    axes.plot([], [], "k--", label="chance (training majority, per fold)")
    axes.set_xticks(x, [m.replace("_", " ") for m in table["measure"]])
    axes.set_ylim(0, 1.32)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_ylabel("cross-validated accuracy (by subject)")
    axes.set_title(textwrap.fill(title, 60), fontsize=9)
    axes.legend(loc="upper center", ncol=2, fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
