"""Stacking: a logistic meta-model over input-tier explainers' scores, fitted on val by cross-fitting.

Each base explainer is fitted on train (tuning on val as it does alone); a base that reads a layer
is fitted at every collected layer and the layer with the best val AUC is kept. The bases' val
scores (as logits) are the meta-model's features: K folds of val each get scores from a meta-model
fitted on the other folds (the out-of-fold val AUC is the stack's honest val AUC), and the final
meta-model, fitted on all of val, scores the test items. Bases are few (``BASES``) so the cost is
bounded: about twice the cost of one probe per collected layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wif_core.errors import InputError
from wif_core.explainers.base import Explainer, RunFacts, View, get_explainer
from wif_core.explainers.nonlinear import single_threaded
from wif_core.metrics import roc_auc_score

BASES = ("probe", "knn", "text", "surface")
ALLOWED = ("probe", "knn", "mlp-probe", "gbdt-probe", "text", "surface")
FOLDS = 5


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _meta(seed: int) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))


class Stack(Explainer):
    """Logistic stacking of input-tier explainers (the best probe layer, kNN, text, surface)."""

    name = "stack"
    tier = "input"
    summary = (
        "logistic meta-model over input-tier scores (probe and kNN at their best val layer, text, surface), "
        "fitted on val by cross-fitting"
    )
    sites = ("last", "mean")
    options = ("bases",)

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        site = site or "last"
        if site not in cls.sites or site not in run.sites or not run.layers:
            return f"{cls.name} needs activations at site {site} (run has layers {run.layers}, sites {run.sites})"
        if layer is not None and layer not in run.layers:
            return f"run {run.run_id} has no activations at layer {layer} (layers {run.layers})"
        return None

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        site = next((s for s in cls.sites if s in run.sites), None)
        return [{"site": site}] if site and cls.applicable(run, None, site) is None else []

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        if "bases" not in settings:
            return settings
        raw = settings["bases"]
        bases = [b.strip() for b in raw.split(",")] if isinstance(raw, str) else [str(b) for b in raw]
        bases = list(dict.fromkeys(b for b in bases if b))
        if len(bases) < 2 or any(b not in ALLOWED for b in bases):
            raise InputError(f"{cls.name}: bases must be two or more of {', '.join(ALLOWED)}, not '{raw}'")
        return {**settings, "bases": bases}

    def _fit_base(self, name: str, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> None:
        cls = get_explainer(name)
        site = self.site or "last"
        layers = ([self.layer] if self.layer is not None else list(train.layers)) if cls.uses_layer else [None]
        best: tuple[float, Any, np.ndarray, int | None] | None = None
        for layer in layers:
            base = cls(layer=layer, site=site if cls.uses_layer else None, seed=self.seed)
            base.fit(train, y_train, val, y_val)
            scores = np.asarray(base.predict_proba(val), dtype=float)
            auc = roc_auc_score(y_val, scores)
            if best is None or auc > best[0]:
                best = (auc, base, scores, layer)
        assert best is not None
        label = name if best[3] is None else f"{name} L{best[3]}"
        self.bases_.append((label, best[1]))
        self.base_val_auc_[label] = best[0]
        self.val_features_.append(_logit(best[2]))

    @single_threaded
    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> Stack:
        self.bases_: list[tuple[str, Explainer]] = []
        self.base_val_auc_: dict[str, float] = {}
        self.val_features_: list[np.ndarray] = []
        for name in self.settings.get("bases") or BASES:
            self._fit_base(name, train, y_train, val, y_val)
        V = np.column_stack(self.val_features_)
        folds = min(FOLDS, int(np.bincount(y_val, minlength=2).min()))
        if folds < 2:
            raise InputError(f"{self.name}: the val split needs at least 2 items of each outcome to cross-fit")
        self.oof_ = np.zeros(len(y_val))
        for fit_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(V, y_val):
            self.oof_[held_idx] = _meta(self.seed).fit(V[fit_idx], y_val[fit_idx]).predict_proba(V[held_idx])[:, 1]
        self.folds_ = folds
        self.oof_auc_ = roc_auc_score(y_val, self.oof_)
        self.meta_ = _meta(self.seed).fit(V, y_val)
        self.val_ids_ = list(val.item_ids)
        return self

    @single_threaded
    def predict_proba(self, test: View) -> np.ndarray:
        """P(failure) from the meta-model fitted on all of val; on the val split itself, the out-of-fold
        scores, so that a val AUC of the stack is as honest as a test one."""
        if list(test.item_ids) == self.val_ids_:
            return self.oof_.copy()
        X = np.column_stack([_logit(base.predict_proba(test)) for _, base in self.bases_])
        return np.asarray(self.meta_.predict_proba(X)[:, 1])

    def explain(self) -> dict[str, Any]:
        weights = self.meta_[-1].coef_[0]
        return {
            "bases": [label for label, _ in self.bases_],
            "base_val_auc": self.base_val_auc_,
            "val_auc_out_of_fold": self.oof_auc_,
            "folds": self.folds_,
            "meta_weights": {label: float(w) for (label, _), w in zip(self.bases_, weights, strict=True)},
        }
