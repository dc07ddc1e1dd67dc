"""Devices and precision (issue 16, item 1): ``--device``, ``--dtype``, a batch size that fits, exact scoring.

The bfloat16 tolerance: bfloat16 keeps 8 significant bits, so each value that enters a token's log-probability
(the weights, the hidden states, the logits) is off by at most half an ulp, 2^-9 of its magnitude, which is the
magnitude of the log-probability itself plus the order-one logits around it. A first-order bound per scored
token t is then 2^-8 · (1 + |log p_t|) (two roundings of that size), and over a choice's n tokens

    |ll_bf16 − ll_f32| ≤ 2^-8 · (|ll_sum| + n)

(about 0.2 nats for a 40-nat, 10-token answer). On the tiny llama the observed differences are at most 0.004
nats, under a twentieth of the bound. A prediction can only flip where the float32 margin is within the two choices' tolerances, so
predictions are compared on the items whose margin exceeds that, and that set must not be empty.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from wif_core.cli import main
from wif_core.errors import InputError
from wif_core.models import DEFAULT_MAX_TOKENS, devices
from wif_core.models.devices import auto_max_tokens, bytes_per_token, place, resolve_device, resolve_dtype
from wif_core.models.loading import LoadedModel, load_model
from wif_core.models.scoring import score_items, score_naive
from wif_core.store import Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.sources import load_items
from wif_core.tasks.templates import render_context

LAYERS = [2, 4]
HAS_CUDA = torch.cuda.is_available()


def bf16_tolerance(ll: float, n_tokens: int) -> float:
    """The bound of the module docstring on a choice's bfloat16 log-likelihood error."""
    return 2.0**-8 * (abs(ll) + n_tokens)


def _items() -> list[TaskItem]:
    goals = ["boil water", "open a jar", "fold a shirt", "clean the floor", "cut bread", "dry a cup"]
    answers = [("put it in a pot and heat it.", "use a sieve"), ("twist the lid", "ask the jar"), ("use a cup", "cry")]
    out = []
    for i, goal in enumerate(goals):
        for j, choices in enumerate(answers):
            question = f"how do you {goal}?"
            out.append(
                TaskItem(
                    item_id=f"p{i}-{j}",
                    task="piqa",
                    context=render_context("two_choice", {"goal": question}),
                    choices=choices,
                    gold=(i + j) % 2,
                    meta={"goal": question},
                )
            )
    out.append(
        TaskItem(
            item_id="s1",
            task="siqa",
            context=render_context(
                "three_choice", {"context": "Alex gave Sam a gift.", "question": "What will Sam do next?"}
            ),
            choices=("say thank you", "ignore it", "cry"),
            gold=0,
            meta={"context": "Alex gave Sam a gift.", "question": "What will Sam do next?"},
        )
    )
    return out


def _scored(model, tokenizer, items, **kw):
    return {s.item_id: s for batch in score_items(model, tokenizer, items, LAYERS, **kw) for s in batch}


@pytest.fixture(scope="module")
def tiny_bf16(tiny_llama):
    return place(copy.deepcopy(tiny_llama), torch.device("cpu"), torch.bfloat16)


# ---- resolving names ---------------------------------------------------------------------------------------------


def test_auto_is_a_gpu_when_torch_sees_one_else_the_cpu() -> None:
    got = resolve_device("auto")
    if HAS_CUDA:
        assert got.type == "cuda"
    elif torch.backends.mps.is_available():
        assert got.type == "mps"
    else:
        assert got == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device("CPU") == torch.device("cpu")


def test_cuda_resolves_where_torch_sees_one_and_is_one_line_where_not() -> None:
    if HAS_CUDA:
        assert resolve_device("cuda").type == "cuda" and resolve_device("cuda:0") == torch.device("cuda", 0)
        with pytest.raises(InputError, match="pick one of them") as info:
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(InputError, match="use --device cpu or auto") as info:
            resolve_device("cuda")
        assert "torch " + torch.__version__ in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_devices_and_dtypes_are_one_line() -> None:
    for name in ("tpu", "cuda:x", "meta", "xla"):
        with pytest.raises(InputError, match="use auto, cpu, cuda"):
            resolve_device(name)
    with pytest.raises(InputError, match="use float32, bfloat16, float16"):
        resolve_dtype("fp8")
    with pytest.raises(InputError, match="use float32, bfloat16, float16"):
        resolve_dtype(torch.float64)


def test_dtypes_resolve_and_float16_on_the_cpu_is_warned_not_refused(caplog) -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("float32", cpu) is torch.float32 and resolve_dtype(torch.bfloat16, cpu) is torch.bfloat16
    with caplog.at_level(logging.WARNING, logger="wif_core.models.devices"):
        assert resolve_dtype("float16", cpu) is torch.float16
    assert "ten times slower" in caplog.text


def test_float16_runs_on_the_cpu(tiny_llama, tiny_tokenizer) -> None:
    """torch 2.13 runs a float16 llama on the CPU (slowly): the warning above is all it takes."""
    half = place(copy.deepcopy(tiny_llama), torch.device("cpu"), torch.float16)
    items = _items()[:3]
    f32, f16 = _scored(tiny_llama, tiny_tokenizer, items), _scored(half, tiny_tokenizer, items)
    for s in f32.values():  # float16 has three more bits than bfloat16: the bfloat16 bound holds with room
        for ll, ll16, n in zip(s.ll_sum, f16[s.item_id].ll_sum, s.n_tokens, strict=True):
            assert abs(ll16 - ll) <= bf16_tolerance(ll, n)


# ---- loading ------------------------------------------------------------------------------------------------------


def test_place_casts_weights_but_keeps_rotary_frequencies_float32(tiny_bf16) -> None:
    assert {p.dtype for p in tiny_bf16.parameters()} == {torch.bfloat16}
    freqs = {name: b.dtype for name, b in tiny_bf16.named_buffers() if "inv_freq" in name}
    assert freqs and set(freqs.values()) == {torch.float32}  # as from_pretrained(dtype=bfloat16) leaves them


def test_load_model_records_device_and_dtype(tiny_model_dir) -> None:
    plain = load_model(str(tiny_model_dir))
    assert (plain.device, plain.dtype, plain.model.dtype) == ("cpu", "float32", torch.float32)
    half = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert (half.device, half.dtype, half.model.dtype) == ("cpu", "bfloat16", torch.bfloat16)
    with pytest.raises(InputError, match="--dtype"):
        load_model(str(tiny_model_dir), dtype="float8")


# ---- scoring stays exact ------------------------------------------------------------------------------------------


def test_bfloat16_log_likelihoods_are_float32_within_the_stated_tolerance(tiny_llama, tiny_bf16, tiny_tokenizer):
    items = _items()
    f32, bf16 = _scored(tiny_llama, tiny_tokenizer, items), _scored(tiny_bf16, tiny_tokenizer, items)
    worst = 0.0
    decided = []
    for it in items:
        s, h = f32[it.item_id], bf16[it.item_id]
        tol = [bf16_tolerance(ll, n) for ll, n in zip(s.ll_sum, s.n_tokens, strict=True)]
        gap = np.abs(np.array(h.ll_sum) - np.array(s.ll_sum))
        assert np.all(gap <= tol), (it.item_id, gap, tol)
        worst = max(worst, float((gap / tol).max()))
        # the margin is gold minus the best other: it can move by at most the two tolerances involved
        if abs(s.margin) > 2 * max(tol):
            decided.append(it.item_id)
            assert h.pred == s.pred and h.correct == s.correct, it.item_id
    assert len(decided) >= len(items) // 2, decided  # most items are decided, so the check has teeth
    assert worst < 0.5  # the bound is not reached by luck: the differences sit well inside it


def test_log_probabilities_are_computed_in_float32_for_a_bfloat16_model(tiny_bf16, tiny_tokenizer) -> None:
    """The packed scorer (float32 log-softmax) and the naive oracle (float64) agree far inside bfloat16's ulp."""
    for it in _items()[:4]:
        packed = _scored(tiny_bf16, tiny_tokenizer, [it])[it.item_id]
        naive = score_naive(tiny_bf16, tiny_tokenizer, it, LAYERS)
        # both read the same bfloat16 logits (up to the packed mask's reordering): only the log-softmax differs
        np.testing.assert_allclose(packed.ll_sum, naive.ll_sum, atol=0.05)


def test_activations_of_a_bfloat16_model_are_stored_as_float16(tmp_path, tiny_bf16, tiny_tokenizer, tiny_llama):
    from wif_core.runner import collect

    lm = LoadedModel(model=tiny_bf16, tokenizer=tiny_tokenizer, name="tiny-bf16", n_layers=4, d_model=32)
    items = _items()
    with Store.open(tmp_path / "w.duckdb", write=True) as store:
        result = collect(store, lm, "piqa", items[:-1], source="given", layers=LAYERS, token_layers=[4])
        run = store.run(result.run_id)
        assert run.act_dtype == "float16" and run.config["dtype"] == "bfloat16"
        assert "provenance" not in run.config  # on the CPU, nothing to record
        ids, stored = store.activations(result.run_id, 4, "choice")
        _, tokens = store.token_activations(result.run_id, 4)
    assert stored.shape == (len(ids), 2, 32)
    assert np.array_equal(stored, stored.astype(np.float16).astype(np.float32))  # float16 values, exactly
    scored = _scored(tiny_bf16, tiny_tokenizer, items[:-1], token_layers=[4])
    want = np.stack([scored[i].acts[(4, "choice")] for i in ids]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(stored, want)
    assert all(t.dtype in (np.float16, np.float32) and t.shape[1] == 32 for t in tokens)
    assert scored[ids[0]].acts[(4, "tokens")].dtype == np.float16  # per-token sites are float16 straight from bf16


# ---- batch size from memory ---------------------------------------------------------------------------------------


def test_cpu_batches_keep_the_default_size(tiny_llama) -> None:
    assert auto_max_tokens(tiny_llama, longest=40, kept_layers=2) == DEFAULT_MAX_TOKENS


def test_gpu_batch_size_is_the_free_memory_share_over_the_per_token_estimate(tiny_llama, monkeypatch) -> None:
    # b = 4 bytes, d = 32, f = 64, h = 4 heads, V = 400, c = 2 kept blocks, L = 40 tokens per row
    per_token = 4 * 32 * (2 + 4) + 3 * 4 * 64 + 40 * (8 + 4 * (4 + 4)) + 400 * (4 + 8) // 2
    assert bytes_per_token(tiny_llama, 40, 2) == per_token
    monkeypatch.setattr(devices, "_free_bytes", lambda torch, device: 2**24)  # 16 MiB free on a pretend GPU
    assert auto_max_tokens(tiny_llama, 40, 2) == int(2**24 * devices.MEMORY_SHARE) // per_token
    monkeypatch.setattr(devices, "_free_bytes", lambda torch, device: 2**40)
    assert auto_max_tokens(tiny_llama, 40, 2) == devices.MAX_AUTO_TOKENS
    monkeypatch.setattr(devices, "_free_bytes", lambda torch, device: 1)
    assert auto_max_tokens(tiny_llama, 40, 2) == 40  # never less than one row


def test_auto_batch_size_scores_as_the_default_does(tiny_llama, tiny_tokenizer, monkeypatch) -> None:
    items = _items()
    want = _scored(tiny_llama, tiny_tokenizer, items)
    monkeypatch.setattr(devices, "_free_bytes", lambda torch, device: 2**22)  # a few rows per batch
    got = _scored(tiny_llama, tiny_tokenizer, items, max_tokens=None)
    for key, s in want.items():
        np.testing.assert_allclose(got[key].ll_sum, s.ll_sum, rtol=1e-5, atol=1e-5)


# ---- the command line ---------------------------------------------------------------------------------------------


def _collect(capsys, db, model_dir, items_file, extra: tuple[str, ...] = ()) -> dict:
    import json

    argv = ["collect", "--model", str(model_dir), "--task", "piqa", "--source", str(items_file)]
    assert main([*argv, "--layers", "2,4", "--db", db, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_collect_in_bfloat16_is_another_run_and_the_device_is_not(tmp_path, capsys, tiny_model_dir, items_file):
    db = str(tmp_path / "w.duckdb")
    plain = _collect(capsys, db, tiny_model_dir, items_file)
    on_cpu = _collect(capsys, db, tiny_model_dir, items_file, ("--device", "cpu", "--dtype", "float32"))
    assert on_cpu["run_id"] == plain["run_id"] and on_cpu["n_resumed"] == 40  # same run: resumed
    half = _collect(capsys, db, tiny_model_dir, items_file, ("--device", "cpu", "--dtype", "bfloat16"))
    assert half["run_id"] != plain["run_id"] and half["n_scored"] == 40 and half["older_runs"] == []
    with Store.open(db) as store:
        f32, bf16 = store.items(plain["run_id"]), store.items(half["run_id"])
        assert "dtype" not in store.run(plain["run_id"]).config
        assert store.run(half["run_id"]).config["dtype"] == "bfloat16"
        _, acts = store.activations(half["run_id"], 4, "choice")
    assert acts.shape == (40, 2, 32)
    merged = f32.merge(bf16, on="item_id", suffixes=("", "_bf16"))
    for ll, ll16, n in zip(merged["ll_sum"], merged["ll_sum_bf16"], merged["n_tokens"], strict=True):
        assert all(abs(b - a) <= bf16_tolerance(a, k) for a, b, k in zip(ll, ll16, n, strict=True))


def test_a_device_torch_does_not_see_is_one_line(tmp_path, capsys, tiny_model_dir, items_file) -> None:
    missing = f"cuda:{torch.cuda.device_count()}" if HAS_CUDA else "cuda"
    argv = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--source", str(items_file)]
    assert main([*argv, "--device", missing, "--db", str(tmp_path / "w.duckdb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"wif: error: --device {missing}:") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "w.duckdb").exists()  # refused before anything was written
    assert main(["attribute", "--run", "x", "--device", "tpu", "--db", str(tmp_path / "w.duckdb")]) == 2
    assert "--device 'tpu'" in capsys.readouterr().err


# ---- attribution --------------------------------------------------------------------------------------------------


def test_attribution_of_a_bfloat16_model_records_its_precision(tiny_llama, tiny_bf16, tiny_tokenizer) -> None:
    from types import SimpleNamespace

    from wif_core.attribution.batch import attribute_item

    item = _items()[0]
    f32 = attribute_item(SimpleNamespace(model=tiny_llama, tokenizer=tiny_tokenizer), item, 1, 0, "grad_x_input")
    half = attribute_item(SimpleNamespace(model=tiny_bf16, tokenizer=tiny_tokenizer), item, 1, 0, "grad_x_input")
    assert "dtype" not in f32.config and "device" not in f32.config and half.config["dtype"] == "bfloat16"
    n = len(f32.tokens)
    assert abs(half.delta - f32.delta) <= 2 * bf16_tolerance(f32.delta, n)
    assert all(np.isfinite(half.scores))


# ---- on a GPU (skipped where torch sees none) ---------------------------------------------------------------------


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_collect_on_cuda_matches_the_cpu(tmp_path, tiny_model_dir, items_file) -> None:
    from types import SimpleNamespace

    from wif_core.attribution.batch import attribute_item
    from wif_core.runner import collect

    items = load_items("piqa", str(items_file), None, 0, None)
    ids = {}
    frames = {}
    for device, dtype in (("cpu", "float32"), ("cuda", "float32"), ("cuda", "bfloat16")):
        lm = load_model(str(tiny_model_dir), device=device, dtype=dtype)
        assert lm.model.device.type == device and lm.dtype == dtype
        # a store each: in one store the CUDA float32 collection would resume the CPU's run, not score again
        with Store.open(tmp_path / f"{device}-{dtype}.duckdb", write=True) as store:
            result = collect(store, lm, "piqa", items, source=str(items_file), layers=LAYERS, token_layers=[4])
            ids[device, dtype] = result.run_id
            frames[device, dtype] = store.items(result.run_id).set_index("item_id")
            config = store.run(result.run_id).config
            _, acts = store.activations(result.run_id, 4, "choice")
        assert config.get("provenance", {}).get("device", "cpu").startswith(device)
        assert acts.shape == (40, 2, 32) and np.isfinite(acts).all()
        if device == "cuda":
            assert DEFAULT_MAX_TOKENS <= auto_max_tokens(lm.model, 40, 2) <= devices.MAX_AUTO_TOKENS
            a = attribute_item(SimpleNamespace(model=lm.model, tokenizer=lm.tokenizer), items[0], 1, 0, "attnlrp")
            assert a.config["device"].startswith("cuda") and np.isfinite(a.scores).all()
    assert ids["cuda", "float32"] == ids["cpu", "float32"]  # the device does not make another run …
    assert ids["cuda", "bfloat16"] != ids["cpu", "float32"]  # … the precision does
    cpu = frames["cpu", "float32"]
    for key, atol in ((("cuda", "float32"), 1e-3), (("cuda", "bfloat16"), None)):
        other = frames[key].loc[cpu.index]
        for ll, ll2, n in zip(cpu["ll_sum"], other["ll_sum"], cpu["n_tokens"], strict=True):
            for a, b, k in zip(ll, ll2, n, strict=True):
                assert abs(b - a) <= (atol if atol is not None else bf16_tolerance(a, k))
