"""Non-linear probes on stored activations: a small MLP, gradient-boosted trees, k nearest neighbours.

Each fits its preprocessing (standardisation, PCA) on the train split only, learns on train, and
chooses its hyperparameters (and when to stop) by AUC on the val split, so that a failure that is
a non-linear function of the activations (a conjunction, clusters) is found where a linear probe
sees none. The test split is scored once, with the chosen setting.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.preprocessing import StandardScaler

from wif_core.errors import InputError
from wif_core.explainers.base import Explainer, RunFacts, View
from wif_core.explainers.probe import AcrossLayers, site_features
from wif_core.metrics import roc_auc_score

MLP_DIMS = 128  # principal components an MLP reads (at most; fewer when train has fewer items)
MLP_HIDDEN = (32, 128)
MLP_ALPHA = (1e-3, 1e-1, 10.0)  # scikit-learn's L2 penalty
MLP_LR = 1e-2
MLP_STEPS = 1000  # full-batch Adam steps at most
MLP_CHECK = 5  # steps between val checks
MLP_PATIENCE = 10  # val checks without a better val AUC before stopping
GBDT_DIMS = 32
GBDT_STEP = 10  # boosting iterations between val checks
GBDT_MAX_ITER = 500
GBDT_PATIENCE = 60  # iterations without a better val AUC before stopping
KNN_K = (5, 10, 25, 50, 100, 200)

F = TypeVar("F", bound=Callable[..., Any])


def single_threaded(method: F) -> F:
    """Run ``method`` with one BLAS/OpenMP thread: on matrices this small, threads only contend, and on a
    busy machine several spinning threads make an SVD or a boosting round ten times slower."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass
class Reducer:
    """Standardisation and a whitened PCA, both fitted on the train split."""

    scaler: Any
    pca: Any

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.pca.transform(self.scaler.transform(X)), dtype=np.float32)

    @property
    def dims(self) -> int:
        return int(self.pca.n_components_)

    @property
    def explained_variance(self) -> float:
        return float(self.pca.explained_variance_ratio_.sum())


def fit_reducer(X: np.ndarray, dims: int, seed: int) -> Reducer:
    """Standardise ``X`` (train) and keep its ``dims`` leading principal components, whitened."""
    scaler = StandardScaler().fit(X)
    n = max(1, min(dims, X.shape[0] - 1, X.shape[1]))
    pca = PCA(n_components=n, whiten=True, random_state=seed).fit(scaler.transform(X))
    return Reducer(scaler, pca)


def _positive_int(name: str, explainer: str, value: Any) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        out = 0
    if out < 1:
        raise InputError(f"{explainer}: {name} must be a positive whole number, not '{value}'")
    return out


class _ActivationExplainer(Explainer):
    """Features of one layer (``--layer``) at one site, or of several layers side by side."""

    uses_layer = True
    sites: ClassVar[tuple[str, ...]] = ("last", "mean", "choice")

    def _layers(self, view: View) -> list[int]:
        assert self.layer is not None
        return [self.layer]

    def _features(self, view: View) -> np.ndarray:
        site = self.site or self.sites[0]
        return np.concatenate([site_features(view, layer, site) for layer in self.layers_], axis=1)

    def _start(self, train: View) -> None:
        self.layers_ = self._layers(train)


# ---- MLP -----------------------------------------------------------------------------------------


@dataclass
class _Mlp:
    """A fitted one-hidden-layer MLP: ``relu(x · w1 + b1) · w2 + b2`` is the failure logit."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float

    def logit(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(np.maximum(X @ self.w1 + self.b1, 0) @ self.w2 + self.b2)


def _train_mlp(
    X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, *, hidden: int, alpha: float, seed: int
) -> tuple[_Mlp, float, int]:
    """Full-batch Adam on the logistic loss plus ``alpha``/2n ‖W‖² (scikit-learn's L2 penalty), from
    Glorot-uniform weights; checked on val every ``MLP_CHECK`` steps, and the weights with the best val AUC
    are kept (early stopping: ``MLP_PATIENCE`` checks without a better one)."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    bound1, bound2 = np.sqrt(6 / (d + hidden)), np.sqrt(6 / (hidden + 1))
    params = [
        rng.uniform(-bound1, bound1, (d, hidden)).astype(np.float32),
        np.zeros(hidden, dtype=np.float32),
        rng.uniform(-bound2, bound2, hidden).astype(np.float32),
        np.zeros(1, dtype=np.float32),
    ]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    yf = y.astype(np.float32)
    best: tuple[float, _Mlp | None, int] = (-1.0, None, 0)
    for step in range(1, MLP_STEPS + 1):
        w1, b1, w2, b2 = params
        z = X @ w1 + b1
        h = np.maximum(z, 0)
        p = 1 / (1 + np.exp(-(h @ w2 + b2[0])))
        g = (p - yf) / n  # d loss / d logit
        gz = np.outer(g, w2) * (z > 0)
        grads = [X.T @ gz + alpha / n * w1, gz.sum(0), h.T @ g + alpha / n * w2, np.array([g.sum()])]
        for k, (param, grad) in enumerate(zip(params, grads, strict=True)):
            m, v = moments[k]
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad**2
            param -= MLP_LR * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        if step % MLP_CHECK:
            continue
        net = _Mlp(w1, b1, w2, float(b2[0]))
        auc = roc_auc_score(yv, net.logit(Xv))
        if auc > best[0]:
            best = (auc, _Mlp(w1.copy(), b1.copy(), w2.copy(), float(b2[0])), step)
        elif step - best[2] >= MLP_PATIENCE * MLP_CHECK:
            break
    assert best[1] is not None
    return best[1], best[0], best[2]


class MlpProbe(_ActivationExplainer):
    """A one-hidden-layer MLP on the train split's leading principal components of one layer and site.

    Hidden size and L2 penalty come from a small grid; each is trained (full-batch Adam) with early
    stopping on the val AUC, and the (size, penalty, step) with the best val AUC is kept.
    """

    name = "mlp-probe"
    tier = "input"
    summary = "one-hidden-layer MLP on standardised, PCA-reduced activations; size, L2 and steps chosen on val"
    options: ClassVar[tuple[str, ...]] = ("dims",)

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"layer": layer, "site": s} for s in ("last", "mean") if s in run.sites for layer in run.layers]

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        settings = dict(settings)
        if "dims" in settings:
            settings["dims"] = _positive_int("dims", cls.name, settings["dims"])
        return settings

    @single_threaded
    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> MlpProbe:
        self._start(train)
        X = self._features(train)
        self.reducer_ = fit_reducer(X, int(self.settings.get("dims", MLP_DIMS)), self.seed)
        Xt, Xv = self.reducer_.transform(X), self.reducer_.transform(self._features(val))
        self.val_auc_: dict[str, float] = {}
        self.steps_: dict[str, int] = {}
        best: tuple[float, _Mlp | None, str] = (-1.0, None, "")
        for hidden in MLP_HIDDEN:
            for alpha in MLP_ALPHA:
                net, auc, steps = _train_mlp(Xt, y_train, Xv, y_val, hidden=hidden, alpha=alpha, seed=self.seed)
                key = f"hidden={hidden} alpha={alpha:g}"
                self.val_auc_[key], self.steps_[key] = auc, steps
                if auc > best[0]:
                    best = (auc, net, key)
        assert best[1] is not None
        self.net_, self.chosen_ = best[1], best[2]
        return self

    @single_threaded
    def predict_proba(self, test: View) -> np.ndarray:
        return 1 / (1 + np.exp(-self.net_.logit(self.reducer_.transform(self._features(test)))))

    def explain(self) -> dict[str, Any]:
        hidden, alpha = (part.split("=")[1] for part in self.chosen_.split())
        return {
            "layers": self.layers_,
            "pca_dims": self.reducer_.dims,
            "pca_explained_variance": self.reducer_.explained_variance,
            "chosen": {"hidden": int(hidden), "alpha": float(alpha), "steps": self.steps_[self.chosen_]},
            "val_auc": self.val_auc_[self.chosen_],
            "val_auc_by_setting": self.val_auc_,
            "steps_by_setting": self.steps_,
        }


class MlpAllLayersProbe(AcrossLayers, MlpProbe):
    """The MLP probe over every collected layer at a site (or those in the ``layers`` setting), side by side
    before the PCA."""

    name = "mlp-probe-all-layers"
    summary = "the MLP probe over all collected layers (or --set layers=…) at site last or mean"
    uses_layer = False
    sites = ("last", "mean")
    options = ("dims", "layers")

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        settings = super().resolve_settings(run, layer, settings)
        if "layers" in settings:
            raw = settings["layers"]
            parts = raw.split(",") if isinstance(raw, str) else list(raw)
            try:
                layers = sorted({int(p) for p in parts if str(p).strip()})
            except ValueError:
                layers = []
            if len(layers) < 2 or any(x not in run.layers for x in layers):
                raise InputError(
                    f"{cls.name}: layers must be two or more of the run's collected layers {run.layers}, not '{raw}'"
                )
            settings["layers"] = layers
        return settings

    def _layers(self, view: View) -> list[int]:
        return list(self.settings.get("layers") or view.layers)


# ---- gradient-boosted trees ----------------------------------------------------------------------


class GbdtProbe(_ActivationExplainer):
    """Histogram gradient boosting on the train split's leading principal components of one layer and site.

    Trees are added ``GBDT_STEP`` at a time; the number of iterations with the best val AUC is kept
    (early stopping on val, at most ``GBDT_MAX_ITER``).
    """

    name = "gbdt-probe"
    tier = "input"
    summary = "gradient-boosted trees on PCA-reduced activations; the number of trees chosen on val"
    options = ("dims",)

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"layer": layer, "site": s} for s in ("last", "mean") if s in run.sites for layer in run.layers]

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        if "dims" in settings:
            settings = {**settings, "dims": _positive_int("dims", cls.name, settings["dims"])}
        return settings

    @single_threaded
    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> GbdtProbe:
        self._start(train)
        X = self._features(train)
        self.reducer_ = fit_reducer(X, int(self.settings.get("dims", GBDT_DIMS)), self.seed)
        Xt, Xv = self.reducer_.transform(X), self.reducer_.transform(self._features(val))
        self.model_ = HistGradientBoostingClassifier(
            learning_rate=0.05,
            max_iter=GBDT_STEP,
            max_leaf_nodes=15,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=False,
            warm_start=True,
            random_state=self.seed,
        )
        self.val_auc_: dict[int, float] = {}
        best = (-1.0, 0)
        while True:
            self.model_.fit(Xt, y_train)
            n = int(self.model_.max_iter)
            self.val_auc_[n] = roc_auc_score(y_val, self.model_.decision_function(Xv))
            if self.val_auc_[n] > best[0]:
                best = (self.val_auc_[n], n)
            if n - best[1] >= GBDT_PATIENCE or n >= GBDT_MAX_ITER:
                break
            self.model_.set_params(max_iter=n + GBDT_STEP)
        self.n_trees_ = best[1]
        return self

    @single_threaded
    def predict_proba(self, test: View) -> np.ndarray:
        X = self.reducer_.transform(self._features(test))
        for n, logit in enumerate(self.model_.staged_decision_function(X), 1):
            if n == self.n_trees_:
                return np.asarray(1 / (1 + np.exp(-logit)))
        raise AssertionError("fewer trees than chosen")  # the model holds at least n_trees_

    def explain(self) -> dict[str, Any]:
        return {
            "layers": self.layers_,
            "pca_dims": self.reducer_.dims,
            "pca_explained_variance": self.reducer_.explained_variance,
            "n_trees": self.n_trees_,
            "val_auc": self.val_auc_[self.n_trees_],
            "val_auc_by_trees": self.val_auc_,
        }


# ---- k nearest neighbours ------------------------------------------------------------------------


class Knn(_ActivationExplainer):
    """The failure rate among an item's k most similar train items (cosine on standardised activations).

    The train items are the memory; k is chosen on val.
    """

    name = "knn"
    tier = "input"
    summary = "failure rate of the k nearest train items (cosine, standardised activations), k chosen on val"

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"layer": layer, "site": s} for s in cls.sites if s in run.sites for layer in run.layers]

    def _unit(self, view: View) -> np.ndarray:
        Z = (self._features(view) - self.mean_) / self.std_
        return np.asarray(Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12), dtype=np.float32)

    def _rates(self, view: View, ks: list[int]) -> dict[int, np.ndarray]:
        """Failure rate among the ``k`` nearest train items, for each k."""
        sims = self._unit(view) @ self.memory_.T
        kmax = min(max(ks), sims.shape[1])
        near = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]  # the kmax nearest, unordered
        order = np.take_along_axis(near, np.argsort(-np.take_along_axis(sims, near, axis=1), axis=1), axis=1)
        cum = np.cumsum(self.y_[order], axis=1)
        return {k: cum[:, k - 1] / k for k in ks}

    @single_threaded
    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> Knn:
        self._start(train)
        X = self._features(train)
        self.mean_, self.std_ = X.mean(0), X.std(0) + 1e-6
        self.memory_ = self._unit(train)
        self.y_ = np.asarray(y_train, dtype=np.float32)
        ks = [k for k in KNN_K if k <= len(train)] or [len(train)]
        self.val_auc_ = {k: roc_auc_score(y_val, s) for k, s in self._rates(val, ks).items()}
        self.k_ = max(self.val_auc_, key=lambda k: (self.val_auc_[k], -k))
        return self

    @single_threaded
    def predict_proba(self, test: View) -> np.ndarray:
        return self._rates(test, [self.k_])[self.k_]

    def explain(self) -> dict[str, Any]:
        return {
            "layers": self.layers_,
            "k": self.k_,
            "memory": len(self.y_),
            "train_failure_rate": float(self.y_.mean()),
            "val_auc": self.val_auc_[self.k_],
            "val_auc_by_k": self.val_auc_,
        }
