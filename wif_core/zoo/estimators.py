"""Estimators of a zoo model's accuracy, and their mean squared error against the truth as a function of compute.

ARC's challenge: a mechanistic estimate should beat random sampling at equal compute. An
estimator takes a model, a budget (forward passes it may spend) and a seed, and returns an
estimate with the FLOPs it used. ``mse_curve`` scores estimators over weight-noised copies
of a model, each copy's true accuracy known exactly (deduction) or from a far larger sample.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from wif_core.errors import InputError
from wif_core.zoo import ESTIMATORS
from wif_core.zoo.deductive import deduce
from wif_core.zoo.evaluate import BATCH, FastRNN, batch_generator, count_correct_rnn, target_rank
from wif_core.zoo.models import ZooModel, ZooRNN, rnn_from_weights


@dataclass(kw_only=True)
class Estimate:
    """One estimate of a model's accuracy and what it cost."""

    method: str
    accuracy: float
    flops: int
    seconds: float
    budget: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Estimator(Protocol):
    """Anything that estimates a model's accuracy within a budget of forward passes."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def applicable(self, model: ZooModel) -> str | None:
        """None if it can estimate this model, else why not (one line)."""
        ...

    def estimate(self, model: ZooModel, budget: int, seed: int = 0) -> Estimate: ...


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator for an estimator of your own: add it under its unique name."""
    return ESTIMATORS.add(cls.name, cls)


def get_estimator(name: str) -> Estimator:
    """An instance of a registered estimator, or a one-line error listing them."""
    return ESTIMATORS.lookup(name)()


def _rnn_position_task(model: ZooModel, name: str) -> str | None:
    if not isinstance(model, ZooRNN) or target_rank(model.spec.task, model.spec.n) is None:
        return f"{name} works on RNNs for 2nd argmax or argmedian; {model.spec.name} is a {model.spec.arch} on {model.spec.task}"
    return None


class Sampling:
    """Plain Monte Carlo: the fraction right on ``budget`` fresh inputs."""

    name: ClassVar[str] = "sampling"
    summary: ClassVar[str] = "fraction correct on fresh samples (the baseline to beat)"

    def applicable(self, model: ZooModel) -> str | None:
        return _rnn_position_task(model, self.name)

    def estimate(self, model: ZooModel, budget: int, seed: int = 0) -> Estimate:
        why = self.applicable(model)
        if why:
            raise InputError(why)
        assert isinstance(model, ZooRNN)
        w, spec = model.weights(), model.spec
        rank = target_rank(spec.task, spec.n)
        assert rank is not None
        start = time.perf_counter()
        k = count_correct_rnn(
            w["W_hi"],
            w["W_hh"],
            w["W_oh"],
            n=spec.n,
            rank=rank,
            samples=budget,
            seed=seed,
            batch=min(budget, BATCH),
            threads=1,
        )
        return Estimate(
            method=self.name,
            accuracy=k / budget,
            flops=budget * model.flops_per_sample(),
            seconds=time.perf_counter() - start,
            budget=budget,
        )


class Deductive:
    """ARC's wedge computation for M2,2: exact from the weights, no samples."""

    name: ClassVar[str] = "deductive"
    summary: ClassVar[str] = "exact Gaussian measure of the wedges where the answer is wrong (n = 2 only)"
    budgeted: ClassVar[bool] = False

    def applicable(self, model: ZooModel) -> str | None:
        if not isinstance(model, ZooRNN) or model.spec.task != "2nd_argmax" or model.spec.n != 2:
            return f"deductive covers 2nd-argmax RNNs with n = 2; {model.spec.name} has n = {model.spec.n}"
        return None

    def estimate(self, model: ZooModel, budget: int = 0, seed: int = 0) -> Estimate:
        start = time.perf_counter()
        d = deduce(model)
        return Estimate(
            method=self.name,
            accuracy=d.accuracy,
            flops=d.flops,
            seconds=time.perf_counter() - start,
            budget=None,
            detail={"wedges": len(d.wedges)},
        )


class Regions:
    """The activation-region deduction: exact for n ≤ 3 (the M4,3 family), no samples; budget ignored."""

    name: ClassVar[str] = "regions"
    summary: ClassVar[str] = "exact Gaussian measure of the correct activation regions (LP-pruned; n ≤ 3)"
    budgeted: ClassVar[bool] = False

    def applicable(self, model: ZooModel) -> str | None:
        from wif_core.zoo.regions import applicable

        why = applicable(model)
        if why is None and model.spec.n > 3:
            return f"regions is exact for n ≤ 3; {model.spec.name} has n = {model.spec.n} (its regions explode)"
        return why

    def estimate(self, model: ZooModel, budget: int = 0, seed: int = 0) -> Estimate:
        from wif_core.zoo.regions import deduce_regions

        why = self.applicable(model)
        if why:
            raise InputError(why)
        d = deduce_regions(model, seed=seed)
        return Estimate(
            method=self.name,
            accuracy=d.accuracy,
            flops=d.flops,
            seconds=d.seconds,
            budget=None,
            detail={"regions": d.n_regions, "lp_calls": d.lp_calls, "method": d.method},
        )


class StratifiedRegions:
    """Budgeted regions: the heaviest error regions (ranked by a pilot sample) exactly, sampling for the rest."""

    name: ClassVar[str] = "stratified"
    summary: ClassVar[str] = "exact on the regions carrying most error, fresh samples for the rest (n ≤ 3; unbiased)"

    def applicable(self, model: ZooModel) -> str | None:
        return Regions().applicable(model)

    def estimate(self, model: ZooModel, budget: int, seed: int = 0) -> Estimate:
        from wif_core.zoo.regions import stratified_estimate

        why = self.applicable(model)
        if why:
            raise InputError(why)
        assert isinstance(model, ZooRNN)
        start = time.perf_counter()
        s = stratified_estimate(model, budget, seed=seed)
        return Estimate(
            method=self.name,
            accuracy=s.accuracy,
            flops=s.flops,
            seconds=time.perf_counter() - start,
            budget=budget,
            detail={"exact_regions": s.exact_regions, "exact_error": s.exact_error, "rest_samples": s.rest_samples},
        )


class NearTieImportance:
    """Importance sampling of near ties, where 2nd argmax fails: the top two, or the 2nd and 3rd, pulled together.

    A draw x ~ N(0, I) is left alone, or has its largest value M moved to ``s + α(M − s)``
    (s the second largest), or its third largest u moved to ``s − α(s − u)``, the move picked
    from a mixture. Each move keeps the order and is linear in one coordinate, so the mixture's
    density is known in closed form: the weight ``1 / Σⱼ πⱼ rⱼ`` with ``rⱼ = φ(x'ⱼ⁻¹)/(α φ(x'))``
    the density ratio of move j (r = 1 for no move; 0 where its pre-image would reorder the
    inputs) is exact and at most 1/π₀. The estimate of
    the error rate, mean(weight × wrong), is unbiased.
    """

    name: ClassVar[str] = "importance"
    summary: ClassVar[str] = "importance sampling of near ties (top-2 or 2nd–3rd gap shrunk by a mixture of moves)"
    keep: ClassVar[float] = 0.4  # probability of no move: bounds every weight by 1/keep
    alphas: ClassVar[tuple[float, ...]] = (0.3, 0.1)

    def applicable(self, model: ZooModel) -> str | None:
        why = _rnn_position_task(model, self.name)
        if why is None and model.spec.task != "2nd_argmax":
            return f"importance targets the near ties of 2nd argmax; {model.spec.name} is on {model.spec.task}"
        return why

    def extra_flops(self, n: int) -> int:
        return 8 * n + 60  # top-3 search, the move, the weight

    def moves(self, n: int) -> list[tuple[str, float, float]]:
        """(kind, α, probability) of each mixture component; 'top' moves the max, 'third' the third largest."""
        kinds = ["top", "third"] if n >= 3 else ["top"]
        share = (1 - self.keep) / (len(kinds) * len(self.alphas))
        return [("none", 1.0, self.keep)] + [(k, a, share) for k in kinds for a in self.alphas]

    def estimate(self, model: ZooModel, budget: int, seed: int = 0) -> Estimate:
        why = self.applicable(model)
        if why:
            raise InputError(why)
        assert isinstance(model, ZooRNN)
        start = time.perf_counter()
        n = model.spec.n
        moves = self.moves(n)
        probs = torch.tensor([m[2] for m in moves])
        alpha = torch.tensor([m[1] for m in moves], dtype=torch.float64)
        is_top = torch.tensor([m[0] == "top" for m in moves])
        is_third = torch.tensor([m[0] == "third" for m in moves])
        fast = FastRNN.of(model, min(budget, BATCH))
        total, done, i = 0.0, 0, 0
        with torch.inference_mode():
            while done < budget:
                b = min(BATCH, budget - done)
                gen = batch_generator(seed, i)
                x = torch.randn(n, b, generator=gen)
                comp = torch.multinomial(probs, b, replacement=True, generator=gen)
                top = x.topk(min(4, n), dim=0)
                s = top.values[1].double()
                a = alpha[comp]
                m_new = torch.where(is_top[comp], s + a * (top.values[0].double() - s), top.values[0].double())
                x.scatter_(0, top.indices[:1], m_new.float()[None])
                ratio = probs[0].double() * torch.ones(b, dtype=torch.float64)
                m_new = x.gather(0, top.indices[:1])[0].double()  # as stored (float32), for exact weights
                for kind, alpha_j, p_j in moves[1:]:
                    if kind == "top":
                        back = s + (m_new - s) / alpha_j
                        ratio += p_j * torch.exp((m_new**2 - back**2) / 2) / alpha_j
                if n >= 3:
                    u = top.values[2].double()
                    u_new = torch.where(is_third[comp], s - a * (s - u), u)
                    x.scatter_(0, top.indices[2:3], u_new.float()[None])
                    u_new = x.gather(0, top.indices[2:3])[0].double()
                    fourth = top.values[3].double() if n >= 4 else None
                    for kind, alpha_j, p_j in moves[1:]:
                        if kind == "third":
                            back = s - (s - u_new) / alpha_j
                            density = p_j * torch.exp((u_new**2 - back**2) / 2) / alpha_j
                            # the move could only have come from a draw whose third stayed above the fourth
                            ratio += density if fourth is None else density * (back > fourth)
                wrong = ~fast.correct(x, 1)
                total += float((wrong.double() / ratio).sum())
                done += b
                i += 1
        flops = budget * (model.flops_per_sample() + self.extra_flops(n))
        return Estimate(
            method=self.name,
            accuracy=1.0 - total / budget,
            flops=flops,
            seconds=time.perf_counter() - start,
            budget=budget,
        )


# ---- mean squared error versus compute --------------------------------------------------------


def noised_copy(model: ZooRNN, scale: float, seed: int) -> ZooRNN:
    """A copy with Gaussian noise of ``scale`` × each matrix's RMS added to every weight."""
    gen = torch.Generator().manual_seed(seed)
    noisy = {}
    for key, value in model.weights().items():
        rms = float(value.pow(2).mean().sqrt()) or 1.0
        noisy[key] = value + scale * rms * torch.randn(value.shape, generator=gen)
    return rnn_from_weights(model.spec, noisy["W_hi"], noisy["W_hh"], noisy["W_oh"])


def true_accuracy(model: ZooRNN, samples: int, seed: int) -> tuple[float, float, str]:
    """The reference accuracy of a copy: exact where deduction applies (n ≤ 3), else a large sample (with its std error)."""
    if Deductive().applicable(model) is None:
        return deduce(model).accuracy, 0.0, "deductive"
    if Regions().applicable(model) is None:
        from wif_core.zoo.regions import deduce_regions

        return deduce_regions(model).accuracy, 0.0, "regions (exact)"
    rank = target_rank(model.spec.task, model.spec.n)
    assert rank is not None
    w = model.weights()
    k = count_correct_rnn(w["W_hi"], w["W_hh"], w["W_oh"], n=model.spec.n, rank=rank, samples=samples, seed=seed)
    p = k / samples
    return p, math.sqrt(p * (1 - p) / samples), f"sampling ({samples:,} samples)"


@dataclass(kw_only=True)
class CurvePoint:
    """One estimator at one budget: its MSE against the truth over copies × repeats."""

    method: str
    budget: int | None
    flops: float
    mse: float
    n_runs: int
    seconds: float


@dataclass(kw_only=True)
class Curve:
    """MSE versus compute for several estimators on one model's noised copies."""

    model: str
    points: list[CurvePoint]
    copies: int
    repeats: int
    noise: float
    truth: list[float]
    truth_method: str
    truth_stderr: float
    budgets: list[int]
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Curve:
        raw = dict(raw)
        raw["points"] = [CurvePoint(**p) for p in raw["points"]]
        return cls(**raw)


def default_budgets(low: int = 100, high: int = 100_000, per_decade: int = 2) -> list[int]:
    decades = math.log10(high / low)
    steps = int(round(decades * per_decade))
    return sorted({int(round(low * 10 ** (k / per_decade))) for k in range(steps + 1)})


def mse_curve(
    model: ZooRNN,
    methods: list[str],
    budgets: list[int] | None = None,
    copies: int = 8,
    repeats: int = 12,
    noise: float = 0.05,
    truth_samples: int = 4_000_000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Curve:
    """Each method's MSE against each noised copy's true accuracy, per budget, averaged over copies × repeats."""
    budgets = budgets or default_budgets()
    copies_ = [noised_copy(model, noise, seed + 1000 * c) if noise > 0 else model for c in range(copies)]
    truths, errs, how = [], [], ""
    for c, copy in enumerate(copies_):
        truth, stderr, how = true_accuracy(copy, truth_samples, seed=seed + 7_000_000 + c)
        truths.append(truth)
        errs.append(stderr)
    points, skipped = [], {}
    for name in methods:
        est = get_estimator(name)
        why = est.applicable(model)
        if why:
            skipped[name] = why
            continue
        grid: list[int | None] = list(budgets) if getattr(est, "budgeted", True) else [None]
        for budget in grid:
            sq, flops, secs, runs = 0.0, 0.0, 0.0, 0
            for c, copy in enumerate(copies_):
                for r in range(1 if budget is None else repeats):
                    got = est.estimate(copy, budget or 0, seed=seed + 100_000 * c + 1000 * r + 17)
                    sq += (got.accuracy - truths[c]) ** 2
                    flops, secs, runs = flops + got.flops, secs + got.seconds, runs + 1
            points.append(
                CurvePoint(
                    method=name, budget=budget, flops=flops / runs, mse=sq / runs, n_runs=runs, seconds=secs / runs
                )
            )
            if progress:
                progress(f"{name} budget={budget}: mse={sq / runs:.3g}")
    return Curve(
        model=model.spec.name,
        points=points,
        copies=copies,
        repeats=repeats,
        noise=noise,
        truth=truths,
        truth_method=how,
        truth_stderr=float(np.sqrt(np.mean(np.square(errs)))),
        budgets=list(budgets),
        skipped=skipped,
    )
