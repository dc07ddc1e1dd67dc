"""A small synthetic store built through the Store API, without any model.

Three runs with known contents, so app tests can assert exact counts:

- ``collected``: task ``gen-physical``, 40 items, activations (numpy random, layers 2
  and 4, sites choice/last/mean; per-token activations of 3..8 tokens at layer 4), tokens,
  per-choice ``ll_sum``/``ll_norm``; even items are correct, odd items incorrect; items
  0..9 mention a kettle, the rest a hammer; item 39 repeats item 37 (same content, same
  outcome: a ``repeat`` finding). Layer 4 carries a failure signal (dimension 0 is shifted
  for failed items), layer 2 none. A tiny SAE (32 features, k 4) is trained at layer 4 beside
  the store (``with_sae``), so every registered explainer applies to this run. Every item has
  stored attributions by ``grad_x_input`` and ``attnlrp``: failures draw relevance from the
  goal and have layer profiles peaking late, successes early.
- ``imported``: task ``piqa``, 40 items, outcomes only (no activations, no scores,
  ``pred`` None for every fifth item); items 38 and 39 are one question with conflicting
  answer keys (``gold_conflict`` and ``both_outcomes`` findings). Explainers that need
  neither internals nor scores (surface, text, label-prior) apply to it.
- ``other``: imported outcomes of another model on the first 16 ``gen-physical`` items (the
  same content as the collected run's, so ``cross-model`` applies to the collected run);
  8 correct and 8 failed, too few for an explainer to be evaluated on this run itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wif_core.runner import SplitOptions, write_splits
from wif_core.store import AttributionRow, OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

N_ITEMS = 40
LAYERS = [2, 4]
TOKEN_LAYERS = [4]
SIGNAL_LAYER = 4  # failed items are shifted along dimension 0 here
N_OTHER = 16
SITES = ["choice", "last", "mean"]
D_MODEL = 8
COLLECTED_RUN = "synthetic-lm--gen-physical--0000aaaa"
IMPORTED_RUN = "other-lm--piqa--0000bbbb"
OTHER_RUN = "other-lm--gen-physical--0000cccc"
SEARCH_WORD = "kettle"  # in the contexts of collected items 0..9 only


def _physical_item(n: int) -> TaskItem:
    """A gen-physical item; item 39 copies item 37's content under its own id."""
    m = 37 if n == 39 else n
    tool = SEARCH_WORD if m < 10 else "hammer"
    negation = m % 3 == 0
    goal = f"Which is {'not ' if negation else ''}a good way to use the {tool} number {m}?"
    choices = (f"Hold the {tool} by its handle, step {m}.", f"Hold the {tool} by its tip, step {m}.")
    factors = {"template": "tool/how", "negation": negation, "distractor": m % 4 == 0}
    meta = {"goal": goal, **factors, "gold_position": m % 2, "factors": [*factors, "gold_position"]}
    return TaskItem(
        item_id=f"gen-physical-{n:04d}",
        task="gen-physical",
        context=render_context("two_choice", {"goal": goal}),
        choices=choices,
        gold=m % 2,
        meta={**meta, "generator": "gen-physical"},
    )


def _piqa_item(n: int) -> TaskItem:
    """A piqa item; items 38 and 39 are the same question with different answer keys."""
    m = 38 if n == 39 else n
    goal = f"To fold a paper plane of size {m},"
    choices = ("crease the paper down the middle.", "soak the paper in water first.")
    gold = 1 if n == 39 else m % 2
    return TaskItem(
        item_id=f"piqa-{n:04d}",
        task="piqa",
        context=render_context("two_choice", {"goal": goal}),
        choices=choices,
        gold=gold,
        meta={"goal": goal, "source_id": f"piqa/{n}"},
    )


def _collected_rows(items: list[TaskItem], rng: np.random.Generator) -> list[OutcomeRow]:
    rows = []
    for n, it in enumerate(items):
        correct = (37 if n == 39 else n) % 2 == 0
        pred = it.gold if correct else 1 - it.gold
        ll = [-12.0 - n / 10, -12.0 - n / 10]
        ll[pred] += 1.5 + n / 20
        n_bytes = [len(c) + 1 for c in it.choices]
        acts = {(layer, "choice"): rng.standard_normal((2, D_MODEL)) for layer in LAYERS}
        acts |= {(layer, site): rng.standard_normal(D_MODEL) for layer in LAYERS for site in ("last", "mean")}
        acts |= {(layer, "tokens"): rng.standard_normal((3 + n % 6, D_MODEL)) for layer in TOKEN_LAYERS}
        if not correct:
            for (layer, _site), v in acts.items():
                if layer == SIGNAL_LAYER:
                    v[..., 0] += 3.0
        acts = {key: v.astype(np.float16) for key, v in acts.items()}
        words = it.context.split()
        tokens = {"listing": (words, list(range(len(words))), 0)}
        tokens |= {
            f"choice{j}": (words + c.split(), list(range(len(words + c.split()))), len(words))
            for j, c in enumerate(it.choices)
        }
        rows.append(
            OutcomeRow(
                item_id=it.item_id,
                pred=pred,
                correct=correct,
                margin=ll[it.gold] - ll[1 - it.gold],
                ll_sum=ll,
                ll_norm=[v / b for v, b in zip(ll, n_bytes, strict=True)],
                n_tokens=[len(c.split()) for c in it.choices],
                acts=acts,
                tokens=tokens,
            )
        )
    return rows


def _imported_rows(items: list[TaskItem]) -> list[OutcomeRow]:
    rows = []
    for n, it in enumerate(items):
        pred = None if n % 5 == 4 else 0 if n >= 38 else (it.gold if n % 2 == 0 else 1 - it.gold)
        correct = it.gold == 0 if n >= 38 else n % 2 == 0
        rows.append(OutcomeRow(item_id=it.item_id, pred=pred, correct=correct))
    return rows


def _other_rows(items: list[TaskItem]) -> list[OutcomeRow]:
    """Another model's outcomes: the collected run's, flipped on every fifth item (so 8 of 16 correct)."""
    return [
        OutcomeRow(item_id=it.item_id, pred=None, correct=(n % 2 == 0) != (n % 5 == 0)) for n, it in enumerate(items)
    ]


SAE_WIDTH = 32
ATTRIBUTION_METHODS = ("grad_x_input", "attnlrp")


def _attribution_rows(items: list[TaskItem], rows: list[OutcomeRow]) -> list[AttributionRow]:
    """Stored attributions of every collected item by two methods; failures push from the goal and late layers."""
    out = []
    for n, (it, row) in enumerate(zip(items, rows, strict=True)):
        wrong = row.pred if not row.correct else 1 - it.gold
        words = it.context.split()
        tokens = [
            "<s>",
            *words,
            *(" " + w for w in it.choices[wrong].split()),
            *(" " + w for w in it.choices[it.gold].split()),
        ]
        segments = [
            "special",
            *(["goal"] * len(words)),
            *(["wrong"] * len(it.choices[wrong].split())),
            *(["right"] * len(it.choices[it.gold].split())),
        ]
        push = 0.0 if row.correct else 1.0
        for m, method in enumerate(ATTRIBUTION_METHODS):
            scores = [2.0] + [(push - 0.5) * (1 + (j + n + m) % 3) / 10 for j in range(len(tokens) - 1)]
            profile = [0.2, 1.0, 0.1, n / 100] if row.correct else [n / 100, 0.1, 0.4 + (n % 3) / 10, 1.0]
            top = [1.0, 0.6 - 0.2 * m, 0.3, 0.1]
            out.append(
                AttributionRow(
                    item_id=it.item_id,
                    method=method,
                    wrong_choice=int(wrong),
                    right_choice=it.gold,
                    tokens=tokens,
                    segments=segments,
                    scores=scores,
                    delta=-float(row.margin or 0),
                    sum_scores=float(sum(scores)),
                    layer_profile=profile,
                    deletion={
                        "fraction": [0.0, 0.1, 0.3, 0.5],
                        "k": [0, 1, 2, 4],
                        "top": top,
                        "random": [1.0, 0.9, 0.8, 0.7],
                    },
                    faithfulness=0.3 + 0.2 * m + (n % 4) / 10,
                    seconds=0.01,
                    config={"target": "delta"},
                )
            )
    return out


def make_synthetic_store(path: str | Path, with_sae: bool = True) -> list[str]:
    """Write the three synthetic runs (see the module docstring) to a new store at ``path``; their run ids."""
    rng = np.random.default_rng(0)
    physical = [_physical_item(n) for n in range(N_ITEMS)]
    piqa = [_piqa_item(n) for n in range(N_ITEMS)]
    with Store.open(path, write=True) as store:
        collected = RunInfo(
            run_id=COLLECTED_RUN,
            model="synthetic-lm",
            task="gen-physical",
            source="generated",
            kind="collected",
            n_choices=2,
            family="two_choice",
            template="lm-eval-v1",
            scoring="sum",
            layers=LAYERS,
            sites=SITES,
            token_layers=TOKEN_LAYERS,
            n_layers=4,
            d_model=D_MODEL,
            act_dtype="float16",
            seed=0,
        )
        store.create_run(collected, physical)
        collected_rows = _collected_rows(physical, rng)
        store.write_outcomes(COLLECTED_RUN, collected_rows, "float16")
        store.write_attributions(COLLECTED_RUN, _attribution_rows(physical, collected_rows))
        imported = RunInfo(
            run_id=IMPORTED_RUN,
            model="other-lm",
            task="piqa",
            source="outcomes.json",
            kind="imported",
            n_choices=2,
            family="two_choice",
            template=None,
            scoring=None,
        )
        store.create_run(imported, piqa)
        store.write_outcomes(IMPORTED_RUN, _imported_rows(piqa))
        other = RunInfo(
            run_id=OTHER_RUN,
            model="other-lm",
            task="gen-physical",
            source="outcomes.json",
            kind="imported",
            n_choices=2,
            family="two_choice",
            template=None,
            scoring=None,
        )
        store.create_run(other, physical[:N_OTHER])
        store.write_outcomes(OTHER_RUN, _other_rows(physical[:N_OTHER]))
        for run_id in (COLLECTED_RUN, IMPORTED_RUN, OTHER_RUN):
            write_splits(store, run_id, SplitOptions())
            store.set_status(run_id, "complete")
    if with_sae:
        from wif_core.sae.train import TrainConfig, train_run_sae

        with Store.open(path) as store:
            train_run_sae(
                store, COLLECTED_RUN, SIGNAL_LAYER, TrainConfig(width=SAE_WIDTH, k=4, samples=4096, batch=64, lr=1e-2)
            )
    return [COLLECTED_RUN, IMPORTED_RUN, OTHER_RUN]
