"""AttnLRP and CP-LRP for Gemma 3: the functional forward is the HF forward, CP-LRP conserves.

Integration on the tiny random Gemma 3 of ``tests/conftest.py`` (sliding window 6, shorter
than the contrasts here, so the window mask matters), and the embedded gemma3-270m on one
item (``@pytest.mark.model``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from wif_core.attribution import METHODS, attribute_item, build_pair, lrp
from wif_core.attribution.methods import attnlrp
from wif_core.attribution.pairs import RIGHT, SHARED, WRONG, embed
from wif_core.models.scoring import attention_arg
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

GOAL = "how do you boil water?"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One BLAS thread (the cores are shared); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _piqa(choices: tuple[str, str], gold: int = 1) -> TaskItem:
    return TaskItem(
        item_id="p1",
        task="piqa",
        context=render_context("two_choice", {"goal": GOAL}),
        choices=choices,
        gold=gold,
        meta={"goal": GOAL},
    )


LONG = _piqa(("put it in a pot and heat it.", "use a sieve"))


@pytest.mark.parametrize("rule", lrp.RULES)
def test_functional_gemma3_forward_equals_the_hf_forward(tiny_gemma3, tiny_tokenizer, rule):
    """Packed with the window mask, and each side alone as a plain sequence: the same logits."""
    pair = build_pair(LONG, tiny_tokenizer, 0, 1)
    window = tiny_gemma3.config.sliding_window
    assert pair.n_tokens > 2 * window and pair.shared > window  # the window cuts inside both parts
    ids, pos, mask = pair.tensors()
    e = embed(tiny_gemma3, ids)
    with torch.no_grad():
        ours = lrp.lm_logits(tiny_gemma3, lrp.gemma3_forward(tiny_gemma3, e, pos, mask, rule), rule)
        arg = attention_arg(tiny_gemma3, mask, pos, e.dtype)
        theirs = tiny_gemma3(inputs_embeds=e, attention_mask=arg, position_ids=pos).logits
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
        for side in (WRONG, RIGHT):
            keep = [i for i, s in enumerate(pair.seg) if s in (SHARED, side)]
            alone = tiny_gemma3(input_ids=torch.tensor([[pair.ids[i] for i in keep]])).logits
            torch.testing.assert_close(ours[:, keep], alone, atol=1e-5, rtol=1e-4)


def test_gemma_rules_one_by_one(tiny_gemma3):
    """The (1 + w) norm with its normaliser detached and the GELU identity rule both conserve exactly."""
    x = torch.randn(3, 32, dtype=torch.float64, requires_grad=True)
    norm = SimpleNamespace(weight=torch.randn(32, dtype=torch.float64), eps=1e-6)
    y = lrp._gemma_norm(norm, x, "attnlrp")
    (g,) = torch.autograd.grad(y.sum(), x)
    assert float((x.detach() * g).sum()) == pytest.approx(float(y.detach().sum()), rel=1e-10)
    act = tiny_gemma3.model.layers[0].mlp.act_fn
    z = torch.cat([torch.randn(50, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]).requires_grad_(True)
    out = lrp._identity(act, z, "attnlrp")
    torch.testing.assert_close(out.detach(), act(z.detach()))  # the forward value is the activation's
    (gz,) = torch.autograd.grad(out.sum(), z)
    torch.testing.assert_close(z.detach() * gz, out.detach())  # and all its relevance reaches its input


def test_lrp_conservation_on_the_tiny_gemma3(tiny_gemma3, tiny_tokenizer):
    """CP-LRP sums to the logit contrast within 1% (through the soft-cap, window and norms); AttnLRP's
    softmax rule leaks, and its error is recorded, not hidden."""
    lm = SimpleNamespace(model=tiny_gemma3, tokenizer=tiny_tokenizer)
    assert METHODS["cp_lrp"].is_compatible(tiny_gemma3) == (True, "")
    for item in (_piqa(("use a pot", "use a sieve")), LONG):
        cp = attribute_item(lm, item, 0, 1, "cp_lrp", deletion=False)
        assert "fallback" not in cp.config
        assert cp.config["conservation_error"] < 0.01
        assert abs(cp.sum_scores - cp.config["logit_contrast"]) <= 0.01 * abs(cp.config["logit_contrast"])
    paper = attribute_item(lm, LONG, 0, 1, "attnlrp", deletion=False)
    assert "fallback" not in paper.config and paper.config["rule"] == "attnlrp"
    leak = abs(paper.sum_scores - paper.config["logit_contrast"]) / abs(paper.config["logit_contrast"])
    assert paper.config["conservation_error"] == pytest.approx(leak, rel=1e-3)
    print(f"tiny gemma3: AttnLRP conservation error {leak:.1%}, CP-LRP {cp.config['conservation_error']:.1e}")


def test_gemma3_variants_the_rules_do_not_cover_fall_back(tiny_tokenizer, caplog):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        attn_logit_softcapping=50.0,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    ok, why = METHODS["cp_lrp"].is_compatible(model)
    assert not ok and "soft-caps its attention logits" in why
    a = attribute_item(SimpleNamespace(model=model, tokenizer=tiny_tokenizer), LONG, 0, 1, "cp_lrp", deletion=False)
    assert a.config["fallback"] == "grad_x_input" and "soft-caps" in a.config["reason"]


@pytest.mark.model
def test_embedded_gemma3_forward_and_conservation(embedded_gemma3):
    """On the real model: the functional forward matches HF within float32 noise and CP-LRP conserves < 1%."""
    item = _piqa(("Put the water in a pot and heat it on the stove.", "Put the water in a sieve and heat it."))
    model, tok = embedded_gemma3.model, embedded_gemma3.tokenizer
    pair = build_pair(item, tok, 1, 0)
    ids, pos, mask = pair.tensors()
    e = embed(model, ids)
    with torch.no_grad():
        ours = lrp.lm_logits(model, lrp.gemma3_forward(model, e, pos, mask, "attnlrp"), "attnlrp")
        arg = attention_arg(model, mask, pos, e.dtype)
        theirs = model(inputs_embeds=e, attention_mask=arg, position_ids=pos).logits
    torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=1e-3)
    cp = attnlrp(model, tok, pair, "cp")
    paper = attnlrp(model, tok, pair, "attnlrp")
    print(
        f"gemma3-270m: CP-LRP conservation error {cp.config['conservation_error']:.2e}, "
        f"AttnLRP {paper.config['conservation_error']:.1%}"
    )
    assert cp.config["conservation_error"] < 0.01
