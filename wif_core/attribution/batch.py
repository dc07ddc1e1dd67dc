"""Attributing one item, and every (failed) item of a run into the store, resumably."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wif_core.attribution import DEFAULT_METHOD, get_method
from wif_core.attribution.pairs import build_pair, contrast, neutral_id
from wif_core.attribution.record import Attribution
from wif_core.errors import InputError, StoreError
from wif_core.store.store import LM_KIND, Store
from wif_core.tasks.base import TaskItem

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# The most faithful method within the batch time budget on the real-task runs measured in
# bench/attribution.py (occlusion is more faithful but several times slower); it falls
# back to grad_x_input, with a recorded note, on models that are not llamas.
BATCH_ITEMS = 16  # items per store transaction: a kill loses at most this much work


def _precision(model: Any) -> dict[str, str]:
    """The model's ``dtype`` when not float32 and its ``device`` when not the CPU, for a record's config
    (a record of a float32 model on the CPU, the default, carries neither)."""
    from wif_core.models.devices import DEFAULT_DTYPE, dtype_name, model_device, model_dtype

    out = {}
    if dtype_name(model_dtype(model)) != DEFAULT_DTYPE:
        out["dtype"] = dtype_name(model_dtype(model))
    if model_device(model).type != "cpu":
        out["device"] = str(model_device(model))
    return out


def attribute_item(
    lm: Any,
    item: TaskItem,
    wrong: int,
    right: int,
    method: str,
    *,
    deletion: bool = True,
    seed: int = 0,
    cache: dict[Any, list[float]] | None = None,
    family: str | None = None,
    max_length: int | None = None,
) -> Attribution:
    """Attribute Δ = log p(wrong) − log p(right) of one item to its tokens with one method.

    ``lm`` is a ``LoadedModel`` (or anything with ``model`` and ``tokenizer``). A method the
    model does not support (AttnLRP on a non-llama) falls back to its declared fallback
    with a logged warning, recorded in ``config['fallback']`` and ``config['reason']``.
    ``cache`` shares random deletion curves across methods of the same item. ``family`` is the
    item's run's (``RunInfo.family``; see ``build_pair``). ``max_length`` is the context length its run
    scored with (the run config's, when it was given; by default the model's own): a longer item is cut
    from the left as the run cut it, so attributing it costs no more than scoring it did.
    """
    return attribute_methods(
        lm,
        item,
        (wrong, right),
        [method],
        deletion=deletion,
        seed=seed,
        cache=cache,
        family=family,
        max_length=max_length,
    )[0]


def attribute_methods(
    lm: Any,
    item: TaskItem,
    contrast_choices: tuple[int, int],
    methods: Sequence[str],
    *,
    deletion: bool = True,
    seed: int = 0,
    cache: dict[Any, list[float]] | None = None,
    family: str | None = None,
    max_length: int | None = None,
) -> list[Attribution]:
    """``attribute_item`` for several methods of one item (``contrast_choices`` = (wrong, right)): the
    contrast is built once, and the deletion steps of every method and the shared random order are scored
    in one batched forward pass. Each record's ``seconds`` is its method's own time plus its share of that pass.
    """
    from wif_core.attribution.deletion import deletion_curves_many
    from wif_core.models.scoring import check_max_length

    wrong, right = contrast_choices
    start = time.perf_counter()
    length = check_max_length(lm.model, max_length)
    pair = build_pair(item, lm.tokenizer, wrong, right, family=family, max_length=length)
    setup = time.perf_counter() - start
    neutral = neutral_id(lm.tokenizer)
    done: list[tuple[Any, Any, dict[str, Any], Any, np.ndarray, float]] = []
    for method in methods:
        t0 = time.perf_counter()
        asked = get_method(method)
        used, config = asked, dict[str, Any]()
        ok, reason = asked.is_compatible(lm.model)
        if not ok:
            if asked.fallback is None:
                raise InputError(f"method '{asked.name}' cannot run on this model: {reason}")
            used = get_method(asked.fallback)
            log.warning("item %s: %s; falling back to %s", item.item_id, reason, used.name)
            config = {"fallback": used.name, "reason": reason}
        with torch.no_grad():
            result = used.compute(lm.model, lm.tokenizer, pair)
        scores = np.asarray(result.scores, dtype=float)
        done.append((asked, used, config, result, scores, time.perf_counter() - t0))
    curves: list[tuple[Any, Any]] = [(None, None)] * len(done)
    shared = 0.0
    if deletion and done:
        t0 = time.perf_counter()
        curves = deletion_curves_many(
            lm.model, pair, [d[4].tolist() for d in done], [d[3].delta for d in done], neutral, seed=seed, cache=cache
        )
        shared = time.perf_counter() - t0
    out = []
    for (asked, used, config, result, scores, own), (curve, faith) in zip(done, curves, strict=True):
        config = {
            "target": used.target,
            "complete": used.complete,
            "shared_prefix_tokens": pair.shared,
            "n_targets": len(pair.targets),
            "n_shared_answer_tokens": len(pair.shared_targets),
            "truncated": pair.truncated,
            "neutral_token": lm.tokenizer.decode([neutral]),
            "layer_profile_norm": "max_abs",
            "seed": seed,
            **_precision(lm.model),
            **result.config,
            **config,
        }
        out.append(
            Attribution(
                item_id=item.item_id,
                method=asked.name,
                wrong_choice=wrong,
                right_choice=right,
                tokens=list(pair.tokens),
                segments=list(pair.segments),
                scores=scores.tolist(),
                delta=float(result.delta),
                sum_scores=float(scores.sum()),
                layer_profile=None if result.layer_profile is None else [float(x) for x in result.layer_profile],
                deletion=curve,
                faithfulness=faith,
                seconds=(setup + shared) / len(done) + own,
                config=config,
            )
        )
    return out


def _outcome_rows(store: Store, run_id: str, failures_only: bool) -> list[dict[str, Any]]:
    frame = store.items(run_id, outcome="incorrect" if failures_only else None)
    return [
        {"item_id": r.item_id, "pred": r.pred, "correct": bool(r.correct), "ll_sum": r.ll_sum}
        for r in frame.itertuples()
    ]


def item_attribution(
    store: Store,
    run_id: str,
    item_id: str,
    method: str,
    lm: Any | Callable[[], Any] | None,
    *,
    recompute: bool = False,
    deletion: bool = True,
    seed: int = 0,
) -> tuple[Attribution, bool]:
    """One item's attribution: the stored one if there is one, else computed now (not written).

    Returns ``(record, was_stored)``. ``lm`` is a ``LoadedModel``, a function returning one
    (called only when a record must be computed, so a page can load the model lazily), or
    None when only stored records are wanted.
    """
    get_method(method)
    stored = [] if recompute else store.attributions(run_id, method=method, item_ids=[item_id])
    if stored:
        return Attribution.from_row(stored[0]), True
    items = {it.item_id: it for it in store.task_items(run_id)}
    if item_id not in items:
        raise StoreError(f"run {run_id} has no item '{item_id}' (see `wif items --run {run_id}`)")
    rows = [r for r in _outcome_rows(store, run_id, False) if r["item_id"] == item_id]
    if not rows:
        raise StoreError(f"item '{item_id}' of run {run_id} has no outcome yet; finish `wif collect` first")
    if lm is None:
        raise StoreError(
            f"no stored {method} attribution of item '{item_id}' in run {run_id}; "
            f"run `wif attribute --run {run_id} --item {item_id} --method {method}`"
        )
    model = lm() if callable(lm) else lm
    wrong, right = contrast(items[item_id], rows[0])
    run = store.run(run_id)
    record = attribute_item(
        model,
        items[item_id],
        wrong,
        right,
        method,
        deletion=deletion,
        seed=seed,
        family=run.family,
        max_length=run.config.get("max_length"),
    )
    return record, False


@dataclass(kw_only=True)
class RunSummary:
    """What ``attribute_run`` did: counts, time, items it could not attribute, per-method means."""

    run_id: str
    methods: list[str]
    n_items: int
    n_computed: int = 0
    n_skipped: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)


def attribute_run(
    store_path: str | Path,
    run_id: str,
    lm: Any,
    methods: Sequence[str] = (DEFAULT_METHOD,),
    failures_only: bool = False,
    limit: int | None = None,
    progress: Callable[[int], Any] | None = None,
    *,
    deletion: bool = True,
    seed: int = 0,
    batch_items: int = BATCH_ITEMS,
) -> RunSummary:
    """Attribute a run's items (or only its failures) with each method and store them.

    Resumable: (item, method) pairs already stored are skipped. Rows are written every
    ``batch_items`` items, each batch one transaction, and the store is opened for writing
    only while a batch is written, so the app can read it in between. Items that cannot
    be attributed (answers that tokenise identically) are reported in ``errors``.
    """
    methods = list(dict.fromkeys(methods))
    for m in methods:
        get_method(m)
    with Store.open(store_path) as store:
        run = store.run(run_id)
        family, max_length = run.family, run.config.get("max_length")
        items = {it.item_id: it for it in store.task_items(run_id)}
        outcomes = _outcome_rows(store, run_id, failures_only)[:limit]
        done = store.attribution_keys(run_id)
    summary = RunSummary(run_id=run_id, methods=methods, n_items=len(outcomes))
    start = time.perf_counter()
    buffer: list[Attribution] = []
    computed: list[Attribution] = []

    def flush() -> None:
        if buffer:
            with Store.open(store_path, write=True) as store:
                store.write_attributions(run_id, [a.to_row() for a in buffer])
            buffer.clear()

    for n, row in enumerate(outcomes, 1):
        item = items[row["item_id"]]
        todo = [m for m in methods if (item.item_id, m) not in done]
        summary.n_skipped += len(methods) - len(todo)
        cache: dict[Any, list[float]] = {}
        try:
            if todo:
                got = attribute_methods(
                    lm,
                    item,
                    contrast(item, row),
                    todo,
                    deletion=deletion,
                    seed=seed,
                    cache=cache,
                    family=family,
                    max_length=max_length,
                )
                buffer.extend(got)
                computed.extend(got)
        except InputError as exc:
            log.warning("skipping %s: %s", item.item_id, exc)
            summary.errors[item.item_id] = str(exc)
        if n % batch_items == 0:
            flush()
        if progress is not None:
            progress(1)
    flush()
    summary.n_computed = len(computed)
    summary.seconds = time.perf_counter() - start
    for m in methods:
        mine = [a for a in computed if a.method == m]
        faith = [a.faithfulness for a in mine if a.faithfulness is not None]
        notes = sorted({a.fallback for a in mine if a.fallback})
        summary.per_method[m] = {
            "n": len(mine),
            "mean_seconds": float(np.mean([a.seconds or 0.0 for a in mine])) if mine else None,
            "mean_faithfulness": float(np.mean(faith)) if faith else None,
            "fallback": notes[0] if notes else None,
        }
    return summary


def attribute_failures(
    store_path: str | Path,
    lm: Any,
    methods: Sequence[str] = (DEFAULT_METHOD,),
    progress: Callable[[int], Any] | None = None,
    *,
    seed: int = 0,
) -> list[RunSummary]:
    """Attribute the failures of every run in a store that ``lm``'s model collected (as the demo ships them).

    Runs of other models, imported runs and zoo runs (no language model to attribute with) are left alone.
    """
    with Store.open(store_path) as store:
        runs = store.runs()
    wanted = attributable_runs(runs, lm.name)
    return [
        attribute_run(store_path, run_id, lm, methods, failures_only=True, progress=progress, seed=seed)
        for run_id in wanted["run_id"]
    ]


def attributable_runs(runs: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows of ``Store.runs()`` that the language model ``model`` collected: what ``attribute_failures`` attributes.

    Only collected runs have a language model wif loads and runs (``RunInfo.has_lm``); imported and zoo runs do not.
    """
    return runs[(runs["model"] == model) & (runs["kind"] == LM_KIND)]
