"""Adding an SAE made elsewhere (a sae-lens release or a directory) as a run's SAE at a layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.sae.codes import kept_tokens, reconstruction, run_codes, sink_threshold
from wif_core.sae.load import check_width, hook_note, load_sae
from wif_core.sae.paths import CODES_FILE, METRICS_FILE, sae_dir


def add_sae(store: Any, run_id: str, layer: int, spec: str) -> dict[str, Any]:
    """Copy an SAE (pretrained ``RELEASE:SAE_ID`` or a directory) beside the store as the run's SAE at
    ``layer``, after checking its width; record how well it reconstructs the run's tokens."""
    run = store.run(run_id)
    if layer not in run.token_layers:
        raise InputError(
            f"run {run_id} has no per-token activations at layer {layer} (it has "
            f"{run.token_layers or 'none'}); collect with --token-layers {layer}"
        )
    sae = load_sae(spec)
    check_width(sae, run.d_model, run_id, spec)
    _, tokens = store.token_activations(run_id, layer)
    X = np.concatenate([t.astype(np.float32) for t in tokens]) if tokens else np.zeros((0, int(sae.cfg.d_in)))
    max_norm = sink_threshold(X)
    kept = X[kept_tokens(X, max_norm)]
    fit = reconstruction(sae, kept)
    out = sae_dir(store.path, run_id, layer)
    if out.resolve() != Path(spec).expanduser().resolve():
        out.mkdir(parents=True, exist_ok=True)
        (out / CODES_FILE).unlink(missing_ok=True)
        sae.save_model(str(out))
    result = {
        "run_id": run_id,
        "layer": layer,
        "path": str(out),
        "source": spec,
        "arch": sae.cfg.architecture(),
        "width": int(sae.cfg.d_sae),
        "d_in": int(sae.cfg.d_in),
        "n_tokens": len(kept),
        "n_sink_tokens": len(X) - len(kept),
        "max_norm": max_norm,
        "eval_split": "all",
        "n_eval_tokens": fit["n_tokens"],
        "explained_variance": fit["explained_variance"],
        "mse": fit["mse"],
        "mean_l0": fit["mean_l0"],
        "dead_fraction": fit["dead_fraction"],
        "note": hook_note(sae, layer),
    }
    (out / METRICS_FILE).write_text(json.dumps(result, indent=1, default=float))
    run_codes(store, run_id, layer)
    return result
