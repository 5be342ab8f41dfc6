"""Figures: views chosen from the image's shape."""

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np

from fmriflow import figures


def test_a_single_slice_is_shown_in_its_own_plane_only(tmp_path):
    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [-15.0, -18.0, 8.0]
    data = np.zeros((10, 12, 1), dtype=np.float32)
    data[4, 5, 0] = 2.0
    volume = nib.Nifti1Image(data, affine)
    mode, cuts = figures.display_views(volume)
    assert mode == "z" and cuts == [8.0]
    path = tmp_path / "slice.png"
    figures.plot_maps(volume, None, ["one slice"], path, colorbar_label="weight")
    assert path.stat().st_size > 0


def test_the_thin_axis_is_found_through_the_affine():
    """A slab thin along its first voxel axis, which the affine sends to world y."""
    affine = np.array([[0, 2.0, 0, 0], [3.0, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    data = np.zeros((2, 9, 9), dtype=np.float32)
    data[1, 4, 4] = 1.0
    mode, cuts = figures.display_views(nib.Nifti1Image(data, affine))
    assert mode == "y" and cuts == [3.0]


def test_a_whole_volume_gets_three_views_through_its_peak():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.zeros((8, 9, 10), dtype=np.float32)
    data[3, 4, 5] = -5.0
    mode, cuts = figures.display_views(nib.Nifti1Image(data, affine))
    assert mode == "ortho" and cuts == (6.0, 8.0, 10.0)


def test_the_component_overlay_has_a_title_and_no_meaningless_colour_bar(tmp_path, monkeypatch):
    from nilearn import plotting

    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    maps = np.zeros((12, 12, 12, 2), dtype=np.float32)
    maps[3:6, 3:6, 3:6, 0] = 1.0
    maps[7:10, 7:10, 7:10, 1] = 1.0
    image = nib.Nifti1Image(maps, affine)
    saved = []
    monkeypatch.setattr(figures, "save_figure", lambda figure, path: saved.append(figure))
    figures.plot_overlay(image, None, tmp_path / "overlay.png", "CanICA, 2 components")
    ours = saved[0]
    assert ours._suptitle.get_text() == "CanICA, 2 components"
    # No colour bar at all (nilearn before 0.14 drew the background's grey one).
    assert not [axes for axes in ours.axes if getattr(axes, "_colorbar", None) is not None]
    # The same views as nilearn's own figure.
    reference = plt.figure()
    plotting.plot_prob_atlas(image, figure=reference, draw_cross=False, colorbar=False)
    views = [axes for axes in reference.axes if getattr(axes, "_colorbar", None) is None]
    assert len(ours.axes) == len(views)
    plt.close("all")


def test_a_long_group_title_fits_inside_a_narrow_figure(tmp_path, monkeypatch):
    """Three subjects give the narrowest figure; the group test's title is the longest."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "subject": ["01", "02", "03"],
            "accuracy": [0.67, 0.66, 0.64],
            "accuracy_std": [0.03, 0.04, 0.04],
            "chance": [0.125] * 3,
        }
    )
    title = (
        "all_categories: mean accuracy 0.66 vs chance 0.125 (t=65.02, one-sided "
        "p=0.000118, n=3); prevalence: global null p=0.001, gamma0 >= 0.56 (at most 0.99)"
    )
    saved = []
    monkeypatch.setattr(figures, "save_figure", lambda figure, path: saved.append(figure))
    figures.plot_group_accuracies(table, tmp_path / "accuracies.png", title)
    figure = saved[0]
    text = figure.axes[0].title
    box = text.get_window_extent(figure.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= figure.bbox.x1 and box.y1 <= figure.bbox.y1
    assert " ".join(text.get_text().split()) == title
    plt.close("all")


def test_the_mni_template_is_nileans_own_file():
    from nilearn.datasets.struct import MNI152_FILE_PATH

    assert figures.mni_template_path() == MNI152_FILE_PATH
