"""Linear probes on stored activations: the paper's setting, a tuned probe, and all layers at once."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression

from wif_core.explainers.base import Explainer, RunFacts, View
from wif_core.explainers.linear import FittedLogistic, fit_logistic, top_weights


def site_features(view: View, layer: int, site: str) -> np.ndarray:
    """``[n, d]`` features of a site; for ``choice``, the per-choice vectors in option order,
    concatenated, followed by each choice's difference from the first."""
    X = view.acts(layer, site)
    if site != "choice":
        return X
    diffs = [X[:, j] - X[:, 0] for j in range(1, X.shape[1])]
    return np.concatenate([X.reshape(len(X), -1), *diffs], axis=1)


class PaperProbe(Explainer):
    """The paper's released probe: last token of the options-listing prompt,
    ``LogisticRegression(C=100, max_iter=1000)``, no scaling, trained on train only."""

    name = "probe-paper"
    tier = "input"
    summary = "the paper's last-token logistic probe (C=100, no scaling)"
    uses_layer = True
    sites = ("last",)

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"layer": layer, "site": "last"} for layer in run.layers] if "last" in run.sites else []

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> PaperProbe:
        assert self.layer is not None
        self.model_ = LogisticRegression(C=100, max_iter=1000, random_state=self.seed)
        self.model_.fit(train.acts(self.layer, "last"), y_train)
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        assert self.layer is not None
        return self.model_.predict_proba(test.acts(self.layer, "last"))[:, 1]

    def explain(self) -> dict[str, Any]:
        return {"top_weights": top_weights(self.model_.coef_[0])}


class Probe(Explainer):
    """A standardised logistic probe at one layer and site, C chosen on val."""

    name = "probe"
    tier = "input"
    summary = "standardised logistic probe, C tuned on val (sites last, mean, choice)"
    uses_layer = True
    sites = ("last", "mean", "choice")

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"layer": layer, "site": s} for s in cls.sites if s in run.sites for layer in run.layers]

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> Probe:
        assert self.layer is not None and self.site is not None
        self.fit_: FittedLogistic = fit_logistic(
            site_features(train, self.layer, self.site),
            y_train,
            site_features(val, self.layer, self.site),
            y_val,
            seed=self.seed,
        )
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        assert self.layer is not None and self.site is not None
        return self.fit_.predict(site_features(test, self.layer, self.site))

    def explain(self) -> dict[str, Any]:
        return {"C": self.fit_.C, "val_auc_by_C": self.fit_.val_auc, "top_weights": top_weights(self.fit_.weights)}


class AcrossLayers:
    """What an explainer that reads every collected layer side by side at one site needs of a run (a mixin, first
    among the bases): at least two layers at that site; ``--all`` tries site ``last``."""

    name: ClassVar[str]
    sites: ClassVar[tuple[str, ...]]

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        site = site or "last"
        if site not in cls.sites or site not in run.sites or len(run.layers) < 2:
            return f"{cls.name} needs at least two collected layers at site {site} (run has {run.layers})"
        return None

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"site": "last"}] if cls.applicable(run) is None else []


class AllLayersProbe(AcrossLayers, Explainer):
    """One standardised logistic probe over the concatenation of every collected layer at a site."""

    name = "probe-all-layers"
    tier = "input"
    summary = "one probe over all collected layers (site last or mean), C tuned on val"
    sites = ("last", "mean")
    options = ("layers",)

    def _features(self, view: View) -> np.ndarray:
        return np.concatenate([view.acts(layer, self.site or "last") for layer in self.layers_], axis=1)

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> AllLayersProbe:
        self.layers_ = list(self.settings.get("layers") or train.layers)
        self.fit_ = fit_logistic(self._features(train), y_train, self._features(val), y_val, seed=self.seed)
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self.fit_.predict(self._features(test))

    def explain(self) -> dict[str, Any]:
        w = self.fit_.weights.reshape(len(self.layers_), -1)
        share = np.abs(w).sum(1) / np.abs(w).sum()
        return {
            "C": self.fit_.C,
            "weight_share_by_layer": {int(layer): float(s) for layer, s in zip(self.layers_, share, strict=True)},
        }
