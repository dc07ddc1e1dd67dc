"""The contrast of two scored sequences as one packed token sequence, and the quantity Δ.

A run scores choice j as the token sequence ``prefix_j + continuation_j``
(``wif_core.models.scoring.prepare``). For a wrong choice A and the right choice B the
contrast is packed like the scorer packs choices::

    [ common token prefix of A and B | A's own tokens | B's own tokens ]

with a block mask, so the common prefix runs once and each side sees it and itself. Then

    Δ = Σ_t sign_t · log p(target_t | its predictor),   sign +1 for A's targets, −1 for B's

over every scored token, except that a scored token inside the common prefix that both
sequences score has the same predictor and the same target on both sides, so its two
terms cancel exactly: it is left out (the zero-attribution property). The gradient of Δ
with respect to a common-prefix token is ∂log p(A)/∂x − ∂log p(B)/∂x, so its score is
r_A − r_B, and a token of B's own part gets −r_B: every score is a contribution to Δ,
positive toward the wrong answer. This covers WinoGrande's partial scoring (the prefixes
differ, the continuation is shared) and answers that share leading tokens alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from wif_core.errors import InputError
from wif_core.models.devices import model_device
from wif_core.models.scoring import _decode_tokens, _token_logprobs, attention_arg, block_mask, prepare
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import item_format, scoring_pairs

SHARED, WRONG, RIGHT = -1, 0, 1
# Raw fields that templates put into the context, in the order they are looked for.
FIELDS = ("passage", "goal", "context", "question", "sentence")
NEUTRAL_TEXT = " "


@dataclass(frozen=True, kw_only=True)
class ContrastPair:
    """The packed token sequence of one contrast and where Δ's terms are read from it.

    ``pred_idx[i]`` is the packed position whose next-token distribution scores
    ``targets[i]`` with sign ``signs[i]``. ``shared_pred_idx``/``shared_targets`` are the
    scored tokens both sequences share inside the common prefix (left out of Δ: they
    cancel). ``final_idx`` are the positions that predict each side's first counted token
    (one position when the two answers follow a common context). ``deletable`` marks
    context tokens (not special, not answer text) that deletion curves may remove.
    """

    item_id: str
    wrong: int
    right: int
    ids: tuple[int, ...]
    pos: tuple[int, ...]
    seg: tuple[int, ...]
    tokens: tuple[str, ...]
    segments: tuple[str, ...]
    pred_idx: tuple[int, ...]
    targets: tuple[int, ...]
    signs: tuple[float, ...]
    shared_pred_idx: tuple[int, ...]
    shared_targets: tuple[int, ...]
    shared: int
    final_idx: tuple[int, ...]
    deletable: tuple[bool, ...]
    truncated: int = 0  # context tokens cut from the left to fit the model, as the run's scoring cut them

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    def only_shared_targets(self) -> ContrastPair:
        """The same sequence with Δ restricted to the cancelling shared-answer terms (for tests).

        Each shared token is counted once for A (+) and once for B (−), read from the same
        position, so this Δ is exactly zero and so is every attribution of it.
        """
        n = len(self.shared_targets)
        return replace(
            self,
            pred_idx=self.shared_pred_idx * 2,
            targets=self.shared_targets * 2,
            signs=(1.0,) * n + (-1.0,) * n,
        )

    def tensors(
        self, batch: int = 1, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``ids [B, L]``, ``position ids [B, L]`` and the block mask ``[B, 1, L, L]``, on ``device`` (default CPU)."""
        ids = torch.tensor([self.ids], device=device).expand(batch, -1)
        pos = torch.tensor([self.pos], device=device).expand(batch, -1)
        mask = block_mask(torch.tensor([self.seg], device=device)).expand(batch, -1, -1, -1)
        return ids, pos, mask


def _get(row: Any, key: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(key)
    return getattr(row, key, None)


def contrast(item: TaskItem, outcome: Any) -> tuple[int, int]:
    """(wrong_choice, right_choice) to attribute for an item and its outcome row.

    A failure contrasts the model's pick with the gold answer; a success contrasts the
    gold answer with the best-scoring wrong one (by ``ll_sum``, passing over unscored choices;
    the first other choice when the run stored no scores). ``outcome`` is a mapping or a row
    with ``pred`` and ``ll_sum``.
    """
    gold = item.gold
    if len(item.choices) < 2:
        raise InputError(f"item {item.item_id}: field 'choices' has one answer; a contrast needs two")
    pred = _get(outcome, "pred")
    if pred is not None and not (isinstance(pred, float) and np.isnan(pred)) and int(pred) != gold:
        return int(pred), gold
    ll = _get(outcome, "ll_sum")
    others = [j for j in range(len(item.choices)) if j != gold]
    if not isinstance(ll, list | tuple | np.ndarray) or len(ll) != len(item.choices):
        return others[0], gold
    scored = [j for j in others if ll[j] is not None and np.isfinite(float(ll[j]))]  # an unscored choice: NaN
    return max(scored, key=lambda j: float(ll[j])) if scored else others[0], gold


def _field_spans(item: TaskItem, prefix: str, family: str) -> list[tuple[str, int, int]]:
    """Character spans of the item's raw fields inside a scored prefix (``family``: its run's)."""
    if family == "fill_blank":
        blank = item.context.find("_")
        return [("sentence", 0, blank)] if blank > 0 else []
    spans: list[tuple[str, int, int]] = []
    for name in FIELDS:
        value = item.meta.get(name)
        if not isinstance(value, str) or not value.strip():
            continue
        for text in (value, value.rstrip("?")):
            start = prefix.find(text)
            if start >= 0:
                spans.append((name, start, start + len(text)))
                break
    return spans


def _prefix_labels(item: TaskItem, prefix: str, tokenizer: Any, ids: list[int], family: str) -> list[str]:
    """A segment label per token of a scored prefix, from the fast tokenizer's offsets."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    spans = _field_spans(item, prefix, family)
    chars = ["template" if spans else "context"] * len(prefix)
    for name, lo, hi in spans:
        chars[lo:hi] = [name] * (hi - lo)
    offsets: list[tuple[int, int]] | None = None
    try:
        enc = tokenizer(prefix, add_special_tokens=True, return_offsets_mapping=True)
        if list(enc.input_ids) == ids:
            offsets = [tuple(o) for o in enc.offset_mapping]
    except (NotImplementedError, ValueError, TypeError):  # a slow tokenizer has no offsets
        offsets = None
    labels = []
    for n, tok in enumerate(ids):
        if tok in special:
            labels.append("special")
            continue
        if offsets is None:
            labels.append("context")
            continue
        lo, hi = offsets[n]
        span = [chars[i] for i in range(lo, min(hi, len(prefix))) if not prefix[i].isspace()]
        span = span or chars[lo:hi]
        labels.append(max(set(span), key=span.count) if span else "special")
    return labels


def build_pair(
    item: TaskItem,
    tokenizer: Any,
    wrong: int,
    right: int,
    *,
    family: str | None = None,
    max_length: int | None = None,
) -> ContrastPair:
    """Tokenise an item as the run scored it and pack the contrast ``wrong`` vs ``right``.

    ``family`` is the run's (``RunInfo.family``), which says how its items are laid out; for an item
    of no stored run it is the format the templates give the item's task. ``max_length`` is the context
    length the run scored with: a longer item loses context from the left exactly as it did there
    (``wif_core.models.scoring.prepare``), so the pair stays within what the model reads; the tokens kept
    are then labelled ``context`` (the item's fields are not located in a cut text).
    """
    if wrong == right or not (0 <= wrong < len(item.choices) and 0 <= right < len(item.choices)):
        raise InputError(
            f"item {item.item_id}: field 'choices': cannot contrast choice {wrong} with choice {right}; "
            f"give two different indices below {len(item.choices)}"
        )
    prepared = prepare(item, tokenizer, max_length)  # raises on an empty context or an empty answer
    a, b = prepared.fulls[wrong], prepared.fulls[right]
    sa, sb = prepared.starts[wrong], prepared.starts[right]
    if a == b:
        raise InputError(
            f"item {item.item_id}: field 'choices': choices {wrong} ({item.choices[wrong]!r}) and {right} "
            f"({item.choices[right]!r}) tokenise identically, so there is no contrast to attribute; "
            "make the answers differ"
        )
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    begins = {WRONG: shared, RIGHT: len(a)}  # where each side's own tokens begin in the packed sequence

    def packed(side: int, u: int) -> int:
        return u if u < shared else begins[side] + u - shared

    pred_idx: list[int] = []
    targets: list[int] = []
    signs: list[float] = []
    shared_pred: list[int] = []
    shared_tgt: list[int] = []
    final: list[int] = []
    for side, seq, start, sign in ((WRONG, a, sa, 1.0), (RIGHT, b, sb, -1.0)):
        first = True
        for t in range(start, len(seq)):
            if t < shared and t >= max(sa, sb):  # scored by both, same predictor: the terms cancel
                if side == WRONG:
                    shared_pred.append(t - 1)
                    shared_tgt.append(seq[t])
                continue
            pred_idx.append(packed(side, t - 1))
            targets.append(seq[t])
            signs.append(sign)
            if first:
                final.append(packed(side, t - 1))
                first = False

    prefix_text = scoring_pairs(item)[wrong][0]
    prefix_ids = a[:sa]
    if prepared.truncated:
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        labels = ["special" if tok in special else "context" for tok in prefix_ids]
    else:
        labels = _prefix_labels(item, prefix_text, tokenizer, prefix_ids, family or item_format(item))
    if len(labels) != len(prefix_ids):  # the BOS that prepare adds before an empty prefix
        labels = ["special"] * (len(prefix_ids) - len(labels)) + labels
    shared_labels = [labels[u] if u < sa else "answer" for u in range(shared)]
    ids = a[:shared] + a[shared:] + b[shared:]
    segments = shared_labels + ["wrong"] * (len(a) - shared) + ["right"] * (len(b) - shared)
    return ContrastPair(
        item_id=item.item_id,
        wrong=wrong,
        right=right,
        ids=tuple(ids),
        pos=tuple(range(shared)) + tuple(range(shared, len(a))) + tuple(range(shared, len(b))),
        seg=(SHARED,) * shared + (WRONG,) * (len(a) - shared) + (RIGHT,) * (len(b) - shared),
        tokens=tuple(_decode_tokens(tokenizer, ids)),
        segments=tuple(segments),
        pred_idx=tuple(pred_idx),
        targets=tuple(targets),
        signs=tuple(signs),
        shared_pred_idx=tuple(shared_pred),
        shared_targets=tuple(shared_tgt),
        shared=shared,
        final_idx=tuple(dict.fromkeys(final)),
        deletable=tuple(s not in ("special", "answer", "wrong", "right") for s in segments),
        truncated=prepared.truncated,
    )


def neutral_id(tokenizer: Any) -> int:
    """The token that stands in for a deleted or occluded one: a single space if it is one token."""
    ids = list(tokenizer(NEUTRAL_TEXT, add_special_tokens=False).input_ids)
    if len(ids) == 1:
        return int(ids[0])
    for tok in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if tok is not None:
            return int(tok)
    return 0


def body_of(model: Any) -> Any:
    """The transformer body (embeddings → blocks → final norm) of a causal LM."""
    return getattr(model, model.base_model_prefix, model)


def hidden_states(model: Any, pair: ContrastPair, embeds: torch.Tensor) -> torch.Tensor:
    """The final (normed) hidden states ``[B, L, d]`` of the packed contrast for input embeddings."""
    batch = embeds.shape[0]
    _, pos, mask = pair.tensors(batch, embeds.device)
    arg = attention_arg(model, mask, pos, embeds.dtype)
    out = body_of(model)(inputs_embeds=embeds, attention_mask=arg, position_ids=pos, use_cache=False)
    return out[0] if isinstance(out, tuple) else out.last_hidden_state


def delta_from_hidden(model: Any, pair: ContrastPair, hidden: torch.Tensor) -> torch.Tensor:
    """Δ per batch row ``[B]`` from final hidden states (log-softmax over the vocabulary)."""
    batch = hidden.shape[0]
    if not pair.targets:
        return hidden.new_zeros(batch)
    idx = list(pair.pred_idx)
    flat = hidden[:, idx].reshape(batch * len(idx), -1)
    tgt = torch.tensor(pair.targets, device=hidden.device).repeat(batch)
    lp = _token_logprobs(model, flat, tgt).view(batch, len(idx))
    return (lp * torch.tensor(pair.signs, dtype=lp.dtype, device=lp.device)).sum(-1)


def delta_of(model: Any, pair: ContrastPair, embeds: torch.Tensor) -> torch.Tensor:
    """Δ per batch row ``[B]`` for input embeddings ``[B, L, d]`` (differentiable)."""
    return delta_from_hidden(model, pair, hidden_states(model, pair, embeds))


def embed(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """Input embeddings of token ids (moved to the model's device), detached (a leaf to attribute to)."""
    return model.get_input_embeddings()(ids.to(model_device(model))).detach()


@torch.no_grad()
def delta_terms(model: Any, pair: ContrastPair) -> tuple[np.ndarray, np.ndarray]:
    """Each counted term of Δ (sign × log p), and log p of each shared answer token.

    A shared answer token enters log p(A) and log p(B) with this same value (same
    position, same target), so its contribution to Δ is exactly zero and it is left out.
    """
    ids, _, _ = pair.tensors()
    hidden = hidden_states(model, pair, embed(model, ids))[0]

    def logprobs(idx: tuple[int, ...], tgt: tuple[int, ...]) -> np.ndarray:
        if not tgt:
            return np.zeros(0)
        return _token_logprobs(model, hidden[list(idx)], torch.tensor(tgt, device=hidden.device)).cpu().double().numpy()

    return logprobs(pair.pred_idx, pair.targets) * np.array(pair.signs), logprobs(
        pair.shared_pred_idx, pair.shared_targets
    )
