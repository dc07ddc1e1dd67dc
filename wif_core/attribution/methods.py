"""The attribution methods, one registry: each turns a packed contrast into per-token scores.

Every method attributes Δ (or, for AttnLRP, the logit contrast; see ``lrp.py``) to the
input embeddings of the packed contrast sequence, so a score is a contribution to the
contrast: positive pushes toward the wrong answer. Methods declare whether they can run on
a model (``is_compatible``), so callers offer only what applies and fall back loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from wif_core.attribution import lrp
from wif_core.attribution.pairs import ContrastPair, delta_of, embed, neutral_id
from wif_core.errors import WifError
from wif_core.heavy import heavy_imports
from wif_core.models.devices import model_device
from wif_core.models.scoring import DEFAULT_MAX_TOKENS, capture, decoder_blocks

# Integrated gradients: Gauss–Legendre steps along the straight path from the baseline. On a
# real LM, Δ along that path is rough (off-manifold mixtures of embeddings flip attention), so
# no affordable step count makes IG complete there; every record carries its completeness
# error and bench/attribution.py reports them.
IG_STEPS = 32
IG_RULE = "gausslegendre"


@dataclass
class Scores:
    """What a method computed for one contrast, before deletion curves and timing."""

    scores: np.ndarray
    delta: float
    layer_profile: np.ndarray | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Method:
    """A registered attribution method.

    ``complete`` says whether its scores sum to its ``target`` (Δ itself, the logit
    contrast, or Δ minus Δ at the baseline), the quantity named in each record's config.
    """

    name: str
    label: str
    description: str
    compute: Callable[[Any, Any, ContrastPair], Scores]
    complete: bool
    target: str
    compatible: Callable[[Any], tuple[bool, str]] | None = None
    fallback: str | None = None

    def is_compatible(self, model: Any) -> tuple[bool, str]:
        """Whether this method can run on ``model`` (and why not)."""
        return (True, "") if self.compatible is None else self.compatible(model)


def _n_blocks(model: Any) -> int:
    try:
        return len(decoder_blocks(model))
    except WifError:
        return 0


def _profile(
    hidden: list[torch.Tensor], grads: list[torch.Tensor | None], pair: ContrastPair
) -> tuple[np.ndarray | None, float]:
    """Relevance (h · ∂/∂h) at the final context position(s) after each block, divided by its max |r|."""
    if not hidden:
        return None, 0.0
    idx = list(pair.final_idx)
    raw = np.array(
        [
            0.0 if g is None else float((h[0, idx] * g[0, idx]).sum().detach())
            for h, g in zip(hidden, grads, strict=True)
        ]
    )
    scale = float(np.abs(raw).max()) if raw.size else 0.0
    return (raw / scale if scale > 0 else raw), scale


def _grad_x(grad: torch.Tensor | None, emb: torch.Tensor) -> np.ndarray:
    """Gradient × input per token (summed over the width) of the first row, in float32 or wider, on the CPU."""
    if grad is None:
        return np.zeros(emb.shape[1])
    wide = torch.promote_types(emb.dtype, torch.float32)
    return (grad.to(wide) * emb.to(wide)).sum(-1)[0].detach().cpu().double().numpy()


def _gradient_pass(model: Any, pair: ContrastPair) -> tuple[np.ndarray, float, np.ndarray | None, float]:
    """Gradient × input at the embeddings and at each block's output, in one backward pass."""
    ids, _, _ = pair.tensors()
    emb = embed(model, ids).requires_grad_(True)
    layers = list(range(1, _n_blocks(model) + 1))
    hooks = capture(model, layers) if layers else nullcontext(dict[int, torch.Tensor]())
    with torch.enable_grad(), hooks as got:
        delta = delta_of(model, pair, emb)
        hidden = [got[layer] for layer in layers]
        grads = torch.autograd.grad(delta.sum(), [emb, *hidden], allow_unused=True)
    scores = _grad_x(grads[0], emb)
    profile, scale = _profile(hidden, list(grads[1:]), pair)
    return scores, float(delta.detach()[0]), profile, scale


def grad_x_input(model: Any, tokenizer: Any, pair: ContrastPair) -> Scores:
    """∂Δ/∂e · e per token: the first-order (linearised) share of Δ; it need not sum to Δ."""
    scores, delta, profile, scale = _gradient_pass(model, pair)
    return Scores(scores, delta, profile, {"layer_profile_scale": scale})


def integrated_gradients(model: Any, tokenizer: Any, pair: ContrastPair, n_steps: int = IG_STEPS) -> Scores:
    """Captum's integrated gradients from a baseline of neutral-token embeddings (Gauss–Legendre steps).

    Complete with respect to Δ(x) − Δ(baseline), so Δ(baseline) is recorded too. Not the
    all-zero embedding: RMSNorm is scale-invariant, so along a path from zero Δ would
    jump within the first few percent of it, where a few quadrature steps cannot see.
    """
    with heavy_imports():
        from captum.attr import IntegratedGradients

    ids, _, _ = pair.tensors()
    emb = embed(model, ids)
    neutral = neutral_id(tokenizer)
    baseline = embed(model, torch.full_like(ids, neutral))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return delta_of(model, pair, x)

    with torch.enable_grad():
        attr, conv = IntegratedGradients(forward).attribute(
            emb,
            baselines=baseline,
            n_steps=n_steps,
            method=IG_RULE,
            internal_batch_size=max(1, min(n_steps, DEFAULT_MAX_TOKENS // pair.n_tokens)),
            return_convergence_delta=True,
        )
    with torch.no_grad():
        base_delta = float(forward(baseline)[0])
    scores = attr.float().sum(-1)[0].detach().cpu().double().numpy()
    _, delta, profile, scale = _gradient_pass(model, pair)
    span = delta - base_delta
    err = abs(float(conv[0])) / abs(span) if span else None  # None: JSON has no infinity
    return Scores(
        scores,
        delta,
        profile,
        {
            "n_steps": n_steps,
            "rule": IG_RULE,
            "baseline": "neutral token embedding",
            "neutral_token_id": neutral,
            "baseline_delta": base_delta,
            "completeness_error": err,
            "layer_profile": "gradient x hidden state at the input",
            "layer_profile_scale": scale,
        },
    )


def occlusion(model: Any, tokenizer: Any, pair: ContrastPair) -> Scores:
    """Captum feature ablation, one token at a time replaced by a neutral token: Δ − Δ(without it)."""
    with heavy_imports():
        from captum.attr import FeatureAblation

    neutral = neutral_id(tokenizer)
    ids, _, _ = pair.tensors()
    emb = embed(model, ids)
    base = embed(model, torch.full_like(ids, neutral))
    length = pair.n_tokens

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        return delta_of(model, pair, x)

    attr = FeatureAblation(forward).attribute(
        emb,
        baselines=base,
        feature_mask=torch.arange(length, device=emb.device).view(1, length, 1),
        perturbations_per_eval=max(1, DEFAULT_MAX_TOKENS // length),
    )
    delta = float(forward(emb)[0])
    return Scores(attr[0, :, 0].cpu().double().numpy(), delta, None, {"neutral_token_id": neutral})


def attnlrp(model: Any, tokenizer: Any, pair: ContrastPair, rule: lrp.Rule = "attnlrp") -> Scores:
    """AttnLRP relevance of the logit contrast Σ sign · z_target (log-sum-exp treated as a bias).

    Δ itself is reported beside it: for single-token answers after a shared context the two
    are equal; for longer answers Δ adds each position's log-sum-exp, which no input earns.
    """
    ids, pos, mask = pair.tensors(device=model_device(model))
    emb = embed(model, ids).requires_grad_(True)
    hidden: list[torch.Tensor] = []
    with torch.enable_grad():
        normed = lrp.forward(model, emb, pos, mask, rule, hidden=hidden)
        logits = lrp.lm_logits(model, normed[0, list(pair.pred_idx)], rule)
        target = logits.gather(-1, torch.tensor(pair.targets, device=logits.device)[:, None])[:, 0]
        signs = torch.tensor(pair.signs, dtype=logits.dtype, device=logits.device)
        contrast = (target * signs).sum()
        grads = torch.autograd.grad(contrast, [emb, *hidden], allow_unused=True)
    with torch.no_grad():
        delta = float(((target - torch.logsumexp(logits.float(), -1)) * signs).sum()) if pair.targets else 0.0
    scores = _grad_x(grads[0], emb)
    profile, scale = _profile(hidden, list(grads[1:]), pair)
    value = float(contrast.detach())
    err = abs(float(scores.sum()) - value) / abs(value) if value else 0.0
    return Scores(
        scores,
        delta,
        profile,
        {"rule": rule, "logit_contrast": value, "conservation_error": err, "layer_profile_scale": scale},
    )


GRAD_X_INPUT = Method(
    name="grad_x_input",
    label="gradient × input",
    description="∂Δ/∂embedding · embedding per token: one backward pass; a linearisation, not complete.",
    compute=grad_x_input,
    complete=False,
    target="delta",
)
INTEGRATED_GRADIENTS = Method(
    name="integrated_gradients",
    label="integrated gradients",
    description=f"Captum IG from neutral-token embeddings ({IG_STEPS} steps): complete for Δ − Δ(baseline) up to "
    "quadrature error.",
    compute=integrated_gradients,
    complete=True,
    target="delta_minus_baseline",
)
OCCLUSION = Method(
    name="occlusion",
    label="occlusion",
    description="Captum feature ablation: Δ minus Δ with the token replaced by a neutral one (one forward per token).",
    compute=occlusion,
    complete=False,
    target="delta",
)
ATTNLRP = Method(
    name="attnlrp",
    label="AttnLRP",
    description="LRP with the AttnLRP rules for llama and Gemma 3 models (Achtibat et al. 2024); its softmax rule is not "
    "conservative, so the scores sum to part of the logit contrast (config['conservation_error']).",
    compute=attnlrp,
    complete=False,
    target="logit_contrast",
    compatible=lrp.supports,
    fallback="grad_x_input",
)
CP_LRP = Method(
    name="cp_lrp",
    label="CP-LRP",
    description="LRP with attention weights and the MLP gate held constant (Ali et al. 2022): conserves the logit "
    "contrast exactly, but attributes nothing through where attention looks.",
    compute=partial(attnlrp, rule="cp"),
    complete=True,
    target="logit_contrast",
    compatible=lrp.supports,
    fallback="grad_x_input",
)
