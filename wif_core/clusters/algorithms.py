"""Clustering and 2-D maps, all seeded: k-means with k chosen by silhouette, HDBSCAN, PCA and UMAP.

High-dimensional spaces (a 576-wide residual stream, thousands of SAE features) are first
scaled and reduced by PCA to at most ``REDUCED_DIMS`` dimensions: k-means and silhouettes
are then fast and less dominated by noise dimensions, and HDBSCAN, whose density estimate
fails in high dimensions, works on the first ``HDBSCAN_DIMS`` components only.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from wif_core.clusters import MAPS
from wif_core.errors import InputError
from wif_core.heavy import heavy_imports

log = logging.getLogger(__name__)

Scale = Literal["standard", "l2", "none"]
REDUCED_DIMS = 50
HDBSCAN_DIMS = 5
K_MAX = 10  # the largest k the silhouette search tries
K_LIMIT = 50  # the largest k a user may ask for
SILHOUETTE_SAMPLE = 2000  # silhouettes on at most this many items: O(n²) distances otherwise
UMAP_EPOCHS = 200  # UMAP's own choice for large data; its 500 for small data triples the time for little gain


@dataclass
class Reducer:
    """Scaling then PCA, fitted on one set of rows and applied to others (train → test)."""

    scale: Scale
    scaler_: StandardScaler | None = None
    pca_: PCA | None = None

    def fit(self, X: np.ndarray, seed: int = 0, dims: int = REDUCED_DIMS) -> Reducer:
        X = self._scaled(np.asarray(X, dtype=np.float64), fit=True)
        n_comp = min(dims, X.shape[0] - 1, X.shape[1])
        if X.shape[1] > dims and n_comp >= 2:
            self.pca_ = PCA(n_components=n_comp, random_state=seed, svd_solver="auto").fit(X)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._scaled(np.asarray(X, dtype=np.float64), fit=False)
        return self.pca_.transform(X) if self.pca_ is not None else X

    def _scaled(self, X: np.ndarray, fit: bool) -> np.ndarray:
        if self.scale == "standard":
            if fit:
                self.scaler_ = StandardScaler().fit(X)
            assert self.scaler_ is not None
            return self.scaler_.transform(X)
        if self.scale == "l2":
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            return X / np.where(norms > 0, norms, 1.0)
        return X


def reduce(X: np.ndarray, scale: Scale = "standard", seed: int = 0, dims: int = REDUCED_DIMS) -> np.ndarray:
    """``X`` scaled and, when wider than ``dims``, projected on its first ``dims`` principal components."""
    return Reducer(scale).fit(X, seed, dims).transform(X)


def check_k(k: int, n: int, what: str = "items") -> None:
    """Refuse a k that cannot be fitted on ``n`` items, in one line naming the fix."""
    if n < 3:
        raise InputError(f"clustering needs at least 3 {what}; there are {n} (collect more items, or use --mode all)")
    if k < 2 or k > K_LIMIT:
        raise InputError(
            f"--k {k} is out of range: use 2..{min(K_LIMIT, n - 1)}, or leave --k out to choose by silhouette"
        )
    if k >= n:
        raise InputError(
            f"--k {k} asks for as many clusters as there are {what} ({n}): use 2..{n - 1}, "
            "or leave --k out to choose by silhouette"
        )


def _silhouette(Z: np.ndarray, labels: np.ndarray, seed: int) -> float:
    if len(set(labels.tolist())) < 2:
        return float("nan")
    sample = min(len(Z), SILHOUETTE_SAMPLE)
    return float(silhouette_score(Z, labels, sample_size=sample if sample < len(Z) else None, random_state=seed))


def kmeans(Z: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means labels ``[n]`` and centroids ``[k, d]`` (k-means++ starts, 4 restarts, seeded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate points: fewer distinct clusters than k
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(Z)
    return km.labels_.astype(int), km.cluster_centers_


@dataclass
class KChoice:
    """The k that k-means used, how it was chosen, and the silhouette of every k tried."""

    k: int
    chosen_by: str  # "silhouette" or "user"
    silhouettes: dict[int, float]
    labels: np.ndarray
    centroids: np.ndarray


def kmeans_auto(Z: np.ndarray, k: int | None = None, seed: int = 0, k_max: int = K_MAX) -> KChoice:
    """k-means with the user's k, or with the k in 2..k_max of the best silhouette (ties: the smaller k)."""
    n = len(Z)
    if k is not None:
        check_k(k, n)
        labels, centroids = kmeans(Z, k, seed)
        return KChoice(k, "user", {k: _silhouette(Z, labels, seed)}, labels, centroids)
    if n < 3:
        check_k(2, n)
    best: KChoice | None = None
    best_score = -np.inf
    scores: dict[int, float] = {}
    for kk in range(2, min(k_max, n - 1) + 1):
        labels, centroids = kmeans(Z, kk, seed)
        scores[kk] = _silhouette(Z, labels, seed)
        if best is None or scores[kk] > best_score:  # NaN (one distinct point) never wins
            best, best_score = KChoice(kk, "silhouette", scores, labels, centroids), scores[kk]
    assert best is not None
    return best


def hdbscan(Z: np.ndarray, min_cluster_size: int | None = None, dims: int = HDBSCAN_DIMS) -> np.ndarray:
    """HDBSCAN labels on the first ``dims`` columns of ``Z``; ``-1`` marks noise (deterministic: no seed needed)."""
    n = len(Z)
    if n < 3:
        check_k(2, n)
    size = int(min_cluster_size) if min_cluster_size else max(5, n // 25)
    if size < 2 or size > n:
        raise InputError(f"--min-cluster-size {size} is out of range for {n} items: use 2..{n}")
    return HDBSCAN(min_cluster_size=size, copy=True).fit(Z[:, :dims]).labels_.astype(int)


def centroids_of(Z: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each cluster's mean point (noise, ``-1``, included as its own group)."""
    return {int(c): Z[labels == c].mean(0) for c in np.unique(labels)}


def nearest(Z: np.ndarray, ref: np.ndarray, ref_labels: np.ndarray) -> np.ndarray:
    """The label of each row's nearest reference row (1-NN label transfer), in blocks to bound memory."""
    out = np.empty(len(Z), dtype=int)
    sq = (ref**2).sum(1)
    for start in range(0, len(Z), 1024):
        block = Z[start : start + 1024]
        d = sq[None, :] - 2 * block @ ref.T
        out[start : start + len(block)] = ref_labels[np.argmin(d, axis=1)]
    return out


def map_2d(Z: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """A 2-D map ``[n, 2]`` of the rows of ``Z``: PCA, or UMAP (seeded, so single-threaded and repeatable)."""
    if method not in MAPS:
        raise InputError(f"--map must be one of {', '.join(MAPS)}, not '{method}'")
    n = len(Z)
    if n < 3 or Z.shape[1] < 2:
        out = np.zeros((n, 2))
        out[:, : min(2, Z.shape[1])] = Z[:, :2]
        return out
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(Z)
    with heavy_imports():
        import umap  # slow to import (numba): only when asked for
        from sklearn.neighbors import NearestNeighbors

    # Exact neighbours from sklearn (BLAS): below 4096 rows UMAP would compute all pairwise distances
    # through a Python callable, ~15× slower; the rows are at most a few thousand here.
    k = min(15, n - 1)
    dist, idx = NearestNeighbors(n_neighbors=k).fit(Z).kneighbors(Z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", no search index for transform
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=k,
            min_dist=0.1,
            random_state=seed,
            n_epochs=UMAP_EPOCHS,
            init="pca",
            precomputed_knn=(idx, dist, None),
        )
        return np.asarray(reducer.fit_transform(Z), dtype=float)
