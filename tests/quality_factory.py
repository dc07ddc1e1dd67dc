"""A store with planted label noise: a generated task whose answer keys are flipped on a known 5% of its items,
and several synthetic "model" runs (imported outcomes, no model) that are mostly right under the TRUE keys.

Each model is right with its own accuracy (75–85%), independently of the others; where it is right its chosen
answer leads the other choices' log-likelihoods by |N(2, 1.5)| nats, where it is wrong by |N(0.8, 0.8)| (models
are less sure when wrong). Its outcomes are stored as any import's are: ``correct`` against the flipped keys,
``margin`` the key's score minus the best other, ``ll_sum`` per choice (or none, ``scores=False``: predictions
only). Every run goes through ``wif_core.runner.write_run``, the one write path, so it has balanced splits and
leakage findings like an imported run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wif_core.runner import SplitOptions, write_run
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import get_task
from wif_core.tasks.generated import generate

ACCURACIES = (0.80, 0.75, 0.85, 0.80, 0.78)  # under the true keys


@dataclass
class Planted:
    runs: list[str]  # the first is the run whose keys are checked; all share the flipped keys
    flipped: set[str]  # item ids whose key was flipped
    true_gold: dict[str, int]  # item id -> the key before flipping


def make_planted_store(
    path: str | Path,
    *,
    task: str = "gen-physical",
    n: int = 400,
    flip: float = 0.05,
    accuracies: tuple[float, ...] = ACCURACIES,
    scores: bool = True,
    copies: int = 0,
    seed: int = 0,
) -> Planted:
    """Write the planted runs (see the module docstring) to a new store at ``path``; with ``copies``, the first
    that many items also get a copy (``<id>-copy``) keyed to another answer: a ``gold_conflict`` pair each."""
    rng = np.random.default_rng(seed)
    spec = get_task(task)
    k = spec.n_choices
    items = generate(task, n, seed)
    flipped = set(rng.choice(n, int(round(flip * n)), replace=False).tolist())
    true = [it.gold for it in items]
    noisy = [
        replace(it, gold=(it.gold + 1 + int(rng.integers(k - 1))) % k) if i in flipped else it
        for i, it in enumerate(items)
    ]
    for i in range(copies):
        noisy.append(replace(noisy[i], item_id=f"{noisy[i].item_id}-copy", gold=(noisy[i].gold + 1) % k))
        true.append(true[i])
    runs = []
    with Store.open(path, write=True) as store:
        for m, accuracy in enumerate(accuracies):
            rows = []
            for i, it in enumerate(noisy):
                ll = rng.normal(-20, 3, size=k)
                if rng.random() < accuracy:
                    pick, lead = true[i], abs(rng.normal(2.0, 1.5))
                else:
                    pick, lead = (true[i] + 1 + int(rng.integers(k - 1))) % k, abs(rng.normal(0.8, 0.8))
                ll[pick] = max(ll[j] for j in range(k) if j != pick) + lead
                rows.append(
                    OutcomeRow(
                        item_id=it.item_id,
                        pred=int(pick),
                        correct=bool(pick == it.gold),
                        margin=float(ll[it.gold] - max(ll[j] for j in range(k) if j != it.gold)),
                        ll_sum=[float(x) for x in ll] if scores else None,
                    )
                )
            run = RunInfo(
                run_id=f"model{m}--{task}--planted",
                model=f"model{m}",
                task=task,
                source="planted",
                kind="imported",
                n_choices=k,
                family=spec.format,
                template=None,
                scoring=None,
                seed=seed,
            )
            write_run(store, run, noisy, lambda todo, rows=rows: [rows], split_options=SplitOptions(seed=seed))
            runs.append(run.run_id)
    return Planted(
        runs=runs,
        flipped={noisy[i].item_id for i in flipped},
        true_gold={it.item_id: g for it, g in zip(noisy, true, strict=True)},
    )
