"""SAE feature clamping: the SAE's error term kept, no change is no change; controls clamp as many live features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wif_core.cli.main import main
from wif_core.errors import InputError
from wif_core.interventions.clamp import clamp_edit, clamp_plan, random_features
from wif_core.interventions.run import check_ks, clamp_check
from wif_core.interventions.steering import edit_scores
from wif_core.sae.load import load_sae
from wif_core.sae.paths import sae_dir
from wif_core.store import Store


@pytest.fixture(scope="module")
def with_sae(tmp_path_factory, tiny_model_dir):
    """A tiny-Llama run with per-token activations at layer 2 and a small SAE trained on them (built once)."""
    from tests.conftest import piqa_rows

    path = tmp_path_factory.mktemp("clamp")
    items_file = path / "piqa_items.jsonl"
    items_file.write_text("\n".join(json.dumps(r) for r in piqa_rows()))
    db = path / "w.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "set_num_threads", lambda n: None)  # the CLI would take every core
        argv = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--source", str(items_file)]
        assert main([*argv, "--layers", "2,4", "--token-layers", "2", "--db", str(db)]) == 0
        with Store.open(db) as store:
            (run_id,) = list(store.runs().run_id)
        train = ["sae", "train", "--db", str(db), "--run", run_id, "--layer", "2", "--width", "64", "--k", "4"]
        assert main([*train, "--samples", "4000", "--batch", "64"]) == 0
    return db, run_id


def test_clamping_nothing_reproduces_collection_exactly(with_sae, tiny_model_dir):
    """With the SAE's error term kept and no feature changed, the edit adds exactly 0: the scores of collection's
    own batches, bit for bit. Clamping features to 0 does change them (the check can fail)."""
    from wif_core.models.loading import load_model

    db, run_id = with_sae
    lm = load_model(str(tiny_model_dir))
    sae = load_sae(sae_dir(db, run_id, 2))
    with Store.open(db) as store:
        items = store.task_items(run_id)
        stored = store.items(run_id).set_index("item_id")
        plan = clamp_plan(store, run_id, 2)
    same = edit_scores(lm, items, layer=2, edit=clamp_edit(sae, plan.ranked[:4], None), listing=True)
    for i, row in stored.iterrows():
        assert same[i][0] == list(row.ll_sum)  # bit for bit
    zeroed = edit_scores(lm, items, layer=2, edit=clamp_edit(sae, list(plan.live), plan.target), listing=True)
    assert any(zeroed[i][0] != list(row.ll_sum) for i, row in stored.iterrows())


def test_the_edit_moves_the_residual_only_along_the_clamped_decoder_rows(with_sae):
    db, run_id = with_sae
    sae = load_sae(sae_dir(db, run_id, 2))
    h = torch.randn(3, 5, 32) * 4
    feats = [0, 3, 7]
    target = np.full(int(sae.cfg.d_sae), 0.5, dtype=np.float32)
    moved = clamp_edit(sae, feats, target)(h) - h
    with torch.no_grad():
        c = sae.encode(h)
        want = (torch.tensor(0.5) - c[..., feats]) @ sae.W_dec[feats]
    torch.testing.assert_close(moved, want, atol=1e-4, rtol=1e-4)
    sink = clamp_edit(sae, feats, target, max_norm=0.0)(h)  # every position above the norm: left alone
    assert torch.equal(sink, h)


def test_controls_clamp_as_many_other_live_features(with_sae):
    db, run_id = with_sae
    with Store.open(db) as store:
        plan = clamp_plan(store, run_id, 2, mode="success-mean")
    assert plan.ranked and set(plan.ranked) <= set(plan.live.tolist())
    assert (plan.target >= 0).all() and plan.target.any()  # success means of the codes
    for k in (1, 2):
        sets = random_features(plan, k, 3, seed=0)
        assert len(sets) == 3 and all(len(s) == k for s in sets)
        assert all(set(s) <= set(plan.live.tolist()) and not set(s) & set(plan.ranked[:k]) for s in sets)
        assert sets == random_features(plan, k, 3, seed=0)  # seeded
    with pytest.raises(InputError, match="fewer than"):
        random_features(plan, len(plan.live), 1, seed=0)


def test_clamp_check_scores_on_val_and_reports_on_test(with_sae, tiny_model_dir):
    from wif_core.models.loading import load_model

    db, run_id = with_sae
    lm = load_model(str(tiny_model_dir))
    with Store.open(db) as store:
        score = clamp_check(store, lm, run_id, layer=2, ks=[1, 2], n_controls=2, seed=0)
    assert [r.alpha for r in score.val] == [0.0, 1.0, 2.0] == [r.alpha for r in score.test]
    assert score.alpha in (1.0, 2.0) and score.site == "tokens" and score.layer == 2
    assert score.source["explainer"] == "sae-clamp" and len(score.source["features"]) == 2
    base = score.test[0]
    assert base.flip_rate in (0.0, None) and base.broken_rate in (0.0, None)  # k = 0 changes nothing
    assert len(score.items) == base.n_failures + base.n_successes


def test_bad_clamp_requests_are_one_line(with_sae, tiny_model_dir, tmp_path):
    from wif_core.models.loading import load_model
    from wif_core.sae.train import TrainConfig, new_sae

    db, run_id = with_sae
    with pytest.raises(InputError, match="grid is empty"):
        check_ks([])
    with Store.open(db) as store, pytest.raises(InputError, match="clamp features to one of"):
        clamp_plan(store, run_id, 2, mode="half")
    with Store.open(db) as store, pytest.raises(InputError, match="--token-layers 4"):
        clamp_plan(store, run_id, 4)
    # a copy of the store whose SAE at layer 2 reads vectors of another width
    other = tmp_path / "other.duckdb"
    other.write_bytes(db.read_bytes())
    new_sae(16, TrainConfig(width=32, k=4)).save_inference_model(str(sae_dir(other, run_id, 2)))
    lm = load_model(str(tiny_model_dir))
    with Store.open(other) as store, pytest.raises(InputError, match="width 16") as err:
        clamp_check(store, lm, run_id, layer=2, ks=[1])
    assert "\n" not in str(err.value)
