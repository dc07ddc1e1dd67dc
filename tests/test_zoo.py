"""The zoo: the RNN against a hand-unrolled loop, the handcrafted models' known accuracy, the deductive
estimate against sampling, estimators, bad input, training, zoo runs in the store and an explainer on one."""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from wif_core.errors import InputError
from wif_core.zoo.deductive import deduce
from wif_core.zoo.estimators import ESTIMATORS, Estimate, get_estimator, mse_curve, noised_copy, register
from wif_core.zoo.evaluate import FastRNN, evaluate
from wif_core.zoo.models import ZooRNN, ZooSpec, build, handcrafted_2nd_argmax, rnn_from_weights
from wif_core.zoo.tasks import get_task, longest_cycle, order_factors, second_argmax
from wif_core.zoo.train import TrainConfig, lr_factor, train
from wif_core.zoo.weights import ZOO_DIR, available, load, save

torch.set_num_threads(1)
SHIPPED = ("2nd_argmax_d2_n2", "2nd_argmax_d4_n3", "2nd_argmax_d16_n10")


def _random_rnn(n: int, d: int, task: str = "2nd_argmax", seed: int = 0) -> ZooRNN:
    torch.manual_seed(seed)
    return ZooRNN(ZooSpec(name=f"random_d{d}_n{n}", task=task, n=n, hidden=d))


# ---- the architecture ----------------------------------------------------------------------------


def test_rnn_matches_a_hand_unrolled_loop() -> None:
    model = _random_rnn(n=5, d=3)
    W_hi, W_hh, W_oh = (model.weights()[k].double().numpy() for k in ("W_hi", "W_hh", "W_oh"))
    x = torch.randn(7, 5)
    expected_states, expected = [], []
    for row in x.double().numpy():
        h = np.zeros(3)
        states = []
        for t in range(5):  # h_t = ReLU(W_hh h_{t-1} + W_hi x_t), written out one neuron at a time
            h = np.array([max(0.0, sum(W_hh[i, j] * h[j] for j in range(3)) + W_hi[i] * row[t]) for i in range(3)])
            states.append(h)
        expected_states.append(states)
        expected.append(W_oh @ h)
    with torch.no_grad():
        states = model.hidden_states(x)
        logits = model(x)
    assert states.shape == (7, 5, 3)
    np.testing.assert_allclose(states.numpy(), np.array(expected_states), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits.numpy(), np.array(expected), rtol=1e-5, atol=1e-6)
    fast = FastRNN.of(model).logits(x.T.contiguous())  # the evaluation path: [n, B] in, [out, B] out
    np.testing.assert_allclose(fast.T.numpy(), np.array(expected), rtol=1e-5, atol=1e-6)


def test_fast_correctness_agrees_with_argmax_and_sorting() -> None:
    model = _random_rnn(n=10, d=16, seed=3)
    x = torch.randn(5000, 10)
    with torch.no_grad():
        slow = model(x).argmax(dim=1) == second_argmax(x)
    fast = FastRNN.of(model).correct(x.T.contiguous(), rank=1)
    assert torch.equal(slow, fast)
    assert 0.0 < slow.float().mean() < 1.0  # the check is not trivially all-right or all-wrong


def test_targets_and_ground_truth_factors() -> None:
    x = torch.tensor([[0.1, 2.0, -1.0, 1.5], [3.0, 2.9, 0.0, -5.0]])
    assert second_argmax(x).tolist() == [3, 1]
    assert get_task("argmedian").target(x[:, :3]).tolist() == [0, 1]
    f = order_factors(x.double().numpy())
    np.testing.assert_allclose(f["gap12"], [0.5, 0.1], atol=1e-6)
    np.testing.assert_allclose(f["gap23"], [1.4, 2.9], atol=1e-6)
    assert f["max_pos"].tolist() == [1, 0] and f["second_pos"].tolist() == [3, 1]


def test_longest_cycle_against_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    f = torch.randint(0, 6, (300, 6), generator=gen)
    for row, got in zip(f.tolist(), longest_cycle(f).tolist(), strict=True):
        best = 0
        for start in range(6):
            seen, p = [], start
            while p not in seen:
                seen.append(p)
                p = row[p]
            best = max(best, len(seen) - seen.index(p))
        assert got == best
    assert longest_cycle(torch.tensor([[1, 2, 0, 3]])).tolist() == [3]  # a 3-cycle and a fixed point


def test_transformer_runs_on_longest_cycle() -> None:
    model = build(ZooSpec(name="lc", task="longest_cycle", n=5, hidden=8, layers=2, norm="mlp"))
    x = get_task("longest_cycle").sample(16, 5)
    assert model(x).shape == (16, 5) and model.hidden_states(x).shape == (16, 2, 8)
    assert model.flops_per_sample() > 0


# ---- handcrafted models: known accuracy ------------------------------------------------------------


def test_handcrafted_n2_is_exactly_right() -> None:
    model = handcrafted_2nd_argmax(2)
    result = evaluate(model, 100_000, seed=0)
    assert result.n_correct == 100_000 and result.accuracy == 1.0
    assert deduce(model).accuracy == 1.0  # exactly, not approximately


def test_handcrafted_n10_leave_one_out_max_is_about_99_percent() -> None:
    model = handcrafted_2nd_argmax(10)
    assert model.spec.hidden == 22
    result = evaluate(model, 400_000, seed=1)
    # it is wrong only when fewer than two inputs are positive (probability 11/1024), and then only sometimes
    assert 1 - 11 / 1024 <= result.ci_high and result.accuracy < 0.995
    x = torch.randn(20_000, 10)
    two_positive = (x > 0).sum(dim=1) >= 2
    with torch.no_grad():
        right = model(x).argmax(dim=1) == second_argmax(x)
    assert right[two_positive].all()  # the construction is exact whenever the top two are positive
    assert not right[~two_positive].all()


# ---- the deductive estimate --------------------------------------------------------------------------


def test_deductive_matches_sampling_for_the_shipped_m22() -> None:
    model = load("2nd_argmax_d2_n2")
    exact = deduce(model)
    assert 0.999 < exact.accuracy < 1.0  # ARC's M2,2 errs about once in 13,000
    sampled = evaluate(model, 2_000_000, seed=5)
    assert sampled.ci_low <= exact.accuracy <= sampled.ci_high
    assert math.isclose(sum(w.mass for w in exact.wedges), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deductive_matches_sampling_for_random_n2_models(seed: int) -> None:
    model = _random_rnn(n=2, d=4, seed=seed)
    exact, sampled = deduce(model), evaluate(model, 500_000, seed=seed)
    assert sampled.ci_low <= exact.accuracy <= sampled.ci_high


def test_deductive_refuses_longer_sequences() -> None:
    with pytest.raises(InputError, match="n = 2"):
        deduce(handcrafted_2nd_argmax(10))


# ---- estimators ----------------------------------------------------------------------------------------


def test_estimators_are_registered_once_and_importance_is_unbiased() -> None:
    assert {"sampling", "deductive", "importance"} <= set(ESTIMATORS)
    with pytest.raises(ValueError, match="already registered"):
        register(type(get_estimator("sampling")))
    model = _random_rnn(n=4, d=6, seed=4)
    truth = evaluate(model, 2_000_000, seed=9)
    est = get_estimator("importance").estimate(model, 400_000, seed=2)
    assert isinstance(est, Estimate) and est.flops > 400_000 * model.flops_per_sample()
    assert abs(est.accuracy - truth.accuracy) < 0.004  # a biased weighting would miss by far more
    with pytest.raises(InputError, match="unknown estimator"):
        get_estimator("guess")


def test_mse_curve_on_m22_puts_the_deduction_at_zero_error() -> None:
    model = load("2nd_argmax_d2_n2")
    curve = mse_curve(
        model, ["sampling", "importance", "deductive"], [100, 1_000, 10_000], copies=2, repeats=3, noise=0.01
    )
    by = {(p.method, p.budget): p for p in curve.points}
    assert curve.truth_method == "deductive" and by[("deductive", None)].mse < 1e-24
    assert by[("sampling", 10_000)].flops == 100 * by[("sampling", 100)].flops
    assert by[("sampling", 10_000)].mse < by[("sampling", 100)].mse
    again = type(curve).from_dict(json.loads(json.dumps(curve.as_dict())))
    assert again.points == curve.points
    noisy = noised_copy(model, 0.01, seed=1)
    assert not torch.equal(noisy.W_hh, model.W_hh)


# ---- bad input -------------------------------------------------------------------------------------------


def test_bad_input_gives_one_line_naming_the_fix(tmp_path: Path) -> None:
    cases = [
        (lambda: get_task("3rd_argmax"), "unknown zoo task '3rd_argmax'"),
        (lambda: get_task("argmedian").check(4), "odd --seq"),
        (lambda: build(ZooSpec(name="m", task="median", n=6, hidden=4)), "odd --seq"),
        (lambda: TrainConfig("argmedian", 4, 10).check(), "odd --seq"),
        (lambda: handcrafted_2nd_argmax(5), "n = 2 and n = 10"),
        (
            lambda: rnn_from_weights(
                ZooSpec(name="m", task="2nd_argmax", n=3, hidden=4),
                torch.zeros(4),
                torch.zeros(3, 3),
                torch.zeros(3, 4),
            ),
            "weight 'W_hh' has shape",
        ),
        (lambda: load("2nd_argmax_d99_n99"), "no zoo model '2nd_argmax_d99_n99'"),
    ]
    not_safetensors = tmp_path / "junk.safetensors"
    not_safetensors.write_bytes(b"not a safetensors file")
    cases.append((lambda: load(str(not_safetensors)), "not a readable safetensors file"))
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"W_hi": torch.zeros(2)}, str(bare))
    cases.append((lambda: load(str(bare)), "metadata field 'wif_zoo_spec' is missing"))
    for call, message in cases:
        with pytest.raises(InputError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_save_and_load_round_trip_checks_shapes(tmp_path: Path) -> None:
    model = _random_rnn(n=3, d=4, seed=7)
    model.spec.meta = {"steps": 1}
    path = save(model, tmp_path / "m.safetensors")
    again = load(str(path))
    assert again.spec == model.spec and torch.equal(again.W_hh, model.W_hh)
    wrong = ZooRNN(ZooSpec(name="m", task="2nd_argmax", n=3, hidden=5))  # saved with hidden 5, claimed 4 below
    wrong.spec = ZooSpec(name="m", task="2nd_argmax", n=3, hidden=4)
    save(wrong, tmp_path / "wrong.safetensors")
    with pytest.raises(InputError, match="weight 'W_hi' has shape"):
        load(str(tmp_path / "wrong.safetensors"))


def test_shipped_models_are_tiny_and_carry_their_provenance() -> None:
    names = available()
    for name in SHIPPED:
        assert name in names
        path = ZOO_DIR / f"{name}.safetensors"
        assert path.stat().st_size < 10_000
        meta = load(name).spec.meta
        assert meta["steps"] > 0 and meta["train_seconds"] > 0 and 0 < meta["accuracy"] <= 1
    assert any(n.startswith("argmedian") for n in names)


# ---- training ------------------------------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_to_one_percent() -> None:
    cfg = TrainConfig("2nd_argmax", 4, 3, steps=1000, warmup=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.01) and lr_factor(99, cfg) == pytest.approx(1.0)
    assert lr_factor(999, cfg) == pytest.approx(0.01, rel=0.01)
    assert cfg.peak_lr == pytest.approx(0.02)  # 0.04 / √4


def test_a_short_training_run_beats_chance() -> None:
    model = train(TrainConfig("2nd_argmax", 4, 3, steps=250, batch=256))
    result = evaluate(model, 50_000, seed=3)
    assert result.accuracy > 0.6  # chance is 1/3
    assert model.spec.meta["steps"] == 250 and model.spec.meta["lr"] == pytest.approx(0.02)


# ---- zoo runs in the store -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_store(tmp_path_factory: pytest.TempPathFactory):
    from wif_core.store import Store
    from wif_core.zoo.runs import store_run

    torch.manual_seed(0)
    model = train(TrainConfig("2nd_argmax", 4, 3, steps=1500, batch=512, name="short_d4_n3"))
    path = tmp_path_factory.mktemp("zoo") / "zoo.duckdb"
    with Store.open(path, write=True) as store:
        result = store_run(store, model, 1500, seed=1)
    return path, model, result


def test_store_round_trip(zoo_store) -> None:
    from wif_core.store import Store
    from wif_core.zoo.runs import store_run

    path, model, result = zoo_store
    with Store.open(path) as store:
        run = store.run(result.run_id)
        frame = store.items(result.run_id)
        ids, acts = store.activations(result.run_id, 3, "last")
        _, first = store.activations(result.run_id, 1, "last")
        _, steps = store.token_activations(result.run_id, 1, ids[:5])
    assert run.model == "zoo:short_d4_n3" and run.task == "zoo-2nd_argmax-n3" and run.layers == [1, 2, 3]
    assert len(frame) == 1500 and 0.8 < frame["correct"].mean() < 0.99
    meta = json.loads(frame["meta"].iloc[0])
    x = torch.tensor([meta["x"]], dtype=torch.float32)
    assert {"gap12", "gap23", "max_pos", "second_pos"} <= set(meta["factors"])
    assert meta["gap12"] == pytest.approx(
        float(x.sort(descending=True).values[0, 0] - x.sort(descending=True).values[0, 1])
    )
    assert frame["gold"].iloc[0] == int(second_argmax(x)[0])
    with torch.no_grad():
        states = model.hidden_states(x)[0]
        logits = model(x)[0]
    np.testing.assert_allclose(acts[0], states[2].numpy(), rtol=1e-6)  # layer t = the state after step t
    np.testing.assert_allclose(first[0], states[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(steps[0], states.numpy(), rtol=1e-6)  # per-step states for attention probes
    ll = np.array(frame["ll_sum"].iloc[0])
    # the run's logits come from a batched float32 pass, these from a single one: equal to a few ulps of their
    # size, and log-softmax moves no output by more than twice its largest input change (a relative tolerance
    # means nothing for a log-probability near 0)
    ulps = 64 * float(np.finfo(np.float32).eps) * (1 + float(logits.abs().max()))
    np.testing.assert_allclose(ll, torch.log_softmax(logits.double(), 0).numpy(), rtol=0, atol=ulps)
    assert frame["pred"].iloc[0] == int(logits.argmax())
    with Store.open(path, write=True) as store:
        assert store_run(store, model, 1500, seed=1).resumed  # same arguments: the stored run is kept


def test_an_interrupted_zoo_run_is_written_again_whole(zoo_store, tmp_path: Path) -> None:
    from wif_core.store import Store
    from wif_core.zoo.runs import store_run

    _, model, _ = zoo_store
    with Store.open(tmp_path / "z.duckdb", write=True) as store:
        first = store_run(store, model, 200, seed=2)
        whole = store.counts(first.run_id)
        with store.transaction() as cur:  # what a kill mid-write leaves: some outcomes, status 'collecting'
            cur.execute("DELETE FROM outcomes WHERE run_id = ? AND item_id > 'short_d4_n3-150'", [first.run_id])
        store.set_status(first.run_id, "collecting")
        again = store_run(store, model, 200, seed=2)
        assert again.run_id == first.run_id and not again.resumed and again.n_items == 200
        assert store.counts(first.run_id) == whole and store.run(first.run_id).status == "complete"


def test_explainers_run_unchanged_on_a_zoo_run_and_find_the_gap(zoo_store) -> None:
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import evaluate as explain
    from wif_core.store import Store
    from wif_core.zoo.runs import cause_recovery

    path, _, result = zoo_store
    with Store.open(path) as store:
        data = RunData.load(store, result.run_id)
        probe = explain(data, "probe", layer=3, site="last")
        rows = {r.explainer: r for r in cause_recovery(store, result.run_id)}
    assert probe.ci_low <= probe.auc <= probe.ci_high and probe.n_test > 20
    assert rows["known cause: −gap12"].auc > 0.6  # small top-2 gaps are much of what this model gets wrong
    assert rows["probe"].auc > 0.6 and rows["probe"].spearman_gap12 < 0  # its failure score falls as the gap grows
    assert rows["known cause: −min(gap12, gap23)"].auc >= rows["known cause: −gap12"].auc - 0.05
    assert rows["confidence"].auc > 0.8  # the output tier reads the model's own (near-tied) logits


# ---- the CLI -----------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from wif_core.cli import build_parser

    return build_parser()


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    args = _parser().parse_args(["zoo", *argv, "--json"])
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_eval_estimate_list_and_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = _run(capsys, ["eval", "handcrafted_2nd_argmax_n2", "--samples", "20000"])
    assert {"accuracy", "ci_low", "ci_high", "n"} <= set(out) and out["accuracy"] == 1.0 and out["n"] == 20000
    out = _run(capsys, ["estimate", "2nd_argmax_d2_n2", "--method", "deductive"])
    assert out["method"] == "deductive" and 0.999 < out["accuracy"] < 1
    listed = {r["name"]: r for r in _run(capsys, ["list"])}
    assert listed["2nd_argmax_d16_n10"]["parameters"] == 16 + 256 + 160
    db = tmp_path / "cli.duckdb"
    out = _run(capsys, ["store", "2nd_argmax_d16_n10", "--samples", "400", "--db", str(db)])
    assert out["n_items"] == 400 and out["run_id"].startswith("zoo-2nd-argmax-d16-n10--zoo-2nd_argmax-n10")
    args = _parser().parse_args(["zoo", "store", "handcrafted_2nd_argmax_n2", "--samples", "100", "--db", str(db)])
    with pytest.raises(InputError, match="100 of 100 samples right"):
        args.func(args)
    args = _parser().parse_args(["zoo", "estimate", "2nd_argmax_d16_n10", "--method", "deductive"])
    with pytest.raises(InputError, match="n = 2"):
        args.func(args)
    for bad in (
        ["train", "argmedian", "--hidden", "4", "--seq", "4"],
        ["train", "sort", "--hidden", "4", "--seq", "3"],
    ):
        args = _parser().parse_args(["zoo", *bad])
        with pytest.raises(InputError):
            args.func(args)


def test_combinations_cover_the_issue_tasks() -> None:
    for task, n in itertools.product(("2nd_argmax", "argmedian", "median", "longest_cycle"), (3, 5)):
        model = build(ZooSpec(name="m", task=task, n=n, hidden=4))
        x = get_task(task).sample(8, n)
        assert model(x).shape == (8, get_task(task).n_outputs(n))


def test_zoo_task_names_are_names_and_register_nothing(zoo_store) -> None:
    from wif_core.store import Store
    from wif_core.tasks.base import TASKS
    from wif_core.tasks.base import get_task as get_lm_task
    from wif_core.zoo.tasks import store_task

    known = dict(TASKS)
    assert store_task("argmedian", 7) == "zoo-argmedian-n7" and dict(TASKS) == known
    with pytest.raises(InputError, match="unknown task 'zoo-argmedian-n7'; use one of: piqa") as info:
        get_lm_task("zoo-argmedian-n7")  # the task table knows language-model tasks only
    assert "\n" not in str(info.value)
    path, _, result = zoo_store
    with Store.open(path) as store:
        run = store.run(result.run_id)
    assert (run.kind, run.n_choices, run.family, run.has_lm) == ("zoo", 3, "zoo-position", False)
    assert not any(name.startswith("zoo-") for name in TASKS)  # storing a zoo run registered no task


def test_position_attribution_is_exact_and_points_at_the_confused_pair(zoo_store) -> None:
    from wif_core.attribution import Attribution
    from wif_core.store import Store
    from wif_core.zoo.attribution import position_scores

    path, model, result = zoo_store
    with Store.open(path) as store:
        rows = store.attributions(result.run_id)
        frame = store.items(result.run_id).set_index("item_id")
    assert len(rows) == 1500 and {r.method for r in rows} == {"grad_x_input"}
    for r in rows:
        # Euler: the bias-free ReLU RNN is homogeneous of degree 1, so gradient × input is complete
        assert r.sum_scores == pytest.approx(r.delta, abs=1e-9)
        assert r.deletion is not None and r.deletion["top"][0] == pytest.approx(r.delta, abs=1e-4)
        failed = not frame.loc[r.item_id, "correct"]
        # Δ = logit(wrong) − logit(right) ≥ 0 exactly when the model erred (0: a tie, which argmax breaks)
        assert r.delta >= 0 if failed else r.delta <= 0
        assert r.wrong_choice == (frame.loc[r.item_id, "pred"] if failed else r.wrong_choice) != r.right_choice
        assert r.segments[r.right_choice] == "right_pos" and r.segments[r.wrong_choice] == "wrong_pos"
        assert Attribution.from_row(r).heat()  # the attribution page can draw it
    # the known cause: on failures, the confused pair (wrong and right positions) carries most of |relevance|
    shares = [
        sum(abs(r.scores[p]) for p in (r.wrong_choice, r.right_choice)) / sum(map(abs, r.scores))
        for r in rows
        if r.delta > 0
    ]
    assert np.mean(shares) > 0.5
    x = torch.tensor([[0.3, -1.0, 2.0]])
    scores, delta, profile = position_scores(model, x, torch.tensor([0]), torch.tensor([2]))
    assert scores.sum() == pytest.approx(delta[0], abs=1e-12) and profile.shape == (1, 3)
    # and each step's hidden-state relevance is complete too (the rest of the net is homogeneous in it)
    assert profile[0, -1] == pytest.approx(delta[0], abs=1e-12)
