"""SAE speed: encoding through an 8× SAE, training a demo-sized SAE, and the SAE page's first render.

Training and the page use the demo store (`data/demo.duckdb`) when it exists; without it,
training runs on synthetic activations of the demo's size and the page is skipped.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bench.common import machine, page_render_seconds, write_section

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo.duckdb"
D_MODEL, N_ENCODE = 576, 10_000


def _encode_seconds(reps: int = 3) -> tuple[float, float]:
    """Best of ``reps``: dense ``encode`` of 10k × 576 through a 4608-feature TopK SAE, and the sparse codes."""
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    from wif_core.sae.codes import encode, encode_items

    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=D_MODEL, d_sae=8 * D_MODEL, k=32)).eval()
    X = np.random.default_rng(0).normal(size=(N_ENCODE, D_MODEL)).astype(np.float32)
    items = np.split(X, 200)  # 200 items of 50 tokens
    encode(sae, X[:512])
    dense = sparse = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        encode(sae, X)
        dense = min(dense, time.perf_counter() - t)
        t = time.perf_counter()
        encode_items(sae, [str(i) for i in range(len(items))], items, None)
        sparse = min(sparse, time.perf_counter() - t)
    return dense, sparse


def _demo_tokens() -> tuple[np.ndarray, np.ndarray, str]:
    """Train- and val-split token activations of the demo's first run at its token layer (or synthetic ones)."""
    from wif_core.demo import DEMO_TOKEN_LAYERS
    from wif_core.sae.codes import kept_tokens, sink_threshold
    from wif_core.sae.train import _tokens

    if DEMO.exists():
        from wif_core.store import Store

        with Store.open(DEMO) as store:
            run_id = store.run_ids()[0]
            _, X = _tokens(store, run_id, int(DEMO_TOKEN_LAYERS), ("train",))
            _, V = _tokens(store, run_id, int(DEMO_TOKEN_LAYERS), "val")
        cut = sink_threshold(X)
        return X[kept_tokens(X, cut)], V[kept_tokens(V, cut)], f"demo run {run_id}, layer {DEMO_TOKEN_LAYERS}"
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(2000, D_MODEL)).astype(np.float32)
    X, V = (np.abs(rng.normal(size=(n, 2000))) * (rng.random((n, 2000)) < 0.01) @ atoms for n in (2500, 1000))
    return X.astype(np.float32), V.astype(np.float32), "synthetic sparse activations of the demo's size"


def _train() -> dict[str, float | int | str]:
    from wif_core.sae.codes import reconstruction
    from wif_core.sae.train import DEMO_SAMPLES, TrainConfig, fit_sae, new_sae

    X, V, source = _demo_tokens()
    cfg = TrainConfig(samples=DEMO_SAMPLES)
    sae = new_sae(X.shape[1], cfg)
    t = time.perf_counter()
    fit_sae(sae, X, cfg)
    seconds = time.perf_counter() - t
    fit = reconstruction(sae, V)
    return {
        "seconds": seconds,
        "n_tokens": len(X),
        "samples": DEMO_SAMPLES,
        "source": source,
        "ev": fit["explained_variance"],
        "l0": fit["mean_l0"],
    }


def _page_seconds(reps: int = 3) -> float | None:
    """Median server-side first render of the SAE page (AppTest), codes cached on disk, Streamlit caches cleared."""

    from wif_core.sae import available
    from wif_core.store import Store

    if not DEMO.exists():
        return None
    with Store.open(DEMO) as store:
        run_id = store.run_ids()[0]
    if not available(DEMO, run_id):
        return None
    return page_render_seconds("sae", run_id, DEMO, reps)  # the warm-up writes the codes cache if missing


def main() -> dict:
    torch.set_num_threads(2)
    dense, sparse = _encode_seconds()
    train = _train()
    page = _page_seconds()
    page_row = f"{page:.2f} s" if page is not None else "not measured (no demo store with SAEs: `make demo`)"
    write_section(
        "sae",
        f"""
## SAE features (issue 4)

Machine: {machine()}. Command: `python -m bench.run sae`; best of 3 for encoding, one training run,
median of 3 page renders.

| measure | goal | measured |
| --- | --- | --- |
| encode 10k × 576 through an 8× TopK SAE (4608 features, k=32), dense | < 1 s | {dense:.2f} s |
| the same as sparse per-item codes (what `sae diff` and the app store) | | {sparse:.2f} s |
| train a demo SAE: {train["samples"]} samples from {train["n_tokens"]} tokens ({train["source"]}) | < 5 min | {train["seconds"]:.1f} s (held-out explained variance {train["ev"]:.3f}, mean L0 {train["l0"]:.1f}) |
| SAE page first render, codes cached beside the store | < 2 s | {page_row} |
""",
    )
    return {"encode_dense_s": dense, "encode_sparse_s": sparse, "train": train, "page_s": page}


if __name__ == "__main__":
    print(main())
