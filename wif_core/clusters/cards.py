"""Cluster cards: what a person reads about one cluster, and how well clusters recover known causes.

A card holds the cluster's size, its failure rate with a Wilson interval (99.9% by default,
as every interval in wif), the words that set its items apart (class-based TF-IDF), the SAE
features that fire more in it than elsewhere, the generator factors over-represented in it
(generated runs), and the items nearest its centroid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.metrics import adjusted_mutual_info_score

from wif_core.metrics.auc import DEFAULT_LEVEL


@dataclass(frozen=True, kw_only=True)
class Rate:
    """A proportion with its Wilson score interval."""

    k: int
    n: int
    rate: float
    ci_low: float
    ci_high: float
    ci_level: float


def wilson(k: int, n: int, level: float = DEFAULT_LEVEL) -> Rate:
    """``k`` of ``n`` with its Wilson score interval: unlike the normal interval it stays inside [0, 1]
    and is not degenerate at 0 or n, which small clusters often hit."""
    if n <= 0:
        return Rate(k=k, n=n, rate=float("nan"), ci_low=0.0, ci_high=1.0, ci_level=level)
    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return Rate(
        k=k, n=n, rate=p, ci_low=float(max(0.0, centre - half)), ci_high=float(min(1.0, centre + half)), ci_level=level
    )


@dataclass
class FactorShare:
    """A generator factor's value that is more common in a cluster than among all clustered items."""

    factor: str
    value: str
    share_in: float
    share_all: float


@dataclass
class SaeFeature:
    """An SAE feature that fires more in a cluster than in the rest of the clustered items."""

    feature: int
    mean_in: float
    mean_out: float
    freq_in: float
    freq_out: float


@dataclass(kw_only=True)
class ClusterCard:
    """One cluster, summarised. ``size`` counts the items clustered (failures only, in mode ``failures``);
    ``failure_rate`` is over ``n_region`` items: the cluster itself in mode ``all``, and in mode
    ``failures`` the cluster together with the successes nearest to it."""

    id: int
    size: int
    n_failed: int
    n_region: int
    failure_rate: float
    ci_low: float
    ci_high: float
    ci_level: float
    top_words: list[str] = field(default_factory=list)
    word_scores: list[float] = field(default_factory=list)
    top_features: list[SaeFeature] = field(default_factory=list)
    factors: list[FactorShare] = field(default_factory=list)
    factor_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    representatives: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # the representatives' text, one line each
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def is_noise(self) -> bool:
        """HDBSCAN's noise: items in no dense region."""
        return self.id < 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClusterCard:
        d = dict(d)
        d["top_features"] = [SaeFeature(**f) for f in d.get("top_features", [])]
        d["factors"] = [FactorShare(**f) for f in d.get("factors", [])]
        return cls(**d)


def representatives(Z: np.ndarray, members: np.ndarray, n: int = 5) -> np.ndarray:
    """Indices (into ``Z``) of the ``n`` members nearest the members' centroid."""
    if not len(members):
        return members
    centre = Z[members].mean(0)
    d = ((Z[members] - centre) ** 2).sum(1)
    return members[np.argsort(d, kind="stable")[:n]]


def factor_values(metas: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """The generator factors named in each item's ``meta["factors"]``, as text per item ('' where absent)."""
    names: list[str] = []
    for m in metas:
        for f in m.get("factors", []):
            if f not in names:
                names.append(f)
    return {f: ["" if m.get(f) is None else str(m.get(f)) for m in metas] for f in names}


def factor_ami(labels: np.ndarray, factors: dict[str, list[str]]) -> dict[str, float]:
    """Adjusted mutual information between cluster labels and each factor (0: chance, 1: the same partition)."""
    out = {}
    for f, values in factors.items():
        if len(set(values)) < 2 or len(set(labels.tolist())) < 2:
            out[f] = 0.0
            continue
        out[f] = float(adjusted_mutual_info_score(values, labels.tolist()))
    return out


def over_represented(
    members: np.ndarray, factors: dict[str, list[str]], top: int = 4, min_lift: float = 0.1
) -> tuple[list[FactorShare], dict[str, dict[str, int]]]:
    """The factor values most over-represented among ``members`` (share in − share overall ≥ ``min_lift``),
    and the counts of every factor value among them."""
    found, counts = [], {}
    n_all = len(next(iter(factors.values()))) if factors else 0
    for f, values in factors.items():
        arr = np.asarray(values, dtype=object)
        inside = arr[members]
        uniq, cnt = np.unique(inside, return_counts=True)
        counts[f] = {str(u): int(c) for u, c in zip(uniq, cnt, strict=True)}
        if len(set(values)) < 2 or len(set(values)) > 12:  # constant, or an id-like factor
            continue
        for u, c in zip(uniq, cnt, strict=True):
            share_in = c / max(len(members), 1)
            share_all = float((arr == u).sum()) / max(n_all, 1)
            if share_in - share_all >= min_lift:
                found.append(FactorShare(f, str(u), float(share_in), share_all))
    found.sort(key=lambda s: s.share_in - s.share_all, reverse=True)
    return found[:top], counts


def top_sae_features(codes: np.ndarray, members: np.ndarray, top: int = 5) -> list[SaeFeature]:
    """Features whose mean activation is most above the rest's among ``members`` (rows of ``codes``)."""
    inside = np.zeros(len(codes), dtype=bool)
    inside[members] = True
    if not inside.any() or inside.all():
        return []
    m_in, m_out = codes[inside].mean(0), codes[~inside].mean(0)
    diff = m_in - m_out
    order = [j for j in np.argsort(-diff, kind="stable")[:top] if diff[j] > 0]
    f_in, f_out = (codes[inside] > 0).mean(0), (codes[~inside] > 0).mean(0)
    return [SaeFeature(int(j), float(m_in[j]), float(m_out[j]), float(f_in[j]), float(f_out[j])) for j in order]
