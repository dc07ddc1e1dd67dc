"""Stores for comparing runs, built through the Store API without any model (store_factory.py's style).

``make_compare_store`` writes, on task ``gen-physical`` unless said otherwise:

- ``A`` (``RUN_A``): ``N`` items ``a-NNNN``; item i correct iff ``correct_a(i)``; margin ``margin_a(i)``;
  activations at layers 2 and 4 (site ``last``, width 8) with a failure signal at layer 4; attributions by
  ``attnlrp`` of the first ``N_ATTR`` items (failures lean on the goal).
- ``B`` (``RUN_B``): the same questions under other ids (``b-NNNN``), in reversed option order, with the
  context's case and spacing changed (the same normalised key); correct iff ``correct_b(i)``; margins
  ``margin_b(i)``; activations like A's; attributions of the same first items.
- ``WIDE``: the same items as A, outcomes of B, activations of width 12 (no probe transfers to it).
- ``DISJOINT``: other items of the same task; ``PIQA``: a run of another task.
- three checkpoints ``CK_*`` of one model, written in shuffled order (``samples`` 2^21, 2^20, 2^22), whose
  accuracy rises with training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wif_core.runner import SplitOptions, write_splits
from wif_core.store import AttributionRow, OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem

N = 80
N_ATTR = 30
D = 8
LAYERS = [2, 4]
RUN_A, RUN_B, WIDE, DISJOINT, PIQA = "model-a--gen-physical", "model-b--gen-physical", "wide", "disjoint", "piqa-run"
CK_SAMPLES = {"ck-2": 2**21, "ck-1": 2**20, "ck-3": 2**22}  # written in this (shuffled) order
HOSTILE_TEXT = "<script>alert(1)</script> [click here](https://example.com/steal) **bold**"


def correct_a(i: int) -> bool:
    return i % 2 == 0


def correct_b(i: int) -> bool:
    return i % 3 != 0


def margin_a(i: int) -> float:
    return (1 if correct_a(i) else -1) * (0.5 + i / N)


def margin_b(i: int) -> float:
    return (1 if correct_b(i) else -1) * (0.3 + ((i * 7) % N) / N)


def correct_ck(run: str, i: int) -> bool:
    """Checkpoint 1 gets 40% right, 2 gets 60%, 3 gets 80% (by item position)."""
    share = {"ck-1": 0.4, "ck-2": 0.6, "ck-3": 0.8}[run]
    return (i * 37 % N) / N < share


def _item(i: int, prefix: str = "a", task: str = "gen-physical", hostile: bool = False) -> TaskItem:
    goal = f"Which is a good way to use tool number {i}?" + (f" {HOSTILE_TEXT}" if hostile and i == 1 else "")
    return TaskItem(
        item_id=f"{prefix}-{i:04d}",
        task=task,
        context=f"Question: {goal}\nAnswer:",
        choices=(f" Hold tool {i} by the handle.", f" Hold tool {i} by the tip."),
        gold=i % 2,
        meta={},
    )


def _as_b(item: TaskItem, i: int) -> TaskItem:
    """The same question as another source writes it: other id, options reversed, other case and spacing."""
    return TaskItem(
        item_id=f"b-{i:04d}",
        task=item.task,
        context="  " + item.context.upper().replace(" ", "   "),
        choices=tuple(reversed(item.choices)),
        gold=1 - item.gold,
        meta={},
    )


def _rows(items: list[TaskItem], correct: Any, margin: Any, width: int, seed: int) -> list[OutcomeRow]:
    rng = np.random.default_rng(seed)
    rows = []
    for i, it in enumerate(items):
        ok = bool(correct(i))
        m = float(margin(i))
        ll = [-10.0, -10.0]
        ll[it.gold] += m
        pred = it.gold if ok else 1 - it.gold
        acts = {(layer, "last"): rng.standard_normal(width) for layer in LAYERS}
        if not ok:
            acts[(4, "last")][0] += 3.0
        rows.append(
            OutcomeRow(
                item_id=it.item_id,
                pred=pred,
                correct=ok,
                margin=m,
                ll_sum=ll,
                acts={k: v.astype(np.float16) for k, v in acts.items()},
            )
        )
    return rows


def _attributions(items: list[TaskItem], correct: Any, goal_weight: float) -> list[AttributionRow]:
    out = []
    for i, it in enumerate(items[:N_ATTR]):
        lean = goal_weight if not correct(i) else goal_weight / 2
        out.append(
            AttributionRow(
                item_id=it.item_id,
                method="attnlrp",
                wrong_choice=1 - it.gold,
                right_choice=it.gold,
                tokens=["q", "w", "r"],
                segments=["goal", "wrong", "right"],
                scores=[lean, 1.0 - lean, 0.1 * (i % 3)],
                delta=1.0,
                sum_scores=1.0,
            )
        )
    return out


def _run(run_id: str, task: str = "gen-physical", width: int = D, config: dict[str, Any] | None = None) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        model=run_id.split("--")[0],
        task=task,
        source="generated",
        kind="collected",
        n_choices=2,
        family="two_choice",
        scoring="sum",
        layers=LAYERS,
        sites=["last"],
        n_layers=4,
        d_model=width,
        act_dtype="float16",
        config=config or {},
    )


def make_compare_store(path: str | Path, hostile: bool = False) -> dict[str, str]:
    """Write the runs of the module docstring to a new store at ``path``; their ids by role."""
    items_a = [_item(i, hostile=hostile) for i in range(N)]
    items_b = [_as_b(it, i) for i, it in enumerate(items_a)]
    with Store.open(path, write=True) as store:
        plan: list[tuple[RunInfo, list[TaskItem], list[OutcomeRow]]] = [
            (_run(RUN_A), items_a, _rows(items_a, correct_a, margin_a, D, 1)),
            (_run(RUN_B), items_b, _rows(items_b, correct_b, margin_b, D, 2)),
            (_run(WIDE, width=12), items_a, _rows(items_a, correct_b, margin_b, 12, 3)),
        ]
        other = [_item(i + 1000, "d") for i in range(N)]
        plan.append((_run(DISJOINT), other, _rows(other, correct_a, margin_a, D, 4)))
        piqa = [_item(i, "p", "piqa") for i in range(N)]
        plan.append((_run(PIQA, "piqa"), piqa, _rows(piqa, correct_a, margin_a, D, 5)))
        for n, (name, samples) in enumerate(CK_SAMPLES.items()):
            config = {"checkpoint": {"label": f"{samples} samples", "step": None, "samples": samples}}
            config["checkpoint"] |= {"revision": None, "path": None}

            def ok(i: int, name: str = name) -> bool:
                return correct_ck(name, i)

            plan.append((_run(name, config=config), items_a, _rows(items_a, ok, lambda i: 0.1 + i / N, D, 10 + n)))
        for run, items, rows in plan:
            store.create_run(run, items)
            for r, it in zip(rows, items, strict=True):  # margins consistent with outcomes
                r.margin = abs(float(r.margin or 0)) * (1 if r.correct else -1)
                r.ll_sum = [-10.0, -10.0]
                r.ll_sum[it.gold] += r.margin
            store.write_outcomes(run.run_id, rows)
            write_splits(store, run.run_id, SplitOptions())
            store.set_status(run.run_id, "complete")
        store.write_attributions(RUN_A, _attributions(items_a, correct_a, 0.8))
        store.write_attributions(RUN_B, _attributions(items_b, correct_b, 0.4))
    return {"a": RUN_A, "b": RUN_B, "wide": WIDE, "disjoint": DISJOINT, "piqa": PIQA, **{k: k for k in CK_SAMPLES}}
