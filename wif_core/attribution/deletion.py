"""Deletion curves: do the attributions track what actually moves the model?

The context tokens of a contrast (not special tokens, not answer text) are replaced by a
neutral token in attribution order, top-scored first (the tokens that push hardest toward
the wrong answer), and Δ is recomputed at a few fractions of them deleted; a seeded random
order gives the reference curve. If the attribution is faithful, Δ falls faster along the
top-first curve than along the random one.

Faithfulness = the area between the random curve and the top-first curve over the
deleted fraction, divided by the fraction range: the mean drop of Δ, in nats, that the
attribution order buys over a random order. It is not divided by |Δ| (which would blow up
for items the model nearly ties), so items with large contrasts weigh more in a run's mean.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wif_core.attribution.pairs import ContrastPair, delta_of, embed
from wif_core.models.scoring import DEFAULT_MAX_TOKENS

FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5)
# One random order per item keeps a deletion curve at 8 forwards (4 fractions × 2 orders); the
# random curve is shared by every method of an item and averages out over a run's items.
N_RANDOM = 1


def random_orders(pair: ContrastPair, seed: int, n: int = N_RANDOM) -> list[list[int]]:
    """Seeded random deletion orders of a contrast's deletable tokens (fixed per item and seed)."""
    cand = [i for i, d in enumerate(pair.deletable) if d]
    rng = np.random.default_rng([seed, zlib.crc32(pair.item_id.encode())])
    return [[cand[j] for j in rng.permutation(len(cand))] for _ in range(n)]


def top_order(pair: ContrastPair, scores: Sequence[float]) -> list[int]:
    """Deletable tokens by descending score (toward the wrong answer first); ties by position."""
    cand = [i for i, d in enumerate(pair.deletable) if d]
    return sorted(cand, key=lambda i: (-float(scores[i]), i))


def counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Tokens deleted at each fraction: at least one for any non-zero fraction."""
    return [0 if f <= 0 else min(n, max(1, round(f * n))) for f in fractions]


@torch.no_grad()
def deltas(
    model: Any, pair: ContrastPair, variants: list[list[int]], max_tokens: int = DEFAULT_MAX_TOKENS
) -> np.ndarray:
    """Δ of token-id variants of the packed contrast, as many variants per forward pass as fit in
    ``max_tokens`` (every deletion step of an item in one pass, at the default; ``max_tokens=1``
    scores one variant per pass, the reference the batched passes are checked against)."""
    out = []
    step = max(1, max_tokens // pair.n_tokens)
    for lo in range(0, len(variants), step):
        ids = torch.tensor(variants[lo : lo + step])
        out.append(delta_of(model, pair, embed(model, ids)).cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def deletion_curves(
    model: Any,
    pair: ContrastPair,
    scores: Sequence[float],
    delta: float,
    neutral: int,
    seed: int = 0,
    fractions: Sequence[float] = FRACTIONS,
    n_random: int = N_RANDOM,
    cache: dict[Any, list[float]] | None = None,
) -> tuple[dict[str, list[float]] | None, float | None]:
    """The top-first and random deletion curves of one attribution, and its faithfulness.

    ``cache`` (a dict the caller keeps across methods) stores each item's random curve,
    which does not depend on the method. Returns ``(None, None)`` when the contrast has
    no context token to delete.
    """
    return deletion_curves_many(
        model, pair, [scores], [delta], neutral, seed=seed, fractions=fractions, n_random=n_random, cache=cache
    )[0]


def deletion_curves_many(
    model: Any,
    pair: ContrastPair,
    scores: Sequence[Sequence[float]],
    delta: Sequence[float],
    neutral: int,
    *,
    seed: int = 0,
    fractions: Sequence[float] = FRACTIONS,
    n_random: int = N_RANDOM,
    cache: dict[Any, list[float]] | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> list[tuple[dict[str, list[float]] | None, float | None]]:
    """``deletion_curves`` of several attributions of the same contrast (one per method, each with the Δ
    its method computed, where its curve starts), every deletion step of every method and the shared random
    order scored together: one forward pass for an item of a generated task, instead of one per step. The
    random curve starts at the first method's Δ (or is the cached one)."""
    n = sum(pair.deletable)
    if n == 0:
        return [(None, None) for _ in scores]
    ks = counts(n, fractions)
    m = len(ks) - 1
    variants: list[list[int]] = []

    def delete(order: list[int]) -> None:
        for k in ks[1:]:
            ids = list(pair.ids)
            for i in order[:k]:
                ids[i] = neutral
            variants.append(ids)

    for s in scores:
        delete(top_order(pair, s))
    key = (pair.item_id, pair.wrong, pair.right, seed, tuple(fractions), n_random, neutral)
    random_curve = cache.get(key) if cache is not None else None
    if random_curve is None:
        for order in random_orders(pair, seed, n_random):
            delete(order)
    got = deltas(model, pair, variants, max_tokens)
    if random_curve is None:
        rand = got[m * len(scores) :].reshape(n_random, m).mean(0)
        random_curve = [delta[0], *rand.tolist()]
        if cache is not None:
            cache[key] = random_curve
    x = np.asarray(fractions, dtype=float)
    span = float(x[-1] - x[0]) or 1.0
    out: list[tuple[dict[str, list[float]] | None, float | None]] = []
    for j in range(len(scores)):
        top = [delta[j], *got[j * m : (j + 1) * m].tolist()]
        gap = np.asarray(random_curve) - np.asarray(top)
        area = float(np.sum((gap[1:] + gap[:-1]) * np.diff(x)) / 2)
        curves = {
            "fraction": [float(f) for f in fractions],
            "k": [float(k) for k in ks],
            "top": top,
            "random": list(random_curve),
        }
        out.append((curves, area / span))
    return out
