"""Continuation scoring with activation capture, packed so shared context runs once.

For an item with choices a_1..a_k, each choice is the token sequence
``prefix_j + continuation_j``. The longest common token prefix of the k sequences is
computed once; each choice's remainder follows it as its own segment, and the
paper-style listing prompt follows as a further independent segment::

    [ shared | choice 1 | choice 2 | ... | listing ]

A block mask lets a choice segment see the shared part and itself (causally), and the
listing segment see only itself; position ids restart where each segment begins. One
forward pass over a batch of such rows yields every log-likelihood and every
activation site (``choice``, ``last``, ``mean``) with no position computed twice, and
the LM head is applied only at the positions that predict scored tokens.
``score_naive`` is the obvious one-forward-per-choice computation, kept as the oracle
for tests and the baseline for benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from wif_core.errors import InputError
from wif_core.models import DEFAULT_MAX_TOKENS  # re-exported: the batch size's home is the light package
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import listing_prompt, scoring_pairs

SITES = ("choice", "last", "mean")
Scoring = Literal["sum", "norm"]
_SHARED, _LISTING, _PAD = -1, -2, -3


@dataclass
class TokenSeq:
    """Token strings and ids of one scored sequence; ``cont_start`` is where scoring begins."""

    tokens: list[str]
    ids: list[int]
    cont_start: int


@dataclass(kw_only=True)
class ScoredItem:
    """Scores of one item and what was captured while scoring it.

    ``acts[(layer, "choice")]`` is ``[k, d]`` (the final token of each choice, option
    order); ``acts[(layer, "last")]`` and ``acts[(layer, "mean")]`` are ``[d]``.
    ``margin`` is the gold choice's score minus the best other score (positive iff correct).
    """

    item_id: str
    ll_sum: list[float]
    n_tokens: list[int]
    n_bytes: list[int]
    pred: int
    correct: bool
    margin: float
    acts: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    tokens: dict[str, TokenSeq] = field(default_factory=dict)


@dataclass
class _Prepared:
    item: TaskItem
    fulls: list[list[int]]
    starts: list[int]
    listing: list[int]
    shared: int = 0

    @property
    def packed_len(self) -> int:
        return self.shared + sum(len(f) - self.shared for f in self.fulls) + len(self.listing)


def _encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special).input_ids)


def prepare(item: TaskItem, tokenizer: Any) -> _Prepared:
    """Tokenise an item's choice sequences and listing prompt; find the shared prefix."""
    fulls, starts = [], []
    for prefix, cont in scoring_pairs(item):
        p = _encode(tokenizer, prefix, True)
        if not p:  # no BOS and empty prefix: the first answer token needs a position to predict it
            p = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
        c = _encode(tokenizer, cont, False)
        if not c:
            raise InputError(f"item {item.item_id}: a choice tokenises to nothing; every answer needs text")
        fulls.append(p + c)
        starts.append(len(p))
    shared = 0
    shortest = min(len(f) for f in fulls)
    while shared < shortest and all(f[shared] == fulls[0][shared] for f in fulls):
        shared += 1
    # keep at least one token of the shortest sequence outside the shared part so every
    # segment is non-empty and every choice's last position is its own
    shared = min(shared, shortest - 1)
    listing = _encode(tokenizer, listing_prompt(item), True)
    return _Prepared(item, fulls, starts, listing, shared)


@dataclass(kw_only=True)
class _Row:
    ids: list[int]
    pos: list[int]
    seg: list[int]
    # per choice: packed index of each scored token's predictor, and the token id
    pred_idx: list[list[int]]
    targets: list[list[int]]
    last_idx: list[int]
    listing_span: tuple[int, int]


def _pack(p: _Prepared) -> _Row:
    s = p.shared
    ids = list(p.fulls[0][:s])
    pos = list(range(s))
    seg = [_SHARED] * s
    pred_idx, targets, last_idx = [], [], []
    for j, full in enumerate(p.fulls):
        offset = len(ids)
        rest = full[s:]
        ids += rest
        pos += range(s, s + len(rest))
        seg += [j] * len(rest)

        def packed(t: int, offset: int = offset) -> int:
            return t if t < s else offset + (t - s)

        pred_idx.append([packed(t - 1) for t in range(p.starts[j], len(full))])
        targets.append(full[p.starts[j] :])
        last_idx.append(packed(len(full) - 1))
    start = len(ids)
    ids += p.listing
    pos += range(len(p.listing))
    seg += [_LISTING] * len(p.listing)
    return _Row(
        ids=ids, pos=pos, seg=seg, pred_idx=pred_idx, targets=targets, last_idx=last_idx, listing_span=(start, len(ids))
    )


def block_mask(seg: torch.Tensor) -> torch.Tensor:
    """``[B, 1, L, L]`` boolean mask from per-position segment ids ``[B, L]`` (see module doc)."""
    length = seg.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    same = seg[:, :, None] == seg[:, None, :]
    sees_shared = (seg[:, None, :] == _SHARED) & (seg[:, :, None] >= 0)
    return (causal & (same | sees_shared))[:, None]


def decoder_blocks(model: Any) -> Any:
    """The ModuleList of transformer blocks of a causal LM."""
    body = getattr(model, model.base_model_prefix, model)
    for name in ("layers", "h", "blocks"):
        if hasattr(body, name):
            return getattr(body, name)
    raise InputError(f"cannot find the transformer blocks of {type(model).__name__}")


@contextmanager
def capture(model: Any, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the residual stream after each listed block (1-based) during forward passes."""
    blocks = decoder_blocks(model)
    got: dict[int, torch.Tensor] = {}
    handles = []
    for layer in layers:

        def hook(_m: Any, _inp: Any, out: Any, layer: int = layer) -> None:
            got[layer] = out[0] if isinstance(out, tuple) else out

        handles.append(blocks[layer - 1].register_forward_hook(hook))
    try:
        yield got
    finally:
        for h in handles:
            h.remove()


def _token_logprobs(model: Any, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None])[:, 0]


def _decode_tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


def _finish(item: TaskItem, ll: list[float], n_tok: list[int], scoring: Scoring) -> tuple[list[int], int, bool, float]:
    n_bytes = [max(1, len(c.encode())) for _, c in scoring_pairs(item)]
    scores = np.array(ll) if scoring == "sum" else np.array(ll) / np.array(n_bytes)
    pred = int(np.argmax(scores))
    others = np.delete(scores, item.gold)
    margin = float(scores[item.gold] - others.max())
    return n_bytes, pred, pred == item.gold, margin


def _tokens(tokenizer: Any, p: _Prepared) -> dict[str, TokenSeq]:
    out = {"listing": TokenSeq(_decode_tokens(tokenizer, p.listing), p.listing, len(p.listing))}
    for j, full in enumerate(p.fulls):
        out[f"choice{j}"] = TokenSeq(_decode_tokens(tokenizer, full), full, p.starts[j])
    return out


def batches(prepared: list[_Prepared], max_tokens: int) -> Iterator[list[_Prepared]]:
    """Group items (in the given order) so that each padded batch stays under ``max_tokens``."""
    batch: list[_Prepared] = []
    longest = 0
    for p in prepared:
        n = p.packed_len
        if batch and max(longest, n) * (len(batch) + 1) > max_tokens:
            yield batch
            batch, longest = [], 0
        batch.append(p)
        longest = max(longest, n)
    if batch:
        yield batch


@torch.inference_mode()
def score_batch(
    model: Any,
    tokenizer: Any,
    prepared: list[_Prepared],
    layers: Sequence[int],
    scoring: Scoring = "sum",
    keep_tokens: bool = True,
    token_layers: Sequence[int] = (),
) -> list[ScoredItem]:
    """Score a batch of prepared items in one packed forward pass.

    ``token_layers`` adds ``acts[(layer, "tokens")]``: the listing prompt's per-token
    residual stream ``[n_tokens, d]`` at those layers, in float16 (for attention probes and SAEs).
    """
    rows = [_pack(p) for p in prepared]
    length = max(len(r.ids) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    pos = torch.zeros((len(rows), length), dtype=torch.long)
    seg = torch.full((len(rows), length), _PAD, dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r.ids)
        ids[b, :n] = torch.tensor(r.ids)
        pos[b, :n] = torch.tensor(r.pos)
        seg[b, :n] = torch.tensor(r.seg)
    body = getattr(model, model.base_model_prefix)
    with capture(model, sorted(set(layers) | set(token_layers))) as got:
        hidden = body(input_ids=ids, attention_mask=block_mask(seg), position_ids=pos, use_cache=False)[0]

    flat_b, flat_i, flat_t = [], [], []
    for b, r in enumerate(rows):
        for idx, tgt in zip(r.pred_idx, r.targets, strict=True):
            flat_b += [b] * len(idx)
            flat_i += idx
            flat_t += tgt
    lp = _token_logprobs(model, hidden[flat_b, flat_i], torch.tensor(flat_t)).double().numpy()

    out, cursor = [], 0
    for b, (p, r) in enumerate(zip(prepared, rows, strict=True)):
        ll, n_tok = [], []
        for tgt in r.targets:
            ll.append(float(lp[cursor : cursor + len(tgt)].sum()))
            n_tok.append(len(tgt))
            cursor += len(tgt)
        n_bytes, pred, correct, margin = _finish(p.item, ll, n_tok, scoring)
        acts: dict[tuple[int, str], np.ndarray] = {}
        lo, hi = r.listing_span
        for layer in layers:
            h = got[layer][b]
            acts[(layer, "choice")] = h[r.last_idx].float().numpy().copy()
            acts[(layer, "last")] = h[hi - 1].float().numpy().copy()
            acts[(layer, "mean")] = h[lo:hi].float().mean(0).numpy()
        for layer in token_layers:
            acts[(layer, "tokens")] = got[layer][b, lo:hi].to(torch.float16).numpy().copy()
        tokens = _tokens(tokenizer, p) if keep_tokens else {}
        out.append(
            ScoredItem(
                item_id=p.item.item_id,
                ll_sum=ll,
                n_tokens=n_tok,
                n_bytes=n_bytes,
                pred=pred,
                correct=correct,
                margin=margin,
                acts=acts,
                tokens=tokens,
            )
        )
    return out


def score_items(
    model: Any,
    tokenizer: Any,
    items: Sequence[TaskItem],
    layers: Sequence[int],
    *,
    scoring: Scoring = "sum",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    token_layers: Sequence[int] = (),
) -> Iterator[list[ScoredItem]]:
    """Score items batch by batch, longest first so that rows of a batch waste little padding."""
    prepared = sorted((prepare(it, tokenizer) for it in items), key=lambda p: -p.packed_len)
    for batch in batches(prepared, max_tokens):
        yield score_batch(model, tokenizer, batch, layers, scoring, token_layers=token_layers)


@torch.inference_mode()
def score_naive(
    model: Any, tokenizer: Any, item: TaskItem, layers: Sequence[int], scoring: Scoring = "sum"
) -> ScoredItem:
    """The obvious computation: one full forward pass per choice, one for the listing prompt."""
    p = prepare(item, tokenizer)
    ll, n_tok = [], []
    acts: dict[tuple[int, str], np.ndarray] = {}
    choice_vecs: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    for full, start in zip(p.fulls, p.starts, strict=True):
        with capture(model, layers) as got:
            logits = model(input_ids=torch.tensor([full])).logits[0]
        lp = torch.log_softmax(logits.double(), -1)
        ll.append(float(sum(lp[t - 1, full[t]] for t in range(start, len(full)))))
        n_tok.append(len(full) - start)
        for layer in layers:
            choice_vecs[layer].append(got[layer][0, -1].float().numpy().copy())
    with capture(model, layers) as got:
        model(input_ids=torch.tensor([p.listing]))
    for layer in layers:
        acts[(layer, "choice")] = np.stack(choice_vecs[layer])
        acts[(layer, "last")] = got[layer][0, -1].float().numpy().copy()
        acts[(layer, "mean")] = got[layer][0].float().mean(0).numpy()
    n_bytes, pred, correct, margin = _finish(item, ll, n_tok, scoring)
    return ScoredItem(
        item_id=item.item_id,
        ll_sum=ll,
        n_tokens=n_tok,
        n_bytes=n_bytes,
        pred=pred,
        correct=correct,
        margin=margin,
        acts=acts,
        tokens=_tokens(tokenizer, p),
    )
