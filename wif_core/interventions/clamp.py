"""SAE feature clamping: hold a run's most failure-predictive SAE features at 0 (or at their success mean) while
the model scores its items, against as many random live features.

At every position of block ``layer``'s output ``h`` the SAE's codes ``c = encode(h)`` are computed, the chosen
features set to their target ``c'``, and the residual stream replaced by ``h + decode(c') − decode(c)``: the
SAE's reconstruction error ``h − decode(c)`` is kept, so the only change is the chosen features' decoder rows.
With no feature changed the difference is exactly 0 and the scores are collection's bit for bit. Attention-sink
positions (norm above the SAE's ``max_norm``; never encoded in training) are left as they are.

Features are ranked on the train split by ``wif sae diff`` (AUC of the item maximum), keeping those that fire
more on failures; the strength of the intervention is how many of them are clamped (k). The control clamps k
live features drawn at random (seeded) from those not chosen, to the same kind of target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports

CLAMP_MODES = ("zero", "success-mean")
DEFAULT_KS = (1, 4, 16)


@dataclass(kw_only=True)
class ClampPlan:
    """What one clamping check edits: the ranked failure features, the live pool the controls draw from, and
    the target each feature is held at."""

    layer: int
    ranked: list[int]  # features that fire more on failures, most predictive (train AUC) first
    live: np.ndarray  # features that fire on some token of the run
    target: np.ndarray  # [d_sae]: the value each feature is clamped to
    max_norm: float | None
    source: dict[str, Any]


def clamp_edit(
    sae: Any, features: Sequence[int], target: np.ndarray | None, max_norm: float | None = None
) -> Callable[[Any], Any]:
    """The edit ``h ↦ h + decode(c') − decode(c)`` with ``c = encode(h)`` and ``c'`` equal to ``c`` except at
    ``features``, set to ``target[features]`` (``target`` None: left as encoded, so the edit adds exactly 0)."""
    with heavy_imports():
        import torch

    idx = torch.as_tensor(list(features), dtype=torch.long)
    tgt = None if target is None else torch.as_tensor(np.asarray(target, dtype=np.float32)[list(features)])

    def edit(h: Any) -> Any:
        x = h.float()
        with torch.no_grad():
            c = sae.encode(x)
            c2 = c.clone()
            if tgt is not None and len(idx):
                c2[..., idx] = tgt.to(c2.device)
            delta = sae.decode(c2) - sae.decode(c)
            if max_norm is not None:
                delta = delta * (x.norm(dim=-1, keepdim=True) <= max_norm)
        return h + delta.to(h.dtype)

    return edit


def clamp_plan(store: Any, run_id: str, layer: int, *, mode: str = "zero", top: int = 64, seed: int = 0) -> ClampPlan:
    """Rank the run's SAE features at ``layer`` (its own SAE, codes cached beside the store) and fix the targets."""
    from wif_core.sae.codes import run_codes
    from wif_core.sae.diff import feature_diff, run_items
    from wif_core.sae.paths import sae_dir, sae_info

    if mode not in CLAMP_MODES:
        raise InputError(f"clamp features to one of {', '.join(CLAMP_MODES)}, not '{mode}'")
    codes = run_codes(store, run_id, layer)
    items = run_items(store, run_id)
    diff = feature_diff(codes, items, run_id, layer, top=top, n_contexts=0, n_resamples=200, seed=seed)
    ranked = [f.feature for f in diff.features if f.auc > 0.5]
    if not ranked:
        raise InputError(
            f"no SAE feature at layer {layer} of run {run_id} fires more on failures than on successes; "
            "nothing to clamp"
        )
    means = codes.item_mean()
    index = codes.index()
    success = [index[i] for i in items[(items["split"] == "train") & (items["failed"] == 0)]["item_id"] if i in index]
    target = np.zeros(codes.d_sae, dtype=np.float32)
    if mode == "success-mean" and success:
        target = means[success].mean(axis=0).astype(np.float32)
    live = np.flatnonzero((codes.item_max() > 0).any(axis=0))
    info = sae_info(sae_dir(store.path, run_id, layer))
    return ClampPlan(
        layer=layer,
        ranked=ranked,
        live=live,
        target=target,
        max_norm=info.max_norm,
        source={"sae": info.fingerprint, "architecture": info.architecture, "d_sae": info.d_sae, "mode": mode},
    )


def random_features(plan: ClampPlan, k: int, n: int, seed: int) -> list[list[int]]:
    """``n`` seeded sets of ``k`` live features, none of them among the top ``k`` ranked."""
    pool = np.setdiff1d(plan.live, np.asarray(plan.ranked[:k], dtype=np.int64))
    if len(pool) < k:
        raise InputError(f"the SAE has {len(pool)} other live features, fewer than the {k} a control needs")
    rng = np.random.default_rng(seed + 7919 * k)
    return [sorted(rng.choice(pool, size=k, replace=False).tolist()) for _ in range(n)]
