"""Contrastive attribution over input positions for the zoo's RNNs: exact, because they have no biases.

Δ = logit(wrong) − logit(right). The bias-free ReLU RNN is positively homogeneous of degree 1
in its input (h_{t+1} = ReLU(W_hh h_t + W_hi x_t) scales with x), so Euler's theorem makes
gradient × input complete: the position scores sum to Δ exactly, and the same holds for the
hidden state after every time step, whose relevance is the layer profile. Records use the
store's ``attributions`` table, so the attribution page and the clusters' ``attribution``
space read a zoo run like any other.
"""

from __future__ import annotations

import numpy as np
import torch

from wif_core.errors import InputError
from wif_core.store import AttributionRow
from wif_core.zoo.models import ZooModel, ZooRNN

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5)
N_RANDOM = 4


def contrast(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(wrong, right) per sample: the model's pick when it failed, else the best wrong answer; right = y."""
    pred = logits.argmax(dim=1)
    best_other = logits.scatter(1, y[:, None], float("-inf")).argmax(dim=1)
    return torch.where(pred != y, pred, best_other), y


def _delta(model: ZooRNN, x: torch.Tensor, wrong: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return logits.gather(1, wrong[:, None])[:, 0] - logits.gather(1, right[:, None])[:, 0]


def position_scores(
    model: ZooModel, x: torch.Tensor, wrong: torch.Tensor, right: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-position relevance ``[B, n]``, Δ ``[B]`` and the per-step profile ``[B, n]`` (h_t · ∂Δ/∂h_t)."""
    if not isinstance(model, ZooRNN):
        raise InputError(
            f"model {model.spec.name} is a transformer over discrete tokens: position attribution is exact only for the "
            "bias-free RNNs; use an RNN zoo model"
        )
    x = x.detach().double().requires_grad_(True)
    m = ZooRNN(model.spec).double()
    m.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    # the recurrence of ZooRNN.hidden_states, unrolled here so each h_t keeps its gradient (the stacked
    # states that method returns are copies, which Δ does not depend on except at the last step)
    h = x.new_zeros(x.shape[0], m.spec.hidden)
    states = []
    for t in range(x.shape[1]):
        h = torch.relu(h @ m.W_hh.T + x[:, t, None] * m.W_hi)
        h.retain_grad()
        states.append(h)
    logits = h @ m.W_oh.T
    delta = logits.gather(1, wrong[:, None])[:, 0] - logits.gather(1, right[:, None])[:, 0]
    delta.sum().backward()
    assert x.grad is not None
    scores = (x * x.grad).detach().numpy()
    profile = np.stack([(s * s.grad).sum(dim=1).detach().numpy() for s in states], axis=1)  # type: ignore[operator]
    return scores, delta.detach().numpy(), profile


def deletion_curves(
    model: ZooRNN, x: torch.Tensor, wrong: torch.Tensor, right: torch.Tensor, scores: np.ndarray, *, seed: int = 0
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Δ after zeroing the top-k positions (by score) and k random ones (mean of N_RANDOM orders): ``[B, len(ks)]``."""
    n = x.shape[1]
    ks = sorted({round(f * n) for f in FRACTIONS})
    top_order = np.argsort(-scores, axis=1, kind="stable")
    rng = np.random.default_rng(seed)
    random_orders = [np.argsort(rng.random(scores.shape), axis=1) for _ in range(N_RANDOM)]

    def curve(order: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for k in ks:
                keep = torch.ones_like(x)
                if k:
                    keep.scatter_(1, torch.as_tensor(order[:, :k]), 0.0)
                out.append(_delta(model, x * keep, wrong, right).numpy())
        return np.stack(out, axis=1)

    top = curve(top_order)
    rand = np.mean([curve(o) for o in random_orders], axis=0)
    return ks, top, rand


def attribution_rows(
    model: ZooModel, item_ids: list[str], x: torch.Tensor, y: torch.Tensor, seed: int = 0
) -> list[AttributionRow]:
    """One ``grad_x_input`` record per item (tokens are the positions with their values)."""
    if not isinstance(model, ZooRNN):
        raise InputError(f"model {model.spec.name}: position attribution needs an RNN zoo model")
    with torch.no_grad():  # not inference_mode: these tensors take part in the backward pass below
        wrong, right = contrast(model(x), y)
    scores, delta, profile = position_scores(model, x, wrong, right)
    ks, top, rand = deletion_curves(model, x.float(), wrong, right, scores, seed=seed)
    n = x.shape[1]
    xs = x.numpy()
    rows = []
    for i, item_id in enumerate(item_ids):
        w, r = int(wrong[i]), int(right[i])
        segments = ["right" if p == r else "wrong" if p == w else "other" for p in range(n)]
        peak = float(np.abs(profile[i]).max()) or 1.0
        rows.append(
            AttributionRow(
                item_id=item_id,
                method="grad_x_input",
                wrong_choice=w,
                right_choice=r,
                tokens=[f"x{p}={xs[i, p]:+.3f} " for p in range(n)],
                segments=[s.replace("right", "right_pos").replace("wrong", "wrong_pos") for s in segments],
                scores=scores[i].tolist(),
                delta=float(delta[i]),
                sum_scores=float(scores[i].sum()),
                layer_profile=(profile[i] / peak).tolist(),
                deletion={
                    "fraction": [k / n for k in ks],
                    "k": [float(k) for k in ks],
                    "top": top[i].tolist(),
                    "random": rand[i].tolist(),
                },
                faithfulness=float(np.mean(rand[i] - top[i])),
                seconds=None,
                config={
                    "target": "logit difference",
                    "complete": True,
                    "exact": "Euler: bias-free ReLU RNN is homogeneous",
                    "neutral_token": "0.0",
                    "layer_profile_norm": "max_abs",
                    "seed": seed,
                },
            )
        )
    return rows
