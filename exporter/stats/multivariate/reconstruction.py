"""Data reconstruction error: how far a row lies from the reference's principal subspace.

After NannyML's data reconstruction drift. Rows are encoded (:mod:`.encoding`), then

* fit: principal components of the reference matrix ``X`` (centred on its column means
  ``mu``), keeping the fewest components ``V`` (``k x d``, orthonormal rows) whose
  explained variance reaches ``variance_share`` of the total (sklearn's
  ``PCA(n_components=variance_share, svd_solver="full")``);
* a row ``x``'s error: ``|| (x - mu) - (x - mu) V^T V ||_2``, the Euclidean distance
  between the row and its projection back from the ``k`` components, in the units of
  the encoded space (reference standard deviations for numeric columns, 0/1 for
  one-hot ones).

A reference with no variance at all keeps no component; a row's error is then its
distance from the reference mean. The error is 0 for a row lying in the subspace and
grows when the features stop relating as they did in the reference, even if each one
alone looks as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

#: NannyML's default share of the reference variance the components keep.
DEFAULT_VARIANCE_SHARE = 0.65


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """The fitted subspace: ``mean`` (``d``), ``components`` (``k x d``) and the share of
    the reference variance they explain."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_share: float

    def errors(self, matrix: np.ndarray) -> np.ndarray:
        """Each row's reconstruction error (module notes), a float64 vector."""
        centred = np.asarray(matrix, dtype=np.float64) - self.mean
        residual = centred - (centred @ self.components.T) @ self.components
        return np.sqrt(np.einsum("ij,ij->i", residual, residual))


def fit_reconstruction(
    matrix: np.ndarray,
    variance_share: float = DEFAULT_VARIANCE_SHARE,
    components: int | None = None,
) -> Reconstruction:
    """Fit the subspace on an encoded reference ``matrix`` (at least 2 rows).

    ``components``, when given, keeps exactly that many components instead of choosing
    by ``variance_share`` (cross-fitting keeps the full fit's count, so that a fold does
    not stop one component short of the share). Raises ValueError when
    ``variance_share`` is not in (0, 1) or there are fewer than 2 rows.
    """
    if not 0.0 < variance_share < 1.0:
        raise ValueError(f"variance_share must be in (0, 1), got {variance_share!r}")
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("the reconstruction needs a 2-D matrix of at least 2 rows")
    mean = x.mean(axis=0)
    if components == 0 or not np.any(x.var(axis=0) > 0):
        return Reconstruction(
            mean=mean, components=np.zeros((0, x.shape[1])), explained_variance_share=0.0
        )
    keep: float | int = variance_share if components is None else min(components, *x.shape)
    pca = PCA(n_components=keep, svd_solver="full").fit(x)
    return Reconstruction(
        mean=pca.mean_,
        components=pca.components_,
        explained_variance_share=float(pca.explained_variance_ratio_.sum()),
    )
