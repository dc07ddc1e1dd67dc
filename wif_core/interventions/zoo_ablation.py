"""Zoo ablations: silence named hidden neurons of a zoo RNN and measure the accuracy change exactly, on fresh
inputs, against random neurons of the same count.

In the bias-free ReLU RNN ``h_t = relu(W_hh h_{t-1} + x_t W_hi)``, zeroing row i of ``W_hh`` and entry i of
``W_hi`` holds neuron i at 0 at every step: it is the zero-ablation of that neuron, done in the weights, so the
fast evaluator scores the ablated model at full speed. The intact and the ablated model read the same inputs
(the same seeded stream), so their difference is paired per input: the exact McNemar interval of the paired
difference of accuracies. The control draws ``n_random`` sets of as many neurons from the others, each on the
same inputs; the named set's cost is set against that distribution (how many random sets cost as much).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.metrics.auc import DEFAULT_LEVEL

with heavy_imports():
    import torch


@dataclass(kw_only=True)
class Ablation:
    """One set of neurons silenced: its accuracy, and its paired change from the intact model."""

    neurons: list[int]
    accuracy: float
    change: float  # ablated accuracy minus the intact model's, on the same inputs
    change_ci: tuple[float, float]
    broken: int  # inputs the intact model got right and the ablated one wrong
    fixed: int  # the other way round


@dataclass(kw_only=True)
class AblationResult:
    """The named neurons' ablation against random sets of the same size, on ``n`` fresh inputs."""

    model: str
    n: int
    seed: int
    accuracy: float  # intact
    named: Ablation
    random: list[Ablation] = field(default_factory=list)
    ci_level: float = DEFAULT_LEVEL
    p_random: float | None = None  # (1 + random sets costing at least as much) / (1 + sets): a permutation p
    seconds: float = 0.0

    @property
    def random_mean_change(self) -> float | None:
        return float(np.mean([r.change for r in self.random])) if self.random else None


def ablated_weights(
    W_hi: torch.Tensor, W_hh: torch.Tensor, neurons: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``W_hi``, ``W_hh`` with ``neurons`` held at zero (their input weights and recurrent rows zeroed)."""
    hi, hh = W_hi.clone(), W_hh.clone()
    idx = list(neurons)
    hi[idx] = 0.0
    hh[idx, :] = 0.0
    return hi, hh


def _paired_counts(
    weights: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], *, n: int, rank: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per model in ``weights`` (the first the intact one): correct counts, and counts of inputs where the intact
    model was right and it wrong (index 0 of the second array: unused)."""
    from wif_core.zoo.evaluate import BATCH, FastRNN, batch_generator

    fast = [FastRNN(hi, hh, oh, BATCH) for hi, hh, oh in weights]
    correct = np.zeros(len(weights), dtype=np.int64)
    broken = np.zeros(len(weights), dtype=np.int64)
    x_buf = torch.empty(n, BATCH)
    with torch.inference_mode():
        for i in range(math.ceil(samples / BATCH)):
            b = min(BATCH, samples - i * BATCH)
            x = x_buf[:, :b]
            torch.randn(n, b, generator=batch_generator(seed, i), out=x)
            base = fast[0].correct(x, rank).clone()
            correct[0] += int(base.sum())
            for k in range(1, len(fast)):
                ok = fast[k].correct(x, rank)
                correct[k] += int(ok.sum())
                broken[k] += int((base & ~ok).sum())
    return correct, broken


def ablate(
    model: object,
    neurons: Sequence[int],
    *,
    samples: int = 1_000_000,
    n_random: int = 20,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> AblationResult:
    """Silence ``neurons`` of a zoo RNN (a ``ZooRNN`` of a position task) and ``n_random`` random sets of as many
    other neurons, each scored on the same ``samples`` fresh inputs as the intact model."""
    from wif_core.compare import paired_difference
    from wif_core.zoo.evaluate import target_rank
    from wif_core.zoo.models import ZooRNN

    if not isinstance(model, ZooRNN):
        raise InputError("neuron ablation works on the zoo's RNNs; this model is a transformer (no hidden neurons)")
    spec = model.spec
    rank = target_rank(spec.task, spec.n)
    if rank is None:
        raise InputError(f"task {spec.task} answers no position; ablation measures accuracy of position tasks")
    named = sorted(set(int(i) for i in neurons))
    if not named or any(not 0 <= i < spec.hidden for i in named):
        raise InputError(f"--neurons {list(neurons)}: give neuron indices in 0..{spec.hidden - 1} (0-based)")
    others = [i for i in range(spec.hidden) if i not in named]
    if n_random and len(others) < len(named):
        raise InputError(f"{len(named)} named neurons leave only {len(others)} others to draw a random set from")
    rng = np.random.default_rng(seed)
    sets = [named] + [sorted(rng.choice(others, size=len(named), replace=False).tolist()) for _ in range(n_random)]
    w = model.weights()
    weights = [(w["W_hi"], w["W_hh"], w["W_oh"])]
    for s in sets:
        w_hi, w_hh = ablated_weights(w["W_hi"], w["W_hh"], s)
        weights.append((w_hi, w_hh, w["W_oh"]))
    start = time.perf_counter()
    correct, broken = _paired_counts(weights, n=spec.n, rank=rank, samples=samples, seed=seed)
    seconds = time.perf_counter() - start
    ablations = []
    for k, s in enumerate(sets, start=1):
        fixed = int(correct[k] - correct[0] + broken[k])
        diff, lo, hi = paired_difference(fixed, int(broken[k]), samples, level)
        ablations.append(
            Ablation(
                neurons=s,
                accuracy=float(correct[k] / samples),
                change=float(diff),
                change_ci=(float(lo), float(hi)),
                broken=int(broken[k]),
                fixed=fixed,
            )
        )
    rand = ablations[1:]
    p = (1 + sum(r.change <= ablations[0].change for r in rand)) / (1 + len(rand)) if rand else None
    return AblationResult(
        model=spec.name,
        n=samples,
        seed=seed,
        accuracy=float(correct[0] / samples),
        named=ablations[0],
        random=rand,
        ci_level=level,
        p_random=p,
        seconds=seconds,
    )
