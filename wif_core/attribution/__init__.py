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
from wif_core.registry import Registry

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
    from wif_core.attribution.methods import Method, Scores
    from wif_core.attribution.pairs import ContrastPair, build_pair, contrast
    from wif_core.attribution.record import Attribution

# The attribution methods by name, imported on first use: `wif --help` lists them without torch and captum.
METHODS: Registry[Method] = Registry(
    "an attribution method",
    {
        "grad_x_input": "wif_core.attribution.methods:GRAD_X_INPUT",
        "integrated_gradients": "wif_core.attribution.methods:INTEGRATED_GRADIENTS",
        "occlusion": "wif_core.attribution.methods:OCCLUSION",
        "attnlrp": "wif_core.attribution.methods:ATTNLRP",
        "cp_lrp": "wif_core.attribution.methods:CP_LRP",
    },
)
DEFAULT_METHOD = "attnlrp"  # the most faithful method within the batch time budget (docs/BENCHMARKS.md)


def register(method: Method) -> Method:
    """Add a method of your own; a second method under a registered name is refused."""
    return METHODS.add(method.name, method)


def get_method(name: str) -> Method:
    """A registered method, or a one-line error listing them."""
    return METHODS.lookup(name)


_LAZY = {
    "Attribution": "record",
    "ContrastPair": "pairs",
    "FRACTIONS": "deletion",
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
    "item_attribution": "batch",
    "layer_profile_clusters": "analysis",
    "recommend": "analysis",
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
