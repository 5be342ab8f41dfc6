"""Group decompositions of resting-state data: group ICA and dictionary learning.

The model is CanICA (Varoquaux et al. 2010), as in section 6 of Abraham et
al. (2014), cut into the two stages the workflow runs as separate jobs:

1. **Per-subject reduction** (:func:`reduce_subject`), one job per subject:
   the principal components of the subject's cleaned ``(time, voxel)``
   matrix (exact when the scan is short, otherwise a seeded randomized
   SVD). The result, ``S[:, None] * Vt`` (``n_subject_components`` rows, one
   column per voxel, float32), is saved as ``.npy`` and cached, so adding
   subjects or changing the group settings never redoes it. We recommend
   ``n_subject_components = 3 * n_components`` (nilearn keeps
   ``n_components``): on the simulations it recovers the networks better
   (see ``tests/test_decomposition.py``) at little cost.
2. **Group job** (:func:`group_ica`): the reductions are stacked in time,
   each row scaled to unit norm (the 'canonical correlation' step: every
   subject component counts the same), reduced again to ``n_components``
   by an SVD (:func:`group_pca`: exact for few rows, randomized and seeded
   otherwise), and the resulting spatial basis is rotated by spatial
   FastICA. FastICA is restarted ``n_init`` times with different seeds on
   that one basis and the *consensus* run kept (the one agreeing best with
   the others). Maps are sign-flipped to positive skewness, ordered by the
   variance they explain, and optionally thresholded
   (:func:`threshold_maps`, CanICA's semantics).

``model='concat'`` is the paper's simple alternative: skip the per-subject
PCA, z-score each subject's matrix and concatenate them in time. A second
method, :func:`dict_learning`, learns sparse maps by online dictionary
learning initialised from the group ICA maps (the approach of nilearn's
``DictLearning``, Mensch et al. 2016).

What is ours and what is not
----------------------------
* The SVDs (:func:`fmriflow.streaming.truncated_svd`, used by :func:`reduce_subject` and
  :func:`group_pca`) are our own and never build the stacked matrix: they
  read the subjects one at a time from memory-mapped ``.npy`` files, by
  chunks. A seeded randomized subspace iteration (Halko et al. 2011; memory
  ``n_voxels x (n_components + 10)`` floats whatever the number of
  subjects) or, when there are few rows (a subject's scan), the exact
  eigendecomposition of the small Gram matrix, which is then cheaper.
  For hundreds of subjects, ``solver="migp"`` (:func:`fmriflow.streaming.migp`,
  MIGP of Smith et al. 2014) reads each subject once into a running matrix
  of a few times ``n_components`` rows, so that the group job's memory does
  not depend on the number of subjects and its time grows linearly.
  nilearn's ``CanICA`` loads each 4D image, stacks every subject's reduced
  data in memory and calls scikit-learn's SVDs.
* FastICA (``sklearn.decomposition.fastica``) and dictionary learning
  (``sklearn.decomposition.dict_learning_online``) are scikit-learn's.
* Stability (:func:`stability`): nilearn runs FastICA ten times and keeps
  the sparsest result without saying how much the runs agreed; we run the
  group stage with several seeds (optionally on bootstrap samples of the
  subjects) and report, per component of the reference run, the best-match
  absolute spatial correlation with each other run's components (mean over
  runs).
* :func:`match_components` scores estimated maps against ground truth by a
  one-to-one Hungarian matching (``scipy.optimize.linear_sum_assignment``)
  on absolute spatial correlation; :func:`component_table` gives one row of
  statistics per component.
* :func:`fmriflow.group_space.check_common_space` and :func:`check_dimensions` stop bad input
  with one :class:`~fmriflow.errors.InputError` message.

Every map is a vector over the mask's voxels in numpy's C order, like the
columns of ``clean.npy``: :func:`fmriflow.masking.unmask` turns maps into a
4D image.
"""

from fmriflow.decomposition.dictionary import dict_learning
from fmriflow.decomposition.ica import Decomposition, explained_variance, group_ica, threshold_maps
from fmriflow.decomposition.matching import (
    Matching,
    match_components,
    reproducibility,
    spatial_correlation,
)
from fmriflow.decomposition.pca import (
    check_dimensions,
    group_pca,
    reduce_subject,
    subject_components,
)
from fmriflow.decomposition.stability import Stability, stability
from fmriflow.decomposition.tables import component_table

__all__ = [
    "Decomposition",
    "Matching",
    "Stability",
    "check_dimensions",
    "component_table",
    "dict_learning",
    "explained_variance",
    "group_ica",
    "group_pca",
    "match_components",
    "reduce_subject",
    "reproducibility",
    "spatial_correlation",
    "stability",
    "subject_components",
    "threshold_maps",
]
