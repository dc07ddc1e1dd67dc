"""Honest selection: "the best" explainer setting is chosen on val and reported on test, never chosen on test."""

from __future__ import annotations

import json

import numpy as np

from wif_core.cli import main
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import best_of, evaluate_all, selection
from wif_core.runner import SplitOptions, write_splits
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

D = 8
N = 400


def _write(path, failed: np.ndarray, acts_of) -> dict[str, str]:
    """A run of ``N`` two-choice items with these outcomes and ``acts_of(i)`` activations; its splits."""
    items, rows = [], []
    for i in range(N):
        items.append(
            TaskItem(
                item_id=f"i{i:04d}",
                task="gen-physical",
                context=render_context("two_choice", {"goal": f"goal {i}"}),
                choices=(f"a {i}", f"b {i}"),
                gold=0,
                meta={},
            )
        )
        pred = int(failed[i])
        ll = [-1.0, -2.0] if pred == 0 else [-2.0, -1.0]
        rows.append(
            OutcomeRow(
                item_id=f"i{i:04d}",
                pred=pred,
                correct=not failed[i],
                margin=1.0,
                ll_sum=ll,
                ll_norm=ll,
                n_tokens=[1, 1],
                acts=acts_of(i),
                tokens={},
            )
        )
    with Store.open(path, write=True) as store:
        run = RunInfo(
            run_id="sel",
            model="lm",
            task="gen-physical",
            source="planted",
            n_choices=2,
            family="two_choice",
            layers=[1, 2],
            sites=["last"],
            token_layers=[],
            n_layers=2,
            d_model=D,
        )
        store.create_run(run, items)
        store.write_outcomes("sel", rows)
        write_splits(store, "sel", SplitOptions(seed=0))
        frame = store.items("sel", include_excluded=True)
    return dict(zip(frame["item_id"], frame["split"], strict=True))


def _planted(tmp_path) -> str:
    """Layer 1 carries failure on train and val but not on test; layer 2 on train and test but not on val.

    The splits depend only on the outcomes and the seed, so a first store gives them, and the second, with the
    same outcomes, plants each layer's signal by split."""
    rng = np.random.default_rng(0)
    failed = rng.random(N) < 0.5
    noise = rng.normal(size=(N, 2, D)).astype(np.float32)
    split = _write(tmp_path / "draft.duckdb", failed, lambda i: {(1, "last"): noise[i, 0], (2, "last"): noise[i, 1]})
    sign = np.where(failed, 1.5, -1.5).astype(np.float32)

    def acts(i: int) -> dict:
        a, b = noise[i, 0].copy(), noise[i, 1].copy()
        s = split[f"i{i:04d}"]
        if s in ("train", "val"):
            a[0] += sign[i]
        if s in ("train", "test"):
            b[0] += sign[i]
        return {(1, "last"): a, (2, "last"): b}

    db = tmp_path / "s.duckdb"
    assert _write(db, failed, acts) == split
    return str(db)


def test_the_reported_best_is_the_val_best_not_the_test_best(tmp_path, capsys):
    db = _planted(tmp_path)
    with Store.open(db) as store:
        results = evaluate_all(RunData.load(store, "sel"), ["probe"], n_resamples=200)
    by_layer = {r.layer: r for r in results}
    assert by_layer[1].val_auc > 0.85 and by_layer[1].auc < 0.65  # val-best, at chance on test
    assert by_layer[2].val_auc < 0.65 and by_layer[2].auc > 0.85  # test-best, at chance on val
    assert best_of(results, "input") is by_layer[1]
    assert best_of(results, "input", on="test") is by_layer[2]
    chosen = selection(results)
    assert chosen["selected_on"] == "val"
    assert chosen["tiers"]["input"]["label"] == "probe L1 last" and chosen["tiers"]["input"]["auc"] < 0.65
    assert chosen["tiers"]["input"]["test_best_label"] == "probe L2 last"

    assert (
        main(["explain", "--run", "sel", "--all", "--explainer", "probe", "--resamples", "200", "--db", db, "--json"])
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert {p["label"]: p["selected"] for p in payload} == {"probe L1 last": True, "probe L2 last": False}
    assert all(p["selected_on"] == "val" for p in payload)
    l2 = next(p for p in payload if p["layer"] == 2)
    assert l2["vs_best"]["b"] == "probe L1 last" and l2["vs_best"]["diff"] > 0.2  # paired against the val-best

    assert main(["explain", "--run", "sel", "--all", "--explainer", "probe", "--resamples", "200", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "*probe L1 last" in text and " probe L2 last" in text and "chosen by val AUC" in text
