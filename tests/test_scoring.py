"""Packed scoring must equal the brute-force per-choice computation, sites included."""

from __future__ import annotations

import numpy as np
import pytest

from wif_core.errors import InputError
from wif_core.models.scoring import block_mask, prepare, score_items, score_naive
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

LAYERS = [1, 3, 4]


def _items() -> list[TaskItem]:
    return [
        TaskItem(
            item_id="p1",
            task="piqa",
            context=render_context("two_choice", {"goal": "how do you boil water?"}),
            choices=("put it in a pot and heat it.", "use a sieve"),
            gold=0,
            meta={"goal": "how do you boil water?"},
        ),
        # continuations share their first tokens: the shared prefix reaches into the answers
        TaskItem(
            item_id="p2",
            task="piqa",
            context=render_context("two_choice", {"goal": "open a jar"}),
            choices=("use a pot", "use a cup"),
            gold=1,
            meta={"goal": "open a jar"},
        ),
        TaskItem(
            item_id="b1",
            task="boolq",
            context=render_context("yes_no", {"passage": "The cat sat on the mat.", "question": "is the mat warm"}),
            choices=("no", "yes"),
            gold=1,
            meta={"passage": "The cat sat on the mat.", "question": "is the mat warm"},
        ),
        TaskItem(
            item_id="w1",
            task="winogrande",
            context="The trophy did not fit in the suitcase because the _ was too big.",
            choices=("trophy", "suitcase"),
            gold=0,
        ),
        TaskItem(
            item_id="s1",
            task="siqa",
            context=render_context(
                "three_choice", {"context": "Alex gave Sam a gift.", "question": "What will Sam do next?"}
            ),
            choices=("say thank you", "ignore it", "cry"),
            gold=0,
            meta={"context": "Alex gave Sam a gift.", "question": "What will Sam do next?"},
        ),
    ]


def _check_packed_matches_naive(model, tokenizer, items, max_tokens: int, atol: float = 1e-4) -> None:
    packed = {
        s.item_id: s for batch in score_items(model, tokenizer, items, LAYERS, max_tokens=max_tokens) for s in batch
    }
    assert set(packed) == {it.item_id for it in items}
    for it in items:
        ref = score_naive(model, tokenizer, it, LAYERS)
        got = packed[it.item_id]
        np.testing.assert_allclose(got.ll_sum, ref.ll_sum, atol=atol)
        assert got.n_tokens == ref.n_tokens
        assert got.pred == ref.pred and got.correct == ref.correct
        assert got.margin == pytest.approx(ref.margin, abs=atol)
        for key, vec in ref.acts.items():
            np.testing.assert_allclose(got.acts[key], vec, atol=atol, err_msg=str(key))
        assert got.acts[(1, "choice")].shape == (len(it.choices), 32)


@pytest.mark.parametrize("max_tokens", [64, 10_000])
def test_packed_matches_naive(tiny_llama, tiny_tokenizer, max_tokens):
    _check_packed_matches_naive(tiny_llama, tiny_tokenizer, _items(), max_tokens)


@pytest.mark.parametrize("max_tokens", [64, 10_000])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_matches_naive_gemma3(tiny_gemma3, tiny_gemma3_eager, tiny_tokenizer, max_tokens, attn):
    """Gemma 3: sliding and global layers, (1 + w) norms, scaled embeddings, soft-capped logits."""
    model = tiny_gemma3 if attn == "sdpa" else tiny_gemma3_eager
    items = _items()
    window = model.config.sliding_window
    # the window matters: every item has a choice sequence longer than it
    assert all(max(len(f) for f in prepare(it, tiny_tokenizer).fulls) > 2 * window for it in items)
    _check_packed_matches_naive(model, tiny_tokenizer, items, max_tokens)


def test_gemma3_without_the_window_in_the_mask_is_caught(tiny_gemma3, tiny_tokenizer, monkeypatch):
    """The oracle above can fail: a packed mask that ignores the sliding window (as a plain 4-D mask does)
    scores differently from the per-sequence computation."""
    import wif_core.models.scoring as scoring

    monkeypatch.setattr(scoring, "attention_arg", lambda model, mask, pos, dtype: mask)
    with pytest.raises(AssertionError):
        _check_packed_matches_naive(tiny_gemma3, tiny_tokenizer, _items(), 10_000)


def test_margin_sign_is_correctness(tiny_llama, tiny_tokenizer):
    for batch in score_items(tiny_llama, tiny_tokenizer, _items(), LAYERS):
        for s in batch:
            assert (s.margin > 0) == s.correct


def test_shared_prefix_reaches_into_answers(tiny_tokenizer):
    p = prepare(_items()[1], tiny_tokenizer)
    assert p.shared > p.starts[0]  # " use a" is computed once


def test_block_mask_isolates_segments():
    import torch

    seg = torch.tensor([[-1, -1, 0, 0, 1, -2, -2, -3]])
    m = block_mask(seg)[0, 0]
    assert m[3, 0] and m[3, 2] and not m[4, 3]  # choice 1 sees shared, not choice 0
    assert not m[5, 0] and m[6, 5]  # the listing segment sees only itself
    assert m.diagonal().all()  # no fully masked row, so no NaN in attention


def test_empty_context_is_refused(tiny_tokenizer):
    item = TaskItem(item_id="e", task="piqa", context="   ", choices=("a", "b"), gold=0)
    with pytest.raises(InputError, match="context"):
        prepare(item, tiny_tokenizer)


def test_token_layers_hold_the_listing_prompt(tiny_llama, tiny_tokenizer):
    items = _items()
    for batch in score_items(tiny_llama, tiny_tokenizer, items, [2], token_layers=[2]):
        for s in batch:
            per_token = s.acts[(2, "tokens")].astype(np.float32)
            assert per_token.shape == (len(s.tokens["listing"].ids), 32)
            np.testing.assert_allclose(per_token[-1], s.acts[(2, "last")], atol=1e-2)
            np.testing.assert_allclose(per_token.mean(0), s.acts[(2, "mean")], atol=1e-2)
