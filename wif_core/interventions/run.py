"""One steering check of a run: an explainer's direction swept over strengths on val and test, against random
directions of the same norm; the strength chosen on val, the causal score reported on test."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.interventions.causal import CausalScore, choose_alpha, rates
from wif_core.interventions.clamp import DEFAULT_KS, clamp_edit, clamp_plan, random_features
from wif_core.interventions.steering import (
    DEFAULT_ALPHAS,
    Level,
    adding,
    edit_sweep,
    probe_direction,
    random_directions,
    residual_norm,
)
from wif_core.jsondir import JsonDir, jsonable
from wif_core.metrics.auc import DEFAULT_LEVEL

DIRECTION_EXPLAINERS = ("probe",)


class InterventionCache(JsonDir):
    """Causal checks beside a store (``<store>.interventions/``): what ``wif intervene`` and the page computed."""

    kind = "interventions"

    def put(self, key: str, score: CausalScore) -> None:
        self.write(key, jsonable(asdict(score)))

    def get(self, key: str) -> CausalScore | None:
        doc = self.read(key)
        return None if doc is None else _score_of(doc)

    def of_run(self, run_id: str) -> list[CausalScore]:
        """Every stored check of ``run_id``, the newest first."""
        if self.directory is None or not self.directory.is_dir():
            return []
        docs = []
        for path in sorted(self.directory.glob("*.json"), key=lambda p: -p.stat().st_mtime):
            doc = self.read(path.stem)
            if isinstance(doc, dict) and doc.get("run_id") == run_id and (score := _score_of(doc)) is not None:
                docs.append(score)
        return docs


def _score_of(doc: dict[str, Any]) -> CausalScore | None:
    from wif_core.interventions.causal import Rates

    try:
        doc = dict(doc)
        doc["val"] = [Rates(**r) for r in doc.get("val", [])]
        doc["test"] = [Rates(**r) for r in doc.get("test", [])]
        return CausalScore(**doc)
    except TypeError:  # written by another version
        return None


def check_key(run_id: str, model: str, **settings: Any) -> str:
    """The cache key of one steering check: the run, the model that scored it and every setting."""
    doc = json.dumps({"run_id": run_id, "model": model, **settings}, sort_keys=True, default=str)
    return "steer-" + hashlib.sha1(doc.encode()).hexdigest()[:16]


def _split_items(store: Any, run_id: str, split: str, limit: int | None, seed: int) -> list[Any]:
    frame = store.items(run_id, split=split, include_excluded=False)
    ids = list(frame.item_id)
    if limit is not None and len(ids) > limit:
        keep = set(np.random.default_rng(seed).choice(len(ids), size=limit, replace=False).tolist())
        ids = [i for n, i in enumerate(ids) if n in keep]
    wanted = set(ids)
    return [it for it in store.task_items(run_id) if it.item_id in wanted]


def check_request(run: Any, *, explainer: str, layer: int, site: str, alphas: Sequence[float]) -> list[float]:
    """Refuse, before any model loads, a steering request the run cannot serve; the strength grid, with 0."""
    if explainer not in DIRECTION_EXPLAINERS:
        raise InputError(
            f"explainer '{explainer}' yields no residual-stream direction to steer along; use one of: "
            f"{', '.join(DIRECTION_EXPLAINERS)}"
        )
    if layer not in run.layers or site not in run.sites:
        raise InputError(f"run {run.run_id} has no activations at layer {layer}, site '{site}' (layers {run.layers})")
    grid = sorted({0.0, *(float(a) for a in alphas)})
    if len(grid) < 2:
        raise InputError("the strength grid has no strength above 0; give strengths like --alphas 0,0.5,1,2")
    return grid


def steering_check(
    store: Any,
    lm: Any,
    run_id: str,
    *,
    explainer: str = "probe",
    layer: int,
    site: str = "last",
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_controls: int = 1,
    seed: int = 0,
    limit: int | None = None,
    level: float = DEFAULT_LEVEL,
    max_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CausalScore:
    """Steer run ``run_id``'s model ``lm`` along ``explainer``'s direction at ``layer``/``site``: the flip, broken
    and Δ curves over ``alphas`` (units of the mean residual norm) on val and test, each against ``n_controls``
    random directions of the same norm; the causal score at the strength chosen on val, on test. ``limit``
    takes a seeded sample of at most that many items of each split."""
    run = store.run(run_id)
    grid = check_request(run, explainer=explainer, layer=layer, site=site, alphas=alphas)
    _check_width(lm, run)
    start = time.perf_counter()
    direction = probe_direction(store, run_id, layer, site, seed)
    unit = residual_norm(store, run_id, layer, site)
    controls = random_directions(len(direction.vector), n_controls, seed)
    levels = [
        Level(alpha=0.0, edit=None)
        if a == 0
        else Level(
            alpha=a,
            edit=adding(lm, a * unit * direction.vector),
            controls=[adding(lm, a * unit * c) for c in controls],
        )
        for a in grid
    ]
    return _causal_check(
        store,
        lm,
        run_id,
        levels=levels,
        layer=layer,
        name=direction.name,
        source=direction.source | {"unit": unit, "n_controls": n_controls, "seed": seed, "limit": limit},
        site=site,
        seed=seed,
        limit=limit,
        level=level,
        max_tokens=max_tokens,
        progress=progress,
        start=start,
    )


def clamp_check(
    store: Any,
    lm: Any,
    run_id: str,
    *,
    layer: int,
    ks: Sequence[int] = DEFAULT_KS,
    mode: str = "zero",
    n_controls: int = 1,
    seed: int = 0,
    limit: int | None = None,
    level: float = DEFAULT_LEVEL,
    max_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CausalScore:
    """Clamp the top-k failure features of the run's SAE at ``layer`` (to 0 or their success mean, the SAE's
    error term kept) for each k of ``ks``, against ``n_controls`` sets of k random live features; k chosen on
    val, the causal score on test (``alpha`` of the result is k)."""
    from wif_core.sae.load import check_width, load_sae
    from wif_core.sae.paths import sae_dir

    run = store.run(run_id)
    grid = check_ks(ks)
    _check_width(lm, run)
    start = time.perf_counter()
    plan = clamp_plan(store, run_id, layer, mode=mode, seed=seed)
    sae = load_sae(sae_dir(store.path, run_id, layer))
    check_width(sae, run.d_model, run_id, f"of run {run_id} at layer {layer}")
    grid = [k for k in grid if k <= len(plan.ranked)] or [len(plan.ranked)]
    levels = [Level(alpha=0.0, edit=None)]
    for k in grid:
        chosen = plan.ranked[:k]
        levels.append(
            Level(
                alpha=float(k),
                edit=clamp_edit(sae, chosen, plan.target, plan.max_norm),
                controls=[
                    clamp_edit(sae, rand, plan.target, plan.max_norm)
                    for rand in random_features(plan, k, n_controls, seed)
                ],
            )
        )
    return _causal_check(
        store,
        lm,
        run_id,
        levels=levels,
        layer=layer,
        name=f"SAE L{layer} top-k clamp ({mode})",
        source=plan.source
        | {
            "explainer": "sae-clamp",
            "features": plan.ranked[: max(grid)],
            "n_controls": n_controls,
            "seed": seed,
            "limit": limit,
        },
        site="tokens",
        seed=seed,
        limit=limit,
        level=level,
        max_tokens=max_tokens,
        progress=progress,
        start=start,
    )


def check_ks(ks: Sequence[int]) -> list[int]:
    """The sorted feature counts of a clamping grid (each at least 1); one line when none is given."""
    grid = sorted({int(k) for k in ks if int(k) > 0})
    if not grid:
        raise InputError("the feature-count grid is empty; give counts like --ks 1,4,16")
    return grid


def _check_width(lm: Any, run: Any) -> None:
    if lm.d_model != run.d_model:
        raise InputError(f"the model given has width {lm.d_model}, run {run.run_id} was collected at {run.d_model}")


def _causal_check(
    store: Any,
    lm: Any,
    run_id: str,
    *,
    levels: Sequence[Level],
    layer: int,
    name: str,
    source: dict[str, Any],
    site: str,
    seed: int,
    limit: int | None,
    level: float,
    max_tokens: int | None,
    progress: Callable[[int], None] | None,
    start: float,
) -> CausalScore:
    """Score ``levels`` (the first one the baseline) on val and test; the strength chosen on val, scored on test."""
    run = store.run(run_id)
    out: dict[str, list[Any]] = {}
    points_of: dict[str, list[Any]] = {}
    for split in ("val", "test"):
        items = _split_items(store, run_id, split, limit, seed)
        if not items:
            raise InputError(f"run {run_id} has no {split} items; draw its splits first (`wif collect` does)")
        points = edit_sweep(
            lm, items, levels, layer=layer, scoring=run.scoring or "sum", max_tokens=max_tokens, progress=progress
        )
        points_of[split] = points
        base = points[0]  # nothing changed, scored the same way as the edited passes
        ids = [it.item_id for it in items]
        out[split] = [rates(p, base.correct, base.margin, ids, level=level, seed=seed) for p in points]
    alpha = choose_alpha(out["val"])
    at = next(r for r in out["test"] if r.alpha == alpha)
    base, chosen = points_of["test"][0], next(p for p in points_of["test"] if p.alpha == alpha)
    per_item = {
        i: {
            "correct_before": base.correct[i],
            "correct_after": chosen.correct[i],
            "correct_control": float(np.mean(chosen.control_correct[i])),
            "margin_before": base.margin.get(i),
            "margin_after": chosen.margin.get(i),
            "margin_control": float(np.mean(chosen.control_margin[i])) if chosen.control_margin.get(i) else None,
        }
        for i in base.correct
    }
    return CausalScore(
        run_id=run_id,
        site=site,
        items=per_item,
        seconds=time.perf_counter() - start,
        direction=name,
        layer=layer,
        alpha=alpha,
        score=at.flip_diff,
        ci=at.flip_diff_ci,
        ci_level=level,
        n_test_failures=at.n_failures,
        val=out["val"],
        test=out["test"],
        source=source,
    )
