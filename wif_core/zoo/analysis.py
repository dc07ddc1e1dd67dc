"""What the zoo page and the benchmark show: ARC's reference figures, weights in a readable gauge,
a sample of failures with their ground truth, and the cached MSE-vs-compute curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wif_core.zoo.estimators import Curve
from wif_core.zoo.evaluate import Accuracy, predict
from wif_core.zoo.models import ZooModel, ZooRNN
from wif_core.zoo.tasks import get_task, order_factors
from wif_core.zoo.weights import load, zoo_file

# ARC's reported accuracies (AlgZoo post): (low, high) of the range quoted for the model
ARC_FIGURES: dict[str, tuple[float, float, str]] = {
    "2nd_argmax_d2_n2": (1 - 1 / 13_000, 1 - 1 / 13_000, "error ≈ 1/13,000"),
    "2nd_argmax_d4_n3": (0.985, 0.985, "98.5%"),
    "2nd_argmax_d16_n10": (0.948, 0.953, "94.8–95.3%"),
    "handcrafted_2nd_argmax_n2": (1.0, 1.0, "100% (exact)"),
    "handcrafted_2nd_argmax_n10": (0.99, 0.99, "≈ 99%"),
}


def rescaled(model: ZooRNN) -> dict[str, np.ndarray]:
    """The same RNN with each hidden neuron rescaled so its input weight is ±1.

    ReLU commutes with positive scaling, so dividing neuron i by s_i = |W_hi[i]| changes no
    logit: ``W_hh[i, j] · s_j / s_i`` and ``W_oh[:, j] · s_j``. Neurons that ignore the input
    (W_hi = 0) keep their scale.
    """
    w = {k: v.double().numpy() for k, v in model.weights().items()}
    s = np.abs(w["W_hi"])
    s[s == 0] = 1.0
    return {
        "W_hi": w["W_hi"] / s,
        "W_hh": w["W_hh"] * s[None, :] / s[:, None],
        "W_oh": w["W_oh"] * s[None, :],
        "scale": s,
    }


def failure_table(model: ZooModel, samples: int, seed: int = 0) -> pd.DataFrame:
    """Fresh inputs the model gets wrong: the sequence, the true and predicted answer, the margin and the gaps."""
    spec, task = model.spec, get_task(model.spec.task)
    x = task.sample(samples, spec.n, torch.Generator().manual_seed(seed))
    logits = predict(model, x)
    if task.output == "scalar":
        return pd.DataFrame()
    y, pred = task.target(x), logits.argmax(dim=1)
    wrong = (pred != y).numpy()
    out = pd.DataFrame({"sample": np.arange(samples), "true": y.numpy(), "predicted": pred.numpy()})
    top = logits.topk(2, dim=1).values
    out["logit_margin"] = (top[:, 0] - top[:, 1]).numpy()
    if task.inputs == "gaussian":
        for name, values in order_factors(x.double().numpy()).items():
            out[name] = values
    out["inputs"] = [list(map(float, row)) for row in x.numpy().round(4)]
    return out[wrong].reset_index(drop=True)


def curve_path(name: str, zoo_dir: Path | None = None) -> Path:
    """Where a model's MSE-vs-compute curve lives: ``zoo_dir`` first, then the shipped curves."""
    return zoo_file(f"estimates_{name}.json", zoo_dir)


def model_summary(name: str, zoo_dir: Path | None = None) -> dict[str, Any]:
    """What ``wif zoo list`` and the zoo page show of one model: its spec, size, schedule and measured accuracy."""
    model = load(name, zoo_dir)
    s, meta = model.spec, model.spec.meta
    return {
        "name": s.name,
        "task": s.task,
        "n": s.n,
        "hidden": s.hidden,
        "arch": s.arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "handcrafted": bool(meta.get("handcrafted")),
        "steps": meta.get("steps"),
        "train_seconds": meta.get("train_seconds"),
        "seed": meta.get("seed"),
        "accuracy": meta.get("accuracy"),
        "accuracy_ci": meta.get("accuracy_ci"),
        "accuracy_n": meta.get("accuracy_n"),
    }


def accuracy_fields(acc: Accuracy) -> dict[str, Any]:
    """A measured accuracy as a model's metadata stores it."""
    return {
        "accuracy": acc.accuracy,
        "accuracy_ci": [acc.ci_low, acc.ci_high],
        "accuracy_level": acc.level,
        "accuracy_n": acc.n,
        "rmse": acc.rmse,
    }


def load_curve(name: str, zoo_dir: Path | None = None) -> Curve | None:
    """The cached MSE-vs-compute curve of a model (``wif zoo estimate NAME --curve``), or None."""
    path = curve_path(name, zoo_dir)
    if not path.exists():
        return None
    return Curve.from_dict(json.loads(path.read_text()))


def curve_frame(curve: Curve) -> pd.DataFrame:
    """One row per (method, budget): FLOPs, MSE and RMSE, as the plot draws them."""
    frame = pd.DataFrame([p.__dict__ for p in curve.points])
    frame["rmse"] = np.sqrt(frame["mse"])
    return frame


def sampling_advantage(curve: Curve, method: str) -> float | None:
    """Sampling's MSE at the FLOPs ``method`` spent at its largest budget, ÷ the method's MSE there.

    Sampling's MSE is interpolated on log-log axes between its own budgets (it falls as 1/compute), so
    the two are compared at equal compute, as ARC's challenge asks. Above 1: the method beats sampling.
    """
    frame = curve_frame(curve)
    mine = frame[frame["method"] == method]
    base = frame[(frame["method"] == "sampling") & (frame["mse"] > 0)].sort_values("flops")
    if mine.empty or len(base) < 2:
        return None
    row = mine.iloc[-1]
    logs = np.interp(np.log(row["flops"]), np.log(base["flops"]), np.log(base["mse"]), left=np.nan, right=np.nan)
    if np.isnan(logs):  # outside sampling's range: extrapolate with MSE ∝ 1/compute from the nearest end
        end = base.iloc[0] if row["flops"] < base["flops"].iloc[0] else base.iloc[-1]
        logs = np.log(end["mse"] * end["flops"] / row["flops"])
    return float(np.exp(logs) / max(row["mse"], 1e-300))
