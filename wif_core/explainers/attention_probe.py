"""Attention probe (McKenzie et al. 2025): learned attention pooling over token positions.

For the per-token residual stream h_1..h_T of the listing prompt at one layer, each head
scores P(failure) as ``Σ_t softmax_t(q·h_t) (w·h_t)``; the heads' outputs are summed with
a bias. Trained with AdamW on binary cross-entropy; the epoch with the best validation AUC
is kept. Features are standardised with the train tokens' mean and spread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wif_core.explainers.base import Explainer, RunFacts, View
from wif_core.metrics import roc_auc_score


class _AttentionPool(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.query = torch.nn.Linear(d, heads, bias=False)
        self.value = torch.nn.Linear(d, heads, bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(1))
        torch.nn.init.zeros_(self.query.weight)  # start as mean pooling

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.query(x).masked_fill(~mask[..., None], float("-inf"))  # [B, T, H]
        attn = torch.softmax(scores, dim=1)
        logit = (attn * self.value(x)).sum(dim=(1, 2)) + self.bias
        return logit, attn


F16_MAX = 65504.0


def _finite(s: np.ndarray) -> np.ndarray:
    """Per-token activations as float32 with float16 overflow (±inf: Gemma 3's sink token exceeds 65504) clipped
    to the float16 range and NaN as 0, so one overflowed position cannot turn every score into NaN."""
    return np.nan_to_num(s.astype(np.float32), nan=0.0, posinf=F16_MAX, neginf=-F16_MAX)


def _pad(seqs: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in seqs)
    x = np.zeros((len(seqs), longest, seqs[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(seqs), longest), dtype=bool)
    for n, s in enumerate(seqs):
        x[n, : len(s)] = (_finite(s) - mean) / std
        mask[n, : len(s)] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


class AttentionProbe(Explainer):
    """Attention-pooled linear probe over the listing prompt's tokens at one layer."""

    name = "attention-probe"
    tier = "input"
    summary = "learned attention pooling over token positions (McKenzie et al. 2025)"
    uses_layer = True
    sites = ("tokens",)
    options = ("heads", "epochs", "lr", "weight_decay")

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        if not run.token_layers:
            return f"run {run.run_id} kept no per-token activations (collect with --token-layers)"
        if layer is not None and layer not in run.token_layers:
            return f"run {run.run_id} has per-token activations at layers {run.token_layers}, not {layer}"
        return None

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"layer": layer, "site": "tokens"} for layer in run.token_layers]

    def _batches(self, view: View, order: np.ndarray, size: int):
        seqs = view.token_acts(self.layer_)
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            yield idx, _pad([seqs[i] for i in idx], self.mean_, self.std_)

    def _scores(self, view: View) -> np.ndarray:
        out = np.zeros(len(view))
        self.net_.eval()
        with torch.no_grad():
            for idx, (x, mask) in self._batches(view, np.arange(len(view)), 128):
                out[idx] = self.net_(x, mask)[0].numpy()
        return out

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> AttentionProbe:
        self.layer_ = int(self.layer if self.layer is not None else train.layers[len(train.layers) // 2])
        heads = int(self.settings.get("heads", 1))
        epochs = int(self.settings.get("epochs", 30))
        lr = float(self.settings.get("lr", 1e-3))
        wd = float(self.settings.get("weight_decay", 1e-2))
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        tokens = np.concatenate([_finite(s) for s in train.token_acts(self.layer_)])
        self.mean_ = tokens.mean(0)
        self.std_ = tokens.std(0) + 1e-6
        self.net_ = _AttentionPool(tokens.shape[1], heads)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=lr, weight_decay=wd)
        target = torch.tensor(y_train, dtype=torch.float32)
        best: tuple[float, dict[str, torch.Tensor] | None, int] = (-1.0, None, 0)
        self.history_: list[float] = []
        for epoch in range(epochs):
            self.net_.train()
            for idx, (x, mask) in self._batches(train, rng.permutation(len(train)), 64):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(self.net_(x, mask)[0], target[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            auc = roc_auc_score(y_val, self._scores(val))
            self.history_.append(auc)
            if auc > best[0]:
                best = (auc, {k: v.clone() for k, v in self.net_.state_dict().items()}, epoch)
            elif epoch - best[2] >= 8:  # patience
                break
        assert best[1] is not None
        self.net_.load_state_dict(best[1])
        self.best_epoch_: int = best[2]
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return 1 / (1 + np.exp(-self._scores(test)))

    def explain(self) -> dict[str, Any]:
        return {"layer": self.layer_, "best_epoch": self.best_epoch_, "val_auc_by_epoch": self.history_}

    def attention(self, view: View) -> list[np.ndarray]:
        """Per-item attention weights over the listing prompt's tokens (summed over heads)."""
        out: list[np.ndarray] = [np.zeros(0)] * len(view)
        self.net_.eval()
        with torch.no_grad():
            for idx, (x, mask) in self._batches(view, np.arange(len(view)), 128):
                attn = self.net_(x, mask)[1].sum(-1).numpy()
                for row, i in enumerate(idx):
                    out[i] = attn[row, : int(mask[row].sum())]
        return out
