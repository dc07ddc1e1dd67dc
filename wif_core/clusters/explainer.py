"""Clusters as an explanation, scored on held-out items like every other explainer.

Train items are clustered in a feature space (k-means, k tuned on val unless given, or
HDBSCAN); each cluster's failure rate on train, shrunk toward the train base rate by
``PRIOR`` pseudo-items, is the P(failure) of every test item that falls in it (the nearest
centroid; for HDBSCAN the cluster of the nearest train item). So a cluster map is judged by
the same held-out AUC as a probe: do failures share a region of the space?

The explainer inherits the tier of its space. ``cluster`` works in the input-tier spaces
(activations, SAE codes, text embeddings); ``cluster-attribution`` in the attribution space,
which is computed from the answer key and the model's answer, so it is ``gold``. Each refuses
the other's spaces.

Nothing from ``wif_core.clusters.spaces`` is imported at module level: this module is imported
while the explainer registry is filled, and must not pull in the store layer in a cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wif_core.clusters import ALGORITHMS
from wif_core.clusters import algorithms as algo
from wif_core.errors import InputError, StoreError
from wif_core.explainers.base import Explainer, RunFacts, View

K_GRID = (2, 3, 4, 5, 6, 8, 10)
K_TOLERANCE = 0.01  # val AUC a larger k must gain over a smaller one to be chosen
PRIOR = 2.0  # pseudo-items at the train base rate added to every cluster's failure rate


def open_store(path: str) -> Any:
    """The store at ``path`` read-only; where this process already holds it for writing (DuckDB allows one
    configuration per file and process), a connection to that same open database instead."""
    from wif_core.store import Store

    try:
        return Store.open(path)
    except StoreError as exc:
        if "different configuration" not in str(exc):
            raise
        return Store.open(path, write=True)


class _Clusters(Explainer):
    """Shared protocol of the cluster explainers; subclasses name their spaces and tier."""

    spaces: ClassVar[tuple[str, ...]] = ()
    sibling: ClassVar[str] = ""  # the explainer that takes the other tier's spaces
    options: ClassVar[tuple[str, ...]] = ("space", "algorithm", "k", "min_cluster_size")

    # -- what a run must hold --------------------------------------------------------
    @classmethod
    def _default_space(cls, run: RunFacts) -> str:
        return cls.spaces[0] if run.layers or len(cls.spaces) == 1 else "text"

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        """Check the space against the tier, fill in what the features are read from and its version."""
        from wif_core.clusters import SPACES
        from wif_core.clusters.spaces import SPACE_TIERS, TEXT_MODEL, embeddings_dir
        from wif_core.sae.paths import available, fingerprint

        out = dict(settings)
        space = str(out.get("space") or cls._default_space(run))
        if space not in SPACES:
            raise InputError(f"{cls.name}: space must be one of {', '.join(cls.spaces)}, not '{space}'")
        if space not in cls.spaces:
            raise InputError(
                f"{cls.name} is {cls.tier}-tier and the {space} space is {SPACE_TIERS[space]}-tier: "
                f"use --explainer {cls.sibling} --set space={space}"
            )
        out["space"] = space
        algorithm = str(out.get("algorithm", "kmeans"))
        if algorithm not in ALGORITHMS:
            raise InputError(f"{cls.name}: algorithm must be one of {', '.join(ALGORITHMS)}, not '{algorithm}'")
        out["algorithm"] = algorithm
        for name in ("k", "min_cluster_size"):
            if out.get(name) is not None:
                try:
                    out[name] = int(out[name])
                except ValueError:
                    raise InputError(f"{cls.name}: {name} must be a whole number, not '{out[name]}'") from None
        if out.get("k") is not None and not 2 <= out["k"] <= algo.K_LIMIT:
            raise InputError(
                f"{cls.name}: k={out['k']} is out of range: use 2..{algo.K_LIMIT}, or leave it out to tune k on val"
            )
        if space == "activations":
            if layer is None or layer not in run.layers:
                raise InputError(f"{cls.name} on activations needs --layer (collected layers: {run.layers or 'none'})")
        elif space == "sae":
            saes = available(run.store_path, run.run_id)
            if layer is None or layer not in saes:
                raise InputError(
                    f"{cls.name} on SAE codes needs --layer with an SAE (layers with one: "
                    f"{list(saes) or 'none'}; see `wif sae train`)"
                )
            out |= {"sae": str(saes[layer].resolve()), "sae_version": fingerprint(saes[layer])}
        elif space == "text":
            cache = str(embeddings_dir(run.store_path) / run.run_id) if run.store_path else None
            out |= {"model": TEXT_MODEL, "embeddings": cache}
        else:
            out |= cls._attribution_source(run, out.get("method"))
        return out

    @classmethod
    def _attribution_source(cls, run: RunFacts, method: Any) -> dict[str, Any]:
        from wif_core.clusters.spaces import _attribution_settings

        if run.store_path is None:
            raise InputError(f"{cls.name} reads attributions from the store; give it a store path")
        store = open_store(run.store_path)
        try:
            found = _attribution_settings(store, run.run_id, None if method is None else str(method))
            frame = store.items(run.run_id, include_excluded=False)
            wanted = set(frame.loc[frame["split"].isin(["train", "val", "test"]), "item_id"])
            have = {r.item_id for r in store.attributions(run.run_id, found["method"], sorted(wanted))}
        finally:
            store.close()
        if have != wanted:
            # which items were attributed must not depend on their outcome: `--failures-only` would let the
            # mere presence of an attribution give the failures away
            raise InputError(
                f"{cls.name} needs attributions of every evaluated item; {len(have)} of {len(wanted)} "
                f"have {found['method']} ones: store the rest with `wif attribute --run {run.run_id}` "
                "(without --failures-only)"
            )
        return {**found, "store": str(Path(run.store_path).resolve()), "run_id": run.run_id}

    # -- features --------------------------------------------------------------------
    def _features(self, view: View, fit: bool = False) -> np.ndarray:
        space = self.settings["space"]
        if space == "activations":
            from wif_core.clusters.spaces import flatten_site

            assert self.layer is not None
            return flatten_site(view.acts(self.layer, self.site or "last"))
        if space == "sae":
            return self._sae_features(view, fit)
        if space == "text":
            from wif_core.clusters.spaces import embed_texts, item_text

            where = self.settings.get("embeddings")
            texts = [item_text(c, ch) for c, ch in zip(view.contexts, view.choices, strict=True)]
            return embed_texts(
                texts, view.item_ids, Path(where).parent if where else None, Path(where).name if where else "texts"
            )
        return self._attribution_features(view, fit)

    def _sae_features(self, view: View, fit: bool) -> np.ndarray:
        """Item-level SAE codes (max over tokens): from the codes cache beside the SAE when it covers the
        items and matches the SAE's version, else encoded from the view's token activations."""
        from wif_core.sae.codes import FeatureCodes, encode_items, sink_threshold
        from wif_core.sae.paths import CODES_FILE, sae_info

        path = Path(self.settings["sae"])
        info = sae_info(path)
        if fit:
            self.codes_ = None
            if (path / CODES_FILE).is_file():
                try:
                    codes = FeatureCodes.load(path / CODES_FILE)
                    if codes.fingerprint == info.fingerprint:
                        self.codes_ = (codes.index(), codes.item_max())
                except (OSError, KeyError, ValueError):
                    pass
        if self.codes_ is not None and all(i in self.codes_[0] for i in view.item_ids):
            X = self.codes_[1][[self.codes_[0][i] for i in view.item_ids]]
        else:
            from wif_core.sae.load import load_sae

            assert self.layer is not None
            if getattr(self, "sae_", None) is None:
                self.sae_ = load_sae(path)
            tokens = view.token_acts(self.layer)
            if fit:
                self.max_norm_ = info.max_norm
                if self.max_norm_ is None and tokens:
                    self.max_norm_ = sink_threshold(np.concatenate([t.astype(np.float32) for t in tokens]))
            X = encode_items(self.sae_, view.item_ids, tokens, self.max_norm_).item_max()
        if fit:
            self.live_ = np.flatnonzero((X > 0).any(0))
            if not len(self.live_):
                raise InputError(f"no feature of the SAE at {path} fires on a train item")
        return X[:, self.live_]

    def _attribution_features(self, view: View, fit: bool) -> np.ndarray:
        from wif_core.clusters.spaces import SPACE_TIERS, attribution_features

        if view.tier != SPACE_TIERS["attribution"]:
            raise InputError(f"attribution profiles need the answer key: a {view.tier}-tier view may not read them")
        store = open_store(self.settings["store"])
        try:
            rows = store.attributions(self.settings["run_id"], self.settings["method"], view.item_ids)
        finally:
            store.close()
        if fit:
            if not rows:
                raise InputError(
                    f"no train item of run {self.settings['run_id']} has attributions: compute them "
                    f"with `wif attribute --run {self.settings['run_id']}`"
                )
            seen = {s for r in rows for s in r.segments}
            from wif_core.clusters.spaces import SEGMENT_ORDER

            self.segments_ = [s for s in SEGMENT_ORDER if s in seen] + sorted(seen - set(SEGMENT_ORDER))
            self.width_ = attribution_features(rows, self.segments_)[0].shape[1]
        X_rows, _ = attribution_features(rows, self.segments_)
        X = np.zeros((len(view), self.width_))  # every evaluated item has attributions (checked when resolved)
        index = {i: n for n, i in enumerate(view.item_ids)}
        w = min(self.width_, X_rows.shape[1])
        for r, row in zip(rows, X_rows, strict=True):
            X[index[r.item_id], :w] = row[:w]
        return X

    # -- the protocol ----------------------------------------------------------------
    def _assign(self, Z: np.ndarray) -> np.ndarray:
        return algo.nearest(Z, self.ref_, self.ref_labels_)

    def _rates(self, labels: np.ndarray, y: np.ndarray) -> dict[int, float]:
        return {
            int(c): float((y[labels == c].sum() + PRIOR * self.base_rate_) / ((labels == c).sum() + PRIOR))
            for c in np.unique(labels)
        }

    def _score(self, Z: np.ndarray) -> np.ndarray:
        return np.array([self.rates_.get(int(c), self.base_rate_) for c in self._assign(Z)])

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> _Clusters:
        from wif_core.clusters.spaces import SPACE_TIERS
        from wif_core.metrics import roc_auc_score

        space = self.settings["space"]
        if space not in self.spaces or SPACE_TIERS[space] != train.tier:
            raise InputError(
                f"{self.name} may not cluster the {space} space ({SPACE_TIERS.get(space)}-tier) with "
                f"a {train.tier}-tier view: use --explainer {self.sibling}"
            )
        X_tr, X_va = self._features(train, fit=True), self._features(val)
        scale = {"activations": "standard", "sae": "l2", "text": "l2", "attribution": "standard"}[space]
        self.reducer_ = algo.Reducer(scale).fit(X_tr, self.seed)  # type: ignore[arg-type]
        Z_tr, Z_va = self.reducer_.transform(X_tr), self.reducer_.transform(X_va)
        y_train, y_val = np.asarray(y_train), np.asarray(y_val)
        self.base_rate_ = float(y_train.mean())
        self.val_auc_by_k_: dict[int, float] = {}
        if self.settings.get("algorithm", "kmeans") == "hdbscan":
            labels = algo.hdbscan(Z_tr, self.settings.get("min_cluster_size"))
            self.ref_, self.ref_labels_ = Z_tr, labels
            self.k_ = len(set(labels.tolist()) - {-1})
        else:
            k = self.settings.get("k")
            grid = [int(k)] if k is not None else [kk for kk in K_GRID if kk < len(Z_tr)]
            if not grid:
                raise InputError(f"{self.name}: {len(Z_tr)} train items are too few to cluster")
            algo.check_k(grid[0], len(Z_tr), "train items")
            fits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            two_class = len(set(y_val.tolist())) == 2
            for kk in grid:
                labels, cents = algo.kmeans(Z_tr, kk, self.seed)
                fits[kk] = (labels, cents)
                self.ref_, self.ref_labels_ = cents, np.arange(kk)
                self.rates_ = self._rates(labels, y_train)
                self.val_auc_by_k_[kk] = roc_auc_score(y_val, self._score(Z_va)) if two_class else float("nan")
            top = max((v for v in self.val_auc_by_k_.values() if np.isfinite(v)), default=np.nan)
            # the smallest k within K_TOLERANCE of the best val AUC: more clusters must earn their place
            self.k_ = next((kk for kk in grid if self.val_auc_by_k_[kk] >= top - K_TOLERANCE), grid[0])
            labels, cents = fits[self.k_]
            self.ref_, self.ref_labels_ = cents, np.arange(self.k_)
        self.train_labels_ = labels
        self.rates_ = self._rates(labels, y_train)
        self.sizes_ = {int(c): (int((labels == c).sum()), int(y_train[labels == c].sum())) for c in np.unique(labels)}
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self._score(self.reducer_.transform(self._features(test)))

    def explain(self) -> dict[str, Any]:
        clusters = sorted(self.rates_, key=lambda c: -self.rates_[c])
        out: dict[str, Any] = {
            "space": self.settings["space"],
            "algorithm": self.settings.get("algorithm", "kmeans"),
            "k": int(self.k_),
            "train_base_rate": self.base_rate_,
            "clusters": [
                {
                    "cluster": c,
                    "train_items": self.sizes_[c][0],
                    "train_failed": self.sizes_[c][1],
                    "failure_rate": self.rates_[c],
                }
                for c in clusters
            ],
        }
        if self.val_auc_by_k_:
            out["val_auc_by_k"] = {str(k): v for k, v in self.val_auc_by_k_.items()}
        return out


class ClusterExplainer(_Clusters):
    """Clusters of train items in an input-tier space; P(failure) is the test item's cluster's train failure rate."""

    name = "cluster"
    tier = "input"
    summary = "k-means clusters (k tuned on val) of activations, SAE codes or text embeddings; P(failure) = the cluster's train failure rate"
    spaces = ("activations", "sae", "text")
    sibling = "cluster-attribution"

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        from wif_core.clusters.spaces import default_layer, default_site
        from wif_core.sae.paths import available

        out: list[dict[str, Any]] = []
        if run.layers and run.sites:
            out.append({"space": "activations", "layer": default_layer(run.layers), "site": default_site(run.sites)})
        saes = [layer for layer in available(run.store_path, run.run_id) if layer in run.token_layers]
        if saes:
            out.append({"space": "sae", "layer": saes[0]})
        return [*out, {"space": "text"}]


class AttributionClusterExplainer(_Clusters):
    """Clusters of train items' attribution profiles (gold tier: attributions read the answer key)."""

    name = "cluster-attribution"
    tier = "gold"
    summary = "k-means clusters (k tuned on val) of attribution profiles; P(failure) = the cluster's train failure rate"
    spaces = ("attribution",)
    sibling = "cluster"
    options = (*_Clusters.options, "method")

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        try:
            cls._attribution_source(run, None)
        except (InputError, StoreError) as exc:
            return str(exc)
        return None

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"space": "attribution"}] if cls.applicable(run) is None else []
