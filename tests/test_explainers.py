"""Explainers: the information tiers hold, planted signals are found, bad requests get one line."""

from __future__ import annotations

import numpy as np
import pytest

from wif_core.errors import InputError
from wif_core.explainers import REGISTRY, Explainer, register
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import ResultCache, compare, evaluate, evaluate_all, variants
from wif_core.runner import SplitOptions, write_splits
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

D = 16
WORDS = "apple river stone cloud paper glass metal wood light sound".split()


def _planted_store(path, n: int, signal: str, seed: int = 0) -> str:
    """A run where failure depends only on ``signal``: 'gold' (the model always answers 0, so
    it fails exactly when the answer key is 1) or 'last' (a direction in the last-token site)."""
    rng = np.random.default_rng(seed)
    items, rows = [], []
    for i in range(n):
        goal = " ".join(rng.choice(WORDS, 5))
        choices = (" ".join(rng.choice(WORDS, 3)), " ".join(rng.choice(WORDS, 3)))
        gold = int(rng.integers(0, 2))
        items.append(
            TaskItem(
                item_id=f"i{i:04d}",
                task="gen-physical",
                context=render_context("two_choice", {"goal": goal}),
                choices=choices,
                gold=gold,
                meta={"goal": goal, "gold_position": gold},
            )
        )
        last = rng.normal(size=D).astype(np.float32)
        if signal == "gold":
            failed = gold == 1
            pred = 0
        else:
            failed = bool(last[0] + 0.5 * rng.normal() > 0)
            pred = gold if not failed else 1 - gold
        ll = [-1.0, -2.0] if pred == 0 else [-2.0, -1.0]
        acts = {
            (layer, site): rng.normal(size=(2, D) if site == "choice" else D).astype(np.float32)
            for layer in (1, 2)
            for site in ("choice", "last", "mean")
        }
        acts[(1, "last")] = last
        acts[(2, "tokens")] = rng.normal(size=(int(rng.integers(3, 9)), D)).astype(np.float16)
        rows.append(
            OutcomeRow(
                item_id=f"i{i:04d}",
                pred=pred,
                correct=not failed,
                margin=1.0,
                ll_sum=ll,
                ll_norm=ll,
                n_tokens=[1, 1],
                acts=acts,
                tokens={},
            )
        )
    with Store.open(path, write=True) as store:
        run = RunInfo(
            run_id="planted",
            model="lm",
            task="gen-physical",
            source="planted",
            n_choices=2,
            family="two_choice",
            layers=[1, 2],
            sites=["choice", "last", "mean"],
            token_layers=[2],
            n_layers=2,
            d_model=D,
        )
        store.create_run(run, items)
        store.write_outcomes("planted", rows)
        write_splits(store, "planted", SplitOptions(seed=seed))
    return "planted"


@pytest.fixture(scope="module")
def gold_only(tmp_path_factory):
    path = tmp_path_factory.mktemp("gold") / "s.duckdb"
    _planted_store(path, 600, "gold")
    store = Store.open(path)
    yield RunData.load(store, "planted")
    store.close()


def test_input_tier_cannot_see_the_answer(gold_only):
    view, _ = gold_only.split("train", "input")
    with pytest.raises(PermissionError):
        _ = view.gold
    with pytest.raises(PermissionError):
        _ = view.choice_scores
    with pytest.raises(PermissionError):
        view.other_run_failures("x")
    out, _ = gold_only.split("train", "output")
    assert out.choice_scores.shape == (len(out), 2)
    with pytest.raises(PermissionError):
        _ = out.gold
    assert not any("gold" in str(c) for c in view.contexts)  # meta (with gold_position) is never in a view


def test_input_tier_stays_at_chance_when_gold_is_the_only_signal(gold_only):
    # the non-linear, transfer and stacking explainers have their own no-leak test (tests/test_explainers_more.py)
    new = ("mlp-probe", "mlp-probe-all-layers", "gbdt-probe", "knn", "difficulty-transfer", "stack")
    results = evaluate_all(gold_only, [n for n in REGISTRY if n not in new], n_resamples=500)
    by_tier = {}
    for r in results:
        by_tier.setdefault(r.tier, []).append(r)
    assert {r.explainer for r in by_tier["input"]} >= {
        "probe",
        "probe-paper",
        "probe-all-layers",
        "surface",
        "text",
        "attention-probe",
    }
    for r in by_tier["input"]:
        assert r.ci_low < 0.5 < r.ci_high, f"{r.label} found a signal that only the answer key carries: {r.auc:.3f}"
    prior = next(r for r in by_tier["gold"] if r.explainer == "label-prior")
    assert prior.auc == 1.0  # the answer key alone gives failure away: the diagnostic works
    confidence = next(r for r in by_tier["output"] if r.explainer == "confidence")
    assert confidence.auc == 0.5  # the same margin on every item carries nothing


def test_planted_activation_signal_is_found(tmp_path):
    _planted_store(tmp_path / "s.duckdb", 400, "last")
    with Store.open(tmp_path / "s.duckdb") as store:
        data = RunData.load(store, "planted")
        probe = evaluate(data, "probe", layer=1, site="last")
        paper = evaluate(data, "probe-paper", layer=1, site="last")
        other_layer = evaluate(data, "probe", layer=2, site="last")
    assert probe.auc > 0.85 and probe.ci_low > 0.6 and paper.auc > 0.8
    assert other_layer.ci_low < 0.5 < other_layer.ci_high
    assert probe.explanation["top_weights"][0]["feature"] == "dim 0"
    assert compare(probe, other_layer)["p_value"] < 0.01
    cache = ResultCache(tmp_path / "results")
    fresh = compare(probe, other_layer, cache=cache)
    assert fresh == compare(probe, other_layer)
    (stored,) = (tmp_path / "results").iterdir()
    assert stored.name.startswith("pair-")
    stored.write_text(stored.read_text().replace(str(fresh["p_value"]), "0.5"))  # read back, not recomputed
    assert compare(probe, other_layer, cache=cache)["p_value"] == 0.5
    assert compare(probe, paper, cache=cache) == compare(probe, paper)  # another pair: another entry


def test_result_contract_and_cache(gold_only, tmp_path):
    cache = ResultCache(tmp_path / "results")
    first = evaluate(gold_only, "probe", layer=2, site="choice", cache=cache, n_resamples=200)
    summary = first.summary()
    for key in ("auc", "ci_low", "ci_high", "ci_level", "n_test", "explainer", "tier", "layer", "site"):
        assert key in summary
    assert summary["tier"] == "input" and summary["n_test"] == first.n_test_failed * 2
    again = evaluate(gold_only, "probe", layer=2, site="choice", cache=cache, n_resamples=200)
    assert again.fit_seconds == first.fit_seconds and len(list((tmp_path / "results").iterdir())) == 1


def test_every_registered_explainer_declares_a_tier():
    assert set(REGISTRY) >= {
        "probe-paper",
        "probe",
        "probe-all-layers",
        "attention-probe",
        "confidence",
        "label-prior",
        "surface",
        "text",
        "cross-model",
    }
    tiers = {name: cls.tier for name, cls in REGISTRY.items()}
    assert tiers["confidence"] == "output" and tiers["label-prior"] == tiers["cross-model"] == "gold"
    with pytest.raises(ValueError, match="already registered"):

        @register
        class Again(Explainer):
            name = "probe"


def test_bad_requests_are_one_line(gold_only, tmp_path):
    with pytest.raises(InputError, match="unknown explainer 'nope'"):
        evaluate(gold_only, "nope")
    with pytest.raises(InputError, match="no activations at layer 7"):
        evaluate(gold_only, "probe", layer=7, site="last")
    with pytest.raises(InputError, match="needs --layer"):
        evaluate(gold_only, "probe")
    with pytest.raises(InputError, match="no other run of task gen-physical"):
        evaluate(gold_only, "cross-model", other_run="x")
    assert all(name != "cross-model" for name, _ in variants(gold_only))
    _planted_store(tmp_path / "small.duckdb", 14, "gold")
    with Store.open(tmp_path / "small.duckdb") as store, pytest.raises(InputError, match="at least 10 of each"):
        RunData.load(store, "planted")


def test_attention_probe_survives_float16_overflow_in_per_token_activations():
    """Gemma 3's first (sink) token exceeds float16's range, so its stored per-token activation is ±inf: the probe
    clips it to the float16 range instead of turning every score into NaN."""
    from wif_core.explainers.attention_probe import F16_MAX, _finite

    s = np.array([[np.inf, -np.inf, np.nan], [1.0, 2.0, 3.0]], dtype=np.float16)
    out = _finite(s)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out[0].tolist() == [F16_MAX, -F16_MAX, 0.0] and out[1].tolist() == [1.0, 2.0, 3.0]


def test_run_data_keeps_activations_within_its_budget(tmp_path, monkeypatch):
    """Layers read in turn are dropped oldest first past ACTS_BUDGET, and read again (the same values) when asked."""
    import wif_core.explainers.data as run_data

    _planted_store(tmp_path / "s.duckdb", 60, "last")
    with Store.open(tmp_path / "s.duckdb") as store:
        data = RunData.load(store, "planted")
        first = data._all_acts(1, "last")[1].copy()
        monkeypatch.setattr(run_data, "ACTS_BUDGET", first.nbytes + 1)  # room for one layer
        data._all_acts(2, "last")
        assert list(data._acts) == [(2, "last")]
        np.testing.assert_array_equal(data._all_acts(1, "last")[1], first)
        assert list(data._acts) == [(1, "last")]
