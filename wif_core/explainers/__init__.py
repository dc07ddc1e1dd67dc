"""Explainers: one protocol, one registry (``REGISTRY``: its built-in entries load on first use)."""

from wif_core.explainers.base import REGISTRY, TIER_NOTES, TIERS, Explainer, RunFacts, View, get_explainer, register

__all__ = ["REGISTRY", "TIERS", "TIER_NOTES", "Explainer", "RunFacts", "View", "get_explainer", "register"]
