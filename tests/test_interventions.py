"""Steering: α = 0 reproduces collection bit for bit; the random control has the probe direction's norm; a
planted direction flips what it should; `wif intervene` reports the causal score and refuses bad input in
one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wif_core.cli import main
from wif_core.interventions.causal import choose_alpha, rates
from wif_core.interventions.steering import Direction, Prefix, random_directions, steer_scores, sweep
from wif_core.models.loading import LoadedModel
from wif_core.store import Store
from wif_core.tasks.base import TaskItem


@pytest.fixture()
def tiny_lm(tiny_llama, tiny_tokenizer):
    return LoadedModel(model=tiny_llama, tokenizer=tiny_tokenizer, name="tiny", n_layers=4, d_model=32)


@pytest.fixture()
def collected(tmp_path, capsys, tiny_model_dir, items_file):
    db = tmp_path / "w.duckdb"
    argv = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--source", str(items_file)]
    assert main([*argv, "--layers", "2,4", "--db", str(db), "--json"]) == 0
    return db, json.loads(capsys.readouterr().out)["run_id"]


def test_alpha_zero_reproduces_collection_exactly(collected, tiny_model_dir):
    from wif_core.models.loading import load_model

    db, run_id = collected
    lm = load_model(str(tiny_model_dir))
    with Store.open(db) as store:
        items = store.task_items(run_id)
        stored = store.items(run_id).set_index("item_id")
    same = steer_scores(lm, items, layer=2, vector=None, listing=True)  # collection's batches
    zero = steer_scores(lm, items, layer=2, vector=np.zeros(32), listing=True)  # a hook adding 0
    for i, row in stored.iterrows():
        assert same[i][0] == list(row.ll_sum) and zero[i][0] == list(row.ll_sum)  # bit for bit
        assert same[i][1] == row.pred
    # without the listing prompt (what sweeps score): the same log-likelihoods up to float rounding
    short = steer_scores(lm, items, layer=2, vector=None)
    for i, row in stored.iterrows():
        np.testing.assert_allclose(short[i][0], list(row.ll_sum), atol=1e-4)


def test_a_shared_prefix_changes_no_score(collected, tiny_model_dir):
    """Passes that start from the kept block-L output (skipping blocks 1..L) give the full passes' scores bit for
    bit, steered or not, with or without the listing prompt; a prefix past its byte budget scores in full."""
    from wif_core.models.loading import load_model

    db, run_id = collected
    lm = load_model(str(tiny_model_dir))
    with Store.open(db) as store:
        items = store.task_items(run_id)
    v = np.random.default_rng(0).standard_normal(32).astype(np.float32) * 3
    first = None
    for listing in (False, True):
        prefix = Prefix(2)
        full = [steer_scores(lm, items, layer=2, vector=x, listing=listing) for x in (None, v, -v)]
        shared = [steer_scores(lm, items, layer=2, vector=x, listing=listing, prefix=prefix) for x in (None, v, -v)]
        assert prefix.hits > 0 and prefix.bytes > 0  # the later passes did start from the kept tensors
        assert shared == full
        assert full[1] != full[0]  # the steering does change scores: the comparison can fail
        first = first or full
    tight = Prefix(2, max_bytes=0)
    assert [steer_scores(lm, items, layer=2, vector=v, prefix=tight) for _ in range(2)] == [first[1]] * 2
    assert tight.hits == 0 and not tight.kept


def test_a_shared_prefix_changes_no_score_on_gemma3(tiny_gemma3, tiny_tokenizer):
    """The same on the tiny Gemma 3, whose blocks take per-type masks and position embeddings (sliding and
    global layers): skipping the blocks below changes nothing above them."""
    lm = LoadedModel(model=tiny_gemma3, tokenizer=tiny_tokenizer, name="tiny-gemma3", n_layers=4, d_model=32)
    items = [
        TaskItem(
            item_id=f"g{n}",
            task="piqa",
            context=f"Step {n}: how do you fold a shirt neatly?",
            choices=("fold it in half twice", f"throw it {n} times"),
            gold=n % 2,
        )
        for n in range(6)
    ]
    v = np.random.default_rng(1).standard_normal(32).astype(np.float32) * 3
    for layer in (1, 3):
        prefix = Prefix(layer)
        full = [steer_scores(lm, items, layer=layer, vector=x) for x in (None, v)]
        shared = [steer_scores(lm, items, layer=layer, vector=x, prefix=prefix) for x in (None, v)]
        assert prefix.hits > 0 and shared == full and full[0] != full[1]


def test_controls_have_the_directions_norm():
    dirs = random_directions(32, 5, seed=3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    assert not np.allclose(dirs[0], dirs[1])
    np.testing.assert_array_equal(dirs, random_directions(32, 5, seed=3))  # seeded


def test_planted_direction_flips_what_it_should(tiny_lm, tiny_tokenizer):
    """Steer the last block along W_U['A'] − W_U['B']: every item now answers A. The failures whose answer is A
    flip, the successes whose answer is B break; a random direction of the same norm does neither wholesale."""
    a, b = (tiny_tokenizer.encode(f" {c}", add_special_tokens=False) for c in "AB")
    assert a[:-1] == b[:-1] and a[-1] != b[-1]  # the choices differ in their last token only
    unembed = tiny_lm.model.get_output_embeddings().weight.detach().numpy()
    v = unembed[a[-1]] - unembed[b[-1]]
    items = [
        TaskItem(item_id=f"i{n}", task="piqa", context=f"Question {n}: pick a letter.", choices=("A", "B"), gold=n % 2)
        for n in range(16)
    ]
    direction = Direction(name="planted", layer=4, vector=v / np.linalg.norm(v))
    points = sweep(tiny_lm, items, direction, unit=1.0, alphas=[0.0, 200.0], n_controls=2, seed=0)
    base, far = points
    assert all(far.correct[it.item_id] == (it.gold == 0) for it in items)  # everything answers A
    ids = [it.item_id for it in items]
    r = rates(far, base.correct, base.margin, ids)
    assert r.n_failures > 0 and r.flip_rate == pytest.approx(
        np.mean([it.gold == 0 for it in items if not base.correct[it.item_id]])
    )
    assert r.broken_rate == pytest.approx(np.mean([it.gold == 1 for it in items if base.correct[it.item_id]]))
    controls = [c for it in items for c in far.control_correct[it.item_id]]
    assert len(controls) == 2 * len(items) and 0 < np.mean(controls) < 1  # random pushes go both ways
    assert choose_alpha([rates(p, base.correct, base.margin, ids) for p in points]) == 200.0


def test_intervene_cli(collected, capsys):
    db, run_id = collected
    argv = ["intervene", "--run", run_id, "--layer", "4", "--alphas", "0,1,4", "--db", str(db)]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["alpha"] in (1.0, 4.0) and [r["alpha"] for r in out["test"]] == [0.0, 1.0, 4.0]
    at0 = out["test"][0]
    assert at0["flip_rate"] == 0 and at0["broken_rate"] == 0 and at0["accuracy_change"] == 0  # α = 0 moves nothing
    assert out["ci_level"] == 0.999 and out["n_test_failures"] == at0["n_failures"] > 0
    assert out["source"]["explainer"] == "probe" and out["source"]["unit"] > 0
    assert main(argv) == 0
    assert "causal score" in capsys.readouterr().out
    # bad input: one line each
    for extra, message in (
        (["--explainer", "surface"], "yields no residual-stream direction"),
        (["--layer", "3"], "no activations at layer 3"),
    ):
        bad = [*argv, *extra] if extra[0] != "--layer" else [*argv[:4], "3", *argv[5:]]
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main([*argv[:-4], "--alphas", "", "--db", str(db)])
    assert "strength grid is empty" in capsys.readouterr().err


def test_zoo_ablation_is_exact_and_named_neurons_cost_more(capsys):
    import torch

    from wif_core.interventions.zoo_ablation import ablate
    from wif_core.zoo.models import ZooSpec, rnn_from_weights
    from wif_core.zoo.weights import load

    # a neuron nothing reads or feeds: silencing it changes no answer on any input
    base = load("2nd_argmax_d16_n10")
    w = base.weights()
    d = w["W_hh"].shape[0]
    W_hh = torch.zeros(d + 1, d + 1)
    W_hh[:d, :d] = w["W_hh"]
    W_hi = torch.cat([w["W_hi"], torch.tensor([0.7])])
    W_hh[d, d] = 0.5  # it has its input and its own dynamics, but nothing reads it
    W_oh = torch.cat([w["W_oh"], torch.zeros(w["W_oh"].shape[0], 1)], dim=1)
    spec = ZooSpec(name="padded", task="2nd_argmax", n=10, hidden=d + 1)
    padded = rnn_from_weights(spec, W_hi, W_hh, W_oh)
    dead = ablate(padded, [d], samples=20_000, n_random=0)
    assert dead.named.change == 0 and dead.named.broken == dead.named.fixed == 0 and dead.named.change_ci == (0, 0)
    # ARC's leave-one-out neurons of M16,10 cost more accuracy than random sets of five others, on the same inputs
    r = ablate(base, [1, 2, 4, 6, 7], samples=50_000, n_random=8, seed=1)
    assert r.named.change < r.random_mean_change < 0 and r.p_random == pytest.approx(1 / 9)
    assert r.named.change_ci[0] <= r.named.change <= r.named.change_ci[1]
    assert all(set(x.neurons).isdisjoint({1, 2, 4, 6, 7}) and len(x.neurons) == 5 for x in r.random)
    # one line for a bad index
    assert main(["zoo", "ablate", "2nd_argmax_d16_n10", "--neurons", "1,99"]) == 2
    assert "0..15" in capsys.readouterr().err
    assert (
        main(
            ["zoo", "ablate", "2nd_argmax_d16_n10", "--neurons", "1,2", "--samples", "5000", "--random", "3", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["named"]["neurons"] == [1, 2] and len(out["random"]) == 3 and out["n"] == 5000
