"""Run-level readings of stored attributions: segments, layer profiles, faithfulness per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wif_core.attribution.record import Attribution
from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.store.store import AttributionRow

Record = Attribution | AttributionRow


def _outcome_map(outcomes: Mapping[str, bool] | pd.DataFrame) -> dict[str, bool]:
    if isinstance(outcomes, pd.DataFrame):
        return {str(i): bool(c) for i, c in zip(outcomes["item_id"], outcomes["correct"], strict=True)}
    return {str(k): bool(v) for k, v in outcomes.items()}


@dataclass
class SegmentSummary:
    """Relevance summed per prompt segment.

    ``per_item``: one row per (item, method, segment) with ``relevance`` (the sum of its
    tokens' scores) and ``share`` (that sum over the item's total |score|, so items of
    different scale compare). ``by_outcome``: the mean of both over failures and over
    successes per (method, segment), with the item count ``n``.
    """

    per_item: pd.DataFrame
    by_outcome: pd.DataFrame


def segment_summary(rows: Sequence[Record], outcomes: Mapping[str, bool] | pd.DataFrame) -> SegmentSummary:
    """Segment sums per item and their means over failures vs successes.

    ``outcomes`` maps item_id to whether the model got it right (or is a frame with
    ``item_id`` and ``correct``, as ``Store.items`` returns).
    """
    correct = _outcome_map(outcomes)
    records = []
    for r in rows:
        total = float(np.abs(r.scores).sum()) or 1.0
        sums: dict[str, float] = {}
        for seg, s in zip(r.segments, r.scores, strict=True):
            sums[seg] = sums.get(seg, 0.0) + float(s)
        for seg, value in sums.items():
            records.append(
                {
                    "item_id": r.item_id,
                    "method": r.method,
                    "correct": correct.get(r.item_id),
                    "segment": seg,
                    "relevance": value,
                    "share": value / total,
                }
            )
    per_item = pd.DataFrame(records, columns=["item_id", "method", "correct", "segment", "relevance", "share"])
    known = per_item[per_item["correct"].notna()].copy()
    known["outcome"] = np.where(known["correct"].astype(bool), "success", "failure")
    by_outcome = (
        known.groupby(["method", "outcome", "segment"], as_index=False)
        .agg(relevance=("relevance", "mean"), share=("share", "mean"), n=("item_id", "nunique"))
        .sort_values(["method", "outcome", "segment"], ignore_index=True)
    )
    return SegmentSummary(per_item, by_outcome)


@dataclass(kw_only=True)
class ProfileClusters:
    """k-means clusters of layer profiles, with a 2-D PCA view of them.

    ``labels[i]`` is the cluster of ``item_ids[i]``; ``centroids`` is ``[k, n_layers]``;
    ``coords`` the ``[n, 2]`` PCA projection and ``explained_variance`` its two ratios.
    """

    item_ids: list[str]
    labels: np.ndarray
    centroids: np.ndarray
    coords: np.ndarray
    explained_variance: np.ndarray
    k: int


def layer_profile_clusters(rows: Sequence[Record], k: int = 3, seed: int = 0) -> ProfileClusters:
    """Cluster the layer profiles of the given records (e.g. a run's failures, one method)."""
    with heavy_imports():
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

    kept = [r for r in rows if r.layer_profile]
    if not kept:
        raise InputError("none of these attributions has a layer profile (occlusion records have none)")
    lengths = {len(r.layer_profile or []) for r in kept}
    if len(lengths) > 1:
        raise InputError(f"layer profiles of different depths {sorted(lengths)}: cluster one run at a time")
    x = np.array([r.layer_profile for r in kept], dtype=float)
    k = max(1, min(k, len(kept)))
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    n_comp = min(2, x.shape[0], x.shape[1])
    pca = PCA(n_components=n_comp, random_state=seed).fit(x)
    coords = pca.transform(x)
    ratios = pca.explained_variance_ratio_
    if n_comp < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - n_comp)))
        ratios = np.pad(ratios, (0, 2 - n_comp))
    return ProfileClusters(
        item_ids=[r.item_id for r in kept],
        labels=km.labels_,
        centroids=km.cluster_centers_,
        coords=coords,
        explained_variance=ratios,
        k=k,
    )


def _bootstrap_mean(values: np.ndarray, level: float, n_resamples: int, seed: int) -> tuple[float, float]:
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_resamples, len(values)))].mean(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def faithfulness_summary(
    rows: Sequence[Record],
    outcomes: Mapping[str, bool] | pd.DataFrame | None = None,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean faithfulness per method with a bootstrap CI, and each method's paired gap to the best.

    One row per method (and outcome, when ``outcomes`` is given: ``all``, ``failure``,
    ``success``). ``vs_best`` is the mean paired difference to the method with the highest
    mean on the same items, with its CI: a method whose interval excludes zero is less
    faithful than the best on this run.
    """
    correct = _outcome_map(outcomes) if outcomes is not None else {}
    frame = pd.DataFrame(
        [
            {"item_id": r.item_id, "method": r.method, "faithfulness": r.faithfulness}
            for r in rows
            if r.faithfulness is not None
        ]
    )
    cols = ["method", "outcome", "mean", "ci_low", "ci_high", "n", "vs_best", "vs_best_low", "vs_best_high", "level"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    groups = [("all", frame)]
    if correct:
        frame["correct"] = frame["item_id"].map(correct)
        groups += [
            ("failure", frame[frame["correct"] == False]),  # noqa: E712 - a pandas mask
            ("success", frame[frame["correct"] == True]),  # noqa: E712
        ]
    out = []
    for outcome, part in groups:
        if part.empty:
            continue
        wide = part.pivot_table(index="item_id", columns="method", values="faithfulness")
        best = wide.mean().idxmax()
        for method in wide.columns:
            vals = wide[method].dropna().to_numpy()
            lo, hi = _bootstrap_mean(vals, level, n_resamples, seed)
            paired = (wide[method] - wide[best]).dropna().to_numpy()
            dlo, dhi = _bootstrap_mean(paired, level, n_resamples, seed) if method != best else (0.0, 0.0)
            out.append(
                {
                    "method": method,
                    "outcome": outcome,
                    "mean": float(vals.mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(vals),
                    "vs_best": float(paired.mean()) if len(paired) else 0.0,
                    "vs_best_low": dlo,
                    "vs_best_high": dhi,
                    "level": level,
                }
            )
    return pd.DataFrame(out, columns=cols)


def recommend(summary: pd.DataFrame) -> dict[str, Any]:
    """Which method to trust on this run, from ``faithfulness_summary`` (its ``all`` rows).

    The most faithful method; methods whose paired gap to it has a CI including zero are
    named as tied with it, so the page can say "no clear winner" when that is the truth.
    """
    rows = summary[summary["outcome"] == "all"]
    if rows.empty:
        return {"method": None, "tied": [], "reason": "no deletion curves stored for this run"}
    best = rows.loc[rows["mean"].idxmax()]
    tied = [r.method for r in rows.itertuples() if r.method != best.method and not (r.vs_best_high < 0)]
    reason = (
        f"{best.method} has the largest mean faithfulness ({best['mean']:.3f} nats over random deletion, n={best.n})"
        + (f"; not clearly better than {', '.join(tied)}" if tied else "")
    )
    return {"method": best.method, "tied": tied, "reason": reason}
