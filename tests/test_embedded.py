"""Integration tier: the embedded SmolLM2-135M on a few real items."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BENCH

from wif_core.models.scoring import score_items, score_naive
from wif_core.store import Store
from wif_core.tasks.sources import read_outcome_file

pytestmark = pytest.mark.model


def test_embedded_model_shape(embedded):
    assert type(embedded.model).__name__ == "LlamaForCausalLM"
    assert (embedded.n_layers, embedded.d_model) == (30, 576)
    assert embedded.model.config._attn_implementation != "flash_attention_2"


@pytest.mark.skipif(not BENCH.exists(), reason="../shared/benchmarks not present")
def test_packed_equals_naive_on_real_items(embedded):
    items = [next(read_outcome_file(t, BENCH / t / "val.json"))[0] for t in ("piqa", "boolq", "winogrande")]
    layers = [1, 15, 30]
    packed = {s.item_id: s for b in score_items(embedded.model, embedded.tokenizer, items, layers) for s in b}
    for it in items:
        ref = score_naive(embedded.model, embedded.tokenizer, it, layers)
        got = packed[it.item_id]
        np.testing.assert_allclose(got.ll_sum, ref.ll_sum, atol=2e-3, rtol=1e-4)
        assert got.pred == ref.pred
        for key in ref.acts:
            np.testing.assert_allclose(got.acts[key], ref.acts[key], atol=2e-2, rtol=1e-3)


def test_demo_store_is_populated(demo_db):
    from wif_core.demo import DEMO_ATTRIBUTION_METHODS, DEMO_ZOO_SAMPLES

    with Store.open(demo_db) as store:
        runs = store.runs()
        assert set(runs.task) == {"gen-physical", "gen-passage", "gen-coref", "gen-social", "zoo-2nd_argmax-n10"}
        assert (runs.status == "complete").all()
        lm_runs = runs[runs.task.str.startswith("gen-")]
        assert (lm_runs.n_items == 40).all()
        for run_id in lm_runs.run_id:
            ids, acts = store.activations(run_id, 30, "last")
            assert acts.shape == (40, 576) and np.isfinite(acts).all()
            tokens = store.tokens(run_id, ids[0])
            assert "listing" in tokens and "choice0" in tokens
            # the demo ships attributions of every failure, by each demo method
            failed = set(store.items(run_id, outcome="incorrect")["item_id"])
            for method in DEMO_ATTRIBUTION_METHODS:
                attributed = {a.item_id for a in store.attributions(run_id, method)}
                assert attributed == failed, (run_id, method)
        zoo = runs[runs.task == "zoo-2nd_argmax-n10"].iloc[0]
        assert zoo.n_items == DEMO_ZOO_SAMPLES and len(store.attributions(zoo.run_id)) == DEMO_ZOO_SAMPLES


def test_embedded_gemma3_shape(embedded_gemma3):
    cfg = embedded_gemma3.model.config
    assert type(embedded_gemma3.model).__name__ == "Gemma3ForCausalLM"
    assert (embedded_gemma3.n_layers, embedded_gemma3.d_model) == (18, 640)
    assert {"sliding_attention", "full_attention"} <= set(cfg.layer_types) and cfg.sliding_window == 512
    assert next(embedded_gemma3.model.parameters()).dtype.is_floating_point
    assert str(next(embedded_gemma3.model.parameters()).dtype) == "torch.float32"


@pytest.mark.skipif(not BENCH.exists(), reason="../shared/benchmarks not present")
def test_packed_equals_naive_on_real_items_gemma3(embedded_gemma3):
    """8 real items (3 PIQA, 3 BoolQ, 2 WinoGrande): packed scores equal the per-choice loop.

    Tolerance: log-likelihood sums within 2e-3 (float32 sums over up to a few hundred positions), and each
    activation vector within 1e-4 of its own largest entry (Gemma's residual stream reaches the hundreds).
    """
    items = []
    for task, n in (("piqa", 3), ("boolq", 3), ("winogrande", 2)):
        rows = read_outcome_file(task, BENCH / task / "val.json")
        items += [next(rows)[0] for _ in range(n)]
    layers = [1, 6, 12, 18]  # sliding (1), global (6, 12, 18) layers and the last block
    model, tok = embedded_gemma3.model, embedded_gemma3.tokenizer
    packed = {s.item_id: s for b in score_items(model, tok, items, layers, max_tokens=2048) for s in b}
    worst_ll, worst_act = 0.0, 0.0
    for it in items:
        ref = score_naive(model, tok, it, layers)
        got = packed[it.item_id]
        np.testing.assert_allclose(got.ll_sum, ref.ll_sum, atol=2e-3, rtol=1e-5)
        assert got.pred == ref.pred and got.n_tokens == ref.n_tokens
        worst_ll = max(worst_ll, float(np.abs(np.subtract(got.ll_sum, ref.ll_sum)).max()))
        for key in ref.acts:
            scale = float(np.abs(ref.acts[key]).max())
            np.testing.assert_allclose(got.acts[key], ref.acts[key], atol=1e-4 * scale, rtol=0, err_msg=str(key))
            worst_act = max(worst_act, float(np.abs(got.acts[key] - ref.acts[key]).max()) / scale)
    print(f"gemma3-270m packed vs naive: max |Δ ll_sum| {worst_ll:.2e}, max relative activation error {worst_act:.2e}")
