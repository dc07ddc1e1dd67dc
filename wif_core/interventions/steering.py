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
    with edit_residual(model, layer, None if vector is None else (lambda h: h + vector)):
        yield


# the most bytes of residual stream a Prefix keeps (batches past it are scored in full)
PREFIX_BYTES = 1 << 30


class Prefix:
    """The residual stream after block ``layer`` of every batch scored, keyed by the batch's token ids.

    Blocks 1..``layer`` never see an edit made after block ``layer``, so once a batch has been scored their
    output is known: later passes over the same batch (each strength, each control) skip them and start from
    the kept tensor, running only the blocks above. The result is the same bit for bit (the same tensor, the
    same blocks after it); a sweep at layer 24 of 30 runs a fifth of the model per steered pass. Batches past
    ``max_bytes`` are scored in full.
    """

    def __init__(self, layer: int, max_bytes: int = PREFIX_BYTES) -> None:
        self.layer = layer
        self.max_bytes = max_bytes
        self.kept: dict[bytes, Any] = {}
        self.bytes = 0
        self.hits = 0


def _key(ids: Any) -> bytes:
    import hashlib

    return hashlib.blake2b(ids.detach().cpu().numpy().tobytes() + str(tuple(ids.shape)).encode()).digest()


@contextmanager
def edit_residual(
    model: Any, layer: int, edit: Callable[[Any], Any] | None, prefix: Prefix | None = None
) -> Iterator[None]:
    """Replace the output ``h`` of block ``layer`` (1-based) by ``edit(h)`` at every position, for the forward
    passes inside the block (``edit`` None: no change). With ``prefix``, batches whose block-``layer`` output it
    holds skip blocks 1..``layer`` (see ``Prefix``) and the rest are kept in it."""
    from wif_core.models.scoring import decoder_blocks

    if edit is None and prefix is None:
        yield
        return
    blocks = decoder_blocks(model)
    block = blocks[layer - 1]
    state: dict[str, Any] = {"key": None}
    patched: list[Any] = []
    handles: list[Any] = []

    def result(h: Any) -> Any:
        return h if edit is None else edit(h)

    if prefix is not None:
        if prefix.layer != layer:
            raise ValueError(f"a prefix kept after block {prefix.layer} cannot serve block {layer}")

        def on_embed(_m: Any, inp: Any) -> None:
            ids = inp[0] if inp else None
            state["key"] = None if ids is None else _key(ids)

        handles.append(model.get_input_embeddings().register_forward_pre_hook(on_embed))

        def skipper(original: Any) -> Any:
            def forward(*args: Any, **kwargs: Any) -> Any:
                if state["key"] in prefix.kept:
                    return args[0] if args else kwargs["hidden_states"]
                return original(*args, **kwargs)

            return forward

        for below in list(blocks)[: layer - 1]:
            below.forward = skipper(below.forward)
            patched.append(below)

        original = block.forward

        def last(*args: Any, **kwargs: Any) -> Any:
            key = state["key"]
            if key in prefix.kept:
                prefix.hits += 1
                kind, h = prefix.kept[key]
                return (result(h),) if kind == "tuple" else result(h)
            out = original(*args, **kwargs)
            h = out[0] if isinstance(out, tuple) else out
            size = h.numel() * h.element_size()
            if key is not None and prefix.bytes + size <= prefix.max_bytes:
                prefix.kept[key] = ("tuple" if isinstance(out, tuple) else "tensor", h)
                prefix.bytes += size
            return (result(h), *out[1:]) if isinstance(out, tuple) else result(h)

        block.forward = last
        patched.append(block)
    else:

        def hook(_m: Any, _inp: Any, out: Any) -> Any:
            if isinstance(out, tuple):
                return (result(out[0]), *out[1:])
            return result(out)

        handles.append(block.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m in patched:
            del m.forward


Scores = dict[str, tuple[list[float], int | None, bool, float | None]]


def edit_scores(
    lm: Any,
    items: Sequence[Any],
    *,
    layer: int,
    edit: Callable[[Any], Any] | None,
    scoring: str = "sum",
    max_tokens: int | None = None,
    max_length: int | None = None,
    listing: bool = False,
    prefix: Prefix | None = None,
) -> Scores:
    """Score ``items`` with the output ``h`` of block ``layer`` replaced by ``edit(h)`` (None: unedited): item id →
    (log-likelihood per choice, prediction, correct, margin). Without the options-listing prompt
    (``listing=False``: about half the tokens, the same choice log-likelihoods up to float rounding); with it,
    batched exactly as collection batched them, so an unedited pass over a run's items reproduces its stored
    log-likelihoods bit for bit. ``prefix`` (at ``layer``) shares blocks 1..``layer`` between passes over the
    same items (``Prefix``)."""
    from wif_core.models.scoring import check_max_length, score_items

    out: Scores = {}
    with edit_residual(lm.model, layer, edit, prefix):
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


def adding(lm: Any, vector: np.ndarray | None) -> Callable[[Any], Any] | None:
    """The edit ``h ↦ h + vector`` in the model's dtype and device (None: no edit)."""
    with heavy_imports():
        import torch

    if vector is None:
        return None
    p = next(lm.model.parameters())
    v = torch.as_tensor(np.asarray(vector, dtype=np.float32)).to(device=p.device, dtype=p.dtype)
    return lambda h: h + v


def steer_scores(
    lm: Any,
    items: Sequence[Any],
    *,
    layer: int,
    vector: np.ndarray | None,
    **kwargs: Any,
) -> Scores:
    """``edit_scores`` with ``vector`` added after block ``layer`` (None: unsteered)."""
    return edit_scores(lm, items, layer=layer, edit=adding(lm, vector), **kwargs)


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


@dataclass(kw_only=True)
class Level:
    """One strength of an intervention: its edit of the residual stream and its matched random controls."""

    alpha: float
    edit: Callable[[Any], Any] | None  # None: nothing changed (the baseline)
    controls: Sequence[Callable[[Any], Any] | None] = ()


def edit_sweep(
    lm: Any,
    items: Sequence[Any],
    levels: Sequence[Level],
    *,
    layer: int,
    scoring: str = "sum",
    max_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[SweepPoint]:
    """Score ``items`` under each level's edit after block ``layer`` and under each of its controls, sharing the
    unedited blocks 1..``layer`` between all passes (``Prefix``). A level without an edit is the baseline, and
    its controls (none given) are the baseline too."""
    prefix = Prefix(layer)
    out = []
    for level in levels:

        def scored(edit: Callable[[Any], Any] | None) -> Scores:
            return edit_scores(lm, items, layer=layer, edit=edit, scoring=scoring, max_tokens=max_tokens, prefix=prefix)

        main = scored(level.edit)
        point = SweepPoint(
            alpha=float(level.alpha),
            correct={i: s[2] for i, s in main.items()},
            margin={i: float(s[3]) for i, s in main.items() if s[3] is not None},
            control_correct={i: [] for i in main},
            control_margin={i: [] for i in main},
        )
        controls = level.controls if level.edit is not None else [None]
        for c in controls:
            ctrl = main if c is None and level.edit is None else scored(c)
            for i, s in ctrl.items():
                point.control_correct[i].append(s[2])
                if s[3] is not None:
                    point.control_margin[i].append(float(s[3]))
        out.append(point)
        if progress:
            progress(1)
    return out


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
    controls = random_directions(len(direction.vector), n_controls, seed)
    levels = []
    for alpha in alphas:
        scale = float(alpha) * unit
        if alpha == 0:
            levels.append(Level(alpha=0.0, edit=None))
            continue
        levels.append(
            Level(
                alpha=float(alpha),
                edit=adding(lm, scale * direction.vector),
                controls=[adding(lm, scale * c) for c in controls],
            )
        )
    return edit_sweep(
        lm, items, levels, layer=direction.layer, scoring=scoring, max_tokens=max_tokens, progress=progress
    )
