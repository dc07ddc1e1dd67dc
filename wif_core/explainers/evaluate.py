"""Fit an explainer on a run's train split, tune on val, score the test split with an AUC and CI.

"The best" of several results (explainers, layers, sites, settings) is chosen on the **val** split and reported on
test (``best_of``, ``SELECTED_ON``): every result records its val AUC beside its test AUC, so choosing among some
30 settings by their test AUC, which would make the winner's margin optimistic, never happens.

Results are cached as JSON files beside the store (``<store>.results/``), keyed by the run,
the explainer and its settings, the metric settings and the code version, so the app never
fits the same thing twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.explainers.base import REGISTRY, get_explainer
from wif_core.explainers.data import RunData
from wif_core.jsondir import JsonDir, jsonable
from wif_core.metrics import auc_ci, paired_compare, roc_auc_score
from wif_core.metrics.auc import DEFAULT_LEVEL, DEFAULT_RESAMPLES

log = logging.getLogger(__name__)
RESULTS_VERSION = 2  # 2: results carry their val AUC
SELECTED_ON = "val"  # the split "best" is chosen on; its test AUC is what is reported
# What the comparison page shows first, and what `wif demo` fits ahead of time.
DEFAULT_COMPARISON = ("probe-paper", "surface", "text", "confidence", "label-prior")

# The paper's reported test AUCs: last-token logistic probes on Gemma-2 2B (26 blocks).
PAPER_MODEL_LAYERS = 26
PAPER_AUCS: dict[str, dict[int, float]] = {
    "piqa": {5: 0.456, 10: 0.445, 15: 0.457, 20: 0.495, 25: 0.509},
    "boolq": {5: 0.570, 10: 0.561, 15: 0.590, 20: 0.611, 25: 0.609},
    "winogrande": {5: 0.525, 10: 0.522, 15: 0.498, 20: 0.530, 25: 0.521},
    "siqa": {5: 0.516, 10: 0.505, 15: 0.510, 20: 0.500, 25: 0.440},
}


def label_of(explainer: str, settings: dict[str, Any]) -> str:
    """A result's short name: explainer, then the space, layer, site and other run its settings pick."""
    parts = [explainer]
    if settings.get("space"):
        parts.append(str(settings["space"]))
    if settings.get("layer") is not None:
        parts.append(f"L{settings['layer']}")
    if settings.get("site") and settings["site"] != "tokens":
        parts.append(str(settings["site"]))
    if settings.get("other_run"):
        parts.append(f"vs {settings['other_run']}")
    return " ".join(parts)


@dataclass(kw_only=True)
class ExplainResult:
    """One explainer's held-out result on one run, with everything needed to trust and compare it."""

    run_id: str
    explainer: str
    tier: str
    layer: int | None
    site: str | None
    settings: dict[str, Any]
    auc: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_test: int
    n_test_failed: int
    n_train: int
    n_val: int
    seed: int
    fit_seconds: float
    # AUC of the fitted explainer on the val split (no interval): what "the best" is chosen by. The val split
    # also tunes the explainers' own settings (C, k, epochs), so it is optimistic, alike for every setting
    val_auc: float | None = None
    explanation: dict[str, Any] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    y_test: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return label_of(self.explainer, {**self.settings, "layer": self.layer, "site": self.site})

    def summary(self) -> dict[str, Any]:
        """The JSON contract of `wif explain` (no per-item scores)."""
        per_item = ("item_ids", "scores", "y_test")  # not walked by a deep copy: tens of thousands of values
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in per_item}
        out["label"] = self.label
        return out


def _key(data: RunData, name: str, settings: dict[str, Any], level: float, n_resamples: int) -> str:
    run = data.run if data.run is not None else data.store.run(data.facts.run_id)
    payload = {
        "v": RESULTS_VERSION,
        "run": data.facts.run_id,
        "n": len(data.frame),
        "split": run.split_config,
        "config": run.config,
        "explainer": name,
        "settings": settings,
        "level": level,
        "resamples": n_resamples,
    }
    if data.excluded:  # items left out beyond leakage (--exclude suspect): other items, another result
        payload["excluded"] = data.excluded
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ResultCache(JsonDir):
    """Explainer results beside a store (``<store>.results/``)."""

    kind = "results"

    def get(self, key: str) -> ExplainResult | None:
        doc = self.read(key)
        try:
            return None if doc is None else ExplainResult(**doc)
        except TypeError:  # written by another version of ExplainResult
            return None

    def put(self, key: str, result: ExplainResult) -> None:
        self.write(key, asdict(result))

    def get_comparison(self, key: str) -> dict[str, Any] | None:
        """A paired comparison stored by ``compare`` (``pair-KEY.json``), or None."""
        doc = self.read(f"pair-{key}")
        return doc if isinstance(doc, dict) else None

    def put_comparison(self, key: str, comparison: dict[str, Any]) -> None:
        self.write(f"pair-{key}", comparison)


def _resolve(
    data: RunData,
    name: str,
    layer: int | None,
    site: str | None,
    *,
    seed: int,
    level: float,
    n_resamples: int,
    **settings: Any,
) -> tuple[str | None, dict[str, Any], str]:
    """The site, the full settings and the cache key of one evaluation; a one-line ``InputError`` where
    the explainer takes no such setting or does not apply to the run."""
    cls = get_explainer(name)
    unknown = sorted(set(settings) - set(cls.options))
    if unknown:  # a misspelt setting would otherwise be ignored, and the result look like its own
        takes = f"its settings are {', '.join(cls.options)}" if cls.options else "it takes no settings"
        raise InputError(f"explainer '{name}' has no setting '{unknown[0]}'; {takes}")
    if cls.uses_layer and site is None:
        site = cls.sites[0]
    why_not = cls.applicable(data.facts, layer, site)
    if why_not:
        raise InputError(why_not)
    settings = cls.resolve_settings(data.facts, layer, dict(settings))
    described = {"layer": layer, "site": site, "seed": seed, **settings}
    return site, settings, _key(data, name, described, level, n_resamples)


def cached(
    data: RunData,
    name: str,
    cache: ResultCache,
    layer: int | None = None,
    site: str | None = None,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    **settings: Any,
) -> ExplainResult | None:
    """The result ``evaluate`` would return from ``cache`` for these arguments, or None: nothing is fitted."""
    _, _, key = _resolve(data, name, layer, site, seed=seed, level=level, n_resamples=n_resamples, **settings)
    return cache.get(key)


def evaluate(
    data: RunData,
    name: str,
    layer: int | None = None,
    site: str | None = None,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    cache: ResultCache | None = None,
    **settings: Any,
) -> ExplainResult:
    """Fit ``name`` on train (tuning on val), score test, and return the AUC with its CI."""
    cls = get_explainer(name)
    site, settings, key = _resolve(data, name, layer, site, seed=seed, level=level, n_resamples=n_resamples, **settings)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    train, y_train = data.split("train", cls.tier, other_train=cls.reads_other_train)
    val, y_val = data.split("val", cls.tier)
    test, y_test = data.split("test", cls.tier)
    start = time.perf_counter()
    explainer = cls(layer=layer, site=site, seed=seed, **settings).fit(train, y_train, val, y_val)
    scores = np.asarray(explainer.predict_proba(test), dtype=float)
    elapsed = time.perf_counter() - start
    if scores.shape != (len(test),):
        raise RuntimeError(f"{name} returned {scores.shape} scores for {len(test)} test items")
    val_auc = _val_auc(explainer, val, y_val)
    ci = auc_ci(y_test, scores, level=level, n_resamples=n_resamples, seed=seed)
    result = ExplainResult(
        run_id=data.facts.run_id,
        explainer=name,
        tier=cls.tier,
        layer=layer,
        site=site,
        settings=settings,
        auc=ci.auc,
        ci_low=ci.ci_low,
        ci_high=ci.ci_high,
        ci_level=ci.ci_level,
        n_test=ci.n,
        n_test_failed=ci.n_pos,
        n_train=len(train),
        n_val=len(val),
        seed=seed,
        fit_seconds=elapsed,
        val_auc=val_auc,
        explanation=jsonable(explainer.explain()),
        item_ids=test.item_ids,
        scores=scores.tolist(),
        y_test=y_test.tolist(),
    )
    if cache is not None:
        cache.put(key, result)
    return result


def _val_auc(explainer: Any, val: Any, y_val: np.ndarray) -> float | None:
    """The fitted explainer's AUC on the val split (None where val has one outcome or the scores are not finite)."""
    scores = np.asarray(explainer.predict_proba(val), dtype=float)
    if len(np.unique(y_val)) < 2 or scores.shape != (len(y_val),) or not np.isfinite(scores).all():
        return None
    return float(roc_auc_score(y_val, scores))


def variants(data: RunData, names: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every (explainer, settings) that applies to the run: what `--all` evaluates."""
    out = []
    for name in names or sorted(REGISTRY):
        cls = REGISTRY.lookup(name)
        for s in cls.default_settings(data.facts):
            if (
                cls.applicable(data.facts, s.get("layer"), s.get("site") or (cls.sites[0] if cls.uses_layer else None))
                is None
            ):
                out.append((name, s))
    return out


def evaluate_all(
    data: RunData,
    names: list[str] | None = None,
    cache: ResultCache | None = None,
    progress: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> list[ExplainResult]:
    results = []
    for name, s in variants(data, names):
        if progress:
            progress(f"{name} {s}")
        results.append(evaluate(data, name, cache=cache, **s, **kwargs))
    return results


def _pair_key(a: ExplainResult, b: ExplainResult, method: str) -> str:
    """What a paired comparison depends on: both results' test scores and labels, the level, seed and method."""
    h = hashlib.sha1(json.dumps([RESULTS_VERSION, method, a.ci_level, a.seed, a.label, b.label]).encode())
    for values in (a.y_test, a.scores, b.scores):
        h.update(np.asarray(values, dtype=float).tobytes())
    return h.hexdigest()[:20]


def compare(
    a: ExplainResult, b: ExplainResult, method: str = "bootstrap", cache: ResultCache | None = None
) -> dict[str, Any]:
    """Paired comparison of two results on the same test items: AUC(a) − AUC(b), CI and p.

    With ``cache``, a comparison made before on the same scores is read back (the bootstrap over tens of
    thousands of test items takes seconds; a page compares every row of its table with the best)."""
    if a.item_ids != b.item_ids:
        raise InputError("paired comparison needs both results on the same test items (same run and split)")
    key = _pair_key(a, b, method) if cache is not None else ""
    if cache is not None and (hit := cache.get_comparison(key)) is not None:
        return hit
    r = paired_compare(
        np.array(a.y_test),
        np.array(a.scores),
        np.array(b.scores),
        method=method,
        level=a.ci_level,
        n_resamples=2000,
        seed=a.seed,
    )
    out = {
        "a": a.label,
        "b": b.label,
        "diff": r.diff,
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "ci_level": r.ci_level,
        "p_value": r.p_value,
        "method": r.method,
        "n": r.n,
    }
    if cache is not None:
        cache.put_comparison(key, out)
    return out


def best_of(
    results: list[ExplainResult],
    tier: str | None = None,
    names: tuple[str, ...] | None = None,
    on: str = SELECTED_ON,
) -> ExplainResult | None:
    """The best result of ``tier`` among explainers ``names`` (default: all), chosen by its AUC on ``on``.

    ``on="val"`` (the default, and the protocol): the highest val AUC, ties broken by label so the choice is the
    same on every run; report that result's test AUC. ``on="test"`` picks by the test AUC itself, which is
    optimistic: only for showing how much selection on test would have flattered the winner. Results without a
    val AUC (a val split of one outcome) cannot be chosen on val.
    """
    if on not in ("val", "test"):
        raise InputError(f"best_of: choose on 'val' or 'test', not '{on}'")
    pool = [r for r in results if (tier is None or r.tier == tier) and (names is None or r.explainer in names)]
    if on == "val":
        pool = [r for r in pool if r.val_auc is not None]
        return min(pool, key=lambda r: (-float(r.val_auc or 0.0), r.label), default=None)
    return min(pool, key=lambda r: (-r.auc, r.label), default=None)


def selection(results: list[ExplainResult]) -> dict[str, Any]:
    """What was chosen, and how: per tier the val-selected result (label, val AUC, test AUC with CI and n) and,
    for contrast, the result test AUC would have picked. The JSON of ``wif explain --all`` carries it."""
    out: dict[str, Any] = {"selected_on": SELECTED_ON, "tiers": {}}
    for tier in ("input", "output", "gold"):
        chosen, by_test = best_of(results, tier), best_of(results, tier, on="test")
        if chosen is None:
            continue
        out["tiers"][tier] = {
            "label": chosen.label,
            "val_auc": chosen.val_auc,
            "auc": chosen.auc,
            "ci_low": chosen.ci_low,
            "ci_high": chosen.ci_high,
            "ci_level": chosen.ci_level,
            "n_test": chosen.n_test,
            "n_candidates": sum(r.tier == tier for r in results),
            "test_best_label": None if by_test is None else by_test.label,
            "test_best_auc": None if by_test is None else by_test.auc,
        }
    return out


def reproduce(data: RunData, seed: int = 0, cache: ResultCache | None = None) -> dict[str, Any]:
    """The paper's protocol on this run (probe-paper at every collected layer), beside the paper's numbers.

    Layers are matched by relative depth: paper layer L of Gemma-2 2B's 26 blocks sits at
    L/26 of the depth, shown next to this run's layer nearest that depth.
    """
    run = data.store.run(data.facts.run_id)
    n_layers = run.n_layers or max(run.layers or [1])
    ours = [evaluate(data, "probe-paper", layer=layer, site="last", seed=seed, cache=cache) for layer in run.layers]
    paper = PAPER_AUCS.get(_paper_task(run.task), {})
    rows = []
    for r in ours:
        depth = (r.layer or 0) / n_layers
        nearest = min(paper, key=lambda L: abs(L / PAPER_MODEL_LAYERS - depth)) if paper else None
        rows.append(
            {
                **r.summary(),
                "relative_depth": depth,
                "paper_layer": nearest,
                "paper_auc": paper.get(nearest) if nearest else None,
            }
        )
    return {
        "run_id": run.run_id,
        "task": run.task,
        "model": run.model,
        "paper_task": _paper_task(run.task),
        "paper": {str(k): v for k, v in paper.items()},
        "paper_model": "gemma-2-2b",
        "results": rows,
    }


def _paper_task(task: str) -> str:
    return {"gen-physical": "piqa", "gen-passage": "boolq", "gen-coref": "winogrande", "gen-social": "siqa"}.get(
        task, task
    )
