"""Explainer speed on synthetic data: probe fitting with a C search, and the bootstrap CI."""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import machine, write_section
from wif_core.explainers.linear import C_GRID, fit_logistic
from wif_core.metrics import auc_ci


def _probe_seconds(n: int, d: int, seed: int = 0, reps: int = 3) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d) / np.sqrt(d)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ w + rng.normal(size=n) > 0).astype(int)
    Xv = rng.normal(size=(n // 2, d)).astype(np.float32)
    yv = (Xv @ w + rng.normal(size=n // 2) > 0).astype(int)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fitted = fit_logistic(X, y, Xv, yv)
        best = min(best, time.perf_counter() - t)
    return best, max(fitted.val_auc.values())


def _bootstrap_seconds(n: int = 1000, reps: int = 5) -> float:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(n // 2), np.zeros(n // 2)]
    s = y + rng.normal(size=n)
    auc_ci(y, s)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        auc_ci(y, s, n_resamples=2000)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> dict:
    torch.set_num_threads(2)
    small, small_auc = _probe_seconds(2000, 576)
    large, large_auc = _probe_seconds(2000, 2304)
    boot = _bootstrap_seconds()
    write_section(
        "explainers",
        f"""
## Explainers (issue 3)

Machine: {machine()}. Command: `make bench` (`python -m bench.run`); synthetic data, best of 3.

| measure | goal | measured |
| --- | --- | --- |
| `probe` fit, 2000 × 576 train (+1000 val), search over {len(C_GRID)} values of C | < 2 s | {small:.2f} s (val AUC {small_auc:.3f}) |
| `probe` fit, 2000 × 2304 (Gemma-2 2B width) | < 10 s | {large:.2f} s (val AUC {large_auc:.3f}) |
| bootstrap CI, 2000 stratified resamples over 1000 items | < 0.3 s | {boot:.3f} s |
""",
    )
    return {"probe_576_s": small, "probe_2304_s": large, "bootstrap_s": boot}


if __name__ == "__main__":
    print(main())
