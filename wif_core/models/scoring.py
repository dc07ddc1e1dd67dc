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

An item longer than the model reads (``max_length`` positions: the model config's
``max_position_embeddings`` unless the caller gives fewer) is cut from the left of its
context, as lm-evaluation-harness does: each choice sequence keeps its special tokens
(BOS), loses the same leading context tokens, and keeps its answer whole; the listing
prompt loses the start of its item text and keeps its options. How many tokens were cut
is returned per item (``ScoredItem.truncated``). An item whose answers alone do not fit
is refused. Text far beyond the context is never tokenised whole, so memory stays
bounded for any input length.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from wif_core.errors import InputError
from wif_core.models import (
    DEFAULT_MAX_TOKENS,  # re-exported: the batch size's home is the light package
    check_max_length_value,
)
from wif_core.models.devices import auto_max_tokens, model_device
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import listing_parts, scoring_pairs

SITES = ("choice", "last", "mean")
Scoring = Literal["sum", "norm"]
_SHARED, _LISTING, _PAD = -1, -2, -3
# Characters per position beyond which the start of a long text is not tokenised at once: no token of a real
# vocabulary is this long, so the tail that is tokenised still fills the context, and memory stays bounded.
CHARS_PER_POSITION = 16


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
    truncated: int = 0  # context tokens cut from the left to fit the model (the most of any of its sequences)


@dataclass(kw_only=True)
class _Prepared:
    item: TaskItem
    fulls: list[list[int]]
    starts: list[int]
    listing: list[int]
    shared: int = 0
    truncated: int = 0

    @property
    def packed_len(self) -> int:
        return self.shared + sum(len(f) - self.shared for f in self.fulls) + len(self.listing)


def _encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special).input_ids)


def model_max_length(model: Any) -> int | None:
    """The most positions ``model`` reads (its config's ``max_position_embeddings``), or None if it does not say."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(cfg, "max_position_embeddings", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def check_max_length(model: Any, max_length: int | None) -> int | None:
    """The context length to score with: ``max_length`` if given (checked), else the model's own."""
    check_max_length_value(max_length)
    own = model_max_length(model)
    if max_length is None:
        return own
    if own is not None and max_length > own:
        raise InputError(
            f"--max-length {max_length} is more than the {own} positions the model reads; give at most {own}"
        )
    return max_length


def _common_len(seqs: Sequence[Sequence[Any]]) -> int:
    """Length of the longest common prefix of the sequences."""
    n, shortest = 0, min(len(s) for s in seqs)
    while n < shortest and all(s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


def _clip_chars(texts: Sequence[str], common: int, max_length: int | None) -> int:
    """How many leading characters (of the texts' ``common`` start, the same for each) to leave untokenised."""
    if max_length is None:
        return 0
    return max(0, min(max(len(t) for t in texts) - max_length * CHARS_PER_POSITION, common))


def _count_tokens(tokenizer: Any, text: str, chunk: int) -> int:
    """Tokens in ``text``, tokenised ``chunk`` characters at a time (cut at spaces, so it is near exact)."""
    n, start = 0, 0
    while start < len(text):
        end = min(len(text), start + chunk)
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            end = space if space > start else end
        n += len(_encode(tokenizer, text[start:end], False))
        start = end
    return n


def _too_long(item: TaskItem, what: str, need: int, max_length: int) -> InputError:
    return InputError(
        f"item {item.item_id}: {what} alone need {need} tokens, more than the {max_length} positions the model "
        "reads (its context, or --max-length); it cannot be scored without cutting an answer: leave the item out"
    )


def prepare(item: TaskItem, tokenizer: Any, max_length: int | None = None) -> _Prepared:
    """Tokenise an item's choice sequences and listing prompt; find the shared prefix.

    With ``max_length``, a sequence longer than that loses context tokens from the left (see the module doc).
    """
    pairs = scoring_pairs(item)
    prefixes = [prefix for prefix, _ in pairs]
    clip = _clip_chars(prefixes, len(os.path.commonprefix(prefixes)), max_length)
    head = _encode(tokenizer, "", True)  # the special tokens the tokenizer puts first (BOS), kept when cutting
    fulls, starts = [], []
    for prefix, cont in pairs:
        p = _encode(tokenizer, prefix[clip:], True)
        if not p:  # no BOS and empty prefix: the first answer token needs a position to predict it
            p = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
        c = _encode(tokenizer, cont, False)
        if not c:
            raise InputError(f"item {item.item_id}: a choice tokenises to nothing; every answer needs text")
        fulls.append(p + c)
        starts.append(len(p))
    truncated = 0
    if max_length is not None:
        over = max(len(f) for f in fulls) - max_length
        if over > 0:
            h = _common_len([head, fulls[0]])
            # only context that every choice shares is cut (never an option in the blank), leaving each a predictor
            room = min(_common_len([f[:s] for f, s in zip(fulls, starts, strict=True)]) - h, min(starts) - 1)
            if over > room:
                raise _too_long(item, "its answers", max(len(f) for f in fulls) - max(room, 0), max_length)
            fulls = [f[:h] + f[h + over :] for f in fulls]
            starts = [s - over for s in starts]
        truncated = max(over, 0) + (
            _count_tokens(tokenizer, prefixes[0][:clip], max_length * CHARS_PER_POSITION) if clip else 0
        )
    shared = 0
    shortest = min(len(f) for f in fulls)
    while shared < shortest and all(f[shared] == fulls[0][shared] for f in fulls):
        shared += 1
    # keep at least one token of the shortest sequence outside the shared part so every
    # segment is non-empty and every choice's last position is its own
    shared = min(shared, shortest - 1)
    stem, options = listing_parts(item)
    clip = _clip_chars([stem + options], len(stem), max_length)
    listing = _encode(tokenizer, (stem + options)[clip:], True)
    if max_length is not None:
        over = len(listing) - max_length
        if over > 0:
            h = _common_len([head, listing])
            n_options = len(_encode(tokenizer, options, False))
            if over > len(listing) - h - n_options:
                raise _too_long(item, "the options of its listing prompt", h + n_options, max_length)
            listing = listing[:h] + listing[h + over :]
        cut = max(over, 0) + (_count_tokens(tokenizer, stem[:clip], max_length * CHARS_PER_POSITION) if clip else 0)
        truncated = max(truncated, cut)
    return _Prepared(item=item, fulls=fulls, starts=starts, listing=listing, shared=shared, truncated=truncated)


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
    causal = torch.ones(length, length, dtype=torch.bool, device=seg.device).tril()
    same = seg[:, :, None] == seg[:, None, :]
    sees_shared = (seg[:, None, :] == _SHARED) & (seg[:, :, None] >= 0)
    return (causal & (same | sees_shared))[:, None]


def layer_masks(model: Any, mask: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """Boolean packed masks per attention layer type, or None when every layer attends globally.

    transformers passes a 4-D mask through unchanged to every layer, so a model with sliding-window layers
    (Gemma 3, or any config with ``layer_types`` and a ``sliding_window``) would let those layers see past
    their window. Their mask also keeps only keys less than ``sliding_window`` positions behind the query,
    measured in position ids: within one segment (and the shared part it sees) these are the positions the
    sequence has when run alone, so the window cuts exactly where it does in a per-sequence forward.
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    window = getattr(cfg, "sliding_window", None)
    if not window or "sliding_attention" not in set(getattr(cfg, "layer_types", None) or ()):
        return None
    near = (pos[:, :, None] - pos[:, None, :]) < int(window)
    return {"full_attention": mask, "sliding_attention": mask & near[:, None]}


def attention_arg(model: Any, mask: torch.Tensor, pos: torch.Tensor, dtype: torch.dtype) -> Any:
    """The ``attention_mask`` to hand the model's body for a packed block ``mask`` ``[B, 1, L, L]``.

    A dict per layer type where the model has sliding-window layers (``layer_masks``), else the mask itself.
    Eager attention adds the mask to the scores, so it gets float masks (0 or the dtype's minimum).
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    eager = getattr(cfg, "_attn_implementation", None) == "eager"

    def form(m: torch.Tensor) -> torch.Tensor:
        return (
            torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, torch.finfo(dtype).min) if eager else m
        )

    per_type = layer_masks(model, mask, pos)
    return form(mask) if per_type is None else {kind: form(m) for kind, m in per_type.items()}


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
    # at least float32 (a half-precision model's logits are widened), and never narrowed: a float64 model's stay
    wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.log_softmax(wide, dim=-1).gather(-1, targets[:, None])[:, 0]


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
    device = model_device(model)
    ids, pos, seg = ids.to(device), pos.to(device), seg.to(device)
    body = getattr(model, model.base_model_prefix)
    with capture(model, sorted(set(layers) | set(token_layers))) as got:
        mask = attention_arg(model, block_mask(seg), pos, model.dtype)
        hidden = body(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)[0]

    flat_b, flat_i, flat_t = [], [], []
    for b, r in enumerate(rows):
        for idx, tgt in zip(r.pred_idx, r.targets, strict=True):
            flat_b += [b] * len(idx)
            flat_i += idx
            flat_t += tgt
    lp = _token_logprobs(model, hidden[flat_b, flat_i], torch.tensor(flat_t, device=device)).cpu().double().numpy()
    if model.dtype != torch.float32 and not np.isfinite(lp).all():  # half precision overflowed inside the model
        wider = "bfloat16 or float32" if model.dtype == torch.float16 else "float32"
        raise InputError(
            f"log-likelihoods are not finite with the model in {str(model.dtype).removeprefix('torch.')} "
            f"(its activations overflowed); score with --dtype {wider}"
        )
    sites = _sites(got, rows, layers)

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
            choice, last, mean = sites[layer]
            acts[(layer, "choice")] = choice[b]
            acts[(layer, "last")] = last[b]
            acts[(layer, "mean")] = mean[b]
        for layer in token_layers:
            acts[(layer, "tokens")] = got[layer][b, lo:hi].to(torch.float16).cpu().numpy().copy()
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
                truncated=p.truncated,
            )
        )
    return out


def _sites(
    got: dict[int, torch.Tensor], rows: list[_Row], layers: Sequence[int]
) -> dict[int, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]]:
    """Per layer, each row's ``choice`` ``[k, d]``, ``last`` ``[d]`` and ``mean`` ``[d]`` activations in float32
    on the CPU: picked on the model's device and brought over in one transfer per layer and site."""
    out = {}
    for layer in layers:
        h = got[layer]
        choice = torch.cat([h[b, r.last_idx] for b, r in enumerate(rows)]).float().cpu().numpy()
        last = torch.stack([h[b, r.listing_span[1] - 1] for b, r in enumerate(rows)]).float().cpu().numpy()
        mean = torch.stack([h[b, slice(*r.listing_span)].float().mean(0) for b, r in enumerate(rows)])
        bounds = np.cumsum([0] + [len(r.last_idx) for r in rows])
        out[layer] = (
            [choice[bounds[b] : bounds[b + 1]] for b in range(len(rows))],
            list(last),
            list(mean.cpu().numpy()),
        )
    return out


def score_items(
    model: Any,
    tokenizer: Any,
    items: Sequence[TaskItem],
    layers: Sequence[int],
    *,
    scoring: Scoring = "sum",
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    token_layers: Sequence[int] = (),
    max_length: int | None = None,
    listing: bool = True,
) -> Iterator[list[ScoredItem]]:
    """Score items batch by batch, longest first so that rows of a batch waste little padding.

    ``listing=False`` leaves out the options-listing prompt, which only the ``last``/``mean`` activations read (the
    choices' log-likelihoods never see it): what interventions re-score, at about half the tokens; it captures no
    activations.

    ``max_length`` (default: the model's ``max_position_embeddings``) is the most tokens any one sequence
    may hold; longer items are cut from the left of their context (``ScoredItem.truncated``). ``max_tokens``
    None picks the padded tokens per batch from the device's free memory (``devices.auto_max_tokens``; on the
    CPU, ``DEFAULT_MAX_TOKENS``).
    """
    limit = check_max_length(model, max_length)
    if not listing and (layers or token_layers):
        raise ValueError("listing=False captures no activations: give no layers")
    prepared = sorted(
        (
            prepare(it, tokenizer, limit) if listing else replace(prepare(it, tokenizer, limit), listing=[])
            for it in items
        ),
        key=lambda p: -p.packed_len,
    )
    if max_tokens is None:
        longest = prepared[0].packed_len if prepared else 1
        max_tokens = auto_max_tokens(model, longest, len(set(layers) | set(token_layers)))
    for batch in batches(prepared, max_tokens):
        yield score_batch(model, tokenizer, batch, layers, scoring, keep_tokens=listing, token_layers=token_layers)


@torch.inference_mode()
def score_naive(
    model: Any,
    tokenizer: Any,
    item: TaskItem,
    layers: Sequence[int],
    scoring: Scoring = "sum",
    *,
    max_length: int | None = None,
) -> ScoredItem:
    """The obvious computation: one full forward pass per choice, one for the listing prompt."""
    p = prepare(item, tokenizer, check_max_length(model, max_length))
    device = model_device(model)
    ll, n_tok = [], []
    acts: dict[tuple[int, str], np.ndarray] = {}
    choice_vecs: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    for full, start in zip(p.fulls, p.starts, strict=True):
        with capture(model, layers) as got:
            logits = model(input_ids=torch.tensor([full], device=device)).logits[0]
        lp = torch.log_softmax(logits.cpu().double(), -1)
        ll.append(float(sum(lp[t - 1, full[t]] for t in range(start, len(full)))))
        n_tok.append(len(full) - start)
        for layer in layers:
            choice_vecs[layer].append(got[layer][0, -1].float().cpu().numpy().copy())
    with capture(model, layers) as got:
        model(input_ids=torch.tensor([p.listing], device=device))
    for layer in layers:
        acts[(layer, "choice")] = np.stack(choice_vecs[layer])
        acts[(layer, "last")] = got[layer][0, -1].float().cpu().numpy().copy()
        acts[(layer, "mean")] = got[layer][0].float().mean(0).cpu().numpy()
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
        truncated=p.truncated,
    )
