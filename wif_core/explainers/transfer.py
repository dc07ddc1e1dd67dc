"""Difficulty transfer: what another model found hard, learned on the train items, applied to unseen items.

Another run of the same task (the imported Gemma-2 2B outcomes, the other embedded model's run)
says which of this run's **train** items it failed (matched by item key). A predictor of that
failure from this run's activations at one layer and site, or from the item's text, is fitted on
those train items and scores this run's test items. It is input-tier at test time: it reads no
outcome of a val or test item, of this run or of the other one. The train view alone holds the
other run's outcomes (``View.other_train_failures``), and a train item whose content is also a val
or test item of this run counts as unseen there. Its regularisation is chosen by cross-validation
within the train items, against the other run's outcomes, so not even this run's val outcomes
are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold

from wif_core.errors import InputError
from wif_core.explainers.base import Explainer, RunFacts, View
from wif_core.explainers.baselines import item_text
from wif_core.explainers.linear import C_GRID, FittedLogistic, fit_logistic, top_weights
from wif_core.explainers.nonlinear import single_threaded
from wif_core.explainers.probe import site_features
from wif_core.metrics import roc_auc_score

FOLDS = 5
MIN_SHARED_PER_CLASS = 3  # of the other run's outcomes on the shared train items: a 3-fold CV of C at least
TEXT_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _cv_logistic(X: Any, y: np.ndarray, grid: tuple[float, ...], *, scale: bool, seed: int) -> tuple[float, dict]:
    """The C of ``grid`` with the best mean AUC over stratified folds of (X, y) (``FOLDS``, or as many as the
    rarer outcome has items), and each C's mean AUC."""
    folds = StratifiedKFold(n_splits=min(FOLDS, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    by_c: dict[float, list[float]] = {c: [] for c in grid}
    for fit_idx, held_idx in folds.split(np.zeros(len(y)), y):
        fitted = fit_logistic(X[fit_idx], y[fit_idx], X[held_idx], y[held_idx], grid=grid, scale=scale, seed=seed)
        for c, auc in fitted.val_auc.items():
            by_c[c].append(auc)
    mean = {c: float(np.mean(v)) for c, v in by_c.items()}
    return max(mean, key=lambda c: (mean[c], -c)), mean


class DifficultyTransfer(Explainer):
    """A logistic predictor of another run's failures on the train items, from this run's activations or text."""

    name = "difficulty-transfer"
    tier = "input"
    summary = (
        "learns another model's failures on the train items only (never an outcome of a val or test item), "
        "from this run's activations (--layer) or the item text, and scores the test items"
    )
    reads_other_train = True
    sites = ("last", "mean", "choice")
    options = ("other_run",)

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        if not any(run.shared_train.get(r, 0) for r in run.other_runs):
            return f"no other run of task {run.task} scored this run's train items: nothing to learn difficulty from"
        if layer is not None:
            site = site or "last"
            if site not in cls.sites:
                return f"{cls.name} works at sites {', '.join(cls.sites)}, not '{site}'"
            if layer not in run.layers or site not in run.sites:
                return f"run {run.run_id} has no activations at layer {layer}, site '{site}' (layers {run.layers})"
        return None

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        """Per other run that shares train items: the text, and the middle collected layer at ``last`` (or ``mean``)."""
        site = next((s for s in ("last", "mean") if s in run.sites), None)
        out: list[dict[str, Any]] = []
        for other in sorted(run.other_runs, key=lambda r: -run.shared_train.get(r, 0)):
            if run.shared_train.get(other, 0):
                out.append({"other_run": other})
                if run.layers and site:
                    out.append({"other_run": other, "layer": run.layers[len(run.layers) // 2], "site": site})
        return out

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        """``other_run`` defaults to the other run of the task that scored the most of this run's train items."""
        other = settings.get("other_run")
        if not other:
            shared = {r: run.shared_train.get(r, 0) for r in run.other_runs}
            other = max(shared, key=lambda r: shared[r], default=None)
        if other not in run.other_runs:
            raise InputError(
                f"{cls.name}: '{other}' is not another run of task {run.task} "
                f"(other runs: {', '.join(run.other_runs) or 'none'})"
            )
        if not run.shared_train.get(str(other), 0):
            raise InputError(f"{cls.name}: run {other} scored none of run {run.run_id}'s train items (matched by key)")
        return {**settings, "other_run": str(other)}

    def _features(self, view: View, fit: bool = False) -> Any:
        if self.layer is None:
            if fit:
                self.vec_ = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000, sublinear_tf=True)
                return self.vec_.fit_transform(item_text(view))
            return self.vec_.transform(item_text(view))
        return site_features(view, self.layer, self.site or "last")

    @single_threaded
    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> DifficultyTransfer:
        """Learn from ``train`` and the other run's outcomes on it; ``val`` and ``y_val`` are not read."""
        other = str(self.settings["other_run"])
        target = train.other_train_failures(other)
        seen = np.isfinite(target)
        y = target[seen].astype(int)
        n_fail = int(y.sum())
        if min(n_fail, len(y) - n_fail) < MIN_SHARED_PER_CLASS:
            raise InputError(
                f"{self.name}: run {other} has {len(y) - n_fail} correct and {n_fail} failed of the "
                f"{len(y)} train items it shares with this run; at least {MIN_SHARED_PER_CLASS} of each are needed"
            )
        X = self._features(train, fit=True)[np.flatnonzero(seen)]
        text = self.layer is None
        grid = TEXT_GRID if text else C_GRID
        self.C_, self.cv_auc_ = _cv_logistic(X, y, grid, scale=not text, seed=self.seed)
        self.fit_: FittedLogistic = fit_logistic(X, y, None, None, grid=(self.C_,), scale=not text, seed=self.seed)
        self.n_matched_, self.other_failure_rate_ = int(seen.sum()), float(y.mean())
        # how far the other model's difficulty is this one's, on the train items (this run's train outcomes)
        self.train_agreement_ = float((y == y_train[seen]).mean())
        self.train_auc_of_other_ = (
            roc_auc_score(y_train[seen], y.astype(float)) if len(set(y_train[seen])) > 1 else None
        )
        return self

    @single_threaded
    def predict_proba(self, test: View) -> np.ndarray:
        return self.fit_.predict(self._features(test))

    def explain(self) -> dict[str, Any]:
        names = list(self.vec_.get_feature_names_out()) if self.layer is None else None
        return {
            "other_run": self.settings["other_run"],
            "features": "text" if self.layer is None else f"activations L{self.layer} {self.site or 'last'}",
            "n_train_matched": self.n_matched_,
            "other_train_failure_rate": self.other_failure_rate_,
            "train_agreement": self.train_agreement_,
            "train_auc_of_other_outcome": self.train_auc_of_other_,
            "C": self.C_,
            "cv_auc_by_C": self.cv_auc_,
            "top_weights": top_weights(self.fit_.weights, names),
            "reads": "the other run's outcomes on train items only; no val or test outcome",
        }
