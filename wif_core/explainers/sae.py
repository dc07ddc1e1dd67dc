"""A sparse probe on SAE features: which few sparse features predict failure on unseen items.

The run's SAE at a layer (trained with ``wif sae train`` or added with ``wif sae add``) encodes
every token of an item's listing prompt; an item's feature activation is the maximum over its
tokens. On train, features are ranked by their single-feature AUC (``|AUC − 0.5|``); a
standardised logistic probe is fitted on the top k, with k in ``K_GRID`` and C chosen on val.
Input tier: the listing prompt's tokens never see the answer key or the model's answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.explainers.base import Explainer, RunFacts, View
from wif_core.explainers.linear import FittedLogistic, fit_logistic

K_GRID = (8, 16, 32, 64, 128)


def _train_cmd(run: RunFacts, layer: int) -> str:
    return f"`wif sae train --run {run.run_id} --layer {layer}`"


class SaeProbe(Explainer):
    """Logistic probe on the top-k SAE features (max over the listing prompt's tokens), k tuned on val."""

    name = "sae"
    tier = "input"
    summary = "sparse probe on the top-k SAE features (max over tokens), features ranked by train AUC, k tuned on val"
    uses_layer = True
    sites = ("tokens",)
    options = ("k",)

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        from wif_core.sae.paths import available

        if not run.token_layers:
            return f"run {run.run_id} kept no per-token activations, so it has no SAE (collect with --token-layers)"
        saes = available(run.store_path, run.run_id)
        if layer is None:
            return f"{cls.name} needs --layer (layers with an SAE: {list(saes) or 'none'})"
        if layer not in run.token_layers:
            return f"run {run.run_id} has per-token activations at layers {run.token_layers}, not {layer}"
        if layer not in saes:
            return f"run {run.run_id} has no SAE at layer {layer}; train one with {_train_cmd(run, layer)}"
        return None

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        from wif_core.sae.paths import available

        saes = available(run.store_path, run.run_id)
        return [{"layer": layer, "site": "tokens"} for layer in run.token_layers if layer in saes]

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        """Name the SAE file and its version, so a retrained SAE is never answered from the result cache."""
        from wif_core.sae.paths import fingerprint, sae_dir

        if run.store_path is None or layer is None:
            return settings
        path = sae_dir(run.store_path, run.run_id, layer)
        return {**settings, "sae": str(path.resolve()), "sae_version": fingerprint(path)}

    # -- features ------------------------------------------------------------------------
    def _features(self, view: View) -> np.ndarray:
        """``[n, d_sae]``: each feature's max activation over an item's tokens."""
        from wif_core.sae.codes import encode_items

        return encode_items(self.sae_, view.item_ids, view.token_acts(self.layer_), self.max_norm_).item_max()

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> SaeProbe:
        from wif_core.sae.codes import sink_threshold
        from wif_core.sae.diff import feature_table
        from wif_core.sae.load import load_sae
        from wif_core.sae.paths import sae_info

        if self.layer is None or "sae" not in self.settings:
            raise InputError(f"{self.name} needs a layer with an SAE (see `wif sae train`)")
        self.layer_ = int(self.layer)
        path = str(self.settings["sae"])
        info = sae_info(path)
        self.sae_ = load_sae(path)
        tokens = train.token_acts(self.layer_)
        width = tokens[0].shape[1] if tokens else info.d_in
        if info.d_in != width:
            raise InputError(f"the SAE at {path} reads vectors of width {info.d_in}; these activations have {width}")
        self.max_norm_ = info.max_norm
        if self.max_norm_ is None:
            self.max_norm_ = sink_threshold(np.concatenate([t.astype(np.float32) for t in tokens]))
        X_train, X_val = self._features(train), self._features(val)
        table = feature_table(X_train, y_train)
        live = np.flatnonzero((X_train > 0).any(0))
        if not len(live):
            raise InputError(f"no feature of the SAE at {path} fires on a train item")
        order = live[np.argsort(-np.abs(table["auc"][live] - 0.5), kind="stable")]
        grid = [int(self.settings["k"])] if "k" in self.settings else [k for k in K_GRID if k <= len(order)]
        grid = grid or [len(order)]
        self.val_auc_by_k_: dict[int, float] = {}
        best: tuple[float, int, FittedLogistic] | None = None
        for k in grid:
            cols = order[:k]
            fitted = fit_logistic(X_train[:, cols], y_train, X_val[:, cols], y_val, seed=self.seed)
            score = max(fitted.val_auc.values()) if fitted.val_auc else float("nan")
            self.val_auc_by_k_[k] = score
            if best is None or score > best[0]:
                best = (score, k, fitted)
        assert best is not None
        _, self.k_, self.fit_ = best
        self.features_ = order[: self.k_]
        self.train_auc_ = table["auc"][self.features_]
        self.freq_fail_ = table["freq_fail"][self.features_]
        self.freq_success_ = table["freq_success"][self.features_]
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self.fit_.predict(self._features(test)[:, self.features_])

    def explain(self) -> dict[str, Any]:
        w = self.fit_.weights
        order = np.argsort(-np.abs(w))[:15]
        return {
            "k": int(self.k_),
            "C": self.fit_.C,
            "val_auc_by_k": {str(k): v for k, v in self.val_auc_by_k_.items()},
            "top_weights": [
                {
                    "feature": f"f{int(self.features_[i])}",
                    "weight": float(w[i]),
                    "train_auc": float(self.train_auc_[i]),
                    "freq_fail": float(self.freq_fail_[i]),
                    "freq_success": float(self.freq_success_[i]),
                }
                for i in order
            ],
        }
