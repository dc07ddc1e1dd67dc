"""Comparing runs (wif_core.compare, `wif compare-runs`): statistics against independent oracles, pairing by
item content, segment shares, explainer transfer, checkpoint series, and one clear line for bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from compare_factory import (
    CK_SAMPLES,
    DISJOINT,
    N_ATTR,
    PIQA,
    RUN_A,
    RUN_B,
    WIDE,
    N,
    _item,
    correct_a,
    correct_b,
    correct_ck,
    make_compare_store,
    margin_a,
    margin_b,
)
from scipy.stats import binomtest, pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from wif_core import compare as cmp
from wif_core.cli import main
from wif_core.errors import InputError, StoreError
from wif_core.store import OutcomeRow, RunInfo, Store


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cmp") / "compare.duckdb"
    make_compare_store(path)
    return path


@pytest.fixture(scope="module")
def ab(db: Path) -> cmp.Comparison:
    with Store.open(db) as store:
        return cmp.compare_runs(store, [RUN_A, RUN_B])


def _oracle_mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar by hand: twice the smaller binomial tail at ½, capped at 1."""
    n, k = b + c, min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_pairs_by_item_content_whatever_the_ids_and_option_order(ab: cmp.Comparison) -> None:
    assert ab.n_shared == N and [r.run_id for r in ab.runs] == [RUN_A, RUN_B]
    row = ab.items.iloc[5]
    assert row[f"{RUN_A}:item_id"] == "a-0005" and row[f"{RUN_B}:item_id"] == "b-0005"
    assert all(r.margin_source == "ll_sum" for r in ab.runs)


def test_two_by_two_mcnemar_kappa_and_margin_correlations_match_oracles(ab: cmp.Comparison) -> None:
    ca = np.array([correct_a(i) for i in range(N)])
    cb = np.array([correct_b(i) for i in range(N)])
    b, c = int((ca & ~cb).sum()), int((~ca & cb).sum())
    p = ab.pairs[0]
    assert p.table == {
        "both_correct": int((ca & cb).sum()),
        "only_a_correct": b,
        "only_b_correct": c,
        "both_failed": int((~ca & ~cb).sum()),
    }
    assert sum(p.table.values()) == N
    assert p.mcnemar_p == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    assert p.mcnemar_p == pytest.approx(_oracle_mcnemar(b, c), rel=1e-9)
    assert p.diff == pytest.approx(ca.mean() - cb.mean())
    assert p.diff_ci_low < p.diff < p.diff_ci_high
    assert p.kappa == pytest.approx(cohen_kappa_score((~ca).astype(int), (~cb).astype(int)))
    ma, mb = [margin_a(i) for i in range(N)], [margin_b(i) for i in range(N)]
    assert p.margin_pearson == pytest.approx(pearsonr(ma, mb).statistic)
    assert p.margin_spearman == pytest.approx(spearmanr(ma, mb).statistic)
    assert p.n_margins == N
    keys = ab.items.set_index("key")
    assert sorted(keys.loc[p.failed_only_a, f"{RUN_A}:item_id"]) == [
        f"a-{i:04d}" for i in range(N) if cb[i] and not ca[i]
    ]
    assert sorted(keys.loc[p.failed_only_b, f"{RUN_B}:item_id"]) == [
        f"b-{i:04d}" for i in range(N) if ca[i] and not cb[i]
    ]


def test_accuracy_has_a_wilson_interval_and_n(ab: cmp.Comparison) -> None:
    from wif_core.clusters.cards import wilson

    a = ab.runs[0]
    expected = wilson(N // 2, N)
    assert (a.n, a.n_correct, a.accuracy) == (N, N // 2, 0.5)
    assert (a.ci_low, a.ci_high) == pytest.approx((expected.ci_low, expected.ci_high))


def test_statistics_on_tiny_hand_made_cases() -> None:
    assert cmp.mcnemar_exact(0, 0) == 1.0 and cmp.mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert cmp.kappa(np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0])) == pytest.approx(1.0)
    assert cmp.kappa(np.array([1, 1]), np.array([1, 1])) is None
    assert cmp.paired_difference(0, 0, 10) == (0.0, 0.0, 0.0)
    diff, lo, hi = cmp.paired_difference(6, 0, 6)
    assert diff == 1.0 and hi == pytest.approx(1.0)
    assert lo == pytest.approx(2 * 0.0005 ** (1 / 6) - 1)  # Clopper–Pearson lower bound of 6/6 at 99.9%
    assert cmp.correlations(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0])) == (None, None, 2)


def test_segment_shares_side_by_side_with_seeded_bootstrap(db: Path, ab: cmp.Comparison) -> None:
    s = ab.segments
    assert s is not None and s.method == "attnlrp" and s.n == N_ATTR
    got = {(r["run_id"], r["segment"]): r for r in s.table}

    def goal_share(correct: object, weight: float) -> float:
        vals = []
        for i in range(N_ATTR):
            lean = weight if not correct(i) else weight / 2  # type: ignore[operator]
            vals.append(lean / (abs(lean) + abs(1 - lean) + abs(0.1 * (i % 3))))
        return float(np.mean(vals))

    assert got[(RUN_A, "goal")]["share"] == pytest.approx(goal_share(correct_a, 0.8))
    assert got[(RUN_B, "goal")]["share"] == pytest.approx(goal_share(correct_b, 0.4))
    for row in s.table:
        assert row["ci_low"] <= row["share"] <= row["ci_high"] and row["n"] == N_ATTR
    with Store.open(db) as store:
        again = cmp.compare_runs(store, [RUN_A, RUN_B])
        other_seed = cmp.compare_runs(store, [RUN_A, RUN_B], seed=1)
    assert again.segments is not None and again.segments.table == s.table
    assert other_seed.segments is not None and other_seed.segments.table != s.table


def test_no_common_attributions_says_what_to_run(db: Path) -> None:
    with Store.open(db) as store:
        c = cmp.compare_runs(store, [RUN_A, WIDE])
        named = cmp.compare_runs(store, [RUN_A, RUN_B], method="occlusion")
    assert c.segments is None and "wif attribute" in (c.segments_note or "")
    assert named.segments is None and "no attributions by occlusion" in (named.segments_note or "")


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([RUN_A], "at least two run ids"),
        ([RUN_A, RUN_A], "named twice"),
        ([RUN_A, PIQA], f"{RUN_A} (task gen-physical) and {PIQA} (task piqa) are of different tasks"),
        ([RUN_A, DISJOINT], f"runs {RUN_A} and {DISJOINT} share no items"),
    ],
)
def test_bad_requests_are_one_line(db: Path, runs: list[str], message: str) -> None:
    with Store.open(db) as store, pytest.raises(InputError) as err:
        cmp.compare_runs(store, runs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_run_lists_the_known_runs(db: Path) -> None:
    with Store.open(db) as store, pytest.raises(StoreError, match=f"no run 'nope'.*runs there: {RUN_A}"):
        cmp.compare_runs(store, [RUN_A, "nope"])


def test_a_run_without_scores_has_no_margins_and_says_so(tmp_path: Path) -> None:
    items = [_item(i) for i in range(12)]
    with Store.open(tmp_path / "s.duckdb", write=True) as store:
        for run_id, scoring, with_ll in (
            ("scored", "sum", True),
            ("bare", None, False),
            ("per-byte", "per_byte", False),
        ):
            run = RunInfo(
                run_id=run_id, model=run_id, task="gen-physical", source="x", n_choices=2, family="two_choice"
            )
            run.scoring = scoring
            store.create_run(run, items)
            rows = [
                OutcomeRow(
                    item_id=it.item_id,
                    pred=it.gold,
                    correct=i % 2 == 0,
                    margin=0.5 if not with_ll else None,
                    ll_sum=[-1.0, -2.0 - i] if with_ll else None,
                )
                for i, it in enumerate(items)
            ]
            store.write_outcomes(run_id, rows)
        partial = RunInfo(
            run_id="partial", model="p", task="gen-physical", source="x", n_choices=2, family="two_choice"
        )
        partial.scoring = None
        store.create_run(partial, items)
        store.write_outcomes(
            "partial",
            [
                OutcomeRow(item_id=it.item_id, pred=0, correct=True, ll_sum=[-1.0, None if i < 4 else -3.0])
                for i, it in enumerate(items)
            ],
        )
        c = cmp.compare_runs(store, ["scored", "bare", "per-byte", "partial"])
    sources = {r.run_id: r.margin_source for r in c.runs}
    assert sources == {"scored": "ll_sum", "bare": "none", "per-byte": "none", "partial": "ll_sum on 8 of 12 items"}
    partial_pair = next(p for p in c.pairs if (p.a, p.b) == ("scored", "partial"))
    assert partial_pair.n_margins == 8
    assert c.pairs[0].margin_pearson is None and c.pairs[0].n_margins == 0
    margins = c.items["scored:margin"].to_numpy()
    gold = np.array([it.gold for it in items])
    expected = np.where(gold == 0, 1.0 + np.arange(12), -1.0 - np.arange(12))
    assert margins == pytest.approx(expected)


def test_explainer_transfer_tiers_and_widths(db: Path) -> None:
    with Store.open(db) as store:
        rows = cmp.explainer_transfer(store, RUN_A, RUN_B, cache=False)
        wide = cmp.explainer_transfer(store, RUN_A, WIDE, cache=False)
        a, b = store.items(RUN_A), store.items(RUN_B)
    seen = set(a.loc[a["split"].isin(["train", "val"]), "key"])
    unseen = b[(b["split"] == "test") & ~b["key"].isin(seen) & ~b["excluded"].fillna(False).astype(bool)]
    by = {r.explainer: r for r in rows}
    assert set(by) == {"probe-paper", "surface", "text", "source-outcome"}
    probe = by["probe-paper"]
    assert probe.tier == "input" and probe.layer == 4 and probe.site == "last"  # the signal layer, chosen on val
    assert probe.n_test == len(unseen) and probe.auc is not None and probe.own_auc is not None
    assert probe.ci_low is not None and probe.ci_low <= probe.auc <= (probe.ci_high or 0)
    gold_row = by["source-outcome"]
    a_failed = dict(zip(a["key"], ~a["correct"].astype(bool), strict=True))
    oracle = roc_auc_score(~unseen["correct"].astype(bool), [float(a_failed[k]) for k in unseen["key"]])
    assert gold_row.tier == "gold" and gold_row.n_test == len(unseen) and gold_row.auc == pytest.approx(oracle)
    note = {r.explainer: r for r in wide}["probe-paper"].note or ""
    assert "width 8" in note and "width 12" in note and "cannot transfer across models of different widths" in note
    assert {r.explainer: r for r in wide}["text"].auc is not None  # text-only explainers transfer at any width


def test_explainer_transfer_is_cached_beside_the_store(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(db) as store:
        first = cmp.explainer_transfer(store, RUN_B, RUN_A)
        monkeypatch.setattr(cmp, "_fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("refitted")))
        assert cmp.explainer_transfer(store, RUN_B, RUN_A) == first


def _info(run_id: str, checkpoint: dict[str, object] | None) -> RunInfo:
    config = {"checkpoint": checkpoint} if checkpoint else {}
    return RunInfo(run_id=run_id, model="m", task="t", source="s", n_choices=2, family="two_choice", config=config)


def test_checkpoint_order_by_samples_then_step_then_label() -> None:
    by_samples = [_info(f"r{s}", {"label": f"s{s}", "samples": s, "step": 99 - s}) for s in (8, 2, 4)]
    assert [r.run_id for r in cmp.checkpoint_order(by_samples)] == ["r2", "r4", "r8"]
    by_step = [_info(f"r{s}", {"label": f"z{s}", "samples": None, "step": s}) for s in (30, 10, 20)]
    assert [r.run_id for r in cmp.checkpoint_order(by_step)] == ["r10", "r20", "r30"]
    by_label = [_info(x, {"label": x, "samples": None, "step": None}) for x in ("c", "a", "b")]
    plain = _info("plain", None)
    assert [r.run_id for r in cmp.checkpoint_order([plain, *by_label])] == ["a", "b", "c", "plain"]


def test_a_checkpoint_series_comes_out_in_training_order(db: Path) -> None:
    shuffled = list(CK_SAMPLES)  # written and asked for as ck-2, ck-1, ck-3
    with Store.open(db) as store:
        c = cmp.compare_runs(store, shuffled, explainers=True)
    assert [p.run_id for p in c.series] == ["ck-1", "ck-2", "ck-3"]
    assert [p.samples for p in c.series] == [2**20, 2**21, 2**22]
    assert [p.accuracy for p in c.series] == pytest.approx([0.4, 0.6, 0.8])
    final_failed = [i for i in range(N) if not correct_ck("ck-3", i)]
    for p in c.series:
        expected = np.mean([(0.1 + i / N) * (1 if correct_ck(p.run_id, i) else -1) for i in final_failed])
        assert p.n_final_failures == len(final_failed)
        assert p.mean_margin_final_failures == pytest.approx(expected)
        assert p.best_input is not None and p.best_input["label"] == "probe-paper L4 last", p
        assert p.best_input["n_test"] > 0 and p.best_input["ci_low"] <= p.best_input["auc"]


def test_a_zoo_like_series_uses_log_softmax_margins(tmp_path: Path) -> None:
    """Zoo runs store per-class log-softmax as ``ll_sum`` and the logit gap as ``margin``: the same Δ."""
    rng = np.random.default_rng(0)
    n, k = 30, 4
    with Store.open(tmp_path / "zoo.duckdb", write=True) as store:
        for samples in (2**22, 2**20, 2**21):
            from wif_core.tasks.base import TaskItem

            items = [
                TaskItem(
                    item_id=f"z{samples}-{i}", task="2nd_argmax", context=f"x = {i}", choices=tuple("0123"), gold=i % k
                )
                for i in range(n)
            ]
            run = RunInfo(
                run_id=f"zoo-{samples}",
                model="M4,8",
                task="2nd_argmax",
                source="zoo:seed=0",
                kind="zoo",
                n_choices=k,
                family="zoo-position",
                scoring="logits",
                config={"checkpoint": {"label": f"2^{int(math.log2(samples))}", "step": None, "samples": samples}},
            )
            store.create_run(run, items)
            rows = []
            for it in items:
                logits = rng.standard_normal(k)
                ll = logits - np.log(np.exp(logits).sum())
                gap = logits[it.gold] - np.delete(logits, it.gold).max()
                rows.append(
                    OutcomeRow(
                        item_id=it.item_id,
                        pred=int(logits.argmax()),
                        correct=bool(logits.argmax() == it.gold),
                        margin=float(gap),
                        ll_sum=ll.tolist(),
                    )
                )
            store.write_outcomes(run.run_id, rows)
        c = cmp.compare_runs(store, ["zoo-4194304", "zoo-1048576", "zoo-2097152"])
        stored = store.items("zoo-1048576")["margin"].to_numpy(dtype=float)
    assert [p.label for p in c.series] == ["2^20", "2^21", "2^22"]
    assert c.items["zoo-1048576:margin"].to_numpy() == pytest.approx(stored)
    assert all(r.margin_source == "ll_sum" for r in c.runs)


def test_default_selection_prefers_a_series_else_the_pair_sharing_most(db: Path, tmp_path: Path) -> None:
    with Store.open(db) as store:
        assert cmp.default_selection(store) == ["ck-1", "ck-2", "ck-3"]
    items = [_item(i) for i in range(10)]
    with Store.open(tmp_path / "d.duckdb", write=True) as store:
        for run_id, part in (("few", items[:3]), ("all", items), ("most", items[:8])):
            run = RunInfo(
                run_id=run_id, model=run_id, task="gen-physical", source="x", n_choices=2, family="two_choice"
            )
            store.create_run(run, part)
            store.write_outcomes(run_id, [OutcomeRow(item_id=it.item_id, pred=0, correct=True) for it in part])
        assert cmp.default_selection(store) == ["all", "most"]


def test_the_payload_is_plain_json(ab: cmp.Comparison) -> None:
    doc = json.loads(json.dumps(ab.to_json()))
    assert doc["n_shared"] == N and len(doc["items"]) == N and doc["pairs"][0]["table"] == ab.pairs[0].table


# ---- the command -------------------------------------------------------------------------------


def test_cli_prints_a_summary(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare-runs", "--db", str(db), "--runs", f"{RUN_A},{RUN_B}"]) == 0
    out = capsys.readouterr().out
    assert f"{RUN_A} vs {RUN_B} (n={N})" in out and "McNemar exact p" in out and "κ of errors" in out
    assert "segment shares of relevance (attnlrp" in out


def test_cli_json_is_the_full_payload(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare-runs", "--db", str(db), "--runs", ",".join(CK_SAMPLES), "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["run_id"] for p in doc["series"]] == ["ck-1", "ck-2", "ck-3"] and len(doc["pairs"]) == 3


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        (f"{RUN_A},nope", "no run 'nope'"),
        (f"{RUN_A},{PIQA}", "are of different tasks"),
        (f"{RUN_A},{DISJOINT}", "share no items"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    db: Path, capsys: pytest.CaptureFixture[str], runs: str, message: str
) -> None:
    assert main(["compare-runs", "--db", str(db), "--runs", runs]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wif: error: ") and message in err and "\n" not in err


def test_cli_refuses_a_single_run(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compare-runs", "--db", str(db), "--runs", RUN_A])
    assert exit_.value.code == 2 and "give two or more as A,B" in capsys.readouterr().err


def test_real_zoo_runs_pair_with_their_margins_and_attributions(tmp_path: Path) -> None:
    """Two zoo models trained for different numbers of steps, run on the same seeded inputs: they pair on
    every item, their margins (from the stored log-softmax) equal the stored logit gaps, and their exact
    position attributions give segment shares side by side."""
    import torch

    from wif_core.zoo.runs import store_run
    from wif_core.zoo.train import TrainConfig, train

    with Store.open(tmp_path / "zoo.duckdb", write=True) as store:
        ids = []
        for steps in (150, 600):
            torch.manual_seed(0)
            model = train(TrainConfig("2nd_argmax", 4, 3, steps=steps, batch=256, name=f"cmp_{steps}"))
            ids.append(store_run(store, model, 400, seed=1).run_id)
        c = cmp.compare_runs(store, ids)
        stored = {r: store.items(r).set_index("key")["margin"] for r in ids}
    assert c.n_shared == 400 and all(r.margin_source == "ll_sum" for r in c.runs)
    for r in ids:
        keyed = c.items.set_index("key")[f"{r}:margin"]
        assert keyed.to_numpy() == pytest.approx(stored[r].loc[keyed.index].to_numpy(), abs=1e-5)
    assert c.pairs[0].n_margins == 400 and c.pairs[0].margin_pearson is not None
    assert c.segments is not None and c.segments.n > 0 and {row["run_id"] for row in c.segments.table} == set(ids)
