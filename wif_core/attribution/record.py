"""The attribution record: one item's contrastive token attribution by one method.

It is the store's ``AttributionRow`` (one field list, defined once in the store), so
``Attribution.from_row(a.to_row())`` is ``a``; the extra methods are what a page or a
notebook needs to read one (the heatmap scale, a JSON form for the CLI).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from wif_core.store.store import AttributionRow

# Segments whose tokens never set the heatmap's scale: BOS and other special tokens soak up
# relevance in most models (attention sinks) and would wash every other token out.
UNSCALED_SEGMENTS = frozenset({"special"})


@dataclass
class Attribution(AttributionRow):
    """Per-token relevance of one item's contrast ``wrong_choice`` vs ``right_choice``.

    ``tokens``/``segments``/``scores`` are parallel lists over the contrast's token
    sequence (see ``wif_core.attribution.pairs``): the common prefix of the two scored
    sequences once, then the wrong sequence's own tokens (segment ``wrong``), then the right
    one's (segment ``right``). A positive score pushes toward the wrong answer.
    ``delta`` is log p(wrong) − log p(right) summed over answer tokens; ``sum_scores`` the
    sum of the scores, equal to ``delta`` only for complete methods (the gap is the user's
    to see: see ``config['target']`` for what each method conserves). ``layer_profile`` is
    the relevance of the final context position's hidden state after each block, divided
    by its largest magnitude; ``deletion`` holds the deletion curves
    (``fraction``, ``k``, ``top``, ``random``) and ``faithfulness`` the mean gap between
    the random and the top-first curve, in nats (higher is more faithful).
    """

    def to_row(self) -> AttributionRow:
        """The store's row for this record."""
        return AttributionRow(**asdict(self))

    @classmethod
    def from_row(cls, row: AttributionRow) -> Attribution:
        """A record from a stored row (``Store.attributions``)."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(AttributionRow)})

    @property
    def fallback(self) -> str | None:
        """Why another method stood in for the one asked for, or None."""
        if "fallback" not in self.config:
            return None
        return f"{self.method} fell back to {self.config['fallback']}: {self.config.get('reason', '')}".strip()

    def heat(self) -> list[float]:
        """Scores divided by the largest |score| outside special tokens, clipped to [-1, 1].

        Red (positive) pushes toward the wrong answer, blue toward the right one.
        """
        scale = max(
            (abs(s) for s, g in zip(self.scores, self.segments, strict=True) if g not in UNSCALED_SEGMENTS),
            default=0.0,
        )
        if scale == 0.0 or not math.isfinite(scale):
            return [0.0] * len(self.scores)
        return [max(-1.0, min(1.0, s / scale)) for s in self.scores]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--item --json`` output)."""
        out = asdict(self)
        out["fallback"] = self.fallback
        return out
