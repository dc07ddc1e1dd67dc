"""Causal scores of an intervention: what it flips, what it breaks, against its matched random control.

Per strength, over the items of one split: the fraction of failures the intervention turns correct (flip rate),
the fraction of successes it turns wrong (broken rate), the net accuracy change and the mean change of the margin
Δ = log p(gold) − log p(best other), each beside the same numbers under random directions of the same norm.
The difference from the control is paired per item (the same items under both), with a percentile bootstrap
interval (99.9% by default). An explainer's **causal score** is its flip rate minus the control's at the strength
chosen on the val split (the largest difference there; the smaller strength on ties), reported on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wif_core.interventions.steering import SweepPoint
from wif_core.metrics.auc import DEFAULT_LEVEL

N_RESAMPLES = 2000


@dataclass(kw_only=True)
class Rates:
    """One strength on one split; ``*_control`` under the random directions (averaged over them, per item)."""

    alpha: float
    n_failures: int
    n_successes: int
    flip_rate: float | None  # of the failures, the fraction now correct
    flip_rate_control: float | None
    flip_diff: float | None  # flip_rate - flip_rate_control, paired per failure
    flip_diff_ci: tuple[float, float] | None
    broken_rate: float | None  # of the successes, the fraction now wrong
    broken_rate_control: float | None
    accuracy_change: float  # accuracy under the intervention minus before
    accuracy_change_control: float
    delta_change: float | None  # mean change of the margin Δ over all items
    delta_change_control: float | None
    delta_diff_ci: tuple[float, float] | None  # of delta_change - delta_change_control, paired per item


@dataclass(kw_only=True)
class CausalScore:
    """An explainer's causal score: chosen on val, reported on test."""

    run_id: str
    direction: str
    layer: int
    alpha: float  # chosen on val
    score: float | None  # test flip rate minus control's at that strength
    ci: tuple[float, float] | None
    ci_level: float
    n_test_failures: int
    val: list[Rates] = field(default_factory=list)
    test: list[Rates] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    site: str = "last"
    # the test items at the chosen strength: item → correct and margin before, steered, and under the control
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _boot_ci(values: np.ndarray, level: float, seed: int) -> tuple[float, float] | None:
    if len(values) == 0:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(N_RESAMPLES, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def rates(
    point: SweepPoint,
    before_correct: dict[str, bool],
    before_margin: dict[str, float],
    item_ids: Sequence[str],
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Rates:
    """What the intervention at ``point`` did to ``item_ids`` against their outcomes ``before`` it."""
    ids = [i for i in item_ids if i in point.correct]
    fails = [i for i in ids if not before_correct[i]]
    succ = [i for i in ids if before_correct[i]]
    ctrl = {i: float(np.mean(point.control_correct[i])) for i in ids}
    flip = np.array([float(point.correct[i]) for i in fails])
    flip_c = np.array([ctrl[i] for i in fails])
    broken = np.array([1.0 - point.correct[i] for i in succ])
    broken_c = np.array([1.0 - ctrl[i] for i in succ])
    acc0 = np.mean([before_correct[i] for i in ids])
    dm = [i for i in ids if i in point.margin and point.control_margin.get(i) and i in before_margin]
    d_dir = np.array([point.margin[i] - before_margin[i] for i in dm])
    d_ctl = np.array([float(np.mean(point.control_margin[i])) - before_margin[i] for i in dm])
    return Rates(
        alpha=point.alpha,
        n_failures=len(fails),
        n_successes=len(succ),
        flip_rate=float(flip.mean()) if len(flip) else None,
        flip_rate_control=float(flip_c.mean()) if len(flip_c) else None,
        flip_diff=float((flip - flip_c).mean()) if len(flip) else None,
        flip_diff_ci=_boot_ci(flip - flip_c, level, seed),
        broken_rate=float(broken.mean()) if len(broken) else None,
        broken_rate_control=float(broken_c.mean()) if len(broken_c) else None,
        accuracy_change=float(np.mean([point.correct[i] for i in ids]) - acc0),
        accuracy_change_control=float(np.mean([ctrl[i] for i in ids]) - acc0),
        delta_change=float(d_dir.mean()) if len(d_dir) else None,
        delta_change_control=float(d_ctl.mean()) if len(d_ctl) else None,
        delta_diff_ci=_boot_ci(d_dir - d_ctl, level, seed),
    )


def choose_alpha(val: Sequence[Rates]) -> float:
    """The strength (above 0) with the largest flip-rate difference from the control on val; the smaller on ties,
    and the smallest non-zero strength when val has no failures."""
    nonzero = [r for r in val if r.alpha != 0]
    if not nonzero:
        return val[0].alpha
    scored = [r for r in nonzero if r.flip_diff is not None]
    if not scored:
        return min(r.alpha for r in nonzero)
    return min(scored, key=lambda r: (-(r.flip_diff or 0.0), r.alpha)).alpha
