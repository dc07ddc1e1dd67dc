"""Contrastive token attribution of failures, and checks of whether it is faithful.

For an item the model got wrong, Δ = log p(chosen wrong answer) − log p(gold answer) is
attributed to the input tokens (for a success: gold vs the best wrong answer), by gradient ×
input, integrated gradients, occlusion or AttnLRP; deletion curves test each attribution
against what actually moves Δ. ``pairs.py`` defines the token sequence and Δ,
``methods.py`` the registry, ``lrp.py`` the AttnLRP rules, ``deletion.py`` faithfulness,
``batch.py`` one item and whole runs, ``analysis.py`` the run-level summaries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wif_core.lazy import lazy_exports

if TYPE_CHECKING:
    from wif_core.attribution.analysis import (
        ProfileClusters,
        SegmentSummary,
        faithfulness_summary,
        layer_profile_clusters,
        recommend,
        segment_summary,
    )
    from wif_core.attribution.batch import (
        RunSummary,
        attributable_runs,
        attribute_failures,
        attribute_item,
        attribute_run,
        item_attribution,
    )
    from wif_core.attribution.deletion import FRACTIONS, deletion_curves
    from wif_core.attribution.methods import METHODS, Method, Scores, get_method, register
    from wif_core.attribution.names import DEFAULT_METHOD
    from wif_core.attribution.pairs import ContrastPair, build_pair, contrast
    from wif_core.attribution.record import Attribution

# Imported on first use: `wif --help` (which registers `wif attribute`) must not pay for torch and captum.
_LAZY = {
    "Attribution": "record",
    "ContrastPair": "pairs",
    "DEFAULT_METHOD": "names",
    "FRACTIONS": "deletion",
    "METHODS": "methods",
    "Method": "methods",
    "ProfileClusters": "analysis",
    "RunSummary": "batch",
    "Scores": "methods",
    "SegmentSummary": "analysis",
    "attributable_runs": "batch",
    "attribute_failures": "batch",
    "attribute_item": "batch",
    "attribute_run": "batch",
    "build_pair": "pairs",
    "contrast": "pairs",
    "deletion_curves": "deletion",
    "faithfulness_summary": "analysis",
    "get_method": "methods",
    "item_attribution": "batch",
    "layer_profile_clusters": "analysis",
    "recommend": "analysis",
    "register": "methods",
    "segment_summary": "analysis",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_METHOD",
    "FRACTIONS",
    "METHODS",
    "Attribution",
    "ContrastPair",
    "Method",
    "ProfileClusters",
    "RunSummary",
    "Scores",
    "SegmentSummary",
    "attributable_runs",
    "attribute_failures",
    "attribute_item",
    "attribute_run",
    "build_pair",
    "contrast",
    "deletion_curves",
    "faithfulness_summary",
    "get_method",
    "item_attribution",
    "layer_profile_clusters",
    "recommend",
    "register",
    "segment_summary",
]
