"""Steering: add α·v to the residual stream after one block while the run's model scores items exactly as
collection did, against random directions of the same norm, and count what flips.

A direction comes from an explainer (``probe_direction``: a standardised probe's weight vector at its layer and
site, mapped back to the residual stream and pointed against failure) or is given. Its strength is in units of
the run's mean residual-stream norm at that layer (``α = 1`` adds a vector as long as a typical residual), so
strengths mean the same across models. The random control draws directions uniformly on the sphere (Gaussian,
normalised, seeded) and adds them at the same norm; every item is scored under both, so the comparison is
paired per item. At ``α = 0`` nothing is added and the scores are collection's bit for bit (the same packed
batches, ``steer_scores`` of every item of a run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0)
STEERABLE_SITES = ("last", "mean")


@dataclass(kw_only=True)
class Direction:
    """A unit vector in the residual stream after block ``layer``, pointing from failure toward success."""

    name: str
    layer: int
    vector: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)  # what it came from: explainer, settings, val AUC, seed


@contextmanager
def steer(model: Any, layer: int, vector: Any | None) -> Iterator[None]:
    """Add ``vector`` (``[d]``, a torch tensor in the model's dtype and device, or None: nothing) to the output of
    block ``layer`` (1-based) at every position, for the forward passes inside the block."""
    from wif_core.models.scoring import decoder_blocks

    if vector is None:
        yield
        return
    block = decoder_blocks(model)[layer - 1]

    def hook(_m: Any, _inp: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (out[0] + vector, *out[1:])
        return out + vector

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def steer_scores(
    lm: Any,
    items: Sequence[Any],
    *,
    layer: int,
    vector: np.ndarray | None,
    scoring: str = "sum",
    max_tokens: int | None = None,
    max_length: int | None = None,
    listing: bool = False,
) -> dict[str, tuple[list[float], int | None, bool, float | None]]:
    """Score ``items`` with ``vector`` added after block ``layer`` (None: unsteered): item id → (log-likelihood
    per choice, prediction, correct, margin). Without the options-listing prompt (``listing=False``: about half
    the tokens, the same choice log-likelihoods up to float rounding); with it, batched exactly as collection
    batched them, so an unsteered pass over a run's items reproduces its stored log-likelihoods bit for bit."""
    with heavy_imports():
        import torch

    from wif_core.models.scoring import check_max_length, score_items

    v = None
    if vector is not None:
        p = next(lm.model.parameters())
        v = torch.as_tensor(np.asarray(vector, dtype=np.float32)).to(device=p.device, dtype=p.dtype)
    out: dict[str, tuple[list[float], int | None, bool, float | None]] = {}
    with steer(lm.model, layer, v):
        for batch in score_items(
            lm.model,
            lm.tokenizer,
            items,
            [],
            scoring="norm" if scoring == "norm" else "sum",
            max_tokens=max_tokens,
            max_length=check_max_length(lm.model, max_length),
            listing=listing,
        ):
            for s in batch:
                out[s.item_id] = (list(s.ll_sum), s.pred, bool(s.correct), s.margin)
    return out


def random_directions(d: int, n: int, seed: int) -> np.ndarray:
    """``n`` directions uniform on the unit sphere in ``d`` dimensions (seeded)."""
    g = np.random.default_rng(seed).standard_normal((n, d))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def residual_norm(store: Any, run_id: str, layer: int, site: str = "last") -> float:
    """The run's mean residual-stream norm after block ``layer`` at ``site`` (the unit of steering strength)."""
    _, x = store.activations(run_id, layer, site)
    return float(np.linalg.norm(x.astype(np.float64), axis=-1).mean())


def probe_direction(store: Any, run_id: str, layer: int, site: str = "last", seed: int = 0) -> Direction:
    """The standardised probe's direction at ``layer``/``site`` (fit on train, C chosen on val), mapped back to the
    residual stream (weights divided by the scaler's scales) and pointed against failure: moving along it lowers
    the probe's P(failure)."""
    from wif_core.explainers.data import RunData
    from wif_core.explainers.probe import Probe

    if site not in STEERABLE_SITES:
        raise InputError(
            f"a probe at site '{site}' has no single residual-stream direction; steer along a probe at site "
            f"{' or '.join(STEERABLE_SITES)}"
        )
    data = RunData.load(store, run_id)
    train, y_train = data.split("train", "input")
    val, y_val = data.split("val", "input")
    probe = Probe(layer=layer, site=site, seed=seed).fit(train, y_train, val, y_val)
    fit = probe.fit_
    w = np.asarray(fit.weights, dtype=np.float64)
    if fit.scaler is not None:
        w = w / np.where(fit.scaler.scale_ > 0, fit.scaler.scale_, 1.0)
    norm = float(np.linalg.norm(w))
    if not np.isfinite(norm) or norm == 0:
        raise InputError(
            f"the probe at layer {layer}, site '{site}' of run {run_id} learned no direction (zero weights)"
        )
    best_val = max(fit.val_auc.values()) if fit.val_auc else None
    return Direction(
        name=f"probe L{layer} {site}",
        layer=layer,
        vector=-w / norm,  # the probe scores failure: success lies the other way
        source={"explainer": "probe", "layer": layer, "site": site, "seed": seed, "C": fit.C, "val_auc": best_val},
    )


@dataclass(kw_only=True)
class SweepPoint:
    """One strength: per item, the steered and the control outcome (the control averaged over its directions)."""

    alpha: float
    correct: dict[str, bool]  # item → correct under the direction
    margin: dict[str, float]
    control_correct: dict[str, list[bool]]  # item → correct under each random direction
    control_margin: dict[str, list[float]]


def sweep(
    lm: Any,
    items: Sequence[Any],
    direction: Direction,
    *,
    unit: float,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_controls: int = 1,
    seed: int = 0,
    scoring: str = "sum",
    max_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[SweepPoint]:
    """Score ``items`` at each strength α (in units of ``unit``, the residual norm) along ``direction`` and along
    ``n_controls`` random directions of the same norm."""
    if not alphas:
        raise InputError("the strength grid is empty; give strengths like --alphas 0,0.5,1,2")
    d = len(direction.vector)
    controls = random_directions(d, n_controls, seed)
    out = []
    for alpha in alphas:
        scale = float(alpha) * unit
        steered = steer_scores(
            lm,
            items,
            layer=direction.layer,
            vector=None if alpha == 0 else scale * direction.vector,
            scoring=scoring,
            max_tokens=max_tokens,
        )
        point = SweepPoint(
            alpha=float(alpha),
            correct={i: s[2] for i, s in steered.items()},
            margin={i: float(s[3]) for i, s in steered.items() if s[3] is not None},
            control_correct={i: [] for i in steered},
            control_margin={i: [] for i in steered},
        )
        for c in controls:
            ctrl = (
                steered
                if alpha == 0
                else steer_scores(
                    lm, items, layer=direction.layer, vector=scale * c, scoring=scoring, max_tokens=max_tokens
                )
            )
            for i, s in ctrl.items():
                point.control_correct[i].append(s[2])
                if s[3] is not None:
                    point.control_margin[i].append(float(s[3]))
        out.append(point)
        if progress:
            progress(1)
    return out
