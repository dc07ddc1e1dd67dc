"""Surprise accounting of a deductive estimate, after ARC's AlgZoo post.

Total surprise = the surprise of the explanation (how unlikely the facts it checks on the
weights are, under a prior that makes each fact a coin toss or a uniform draw) plus the
surprise of the model's true accuracy given what the explanation predicts. How each check
is costed (a stated rule, reconstructed from the post's M2,2 breakdown, not its code):

- a sign (``w > 0``) or a comparison (``a > b``, which side of a line a ray falls): 1 bit;
- a near-equality, "the answer's boundary lies within t of the diagonal x₁ = x₂" inside a
  linear piece of angular width W: log₂(W / 2t) bits (the boundary uniform over the piece
  under the prior); an exact equality costs at most ``FLOAT_BITS`` (a float32 significand);
- the observation: −log₂ P(error ≤ the true error) under the explanation (each near-equal
  boundary uniform within its tolerance), or, for an estimate with a standard error σ,
  −log₂ of the two-sided normal tail of the true accuracy's distance from the estimate.

For two-input 2nd-argmax RNNs the explanation is the wedge argument (``surprise_n2``). For any
other position-task RNN it is the region method (``surprise_regions``): one bit per decision it
made (an LP's feasible-or-not, a piece empty or not), set against the bits of the weights,
which it reads at full precision.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.zoo.deductive import TWO_PI, _linear_pieces, _rays, deduce
from wif_core.zoo.models import ZooModel, ZooRNN
from wif_core.zoo.regions import answer_pieces, applicable, deduce_regions

FLOAT_BITS = 24.0  # the most an equality between float32 weights can cost: their significand
WEIGHT_BITS = 32  # bits per stored weight (float32)
DIAGONALS = (math.pi / 4, 5 * math.pi / 4)  # x₁ = x₂ > 0 and x₁ = x₂ < 0


@dataclass(kw_only=True)
class Term:
    """One check of the explanation, or the observation, and its cost in bits."""

    group: str
    what: str
    bits: float


@dataclass(kw_only=True)
class Surprise:
    """The surprise accounting of one model's deductive estimate: every term, the groups' sums and the total."""

    model: str
    method: str
    terms: list[Term]
    groups: dict[str, float]
    explanation_bits: float
    observation_bits: float
    total_bits: float
    estimate: float
    stderr: float
    truth: float
    parameters: int
    weight_bits: int
    target_error: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finish(terms: list[Term], observation: float, **fields: Any) -> Surprise:
    groups: dict[str, float] = {}
    for t in terms:
        groups[t.group] = groups.get(t.group, 0.0) + t.bits
    groups["observation"] = observation
    explanation = math.fsum(t.bits for t in terms)
    terms = [*terms, Term(group="observation", what="the true accuracy given the explanation", bits=observation)]
    return Surprise(
        terms=terms,
        groups=groups,
        explanation_bits=explanation,
        observation_bits=observation,
        total_bits=explanation + observation,
        **fields,
    )


def _parameters(model: ZooRNN) -> int:
    return sum(int(v.numel()) for v in model.weights().values())


def uniform_sum_cdf(widths: list[float], c: float) -> float:
    """P(U₁ + … + U_k ≤ c) for independent U_i uniform on [0, widths[i]] (exact, by inclusion–exclusion)."""
    widths = [w for w in widths if w > 0]
    if c < 0:
        return 0.0
    if not widths:
        return 1.0
    k = len(widths)
    total = 0.0
    for subset in itertools.product((0, 1), repeat=k):
        shift = sum(w for w, s in zip(widths, subset, strict=True) if s)
        total += (-1) ** sum(subset) * max(c - shift, 0.0) ** k
    return min(1.0, max(0.0, total / (math.factorial(k) * math.prod(widths))))


def _bits(p: float) -> float:
    return math.inf if p <= 0 else max(0.0, -math.log2(p))


def surprise_n2(model: ZooRNN, target_error: float | None = None) -> Surprise:
    """ARC's wedge explanation of a two-input 2nd-argmax RNN, costed check by check.

    The phenomenon is "the error is at most ``target_error``" (default: the model's exact error).
    With the default, each near-equality's tolerance is the boundary's actual distance from the
    diagonal rounded up to a power of two; with a target, the target's error is shared equally
    between the diagonals (never below a boundary's actual distance).
    """
    if not isinstance(model, ZooRNN) or model.spec.task != "2nd_argmax" or model.spec.n != 2:
        raise InputError(f"model {model.spec.name}: the wedge explanation covers 2nd-argmax RNNs on n = 2 inputs")
    w = {k: v.double().numpy() for k, v in model.weights().items()}
    W_hi, W_hh, W_oh = w["W_hi"], w["W_hh"], w["W_oh"]
    terms: list[Term] = []
    for name, value in (("W_hi", W_hi), ("W_hh", W_hh), ("W_oh", W_oh)):
        for idx, v in np.ndenumerate(value):
            terms.append(Term(group="signs", what=f"sign of {name}{list(idx)} ({'+' if v >= 0 else '−'})", bits=1.0))
    cuts = {math.pi / 2, 3 * math.pi / 2}  # x₁ = 0: the step-1 pattern changes
    for sign, theta, diag in ((1.0, 0.0, DIAGONALS[0]), (-1.0, math.pi, DIAGONALS[1])):
        pre, _ = _linear_pieces(W_hi, W_hh, W_oh, theta)
        for i, (a, b) in enumerate(pre):
            rays = [r for r in _rays(a, b) if math.cos(r) * sign > 0]
            cuts.update(rays)
            on_diag = a * math.cos(diag) + b * math.sin(diag)
            if rays and abs(on_diag) > 1e-12 * (abs(a) + abs(b)):
                side = "above" if on_diag > 0 else "below"
                terms.append(
                    Term(
                        group="magnitudes",
                        what=f"x₁ {'>' if sign > 0 else '<'} 0: neuron {i}'s step-2 ray on a fixed side of the "
                        f"diagonal (pre-activation {side} 0 on it)",
                        bits=1.0,
                    )
                )
    edges = sorted(c % TWO_PI for c in cuts)
    pieces = list(zip(edges, edges[1:] + [edges[0] + TWO_PI], strict=True))

    def touches(lo: float, hi: float, g: float) -> bool:
        return any(lo - 1e-12 <= g + k * TWO_PI <= hi + 1e-12 for k in (0, 1))

    for lo, hi in pieces:
        if not any(touches(lo, hi, g) for g in DIAGONALS):
            terms.append(
                Term(
                    group="coefficient comparisons",
                    what=f"piece [{math.degrees(lo):.1f}°, {math.degrees(hi):.1f}°): the logit difference keeps the "
                    "right sign (its zero ray lies outside)",
                    bits=1.0,
                )
            )
    wedges = deduce(model).wedges
    error = math.fsum(x.mass for x in wedges if not x.correct)
    near, widths = [], []
    for g in DIAGONALS:
        k = min(range(len(wedges)), key=lambda j: abs(wedges[j].start - g))
        mass = 0.0
        j = k
        while not wedges[j % len(wedges)].correct and j < k + len(wedges):
            mass += wedges[j % len(wedges)].mass
            j += 1
        j = k - 1
        while not wedges[j % len(wedges)].correct and j > k - len(wedges):
            mass += wedges[j % len(wedges)].mass
            j -= 1
        near.append(mass)
        widths.append(sum(hi - lo for lo, hi in pieces if touches(lo, hi, g)))
    other = max(0.0, error - math.fsum(near))  # wrong wedges away from the diagonal: known exactly
    phenomenon = error if target_error is None else target_error
    tolerances = []
    for g, e, width in zip(DIAGONALS, near, widths, strict=True):
        delta = e * TWO_PI  # the boundary's angle from the diagonal
        if target_error is None:
            t = 2.0 ** math.ceil(math.log2(delta)) if delta > 0 else 0.0
        else:
            t = max(delta, TWO_PI * max(target_error - other, 0.0) / len(DIAGONALS))
        tolerances.append(t)
        bits = FLOAT_BITS if t == 0 else min(FLOAT_BITS, max(0.0, math.log2(width / (2 * t))))
        terms.append(
            Term(
                group="near-equalities",
                what=f"diagonal at {math.degrees(g):.0f}°: the answer's boundary within {t:.3g} rad of it "
                f"(actual {delta:.3g}) in a piece {math.degrees(width):.1f}° wide",
                bits=bits,
            )
        )
    observation = _bits(uniform_sum_cdf([t / TWO_PI for t in tolerances], phenomenon - other))
    return _finish(
        terms,
        observation,
        model=model.spec.name,
        method="wedges (n = 2)",
        estimate=1.0 - error,
        stderr=0.0,
        truth=1.0 - error,
        parameters=_parameters(model),
        weight_bits=WEIGHT_BITS * _parameters(model),
        target_error=target_error,
        notes=[
            "costs per check are this project's reconstruction of ARC's rule (1 bit a sign or comparison, "
            "log2(width / 2·tolerance) a near-equality), not ARC's code"
        ],
    )


def normal_tail_bits(estimate: float, stderr: float, truth: float) -> float:
    """−log₂ P(|A − estimate| ≥ |truth − estimate|) for A ~ N(estimate, stderr²); 0 for an exact hit."""
    gap = abs(truth - estimate)
    if gap <= 1e-12:
        return 0.0
    if stderr <= 0:
        return math.inf
    return _bits(math.erfc(gap / (stderr * math.sqrt(2))))


def surprise_regions(model: ZooModel, max_regions: int = 20_000, truth_samples: int = 1_000_000) -> Surprise:
    """The region method's surprise: a bit per decision it made, and the observation given its estimate.

    For n ≤ 3 the estimate is exact and so is the truth (the same deduction): the observation
    costs nothing. For n ≥ 4 the estimate is QMC with a standard error, and the truth comes from
    ``truth_samples`` fresh samples; their variances add.
    """
    why = applicable(model)
    if why:
        raise InputError(why)
    assert isinstance(model, ZooRNN)
    d = deduce_regions(model, max_regions=max_regions)
    n = model.spec.n
    rank = 1 if model.spec.task == "2nd_argmax" else (n - 1) // 2
    pieces = d.n_regions * len(answer_pieces(np.eye(n), n, rank))
    terms = [
        Term(group="LP decisions", what=f"{d.lp_calls:,} cones tested feasible or not", bits=float(d.lp_calls)),
        Term(group="piece decisions", what=f"{pieces:,} answer pieces of {d.n_regions:,} regions", bits=float(pieces)),
    ]
    truth, truth_se = d.accuracy, 0.0
    if not d.exact:
        from wif_core.zoo.evaluate import evaluate

        acc = evaluate(model, truth_samples, seed=19)
        truth = acc.accuracy or 0.0
        truth_se = math.sqrt(truth * (1 - truth) / truth_samples)
    observation = normal_tail_bits(d.accuracy, math.hypot(d.stderr, truth_se), truth)
    params = _parameters(model)
    return _finish(
        terms,
        observation,
        model=model.spec.name,
        method=f"regions ({d.method})",
        estimate=d.accuracy,
        stderr=d.stderr,
        truth=truth,
        parameters=params,
        weight_bits=WEIGHT_BITS * params,
        notes=[
            f"{d.n_regions:,} regions, {d.lp_calls:,} LPs, {d.flops:.3g} FLOPs, {d.seconds:.2f} s",
            f"the method reads all {params} weights at full precision: charging them adds "
            f"{WEIGHT_BITS * params:,} bits (an upper bound; the decisions alone are the lower figure)",
        ],
    )


def surprise(model: ZooModel, target_error: float | None = None, max_regions: int = 20_000) -> Surprise:
    """The wedge explanation for two-input 2nd-argmax RNNs, else the region method."""
    if isinstance(model, ZooRNN) and model.spec.task == "2nd_argmax" and model.spec.n == 2:
        return surprise_n2(model, target_error)
    if target_error is not None:
        raise InputError(
            f"model {model.spec.name}: --target-error applies to the wedge explanation (2nd argmax, n = 2)"
        )
    return surprise_regions(model, max_regions=max_regions)
