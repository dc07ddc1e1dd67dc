"""The deductive accuracy of a 2nd-argmax RNN on two inputs, from its weights alone (no sampling).

With no biases the RNN is positively homogeneous and piecewise linear: scaling the input
by r > 0 scales every hidden state and logit by r. So whether it answers right depends only
on the input's direction θ, and every boundary — a ReLU switching, the logit difference
changing sign, the two inputs swapping order — is a ray through the origin. Between
consecutive boundary rays the answer is constant, and a standard Gaussian in ℝ² puts
mass (angle / 2π) on a wedge. Summing the wedges where the answer is wrong gives the
error rate exactly, up to floating point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wif_core.errors import InputError
from wif_core.zoo.models import ZooModel, ZooRNN

TWO_PI = 2 * math.pi


@dataclass
class Wedge:
    """An arc of input directions [start, end) (radians) on which the model's answer is constant."""

    start: float
    end: float
    correct: bool

    @property
    def mass(self) -> float:
        return (self.end - self.start) / TWO_PI


@dataclass
class Deduction:
    """The exact accuracy, the wedges it sums, and the arithmetic it took."""

    accuracy: float
    error: float
    wedges: list[Wedge]
    flops: int


def _rays(a: float, b: float) -> list[float]:
    """The two directions where ``a·x₁ + b·x₂ = 0`` (none if the form is identically 0)."""
    if a == 0 and b == 0:
        return []
    base = math.atan2(-a, b)  # direction (b, −a)
    return [base % TWO_PI, (base + math.pi) % TWO_PI]


def _logits(W_hi: np.ndarray, W_hh: np.ndarray, W_oh: np.ndarray, x: np.ndarray) -> np.ndarray:
    h = np.maximum(W_hi * x[0], 0.0)
    h = np.maximum(W_hh @ h + W_hi * x[1], 0.0)
    return W_oh @ h


def _linear_pieces(W_hi: np.ndarray, W_hh: np.ndarray, W_oh: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """At direction θ: the step-2 pre-activation and the logit difference as linear forms (coefficients of x₁, x₂)."""
    x1 = math.cos(theta)
    d1 = (W_hi * x1 > 0).astype(float)  # step-1 pattern
    pre = np.stack([W_hh @ (d1 * W_hi), W_hi], axis=1)  # [d, 2]: pre-activation = pre @ (x1, x2)
    d2 = (pre @ np.array([x1, math.sin(theta)]) > 0).astype(float)
    logit = W_oh @ (d2[:, None] * pre)  # [2, 2]
    return pre, logit[0] - logit[1]


def deduce(model: ZooModel) -> Deduction:
    """Exact accuracy of a 2-input 2nd-argmax RNN from its weights (the M2,2 family)."""
    if not isinstance(model, ZooRNN) or model.spec.task != "2nd_argmax" or model.spec.n != 2:
        s = model.spec
        raise InputError(
            f"the deductive estimate covers 2nd-argmax RNNs on n = 2 inputs; model {s.name} is a {s.arch} "
            f"on {s.task} with n = {s.n} (use --method sampling or importance)"
        )
    w = {k: v.double().numpy() for k, v in model.weights().items()}
    W_hi, W_hh, W_oh = w["W_hi"], w["W_hh"], w["W_oh"]
    cuts = {0.0, math.pi / 2, 3 * math.pi / 2, math.pi / 4, 5 * math.pi / 4}  # x₁ = 0 and x₁ = x₂
    for sign in (1.0, -1.0):  # in each half-plane of x₁ the step-1 pattern is fixed
        theta = 0.0 if sign > 0 else math.pi
        pre, _ = _linear_pieces(W_hi, W_hh, W_oh, theta)
        for a, b in pre:
            cuts.update(r for r in _rays(a, b) if math.cos(r) * sign > 0)
    flops = 40 * W_hh.shape[0] * W_hh.shape[0]
    edges = sorted(cuts) + [TWO_PI]
    fine: set[float] = set(edges)
    for lo, hi in zip(edges, edges[1:], strict=False):  # within a piece the logit difference is linear
        _, delta = _linear_pieces(W_hi, W_hh, W_oh, (lo + hi) / 2)
        fine.update(r for r in _rays(*delta) if lo < r < hi)
        flops += 12 * W_hh.shape[0] * W_hh.shape[0]
    points = sorted(fine)
    wedges = []
    for lo, hi in zip(points, points[1:], strict=False):
        mid = (lo + hi) / 2
        x = np.array([math.cos(mid), math.sin(mid)])
        logits = _logits(W_hi, W_hh, W_oh, x)
        pred = int(np.argmax(logits))  # ties go to position 0, as torch's argmax
        wedges.append(Wedge(lo, hi, pred == int(x[0] > x[1])))  # the smaller input is the 2nd largest
        flops += 4 * W_hh.shape[0] * W_hh.shape[0]
    error = math.fsum(wd.mass for wd in wedges if not wd.correct)
    return Deduction(1.0 - error, error, wedges, flops)
