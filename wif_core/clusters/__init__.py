"""Clusters of failed items and slice discovery, in the model's own spaces or the item text.

``cluster_run`` clusters a run's items in one space (activations, SAE codes, attribution
profiles, text embeddings) and summarises each cluster as a card; the ``cluster`` and
``cluster-attribution`` explainers (``wif_core.clusters.explainer``) score clusters on held-out
items like every other explanation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wif_core.lazy import lazy_exports

# The choices `wif cluster` offers; defined here, where importing them costs nothing.
SPACES = ("activations", "sae", "attribution", "text")
MODES = ("failures", "all")
ALGORITHMS = ("kmeans", "hdbscan")
MAPS = ("pca", "umap")

if TYPE_CHECKING:
    from wif_core.clusters.run import ClusterCache, ClusterResult, cluster_run
    from wif_core.clusters.spaces import SPACE_TIERS, Space, build_space

# Imported on first use: `wif --help` must not pay for scikit-learn and the explainers.
_LAZY = {
    "ClusterCache": "run",
    "ClusterResult": "run",
    "cluster_run": "run",
    "SPACE_TIERS": "spaces",
    "Space": "spaces",
    "build_space": "spaces",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ALGORITHMS",
    "MAPS",
    "MODES",
    "SPACES",
    "SPACE_TIERS",
    "ClusterCache",
    "ClusterResult",
    "Space",
    "build_space",
    "cluster_run",
]
