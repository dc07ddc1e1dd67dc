"""Explainers: one protocol, one registry; importing this package registers them all."""

from wif_core.clusters import explainer as _clusters  # noqa: F401 - registration (cluster, cluster-attribution)
from wif_core.explainers import attention_probe, baselines, probe, sae  # noqa: F401 - registration
from wif_core.explainers.base import REGISTRY, TIER_NOTES, TIERS, Explainer, RunFacts, View, get_explainer, register

__all__ = ["REGISTRY", "TIERS", "TIER_NOTES", "Explainer", "RunFacts", "View", "get_explainer", "register"]
