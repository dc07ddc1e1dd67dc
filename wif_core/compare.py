"""Two or more runs of one task side by side: paired accuracy, agreement of errors, margins, segments, transfer.

Runs are paired by the normalised item key (``items.key``: ``wif_core.tasks.base.item_key``, the item's
content regardless of whitespace, case and option order), whatever their run or item ids, so two models
scored on the same questions from different sources still pair. Within a run a repeated key counts once
(its first item). Everything here is computed on the items **all** compared runs share.

Statistics (every interval at ``level``, 99.9% by default as everywhere in wif):

- accuracy of each run with its Wilson score interval (``wif_core.clusters.cards.wilson``);
- the paired accuracy difference A − B = (b − c)/n from the 2×2 table, with the exact McNemar test
  (two-sided binomial test of the b discordant pairs in b + c at ½, ``scipy.stats.binomtest``) and the
  interval that test inverts: the Clopper–Pearson interval of b/(b + c), mapped to (b + c)/n · (2p − 1)
  (exact, conditional on the number of discordant pairs);
- Cohen's κ of the two runs' errors (failed = 1) and the Pearson and Spearman correlations of their
  margins Δ = log p(gold) − log p(best other), computed for every run from its stored per-choice scores
  (``ll_sum``: log-likelihoods, or a zoo model's log-softmax) so one definition holds for all runs; a
  run without complete scores falls back to its stored ``outcomes.margin`` where that is the same
  quantity (``scoring`` 'sum' or 'logits'), else has no margins;
- the segment shares of relevance of both runs' stored attributions of the same items by one method
  (``wif_core.attribution.segment_summary``), side by side, with seeded bootstrap intervals over items;
- explainer transfer: an explainer fitted on run A's train split (A's failures, tuned on A's val) scoring
  run B's test items that A never saw (by key), beside B's own explainer on the same items.

A run whose config has a ``"checkpoint"`` entry (``{"label", "step", "samples", "revision", "path"}``) is
a checkpoint; a comparison of such runs is also a series ordered by ``samples``, else ``step``, else label.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wif_core.errors import InputError, WifError, one_line
from wif_core.heavy import heavy_imports
from wif_core.jsondir import JsonDir, jsonable
from wif_core.metrics.auc import DEFAULT_LEVEL, DEFAULT_RESAMPLES
from wif_core.store import RunInfo, Store

MARGIN_SCORINGS = ("sum", "logits")  # stored margins that are log p(gold) − log p(best other)
TRANSFER_EXPLAINERS = ("probe-paper", "surface", "text")  # the input-tier explainers of the default comparison
COMPARE_VERSION = 1
PAIR_COLUMNS = ("both_correct", "only_a_correct", "only_b_correct", "both_failed")


# ---- records ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RunAccuracy:
    """One run's accuracy on the shared items, with its Wilson interval; ``checkpoint`` as recorded, or None."""

    run_id: str
    model: str
    kind: str
    n: int
    n_correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    ci_level: float
    margin_source: str  # 'll_sum', 'stored', 'll_sum on K of N items' or 'none': where this run's margins come from
    checkpoint: dict[str, Any] | None = None
    n_repeats: int = 0  # items of this run whose key repeats an earlier item's (each key counts once)


@dataclass(kw_only=True)
class PairComparison:
    """Runs A and B on their shared items: the 2×2 table, McNemar, κ of errors, margin correlations.

    ``table`` counts items by (A right?, B right?) under ``PAIR_COLUMNS``. ``diff`` is accuracy(A) −
    accuracy(B) with the exact conditional interval; ``failed_only_a`` lists the keys A failed and B got
    right (``failed_only_b`` the reverse); ``items`` maps each shared key to both runs' item ids.
    """

    a: str
    b: str
    n: int
    table: dict[str, int]
    diff: float
    diff_ci_low: float
    diff_ci_high: float
    ci_level: float
    mcnemar_p: float
    kappa: float | None
    margin_pearson: float | None
    margin_spearman: float | None
    n_margins: int
    failed_only_a: list[str] = field(default_factory=list)
    failed_only_b: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class SegmentShares:
    """Mean share of relevance per segment (the segment's summed relevance over the item's total |relevance|)
    per run, on the ``n`` shared items both runs have attributed by ``method``, with bootstrap intervals."""

    method: str
    runs: list[str]
    n: int
    table: list[dict[str, Any]]  # run_id, segment, share, ci_low, ci_high, n
    ci_level: float
    seed: int
    n_resamples: int


@dataclass(kw_only=True)
class TransferResult:
    """An explainer fitted on run ``source`` (train, tuned on val) scoring run ``target``'s test items.

    ``tier`` is the tier for the target: ``input`` when the explainer reads only the item text and the
    target's own internals at test time; ``gold`` for the row that scores the target's items by the source's
    outcomes on them. ``auc`` is on the ``n_test`` test items of the target the source never saw (by key);
    ``own_auc`` is the target's own explainer (same name and settings, fitted on the target's train split)
    on the same items. ``note`` says why a row has no AUC.
    """

    source: str
    target: str
    explainer: str
    label: str
    tier: str
    layer: int | None = None
    site: str | None = None
    val_auc: float | None = None  # on the source's val split: what chose the layer
    auc: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float = DEFAULT_LEVEL
    n_test: int = 0
    n_test_failed: int = 0
    own_auc: float | None = None
    own_ci_low: float | None = None
    own_ci_high: float | None = None
    note: str | None = None


@dataclass(kw_only=True)
class CheckpointPoint:
    """One checkpoint of a series: accuracy with its interval, the mean margin on the items the last checkpoint
    failed (with a bootstrap interval), segment shares (where attributions are stored), and the best input-tier
    explainer (chosen on val, its test AUC reported) when it was computed."""

    run_id: str
    label: str
    samples: int | None
    step: int | None
    accuracy: float
    ci_low: float
    ci_high: float
    n: int
    mean_margin_final_failures: float | None
    margin_ci_low: float | None
    margin_ci_high: float | None
    n_final_failures: int
    segments: dict[str, float] = field(default_factory=dict)
    n_attributed: int = 0
    best_input: dict[str, Any] | None = None
    best_input_note: str | None = None


@dataclass(kw_only=True)
class Comparison:
    """What ``compare_runs`` returns and ``wif compare-runs --json`` prints."""

    task: str
    runs: list[RunAccuracy]
    n_shared: int
    pairs: list[PairComparison]
    items: pd.DataFrame = field(
        repr=False
    )  # per shared key: key, <run>:item_id/correct/margin, the first run's context
    segments: SegmentShares | None = None
    segments_note: str | None = None
    transfer: list[TransferResult] = field(default_factory=list)
    series: list[CheckpointPoint] = field(default_factory=list)
    ci_level: float = DEFAULT_LEVEL
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The full payload as plain JSON data (per-item rows included)."""
        out = {k: v for k, v in asdict(self).items() if k != "items"}
        out["items"] = self.items.to_dict(orient="records")
        return jsonable(out)


# ---- reading and pairing -------------------------------------------------------------------------


def checkpoint_of(run: RunInfo) -> dict[str, Any] | None:
    """The run's ``"checkpoint"`` config entry, or None when the run is no checkpoint."""
    entry = run.config.get("checkpoint") if isinstance(run.config, dict) else None
    return entry if isinstance(entry, dict) else None


def checkpoint_order(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """Runs ordered by training progress: ``samples`` where every run has it, else ``step``, else the label;
    runs that are no checkpoints keep their given order, after the checkpoints."""
    points = [r for r in runs if checkpoint_of(r) is not None]
    rest = [r for r in runs if checkpoint_of(r) is None]
    entries = [checkpoint_of(r) or {} for r in points]
    for key in ("samples", "step"):
        if entries and all(isinstance(e.get(key), int) for e in entries):
            return [r for _, r in sorted(zip(entries, points, strict=True), key=lambda p: p[0][key])] + rest
    return sorted(points, key=lambda r: str((checkpoint_of(r) or {}).get("label") or r.run_id)) + rest


def _margins(frame: pd.DataFrame, run: RunInfo) -> tuple[np.ndarray, str]:
    """Δ = log p(gold) − log p(best other) per row of ``Store.items``, and where it came from."""
    out = np.full(len(frame), np.nan)
    complete = 0
    for i, (scores, gold) in enumerate(zip(frame["ll_sum"], frame["gold"], strict=True)):
        if isinstance(scores, list | np.ndarray) and len(scores) > 1:
            s = np.array([np.nan if v is None else v for v in scores], dtype=float)
            if np.isfinite(s).all() and 0 <= int(gold) < len(s):
                out[i] = s[int(gold)] - np.delete(s, int(gold)).max()
                complete += 1
    if complete == len(frame) and len(frame):
        return out, "ll_sum"
    if run.scoring in MARGIN_SCORINGS and frame["margin"].notna().any():
        stored = pd.to_numeric(frame["margin"], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isfinite(out), out, stored), "stored"
    if complete:  # an imported file that left some choices unscored: margins where every choice has a score
        return out, f"ll_sum on {complete} of {len(frame)} items"
    return out, "none"


ItemsReader = Callable[[str], pd.DataFrame]  # run id → ``Store.items(run_id)`` (a caller's cached reader)


def _run_items(read: ItemsReader, run: RunInfo) -> tuple[pd.DataFrame, str, int]:
    """A run's scored items, one per key (the first), with ``failed`` and the margin."""
    frame = read(run.run_id)
    margin, source = _margins(frame, run)
    frame = frame.assign(margin_delta=margin, failed=(~frame["correct"].astype(bool)).astype(int))
    first = frame.drop_duplicates("key", keep="first")
    return first.set_index("key"), source, len(frame) - len(first)


def _check_runs(store: Store, run_ids: Sequence[str]) -> list[RunInfo]:
    ids = [r.strip() for r in run_ids if r and r.strip()]
    if len(ids) < 2:
        raise InputError(
            f"comparing runs needs at least two run ids, got {len(ids)} ({', '.join(ids) or 'none'}); "
            "give them as --runs A,B (see `wif runs`)"
        )
    twice = sorted({r for r in ids if ids.count(r) > 1})
    if twice:
        raise InputError(f"run {twice[0]} is named twice in --runs; name each run once")
    runs = [store.run(r) for r in ids]  # an unknown id: one line listing the store's runs
    tasks = dict.fromkeys(r.task for r in runs)
    if len(tasks) > 1:
        a = runs[0]
        b = next(r for r in runs if r.task != a.task)
        raise InputError(
            f"runs {a.run_id} (task {a.task}) and {b.run_id} (task {b.task}) are of different tasks; "
            "compare runs of one task"
        )
    return runs


def _shared(frames: dict[str, pd.DataFrame], runs: list[RunInfo]) -> list[str]:
    keys = set(frames[runs[0].run_id].index)
    for r in runs[1:]:
        keys &= set(frames[r.run_id].index)
    if keys:
        order = frames[runs[0].run_id].index
        return [k for k in order if k in keys]
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if not set(frames[a.run_id].index) & set(frames[b.run_id].index):
                raise InputError(
                    f"runs {a.run_id} and {b.run_id} share no items (matched by normalised item content); "
                    f"score the same items with both models, e.g. `wif collect --task {a.task} --source "
                    f"{a.source} --model MODEL`"
                )
    raise InputError(f"no item is in all {len(runs)} runs {', '.join(r.run_id for r in runs)}; compare fewer runs")


# ---- statistics ----------------------------------------------------------------------------------


def wilson_interval(k: int, n: int, level: float = DEFAULT_LEVEL) -> tuple[float, float, float]:
    """``k``/``n`` with its Wilson score interval (wif's interval for proportions)."""
    from wif_core.clusters.cards import wilson

    rate = wilson(k, n, level)
    return rate.rate, rate.ci_low, rate.ci_high


def mcnemar_exact(b: int, c: int) -> float:
    """The exact McNemar test's two-sided p: a binomial test of ``b`` successes in ``b + c`` at ½ (1 when
    there are no discordant pairs)."""
    if b + c == 0:
        return 1.0
    with heavy_imports():
        from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def paired_difference(b: int, c: int, n: int, level: float = DEFAULT_LEVEL) -> tuple[float, float, float]:
    """Accuracy(A) − accuracy(B) = (b − c)/n, where ``b`` items only A got right and ``c`` only B, with the
    interval the exact McNemar test inverts: Clopper–Pearson of b/(b + c), mapped to (b + c)/n · (2p − 1)."""
    if n == 0:
        return math.nan, math.nan, math.nan
    if b + c == 0:
        return 0.0, 0.0, 0.0
    with heavy_imports():
        from scipy.stats import binomtest

    ci = binomtest(b, b + c, 0.5).proportion_ci(confidence_level=level, method="exact")
    scale = (b + c) / n
    return (b - c) / n, scale * (2 * ci.low - 1), scale * (2 * ci.high - 1)


def kappa(x: np.ndarray, y: np.ndarray) -> float | None:
    """Cohen's κ of two binary labelings (here: failed = 1); None where it is undefined (both constant and equal)."""
    x, y = np.asarray(x, dtype=int), np.asarray(y, dtype=int)
    if len(x) == 0:
        return None
    po = float(np.mean(x == y))
    px, py = float(x.mean()), float(y.mean())
    pe = px * py + (1 - px) * (1 - py)
    return None if pe >= 1 else (po - pe) / (1 - pe)


def correlations(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None, int]:
    """Pearson and Spearman correlations over the pairs where both are finite, and how many pairs."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None, None, n
    with heavy_imports():
        from scipy.stats import pearsonr, spearmanr

    return float(pearsonr(x[ok], y[ok]).statistic), float(spearmanr(x[ok], y[ok]).statistic), n


def _pair(a: RunInfo, b: RunInfo, shared: pd.DataFrame, level: float) -> PairComparison:
    ca = shared[f"{a.run_id}:correct"].to_numpy(dtype=bool)
    cb = shared[f"{b.run_id}:correct"].to_numpy(dtype=bool)
    table = {
        "both_correct": int((ca & cb).sum()),
        "only_a_correct": int((ca & ~cb).sum()),
        "only_b_correct": int((~ca & cb).sum()),
        "both_failed": int((~ca & ~cb).sum()),
    }
    n = len(shared)
    diff, lo, hi = paired_difference(table["only_a_correct"], table["only_b_correct"], n, level)
    pearson, spearman, n_margins = correlations(
        shared[f"{a.run_id}:margin"].to_numpy(dtype=float), shared[f"{b.run_id}:margin"].to_numpy(dtype=float)
    )
    keys = shared["key"].to_numpy()
    return PairComparison(
        a=a.run_id,
        b=b.run_id,
        n=n,
        table=table,
        diff=diff,
        diff_ci_low=lo,
        diff_ci_high=hi,
        ci_level=level,
        mcnemar_p=mcnemar_exact(table["only_a_correct"], table["only_b_correct"]),
        kappa=kappa((~ca).astype(int), (~cb).astype(int)),
        margin_pearson=pearson,
        margin_spearman=spearman,
        n_margins=n_margins,
        failed_only_a=[str(k) for k in keys[~ca & cb]],
        failed_only_b=[str(k) for k in keys[ca & ~cb]],
    )


def _bootstrap_means(values: np.ndarray, level: float, n_resamples: int, seed: int) -> np.ndarray:
    """``[lo, hi]`` per column of ``values`` ([n, m]) from one seeded bootstrap over rows (shared resamples,
    so the intervals of two runs' columns resample the same items)."""
    if len(values) < 2:
        return np.full((values.shape[1], 2), np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (n_resamples, len(values)))
    means = values[idx].mean(axis=1)  # [resamples, m]
    alpha = (1 - level) / 2
    return np.stack([np.quantile(means, alpha, axis=0), np.quantile(means, 1 - alpha, axis=0)], axis=1)


def _share_matrix(store: Store, run_id: str, method: str, item_ids: list[str]) -> pd.DataFrame:
    """Per-item segment shares (rows: the given item ids that have one; columns: segments) of one method."""
    from wif_core.attribution.analysis import segment_summary

    rows = store.attributions(run_id, method, item_ids)
    per_item = segment_summary(rows, {}).per_item
    if per_item.empty:
        return pd.DataFrame()
    return per_item.pivot_table(index="item_id", columns="segment", values="share", aggfunc="sum", fill_value=0.0)


def _common_method(store: Store, run_ids: Sequence[str], method: str | None) -> tuple[str | None, str | None]:
    """The attribution method every run has records of (``method`` if given), or None and why."""
    from wif_core.attribution import DEFAULT_METHOD

    have = [{m for _, m in store.attribution_keys(r)} for r in run_ids]
    common = set.intersection(*have) if have else set()
    if method is not None:
        if method in common:
            return method, None
        lacking = [r for r, h in zip(run_ids, have, strict=True) if method not in h]
        return (
            None,
            f"run {lacking[0]} has no attributions by {method}; attribute with `wif attribute --method {method}`",
        )
    if not common:
        lacking = [r for r, h in zip(run_ids, have, strict=True) if not h] or list(run_ids)
        return None, (
            f"run {lacking[0]} has no attributions by a method the other runs have; "
            f"attribute the same items of each run with `wif attribute --run RUN --method {DEFAULT_METHOD}`"
        )
    return (DEFAULT_METHOD if DEFAULT_METHOD in common else sorted(common)[0]), None


def segment_shares(
    store: Store,
    shared: pd.DataFrame,
    run_ids: Sequence[str],
    method: str,
    *,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[SegmentShares | None, str | None]:
    """Segment shares of each run on the shared items every run has attributed by ``method``, or None and why."""
    mats = {r: _share_matrix(store, r, method, shared[f"{r}:item_id"].tolist()) for r in run_ids}
    keep = np.ones(len(shared), dtype=bool)
    for r, mat in mats.items():
        keep &= shared[f"{r}:item_id"].isin(mat.index).to_numpy()
    if not keep.any():
        return None, f"no shared item is attributed by {method} in every run; attribute the same items in each run"
    rows = shared[keep]
    segments = sorted({s for mat in mats.values() for s in mat.columns})
    blocks = [
        mats[r].reindex(index=rows[f"{r}:item_id"], columns=segments, fill_value=0.0).to_numpy(dtype=float)
        for r in run_ids
    ]
    values = np.concatenate(blocks, axis=1)  # [n, runs × segments]
    cis = _bootstrap_means(values, level, n_resamples, seed)
    means = values.mean(axis=0)
    table = []
    for j, r in enumerate(run_ids):
        for s, seg in enumerate(segments):
            col = j * len(segments) + s
            table.append(
                {
                    "run_id": r,
                    "segment": seg,
                    "share": float(means[col]),
                    "ci_low": float(cis[col, 0]),
                    "ci_high": float(cis[col, 1]),
                    "n": len(rows),
                }
            )
    return (
        SegmentShares(
            method=method,
            runs=list(run_ids),
            n=len(rows),
            table=table,
            ci_level=level,
            seed=seed,
            n_resamples=n_resamples,
        ),
        None,
    )


# ---- explainer transfer ------------------------------------------------------------------------


class CompareCache(JsonDir):
    """Transfer and val-selected explainer results beside a store (``<store>.results/cmp-*.json``); each
    document names the run it scores as ``run_id``, so deleting that run removes it."""

    kind = "results"


def _doc_key(store: Store, kind: str, run_ids: Sequence[str], extra: dict[str, Any]) -> str:
    runs = [store.run(r) for r in run_ids]
    payload = {
        "v": COMPARE_VERSION,
        "kind": kind,
        "runs": [[r.run_id, r.n_planned, r.split_config, r.config, r.status] for r in runs],
        # a complete run holds its planned items; only one still being written needs counting
        "n": [r.n_planned if r.status == "complete" else len(store.done_item_ids(r.run_id)) for r in runs],
        **extra,
    }
    return "cmp-" + hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _subset(data: Any, keep: pd.Series) -> Any:
    """A copy of RunData restricted to some of its rows (arrays are still read lazily by item id)."""
    from wif_core.explainers.data import RunData

    return RunData(data.store, data.facts, data.frame[keep.to_numpy()].reset_index(drop=True))


def _auc(y: np.ndarray, s: np.ndarray, level: float, n_resamples: int, seed: int) -> Any:
    from wif_core.metrics import auc_ci

    return auc_ci(y, s, level=level, n_resamples=n_resamples, seed=seed)


def _fit(data: Any, name: str, settings: dict[str, Any], seed: int) -> Any:
    from wif_core.explainers.base import get_explainer

    cls = get_explainer(name)
    train, y_train = data.split("train", cls.tier, other_train=cls.reads_other_train)
    val, y_val = data.split("val", cls.tier)
    return cls(seed=seed, **settings).fit(train, y_train, val, y_val), val, y_val


def _candidates(facts_a: Any, facts_b: Any, name: str) -> tuple[list[dict[str, Any]], str | None]:
    """The settings of ``name`` that read the same thing in both runs, or why it cannot transfer."""
    from wif_core.explainers.base import get_explainer

    cls = get_explainer(name)
    options = []
    for s in cls.default_settings(facts_a):
        site = s.get("site") or (cls.sites[0] if cls.uses_layer else None)
        if (
            cls.applicable(facts_a, s.get("layer"), site) is None
            and cls.applicable(facts_b, s.get("layer"), site) is None
        ):
            options.append({**s, "site": site} if cls.uses_layer else s)
    if options:
        return options, None
    why = cls.applicable(facts_b, None, None) or cls.applicable(facts_a, None, None)
    return [], why or f"{name} applies to no setting both runs hold"


def explainer_transfer(
    store: Store,
    source: str,
    target: str,
    names: Sequence[str] = TRANSFER_EXPLAINERS,
    *,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    cache: bool = True,
) -> list[TransferResult]:
    """Each input-tier explainer fitted on ``source`` (its train split, tuned on its val split; a layer chosen
    by its val AUC) scoring ``target``'s test items whose key is in neither of the source's fitting splits,
    beside the target's own explainer on the same items; and a ``gold``-tier row scoring the same items by
    the source's outcomes on them. An explainer that reads activations cannot transfer between runs of
    different widths (one line says so)."""
    from wif_core.explainers.base import get_explainer
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import ResultCache, evaluate, label_of
    from wif_core.metrics import roc_auc_score

    docs = CompareCache.beside(store.path) if cache else CompareCache(None)
    key = _doc_key(store, "transfer", [source, target], {"names": list(names), "seed": seed, "level": level})
    if (hit := docs.read(key)) is not None:
        try:
            return [TransferResult(**row) for row in hit["rows"]]
        except (TypeError, KeyError):
            pass
    a, b = RunData.load(store, source), RunData.load(store, target)
    seen = set(a.frame.loc[a.frame["split"].isin(["train", "val"]), "key"])
    test_b = _subset(b, (b.frame["split"] == "test") & ~b.frame["key"].isin(seen))
    part = test_b.frame
    ids, y = part["item_id"].tolist(), part["failed"].to_numpy(dtype=int)
    run_a, run_b = store.run(source), store.run(target)
    base: dict[str, Any] = {
        "source": source,
        "target": target,
        "ci_level": level,
        "n_test": len(ids),
        "n_test_failed": int(y.sum()),
    }
    rows: list[TransferResult] = []
    if len(ids) < 2 or y.min() == y.max():
        note = (
            f"{target} has {len(ids)} test items that {source} did not fit on, without both outcomes among them: "
            "no AUC (collect more items)"
        )
        return [TransferResult(**base, explainer=n, label=n, tier="input", note=note) for n in names]
    results = ResultCache.beside(store.path) if cache else ResultCache(None)
    for name in names:
        cls = get_explainer(name)
        if cls.tier != "input":
            raise InputError(f"explainer {name} is {cls.tier}-tier; transfer takes input-tier explainers")
        if cls.uses_layer and run_a.d_model and run_b.d_model and run_a.d_model != run_b.d_model:
            note = (
                f"{name} reads activations of width {run_a.d_model} at test time; {target} has width "
                f"{run_b.d_model}: it cannot transfer across models of different widths"
            )
            rows.append(TransferResult(**base, explainer=name, label=name, tier="input", note=note))
            continue
        options, why = _candidates(a.facts, b.facts, name)
        best: tuple[float, dict[str, Any], Any] | None = None
        for s in options:
            explainer, val, y_val = _fit(a, name, s, seed)
            val_auc = roc_auc_score(y_val, np.asarray(explainer.predict_proba(val), dtype=float))
            if best is None or val_auc > best[0]:
                best = (val_auc, s, explainer)
        if best is None:
            rows.append(TransferResult(**base, explainer=name, label=name, tier="input", note=why))
            continue
        val_auc, s, explainer = best
        view, _ = test_b.split("test", cls.tier)
        ci = _auc(y, np.asarray(explainer.predict_proba(view), dtype=float), level, n_resamples, seed)
        own = evaluate(b, name, seed=seed, level=level, n_resamples=n_resamples, cache=results, **s)
        by_id = dict(zip(own.item_ids, own.scores, strict=True))
        own_ci = _auc(y, np.array([by_id[i] for i in ids]), level, n_resamples, seed)
        rows.append(
            TransferResult(
                **base,
                explainer=name,
                label=label_of(name, s),
                tier="input",
                layer=s.get("layer"),
                site=s.get("site"),
                val_auc=float(val_auc),
                auc=ci.auc,
                ci_low=ci.ci_low,
                ci_high=ci.ci_high,
                own_auc=own_ci.auc,
                own_ci_low=own_ci.ci_low,
                own_ci_high=own_ci.ci_high,
            )
        )
    source_items = store.items(source)
    a_failed = dict(zip(source_items["key"], ~source_items["correct"].astype(bool), strict=True))
    score = np.array([float(a_failed.get(k, np.nan)) for k in part["key"]])
    ok = np.isfinite(score)
    row = TransferResult(**base, explainer="source-outcome", label=f"{source}'s outcome", tier="gold")
    if ok.sum() >= 2 and y[ok].min() != y[ok].max():
        ci = _auc(y[ok], score[ok], level, n_resamples, seed)
        row.auc, row.ci_low, row.ci_high = ci.auc, ci.ci_low, ci.ci_high
        row.n_test, row.n_test_failed = int(ok.sum()), int(y[ok].sum())
    else:
        row.note = f"{source} scored too few of these items to give an AUC"
    rows.append(row)
    docs.write(key, {"run_id": target, "source": source, "rows": [asdict(r) for r in rows]})
    return rows


# ---- checkpoint series --------------------------------------------------------------------------


def best_input_explainer(
    store: Store,
    run_id: str,
    *,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    cache: bool = True,
) -> dict[str, Any]:
    """The input-tier explainer of the default comparison that is best on the run's val split, with its test
    AUC, interval and n (each variant fitted once on train; the result cached beside the store)."""
    from wif_core.explainers.base import get_explainer
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import DEFAULT_COMPARISON, label_of, variants
    from wif_core.metrics import roc_auc_score

    docs = CompareCache.beside(store.path) if cache else CompareCache(None)
    key = _doc_key(store, "best-input", [run_id], {"seed": seed, "level": level, "resamples": n_resamples})
    if (hit := docs.read(key)) is not None and "best" in hit:
        return hit["best"]
    data = RunData.load(store, run_id)
    names = [n for n in DEFAULT_COMPARISON if get_explainer(n).tier == "input"]
    best: dict[str, Any] | None = None
    for name, s in variants(data, names):
        cls = get_explainer(name)
        settings = {**s, "site": s.get("site") or cls.sites[0]} if cls.uses_layer else s
        explainer, val, y_val = _fit(data, name, settings, seed)
        val_auc = roc_auc_score(y_val, np.asarray(explainer.predict_proba(val), dtype=float))
        if best is None or val_auc > best["val_auc"]:
            test, y_test = data.split("test", cls.tier)
            ci = _auc(y_test, np.asarray(explainer.predict_proba(test), dtype=float), level, n_resamples, seed)
            best = {
                "explainer": name,
                "label": label_of(name, settings),
                "val_auc": float(val_auc),
                "auc": ci.auc,
                "ci_low": ci.ci_low,
                "ci_high": ci.ci_high,
                "ci_level": level,
                "n_test": ci.n,
                "n_test_failed": ci.n_pos,
            }
    if best is None:
        raise InputError(f"run {run_id}: no input-tier explainer of the default comparison applies")
    docs.write(key, {"run_id": run_id, "best": best})
    return best


def _series(
    store: Store,
    runs: list[RunInfo],
    shared: pd.DataFrame,
    segments: SegmentShares | None,
    *,
    explainers: bool,
    opts: dict[str, Any],
) -> list[CheckpointPoint]:
    ordered = checkpoint_order(runs)
    points = [r for r in ordered if checkpoint_of(r) is not None]
    if len(points) < 2:
        return []
    last = points[-1].run_id
    final_failed = ~shared[f"{last}:correct"].to_numpy(dtype=bool)
    out = []
    for r in points:
        entry = checkpoint_of(r) or {}
        correct = shared[f"{r.run_id}:correct"].to_numpy(dtype=bool)
        acc, lo, hi = wilson_interval(int(correct.sum()), len(correct), opts["level"])
        m = shared.loc[final_failed, f"{r.run_id}:margin"].to_numpy(dtype=float)
        m = m[np.isfinite(m)]
        mci = _bootstrap_means(m[:, None], opts["level"], opts["n_resamples"], opts["seed"])[0] if len(m) else None
        seg = {row["segment"]: row["share"] for row in segments.table if row["run_id"] == r.run_id} if segments else {}
        point = CheckpointPoint(
            run_id=r.run_id,
            label=str(entry.get("label") or r.run_id),
            samples=entry.get("samples"),
            step=entry.get("step"),
            accuracy=acc,
            ci_low=lo,
            ci_high=hi,
            n=len(correct),
            mean_margin_final_failures=float(m.mean()) if len(m) else None,
            margin_ci_low=None if mci is None or not np.isfinite(mci[0]) else float(mci[0]),
            margin_ci_high=None if mci is None or not np.isfinite(mci[1]) else float(mci[1]),
            n_final_failures=len(m),
            segments=seg,
            n_attributed=segments.n if segments else 0,
        )
        if explainers:
            try:
                point.best_input = best_input_explainer(store, r.run_id, **opts)
            except WifError as exc:
                point.best_input_note = one_line(exc)
        out.append(point)
    return out


# ---- the verb -------------------------------------------------------------------------------------


def compare_runs(
    store: Store,
    run_ids: Sequence[str],
    *,
    method: str | None = None,
    transfer: bool = False,
    explainers: bool = False,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    cache: bool = True,
    progress: Callable[[str], None] | None = None,
    items: ItemsReader | None = None,
) -> Comparison:
    """Compare two or more runs of one task on the items they all share (see the module docstring).

    ``method`` picks the attribution method for segment shares (default: one every run has, AttnLRP
    first). ``transfer`` fits the explainer transfer for every ordered pair of runs; ``explainers`` the
    best input-tier explainer of every checkpoint of a series. Both are cached beside the store. A bad
    request (fewer than two runs, an unknown run, runs of different tasks or that share no items) is
    one ``InputError``/``StoreError`` line. ``items`` reads a run's items (default ``store.items``; the app
    passes its cached reader).
    """
    runs = _check_runs(store, run_ids)
    read = items or store.items
    frames, sources, repeats = {}, {}, {}
    for r in runs:
        frames[r.run_id], sources[r.run_id], repeats[r.run_id] = _run_items(read, r)
    keys = _shared(frames, runs)
    shared = pd.DataFrame({"key": keys})
    for r in runs:
        f = frames[r.run_id].loc[keys]
        shared[f"{r.run_id}:item_id"] = f["item_id"].to_numpy()
        shared[f"{r.run_id}:correct"] = f["correct"].astype(bool).to_numpy()
        shared[f"{r.run_id}:margin"] = f["margin_delta"].to_numpy(dtype=float)
    shared["context"] = frames[runs[0].run_id].loc[keys, "context"].to_numpy()  # the same question in every run
    accs = []
    for r in runs:
        k = int(shared[f"{r.run_id}:correct"].sum())
        acc, lo, hi = wilson_interval(k, len(keys), level)
        accs.append(
            RunAccuracy(
                run_id=r.run_id,
                model=r.model,
                kind=r.kind,
                n=len(keys),
                n_correct=k,
                accuracy=acc,
                ci_low=lo,
                ci_high=hi,
                ci_level=level,
                margin_source=sources[r.run_id],
                checkpoint=checkpoint_of(r),
                n_repeats=repeats[r.run_id],
            )
        )
    pairs = [_pair(a, b, shared, level) for i, a in enumerate(runs) for b in runs[i + 1 :]]
    chosen, note = _common_method(store, [r.run_id for r in runs], method)
    segments = None
    if chosen is not None:
        segments, note = segment_shares(
            store, shared, [r.run_id for r in runs], chosen, level=level, n_resamples=n_resamples, seed=seed
        )
    opts: dict[str, Any] = {"seed": seed, "level": level, "n_resamples": n_resamples, "cache": cache}
    moves = []
    if transfer:
        for a in runs:
            for b in runs:
                if a.run_id == b.run_id:
                    continue
                if progress:
                    progress(f"explainer transfer {a.run_id} → {b.run_id}")
                try:
                    moves += explainer_transfer(store, a.run_id, b.run_id, **opts)
                except WifError as exc:
                    moves.append(
                        TransferResult(
                            source=a.run_id, target=b.run_id, explainer="-", label="-", tier="input", note=one_line(exc)
                        )
                    )
    if progress and explainers:
        progress("checkpoint series")
    series = _series(store, runs, shared, segments, explainers=explainers, opts=opts)
    return Comparison(
        task=runs[0].task,
        runs=accs,
        n_shared=len(keys),
        pairs=pairs,
        items=shared,
        segments=segments,
        segments_note=note,
        transfer=moves,
        series=series,
        ci_level=level,
        seed=seed,
    )


def default_selection(store: Store, items: ItemsReader | None = None) -> list[str]:
    """The runs a page compares first: on the first task (in store order) with two or more scored runs, its
    checkpoint series when it has one of two or more checkpoints, else the two runs sharing the most items;
    an empty list when no task has two scored runs. ``items`` as for ``compare_runs``."""
    read = items or store.items
    runs = store.runs()
    scored = runs[runs["n_items"] > 0]
    for _, group in scored.groupby("task", sort=False):
        if len(group) < 2:
            continue
        infos = [store.run(r) for r in group["run_id"]]
        points = [r.run_id for r in checkpoint_order(infos) if checkpoint_of(r) is not None]
        if len(points) >= 2:
            return points
        keys = {r.run_id: set(read(r.run_id)["key"]) for r in infos}
        ids = list(keys)
        best = max(
            ((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]), key=lambda p: len(keys[p[0]] & keys[p[1]])
        )
        if keys[best[0]] & keys[best[1]]:
            return list(best)
    return []
