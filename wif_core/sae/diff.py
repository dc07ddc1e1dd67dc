"""Feature diffs: which SAE features fire differently on failures than on successes.

Per feature, from the item-level activations (max over an item's listing-prompt tokens) of the
run's **train** items:

- ``freq_fail``/``freq_success``: the share of failed/successful items on which it fires (> 0);
- ``mean_fail``/``mean_success``: its mean item activation in each group;
- ``effect``: Cohen's d of the item activation, failures minus successes, over the pooled SD;
- ``auc``: its single-feature ROC AUC for failure (failure = positive), with a bootstrap CI
  for the top features; ``auc_test``: the same on the test split, which chose nothing.

Features that fire on no item are dead and left out. Features are ranked by ``|auc − 0.5|``
(or by ``|effect|``). With thousands of features, the best train AUCs are inflated by the
choice; ``auc_test`` is the honest check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from wif_core.errors import InputError
from wif_core.metrics import auc_ci
from wif_core.metrics.auc import DEFAULT_LEVEL, DEFAULT_RESAMPLES
from wif_core.sae.codes import FeatureCodes

RANK_BY = ("auc", "effect")


def feature_table(acts: np.ndarray, failed: np.ndarray) -> dict[str, np.ndarray]:
    """Per-feature statistics of item activations ``acts`` ``[n, F]`` for labels ``failed`` ``[n]`` (1 = failed).

    Returns arrays of length F: freq_fail, freq_success, mean_fail, mean_success, effect, auc.
    """
    acts = np.asarray(acts, dtype=np.float64)
    y = np.asarray(failed).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise InputError(f"feature diffs need failed and successful items; got {n1} failed and {n0} successful")
    fail, ok = acts[y], acts[~y]
    fires = acts > 0
    m1, m0 = fail.mean(0), ok.mean(0)
    v1 = fail.var(0, ddof=1) if n1 > 1 else np.zeros(acts.shape[1])
    v0 = ok.var(0, ddof=1) if n0 > 1 else np.zeros(acts.shape[1])
    pooled = np.sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / max(n1 + n0 - 2, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.where(pooled > 0, (m1 - m0) / pooled, 0.0)
    ranks = rankdata(acts, axis=0)  # ties share their mean rank, so a feature silent on all items gets 0.5
    auc = (ranks[y].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return {
        "freq_fail": fires[y].mean(0),
        "freq_success": fires[~y].mean(0),
        "mean_fail": m1,
        "mean_success": m0,
        "effect": effect,
        "auc": auc,
    }


def rank_features(table: dict[str, np.ndarray], live: np.ndarray, by: str = "auc") -> np.ndarray:
    """Live feature indices, most separating first: by ``|auc − 0.5|`` (then ``|effect|``), or by ``|effect|``."""
    if by not in RANK_BY:
        raise InputError(f"rank features by one of {', '.join(RANK_BY)}, not '{by}'")
    idx = np.flatnonzero(live)
    a, e = np.abs(table["auc"][idx] - 0.5), np.abs(table["effect"][idx])
    keys = (e, a) if by == "auc" else (a, e)  # np.lexsort sorts by the last key first
    return idx[np.lexsort(keys)[::-1]]


def visible(token: str) -> str:
    """A token as a reader can see it: newlines as ⏎, tabs as ⇥, and a whitespace-only token's spaces as ␣."""
    text = token.replace("\n", "⏎").replace("\t", "⇥")
    return text if text.strip() else text.replace(" ", "␣")


@dataclass(kw_only=True)
class Context:
    """One item where a feature fires: its tokens and the feature's activation on each."""

    item_id: str
    split: str | None
    failed: bool
    activation: float  # the item's max over tokens
    position: int  # the token where it is largest
    tokens: list[str]
    acts: list[float]

    @property
    def token(self) -> str:
        return self.tokens[self.position] if 0 <= self.position < len(self.tokens) else ""

    def snippet(self, width: int = 6) -> str:
        """The tokens around the strongest one, which is marked ``[[…]]``."""
        lo, hi = max(0, self.position - width), min(len(self.tokens), self.position + width + 1)
        parts = [
            f"[[{t}]]" if i == self.position else t for i, t in zip(range(lo, hi), self.tokens[lo:hi], strict=True)
        ]
        return ("…" if lo else "") + "".join(parts).replace("\n", "⏎") + ("…" if hi < len(self.tokens) else "")


@dataclass(kw_only=True)
class FeatureDiff:
    """One feature's statistics on the train split, and its AUC on the test split."""

    feature: int
    freq_fail: float
    freq_success: float
    mean_fail: float
    mean_success: float
    effect: float
    auc: float
    ci_low: float
    ci_high: float
    ci_level: float
    auc_test: float | None
    freq_all: float
    rank: int
    contexts: list[Context] = field(default_factory=list)

    @property
    def direction(self) -> str:
        """Which outcome the feature marks: ``failure`` if it is higher on failures."""
        return "failure" if self.auc >= 0.5 else "success"

    def summary(self, contexts: bool = True) -> dict[str, Any]:
        """The JSON record of `wif sae diff` (contexts as item, token and snippet)."""
        out = {k: v for k, v in asdict(self).items() if k != "contexts"}
        out["direction"] = self.direction
        if contexts:
            out["contexts"] = [
                {
                    "item_id": c.item_id,
                    "split": c.split,
                    "failed": c.failed,
                    "activation": c.activation,
                    "position": c.position,
                    "token": c.token,
                    "snippet": c.snippet(),
                }
                for c in self.contexts
            ]
        return out


@dataclass(kw_only=True)
class SaeDiff:
    """The ranked feature diff of one run's SAE at one layer."""

    run_id: str
    layer: int
    d_sae: int
    n_live: int
    n_dead: int
    n_train_failed: int
    n_train_success: int
    n_test: int
    rank_by: str
    features: list[FeatureDiff]
    item_ids: list[str] = field(default_factory=list)  # the items of the codes, in order (for the histograms)


def feature_diff(
    codes: FeatureCodes,
    items: Any,
    run_id: str,
    layer: int,
    *,
    top: int = 20,
    by: str = "auc",
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    n_contexts: int = 5,
    tokens: Callable[[str], list[str]] | None = None,
) -> SaeDiff:
    """Rank the live features of ``codes`` on the train items of ``items`` (a frame with item_id,
    split and failed), with CIs and test AUCs for the ``top`` ones and their top contexts."""
    index = codes.index()
    frame = items[items["item_id"].isin(index)]
    train = frame[frame["split"] == "train"]
    test = frame[frame["split"] == "test"]
    acts = codes.item_max()
    y_train = train["failed"].to_numpy(dtype=int)
    rows_train = [index[i] for i in train["item_id"]]
    table = feature_table(acts[rows_train], y_train)
    live = np.asarray((acts > 0).any(0))
    order = rank_features(table, live, by)[: max(0, int(top))]
    y_test = test["failed"].to_numpy(dtype=int)
    rows_test = [index[i] for i in test["item_id"]]
    test_ok = len(set(y_test.tolist())) == 2
    meta = frame.set_index("item_id")
    out = []
    for rank, f in enumerate(order, 1):
        ci = auc_ci(y_train, acts[rows_train, f], level=level, n_resamples=n_resamples, seed=seed)
        auc_test = None
        if test_ok:
            auc_test = float(feature_table(acts[rows_test][:, [f]], y_test)["auc"][0])
        stat = {k: float(v[f]) for k, v in table.items()}
        diff = FeatureDiff(
            feature=int(f),
            freq_fail=stat["freq_fail"],
            freq_success=stat["freq_success"],
            mean_fail=stat["mean_fail"],
            mean_success=stat["mean_success"],
            effect=stat["effect"],
            auc=stat["auc"],
            ci_low=ci.ci_low,
            ci_high=ci.ci_high,
            ci_level=ci.ci_level,
            auc_test=auc_test,
            freq_all=float((acts[:, f] > 0).mean()),
            rank=rank,
        )
        if n_contexts:
            diff.contexts = top_contexts(codes, int(f), meta, n=n_contexts, tokens=tokens, item_max=acts)
        out.append(diff)
    return SaeDiff(
        run_id=run_id,
        layer=layer,
        d_sae=codes.d_sae,
        n_live=int(live.sum()),
        n_dead=int((~live).sum()),
        n_train_failed=int(y_train.sum()),
        n_train_success=int(len(y_train) - y_train.sum()),
        n_test=len(y_test),
        rank_by=by,
        features=out,
        item_ids=list(codes.item_ids),
    )


def top_contexts(
    codes: FeatureCodes,
    feature: int,
    meta: Any,
    *,
    n: int = 5,
    tokens: Callable[[str], list[str]] | None = None,
    item_max: np.ndarray | None = None,
) -> list[Context]:
    """The ``n`` items (any split) where ``feature`` is largest, with its activation on each token.

    ``meta`` is indexed by item id with ``split`` and ``failed``; ``tokens(item_id)`` gives the
    listing prompt's token strings (placeholders stand in where they are missing or fewer).
    """
    col = (item_max if item_max is not None else codes.item_max())[:, feature]
    best = [i for i in np.argsort(-col, kind="stable")[:n] if col[i] > 0]
    out = []
    for i in best:
        item_id = codes.item_ids[i]
        acts = codes.feature_tokens(int(i), feature)
        words = list(tokens(item_id)) if tokens else []
        words = [words[t] if t < len(words) else f"⟨{t}⟩" for t in range(len(acts))]
        row = meta.loc[item_id] if item_id in meta.index else None
        split = None if row is None or not isinstance(row["split"], str) else str(row["split"])
        failed = bool(row["failed"]) if row is not None else False
        out.append(
            Context(
                item_id=item_id,
                split=split,
                failed=failed,
                activation=float(col[i]),
                position=int(np.argmax(acts)),
                tokens=words,
                acts=acts.tolist(),
            )
        )
    return out


def run_items(store: Any, run_id: str) -> Any:
    """A run's evaluated items (not excluded, in a split) with ``failed`` (1 = failed), for ``feature_diff``."""
    frame = store.items(run_id, include_excluded=False)
    frame = frame[frame["split"].isin(["train", "val", "test"])].reset_index(drop=True)
    frame["failed"] = (~frame["correct"].astype(bool)).astype(int)
    return frame[["item_id", "split", "failed"]]


def run_diff(
    store: Any,
    run_id: str,
    layer: int,
    top: int = 20,
    by: str = "auc",
    n_contexts: int = 5,
    path: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    codes: FeatureCodes | None = None,
    **kwargs: Any,
) -> SaeDiff:
    """``feature_diff`` of the run's SAE at ``layer`` (default: its own, with codes cached beside the store)."""
    from wif_core.sae.codes import run_codes

    if by not in RANK_BY:
        raise InputError(f"rank features by one of {', '.join(RANK_BY)}, not '{by}'")
    codes = codes if codes is not None else run_codes(store, run_id, layer, path=path, progress=progress)
    items = run_items(store, run_id)

    def listing(item_id: str) -> list[str]:
        return list(store.tokens(run_id, item_id).get("listing", ([], [], 0))[0])

    return feature_diff(codes, items, run_id, layer, top=top, by=by, n_contexts=n_contexts, tokens=listing, **kwargs)
