"""SAEs: training improves reconstruction, files round-trip, diffs match a hand computation,
the `sae` explainer finds a planted feature (and nothing when only the answer key carries one),
and bad requests get one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from wif_core.cli import main
from wif_core.errors import InputError, WifError
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import evaluate, variants
from wif_core.runner import SplitOptions, write_splits
from wif_core.sae import available, sae_dir, sae_info
from wif_core.sae.codes import FeatureCodes, encode, reconstruction, run_codes
from wif_core.sae.diff import feature_diff, feature_table, rank_features, run_diff
from wif_core.sae.load import check_width, load_sae
from wif_core.sae.train import TrainConfig, fit_sae, new_sae, train_run_sae
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

torch.set_num_threads(1)

D = 16
N_ATOMS = 24
TINY = TrainConfig(width=48, k=6, samples=20_000, batch=64, lr=5e-3)


def _atoms(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    atoms = rng.normal(size=(n, d))
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)


def _sparse_rows(n: int, atoms: np.ndarray, rng: np.random.Generator, per_row: int = 3) -> np.ndarray:
    """Rows that are each a positive mix of ``per_row`` dictionary atoms, plus a little noise."""
    X = np.zeros((n, atoms.shape[1]))
    for i in range(n):
        pick = rng.choice(len(atoms), per_row, replace=False)
        X[i] = rng.uniform(1, 3, per_row) @ atoms[pick]
    return (X + 0.05 * rng.normal(size=X.shape)).astype(np.float32)


def _planted_store(path: Path, n: int, signal: str, seed: int = 0) -> tuple[str, dict[str, int]]:
    """A run whose listing-prompt tokens are sparse mixes of dictionary atoms (never atom 0).

    ``signal='feature'``: a failed item has atom 0, strongly, on one token (its position is
    returned per item). ``signal='gold'``: the model always answers 0, so it fails exactly when
    the answer key is 1, and the tokens carry nothing about it.
    """
    rng = np.random.default_rng(seed)
    atoms = _atoms(D, N_ATOMS, rng)
    items, rows, planted = [], [], {}
    for i in range(n):
        item_id = f"i{i:04d}"
        gold = int(rng.integers(0, 2))
        goal = f"Goal number {i}: pick the better way."
        items.append(
            TaskItem(
                item_id=item_id,
                task="gen-physical",
                context=render_context("two_choice", {"goal": goal}),
                choices=("do it this way", "do it that way"),
                gold=gold,
                meta={"goal": goal},
            )
        )
        T = int(rng.integers(4, 9))
        tokens = _sparse_rows(T, atoms[1:], rng)
        failed = gold == 1 if signal == "gold" else bool(rng.random() < 0.5)
        if signal == "feature" and failed:
            planted[item_id] = int(rng.integers(1, T))
            tokens[planted[item_id]] += 4.0 * atoms[0]
        tokens[0] = 200.0 * atoms[1]  # an attention sink: the same huge vector first in every prompt
        pred = (gold if not failed else 1 - gold) if signal == "feature" else 0
        ll = [-1.0, -2.0] if pred == 0 else [-2.0, -1.0]
        acts = {(2, "tokens"): tokens.astype(np.float16), (2, "last"): rng.normal(size=D).astype(np.float32)}
        words = [f"w{t}" for t in range(T)]
        rows.append(
            OutcomeRow(
                item_id=item_id,
                pred=pred,
                correct=not failed,
                margin=1.0,
                ll_sum=ll,
                ll_norm=ll,
                n_tokens=[1, 1],
                acts=acts,
                tokens={"listing": (words, list(range(T)), T)},
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
            layers=[2],
            sites=["last"],
            token_layers=[2],
            n_layers=2,
            d_model=D,
        )
        store.create_run(run, items)
        store.write_outcomes("planted", rows)
        write_splits(store, "planted", SplitOptions(seed=seed))
    return "planted", planted


@pytest.fixture(scope="module")
def feature_store(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("feature") / "s.duckdb"
    _, planted = _planted_store(path, 400, "feature")
    with Store.open(path) as store:
        train_run_sae(store, "planted", 2, TINY)
    return path, planted


# ---- training ------------------------------------------------------------------------------
def test_training_improves_reconstruction_over_the_untrained_sae():
    rng = np.random.default_rng(0)
    atoms = _atoms(32, 64, rng)
    X, X_eval = _sparse_rows(2000, atoms, rng), _sparse_rows(500, atoms, rng)
    cfg = TrainConfig(width=128, k=4, samples=20_000, batch=128, lr=1e-2)
    sae = new_sae(32, cfg)
    before = reconstruction(sae, X_eval)
    fit_sae(sae, X, cfg)
    after = reconstruction(sae, X_eval)
    assert after["mse"] < before["mse"] / 4, (before, after)
    assert after["explained_variance"] > 0.7 > before["explained_variance"]
    assert after["mean_l0"] <= 4 + 1e-9  # TopK: at most k features per token


def test_trained_sae_is_saved_in_sae_lens_format_and_round_trips(feature_store, tmp_path):
    path, _ = feature_store
    out = sae_dir(path, "planted", 2)
    assert available(path, "planted") == {2: out}
    # sae-lens's files plus wif's metrics and codes: no pickle anywhere
    assert sorted(p.name for p in out.iterdir()) == [
        "cfg.json",
        "codes.safetensors",
        "metrics.json",
        "sae_weights.safetensors",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["splits"] == ["train"] and metrics["eval_split"] == "val"
    assert metrics["explained_variance"] > metrics["untrained"]["explained_variance"]
    assert metrics["n_sink_tokens"] > 0  # every prompt's first token is the planted attention sink
    info = sae_info(out)
    assert (info.architecture, info.d_in, info.d_sae) == ("topk", D, 48) and info.max_norm is not None

    sae = load_sae(out)
    X = np.random.default_rng(1).normal(size=(50, D)).astype(np.float32)
    sae.save_model(tmp_path / "copy")
    np.testing.assert_array_equal(encode(sae, X), encode(load_sae(tmp_path / "copy"), X))

    with Store.open(path) as store:
        codes = run_codes(store, "planted", 2)
        fresh = run_codes(store, "planted", 2, cache=False)  # encoded again, not read from the cache
    for name in ("offsets", "ptr", "features", "kept"):
        np.testing.assert_array_equal(getattr(codes, name), getattr(fresh, name))
    np.testing.assert_allclose(codes.values, fresh.values, rtol=1e-6)
    assert codes.item_ids == fresh.item_ids and not codes.kept[codes.offsets[:-1]].any()  # sinks left out


# ---- statistics against a hand computation --------------------------------------------------
ACTS = np.array([[0, 1, 2, 0], [0, 0, 4, 0], [3, 0, 0, 0], [1, 2, 0, 0]], dtype=float)  # 4 items × 4 features
FAILED = np.array([1, 1, 0, 0])


def test_feature_table_matches_a_hand_computation():
    t = feature_table(ACTS, FAILED)
    np.testing.assert_allclose(t["freq_fail"], [0, 0.5, 1, 0])
    np.testing.assert_allclose(t["freq_success"], [1, 0.5, 0, 0])
    np.testing.assert_allclose(t["mean_fail"], [0, 0.5, 3, 0])
    np.testing.assert_allclose(t["mean_success"], [2, 1, 0, 0])
    # Cohen's d: (mean_fail − mean_success) / sqrt(((n1−1)s1² + (n0−1)s0²) / (n1+n0−2)), sample variances
    np.testing.assert_allclose(t["effect"], [-2 / 1, -0.5 / np.sqrt((0.5 + 2) / 2), 3 / 1, 0])
    # AUC over the 4 (failed, successful) pairs, ties count one half: f1 has 1 win, 1 tie, 2 losses
    np.testing.assert_allclose(t["auc"], [0, 1.5 / 4, 1, 0.5])
    live = (ACTS > 0).any(0)
    assert rank_features(t, live, "auc").tolist() == [2, 0, 1]  # |AUC − .5| ties between 2 and 0: |d| decides
    assert rank_features(t, live, "effect").tolist() == [2, 0, 1]
    with pytest.raises(InputError, match="rank features by"):
        rank_features(t, live, "p")


def _hand_codes() -> FeatureCodes:
    """Item a: tokens [f0=1, f2=.5], [f0=3]; item b: a sink token, then [f1=2]."""
    return FeatureCodes(
        item_ids=["a", "b"],
        offsets=np.array([0, 2, 4]),
        ptr=np.array([0, 2, 3, 3, 4]),
        features=np.array([0, 2, 0, 1]),
        values=np.array([1.0, 0.5, 3.0, 2.0], dtype=np.float32),
        kept=np.array([True, True, False, True]),
        d_sae=3,
    )


def test_codes_summaries_by_hand(tmp_path):
    codes = _hand_codes()
    np.testing.assert_allclose(codes.item_max(), [[3, 0, 0.5], [0, 2, 0]])
    np.testing.assert_allclose(codes.item_mean(), [[2, 0, 0.25], [0, 2, 0]])  # b's mean is over its one kept token
    np.testing.assert_allclose(codes.feature_tokens(0, 0), [1, 3])
    np.testing.assert_allclose(codes.feature_tokens(1, 1), [0, 2])
    codes.save(tmp_path / "c.safetensors", run_id="r")
    again = FeatureCodes.load(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(again.item_max(), codes.item_max())
    assert again.item_ids == ["a", "b"] and again.d_sae == 3


def test_feature_diff_ranks_and_finds_contexts():
    n = 12
    rows = [[3.0 * (i % 2), 1.0, float(i)] for i in range(n)]  # f0 fires on exactly the failures, f1 on all
    codes = FeatureCodes(
        item_ids=[f"i{i}" for i in range(n)],
        offsets=np.arange(n + 1),
        ptr=np.arange(0, 3 * n + 1, 3),
        features=np.tile([0, 1, 2], n),
        values=np.array(rows, dtype=np.float32).ravel(),
        kept=np.ones(n, bool),
        d_sae=4,
    )
    items = pd.DataFrame(
        {"item_id": codes.item_ids, "split": ["train"] * 8 + ["test"] * 4, "failed": [i % 2 for i in range(n)]}
    )
    d = feature_diff(codes, items, "r", 1, top=3, n_resamples=200, tokens=lambda i: [f"tok-{i}"])
    assert [f.feature for f in d.features] == [0, 2, 1] and (d.n_live, d.n_dead) == (3, 1)
    top = d.features[0]
    assert (top.auc, top.freq_fail, top.freq_success, top.auc_test, top.direction) == (1.0, 1.0, 0.0, 1.0, "failure")
    assert top.ci_low <= top.auc <= top.ci_high and top.ci_level == 0.999
    assert d.features[2].auc == 0.5 and d.features[2].effect == 0  # fires everywhere alike
    assert all(c.failed for c in top.contexts) and top.contexts[0].tokens == [f"tok-{top.contexts[0].item_id}"]
    summary = top.summary()
    assert {"feature", "freq_fail", "freq_success", "effect", "auc", "contexts"} <= set(summary)
    assert summary["contexts"][0]["snippet"].startswith("[[tok-")


# ---- the explainer and the diff on planted stores -------------------------------------------
def test_planted_feature_is_found_by_the_diff_and_the_explainer(feature_store):
    path, planted = feature_store
    with Store.open(path) as store:
        d = run_diff(store, "planted", 2, top=5, n_resamples=300)
        data = RunData.load(store, "planted")
        assert ("sae", {"layer": 2, "site": "tokens"}) in variants(data)
        result = evaluate(data, "sae", layer=2, n_resamples=500)
    top = d.features[0]
    assert top.auc > 0.9 and top.auc_test is not None and top.auc_test > 0.9 and top.direction == "failure"
    # its strongest token in each top context is the token that carries the planted atom
    assert all(c.failed and c.position == planted[c.item_id] for c in top.contexts)
    assert result.tier == "input" and result.auc > 0.9 and result.ci_low > 0.7
    assert result.settings["sae_version"] and result.explanation["k"] in (8, 16, 32, 64)
    assert result.explanation["top_weights"][0]["weight"] > 0  # the feature pushes toward failure


def test_sae_explainer_stays_at_chance_when_only_gold_carries_signal(tmp_path):
    path = tmp_path / "gold.duckdb"
    _planted_store(path, 400, "gold")
    with Store.open(path) as store:
        train_run_sae(store, "planted", 2, TINY)
        data = RunData.load(store, "planted")
        result = evaluate(data, "sae", layer=2, n_resamples=500)
        prior = evaluate(data, "label-prior", n_resamples=500)
    assert result.ci_low < 0.5 < result.ci_high, (
        f"the SAE probe found a signal only the answer key carries: {result.auc}"
    )
    assert prior.auc == 1.0


# ---- bad input: one line ---------------------------------------------------------------------
def test_bad_inputs_are_one_line(feature_store, tmp_path):
    path, _ = feature_store
    with pytest.raises(InputError, match="no SAE at") as exc:
        load_sae(tmp_path / "absent")
    assert "\n" not in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an SAE in sae-lens format"):
        load_sae(tmp_path / "empty")
    with pytest.raises(InputError, match="unknown SAE release 'nope'"):
        load_sae("nope:layer_0")
    with pytest.raises(InputError, match="release 'gemma-scope-2b-pt-res-canonical' has no SAE 'layer_99/x'"):
        load_sae("gemma-scope-2b-pt-res-canonical:layer_99/x")  # checked against sae-lens's directory, offline
    with pytest.raises(InputError, match="ships pickled weights"):
        load_sae("gpt2-small-hook-z-kk:blocks.0.hook_z")

    wide = new_sae(D * 2, TrainConfig(width=16, k=2))
    wide.save_inference_model(tmp_path / "wide")
    with pytest.raises(InputError, match=r"width 32, but run planted's activations have width 16") as exc:
        check_width(load_sae(tmp_path / "wide"), D, "planted", "at wide")
    with Store.open(path) as store:
        with pytest.raises(WifError, match="width 32") as exc:
            run_codes(store, "planted", 2, path=tmp_path / "wide")
        assert "\n" not in str(exc.value)
        with pytest.raises(InputError, match="no per-token activations at layer 5.*--token-layers"):
            run_diff(store, "planted", 5)
        with pytest.raises(InputError, match="no per-token activations at layer 5.*--token-layers"):
            train_run_sae(store, "planted", 5, TINY)
    with pytest.raises(InputError, match="unknown SAE architecture"):
        TrainConfig(arch="gated").check()


# ---- the CLI -----------------------------------------------------------------------------------
def _json(capsys, argv: list[str]):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_train_diff_list_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the CLI would take every core
    db = str(tmp_path / "c.duckdb")
    _planted_store(Path(db), 200, "feature")
    err = main(["sae", "diff", "--db", db, "--run", "planted", "--layer", "2", "--json"])
    message = capsys.readouterr().err.strip()
    assert err == 2 and "no SAE at layer 2" in message and "wif sae train" in message and "\n" not in message

    out = _json(
        capsys,
        [
            "sae",
            "train",
            "--db",
            db,
            "--run",
            "planted",
            "--layer",
            "2",
            "--width",
            "48",
            "--k",
            "6",
            "--samples",
            "20000",
            "--batch",
            "64",
            "--lr",
            "0.005",
            "--json",
        ],
    )
    assert {"explained_variance", "mse", "mean_l0", "n_tokens", "seconds", "seed", "arch", "width", "path"} <= set(out)
    assert out["width"] == 48 and out["arch"] == "topk" and out["explained_variance"] > 0.5
    assert Path(out["path"]) == sae_dir(db, "planted", 2)

    rows = _json(
        capsys,
        ["sae", "diff", "--db", db, "--run", "planted", "--layer", "2", "--top", "5", "--resamples", "200", "--json"],
    )
    assert isinstance(rows, list) and len(rows) == 5
    for row in rows:
        assert {"feature", "freq_fail", "freq_success", "effect", "auc", "ci_low", "ci_high", "contexts"} <= set(row)
    assert rows[0]["auc"] > 0.85
    listed = _json(capsys, ["sae", "list", "--db", db, "--json"])
    assert [(r["run_id"], r["layer"], r["width"]) for r in listed] == [("planted", 2, 48)]

    assert main(["sae", "diff", "--db", db, "--run", "planted", "--layer", "3"]) == 2
    assert "--token-layers" in capsys.readouterr().err


def test_cli_add_takes_a_local_sae_directory_after_checking_its_width(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    db = str(tmp_path / "a.duckdb")
    _planted_store(Path(db), 60, "feature")
    new_sae(2 * D, TrainConfig(width=16, k=2)).save_inference_model(tmp_path / "wide")
    assert main(["sae", "add", "--db", db, "--run", "planted", "--layer", "2", "--sae", str(tmp_path / "wide")]) == 2
    message = capsys.readouterr().err.strip()
    assert "width 32" in message and "width 16" in message and "\n" not in message
    assert not available(db, "planted")  # nothing was written

    new_sae(D, TrainConfig(width=16, k=2)).save_inference_model(tmp_path / "mine")
    out = _json(
        capsys,
        ["sae", "add", "--db", db, "--run", "planted", "--layer", "2", "--sae", str(tmp_path / "mine"), "--json"],
    )
    assert out["source"] == str(tmp_path / "mine") and out["width"] == 16 and out["n_sink_tokens"] == 60
    assert available(db, "planted") == {2: sae_dir(db, "planted", 2)}
    assert sae_info(sae_dir(db, "planted", 2)).metrics["source"] == str(tmp_path / "mine")
