"""A logistic probe whose regularisation is chosen on the validation split."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from wif_core.metrics import roc_auc_score

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class FittedLogistic:
    """A fitted (scaler, logistic regression) pair and how C was chosen."""

    scaler: StandardScaler | None
    model: LogisticRegression
    C: float
    val_auc: dict[float, float]

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self.scaler.transform(X) if self.scaler is not None else X
        return self.model.predict_proba(X)[:, 1]

    @property
    def weights(self) -> np.ndarray:
        return self.model.coef_[0]


def fit_logistic(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    grid: tuple[float, ...] = C_GRID,
    scale: bool = True,
    seed: int = 0,
    max_iter: int = 1000,
) -> FittedLogistic:
    """Standardise (optionally), fit one logistic regression per C (warm-started, small C first)
    and keep the C with the best validation AUC."""
    scaler = StandardScaler().fit(X_train) if scale else None
    Xt = scaler.transform(X_train) if scaler is not None else X_train
    Xv = scaler.transform(X_val) if scaler is not None and X_val is not None else X_val
    model = LogisticRegression(C=grid[0], max_iter=max_iter, random_state=seed, warm_start=len(grid) > 1)
    scores: dict[float, float] = {}
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in sorted(grid):
            model.set_params(C=C)
            model.fit(Xt, y_train)
            if Xv is None or y_val is None or len(grid) == 1:
                best = (C, np.nan, model.coef_.copy(), model.intercept_.copy())
                continue
            scores[C] = roc_auc_score(y_val, model.decision_function(Xv))
            if best is None or scores[C] > best[1]:
                best = (C, scores[C], model.coef_.copy(), model.intercept_.copy())
    assert best is not None
    model.set_params(C=best[0])
    model.coef_, model.intercept_ = best[2], best[3]
    return FittedLogistic(scaler, model, best[0], scores)


def top_weights(weights: np.ndarray, names: list[str] | None = None, k: int = 15) -> list[dict[str, float | str]]:
    """The ``k`` largest-magnitude weights; positive pushes toward failure."""
    order = np.argsort(-np.abs(weights))[:k]
    return [{"feature": names[i] if names else f"dim {i}", "weight": float(weights[i])} for i in order]
