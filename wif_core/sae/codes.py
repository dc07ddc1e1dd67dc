"""A run's items encoded by an SAE: sparse per-token feature activations, and item-level summaries.

Every token of an item's listing prompt is encoded; an item's activation of a feature is the
maximum over its tokens (``item_max``; ``item_mean`` is also kept). Tokens whose residual norm
is far above the rest (attention sinks: the first token of SmolLM2 or Gemma-2 carries a norm
~100× the others, identical on every item) are left out of training and encoding: they would
dominate the reconstruction loss and say nothing about the item. The cut-off (``max_norm``) is
saved with the SAE.

The codes of a store's SAE are cached beside it (``codes.safetensors``), keyed by the SAE's
fingerprint, so the app and ``wif sae diff`` need not import sae-lens or re-encode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.sae.paths import CODES_FILE, is_sae_dir, sae_dir, sae_info, sae_root

log = logging.getLogger(__name__)
SINK_FACTOR = 10.0  # a token whose norm exceeds this many times the median token norm is an attention sink
ENCODE_BATCH = 4096


def sink_threshold(X: np.ndarray, factor: float = SINK_FACTOR) -> float:
    """The norm above which a token is an attention sink: ``factor`` × the median token norm."""
    if not len(X):
        return float("inf")
    return float(factor * np.median(np.linalg.norm(X, axis=1)))


def kept_tokens(X: np.ndarray, max_norm: float | None) -> np.ndarray:
    """Which rows of ``X`` are encoded (not attention sinks)."""
    if max_norm is None:
        return np.ones(len(X), dtype=bool)
    return np.linalg.norm(X, axis=1) <= max_norm


def encode(sae: Any, X: np.ndarray, batch: int = ENCODE_BATCH) -> np.ndarray:
    """Dense feature activations ``[N, d_sae]`` of the rows of ``X`` (sae-lens ``encode``, no grad)."""
    with heavy_imports():
        import torch

    out = np.zeros((len(X), int(sae.cfg.d_sae)), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(X), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(X[start : start + batch], dtype=np.float32))
            out[start : start + len(chunk)] = sae.encode(chunk).float().numpy()
    return out


def reconstruction(sae: Any, X: np.ndarray, batch: int = ENCODE_BATCH) -> dict[str, float]:
    """How well ``sae`` reconstructs the rows of ``X``: explained variance, MSE per dimension, mean L0, dead share.

    Explained variance is ``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` over the rows; MSE is per element.
    """
    with heavy_imports():
        import torch

    X = np.asarray(X, dtype=np.float32)
    if not len(X):
        return {
            "explained_variance": float("nan"),
            "mse": float("nan"),
            "mean_l0": float("nan"),
            "dead_fraction": float("nan"),
            "n_tokens": 0,
        }
    err = total = l0 = 0.0
    fired = np.zeros(int(sae.cfg.d_sae), dtype=bool)
    mean = X.mean(0)
    with torch.no_grad():
        for start in range(0, len(X), batch):
            x = torch.from_numpy(X[start : start + batch])
            f = sae.encode(x)
            r = sae.decode(f)
            err += float(((r - x) ** 2).sum())
            total += float(((x - torch.from_numpy(mean)) ** 2).sum())
            active = f > 0
            l0 += float(active.sum())
            fired |= active.any(0).numpy()
    return {
        "explained_variance": 1.0 - err / total if total > 0 else float("nan"),
        "mse": err / X.size,
        "mean_l0": l0 / len(X),
        "dead_fraction": float(1 - fired.mean()),
        "n_tokens": len(X),
    }


@dataclass(kw_only=True)
class FeatureCodes:
    """Sparse feature activations of every token of a run's items (CSR over tokens).

    Item ``i``'s tokens are ``offsets[i]:offsets[i+1]``; token ``t``'s nonzero features are
    ``features[ptr[t]:ptr[t+1]]`` with ``values`` alongside. ``kept[t]`` is False for
    attention-sink tokens, which were not encoded.
    """

    item_ids: list[str]
    offsets: np.ndarray
    ptr: np.ndarray
    features: np.ndarray
    values: np.ndarray
    kept: np.ndarray
    d_sae: int
    fingerprint: str = ""

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_tokens(self) -> int:
        return len(self.kept)

    def index(self) -> dict[str, int]:
        return {item: n for n, item in enumerate(self.item_ids)}

    def _nz_items(self) -> np.ndarray:
        token_item = np.repeat(np.arange(self.n_items), np.diff(self.offsets))
        return np.repeat(token_item, np.diff(self.ptr))

    def item_max(self) -> np.ndarray:
        """``[n_items, d_sae]``: each feature's largest activation over an item's tokens (0 if it never fires)."""
        out = np.zeros((self.n_items, self.d_sae), dtype=np.float32)
        np.maximum.at(out, (self._nz_items(), self.features), self.values)
        return out

    def item_mean(self) -> np.ndarray:
        """``[n_items, d_sae]``: each feature's mean activation over an item's encoded tokens."""
        out = np.zeros((self.n_items, self.d_sae), dtype=np.float64)
        np.add.at(out, (self._nz_items(), self.features), self.values)
        n = np.add.reduceat(self.kept.astype(np.int64), self.offsets[:-1]) if self.n_tokens else np.zeros(self.n_items)
        n = np.where(np.diff(self.offsets) > 0, n, 0)  # reduceat repeats a value for an empty item
        return (out / np.maximum(n, 1)[:, None]).astype(np.float32)

    def feature_tokens(self, item: int, feature: int) -> np.ndarray:
        """``[T]``: one feature's activation on each token of item ``item`` (0 where it does not fire)."""
        lo, hi = int(self.offsets[item]), int(self.offsets[item + 1])
        out = np.zeros(hi - lo, dtype=np.float32)
        a, b = int(self.ptr[lo]), int(self.ptr[hi])
        hits = np.flatnonzero(self.features[a:b] == feature) + a
        token = np.searchsorted(self.ptr, hits, side="right") - 1
        out[token - lo] = self.values[hits]
        return out

    # ---- files -------------------------------------------------------------------------
    def save(self, path: Path, **meta: Any) -> None:
        """Write the codes as safetensors (atomically); ``meta`` goes into the header."""
        with heavy_imports():
            from safetensors.numpy import save_file

        arrays: dict[str, np.ndarray] = {
            "offsets": self.offsets.astype(np.int64),
            "ptr": self.ptr.astype(np.int64),
            "features": self.features.astype(np.int32),
            "values": self.values.astype(np.float32),
            "kept": self.kept.astype(np.uint8),
        }
        header = {
            "item_ids": json.dumps(self.item_ids),
            "d_sae": str(self.d_sae),
            "fingerprint": self.fingerprint,
            **{k: json.dumps(v) for k, v in meta.items()},
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(arrays, str(tmp), metadata=header)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FeatureCodes:
        with heavy_imports():
            from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        return cls(
            item_ids=json.loads(meta["item_ids"]),
            offsets=arrays["offsets"],
            ptr=arrays["ptr"],
            features=arrays["features"],
            values=arrays["values"],
            kept=arrays["kept"].astype(bool),
            d_sae=int(meta["d_sae"]),
            fingerprint=meta.get("fingerprint", ""),
        )


def encode_items(
    sae: Any,
    item_ids: Sequence[str],
    tokens: Sequence[np.ndarray],
    max_norm: float | None,
    batch: int = ENCODE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> FeatureCodes:
    """Encode each item's ``[T, d]`` token activations; attention-sink tokens (norm > ``max_norm``) get no codes."""
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    counts, feats, vals, kept_all = [], [], [], []
    start = 0
    while start < len(tokens):
        stop, n = start, 0
        while stop < len(tokens) and (n == 0 or n + lengths[stop] <= batch):
            n += int(lengths[stop])
            stop += 1
        X = np.concatenate([np.asarray(t, dtype=np.float32) for t in tokens[start:stop]]) if n else np.zeros((0, 1))
        kept = kept_tokens(X, max_norm)
        dense = np.zeros((len(X), int(sae.cfg.d_sae)), dtype=np.float32)
        if kept.any():
            dense[kept] = encode(sae, X[kept], batch)
        rows, cols = np.nonzero(dense)
        counts.append(np.bincount(rows, minlength=len(X)))
        feats.append(cols.astype(np.int32))
        vals.append(dense[rows, cols])
        kept_all.append(kept)
        if progress:
            progress(stop - start)
        start = stop
    per_token = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    return FeatureCodes(
        item_ids=list(item_ids),
        offsets=offsets,
        ptr=np.r_[0, np.cumsum(per_token)].astype(np.int64),
        features=np.concatenate(feats) if feats else np.zeros(0, np.int32),
        values=np.concatenate(vals) if vals else np.zeros(0, np.float32),
        kept=np.concatenate(kept_all) if kept_all else np.zeros(0, bool),
        d_sae=int(sae.cfg.d_sae),
    )


def run_codes(
    store: Any,
    run_id: str,
    layer: int,
    path: str | Path | None = None,
    cache: bool = True,
    progress: Callable[[int], None] | None = None,
    save: bool = True,
) -> FeatureCodes:
    """The codes of every item of ``run_id`` that has per-token activations at ``layer``.

    ``path`` is an SAE directory (default: the store's own SAE for this run and layer). The
    codes of a store's own SAE are read from, and (unless ``save`` is False) written to, its
    ``codes.safetensors``.
    """
    from wif_core.sae.load import check_width, load_sae

    run = store.run(run_id)
    if layer not in run.token_layers:
        raise InputError(
            f"run {run_id} has no per-token activations at layer {layer} (it has "
            f"{run.token_layers or 'none'}); collect with --token-layers {layer}"
        )
    own = sae_dir(store.path, run_id, layer)
    path = Path(path) if path is not None else own
    if not is_sae_dir(path):
        if path == own:
            raise InputError(
                f"run {run_id} has no SAE at layer {layer}; train one with "
                f"`wif sae train --db {store.path} --run {run_id} --layer {layer}`"
            )
        raise InputError(f"{path} is not an SAE in sae-lens format (cfg.json and sae_weights.safetensors)")
    info = sae_info(path)
    if run.d_model is not None and info.d_in != run.d_model:
        raise InputError(
            f"the SAE at {path} reads vectors of width {info.d_in}, but run {run_id}'s activations "
            f"have width {run.d_model}: use an SAE trained on this model's residual stream"
        )
    cached = path / CODES_FILE
    writable = cache and path.resolve().is_relative_to(sae_root(store.path).resolve())
    if writable and cached.is_file():
        try:
            codes = FeatureCodes.load(cached)
            if codes.fingerprint == info.fingerprint and codes.item_ids == store.token_item_ids(run_id, layer):
                return codes
        except (OSError, KeyError, ValueError) as exc:
            log.warning("ignoring unreadable %s (%s)", cached, exc)
    sae = load_sae(path)
    check_width(sae, run.d_model, run_id, f"at {path}")
    ids, tokens = store.token_activations(run_id, layer)
    max_norm = info.max_norm
    if max_norm is None:
        max_norm = sink_threshold(np.concatenate([t.astype(np.float32) for t in tokens])) if tokens else None
    codes = encode_items(sae, ids, tokens, max_norm, progress=progress)
    codes.fingerprint = info.fingerprint
    if writable and save:
        try:
            codes.save(cached, run_id=run_id, layer=layer, max_norm=max_norm)
        except OSError as exc:
            log.warning("SAE codes not cached (%s)", exc)
    return codes
