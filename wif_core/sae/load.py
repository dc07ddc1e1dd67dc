"""Load an SAE through sae-lens: a local directory in sae-lens's saved format, or a pretrained
release by name (``RELEASE:SAE_ID``, e.g. ``gemma-scope-2b-pt-res-canonical:layer_12/width_16k/canonical``).

Weights are read from safetensors (or numpy ``.npz`` without pickle, as Gemma Scope ships them);
releases whose sae-lens loader unpickles ``.pt`` files are refused.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from wif_core.errors import InputError, one_line
from wif_core.heavy import heavy_imports
from wif_core.sae.paths import CFG_FILE, WEIGHTS_FILE, is_sae_dir

log = logging.getLogger(__name__)

# sae-lens conversion functions that read pickled weights (torch.load): refused, since wif never unpickles
PICKLE_LOADERS = frozenset({"connor_rob_hook_z", "goodfire", "deepseek_r1", "qwen_scope", "dictionary_learning_1"})


def is_release_spec(spec: str) -> bool:
    """Whether ``spec`` names a pretrained release (``RELEASE:SAE_ID``) rather than a directory."""
    return ":" in spec and not Path(spec).exists() and not spec.startswith((".", "/", "~"))


def load_sae(spec: str | Path, device: str = "cpu") -> Any:
    """An inference SAE (sae-lens ``SAE``) from a directory or a ``RELEASE:SAE_ID``; one-line errors."""
    text = str(spec)
    if is_release_spec(text):
        release, sae_id = text.split(":", 1)
        return _from_pretrained(release, sae_id, device)
    path = Path(text).expanduser()
    if not path.is_dir():
        raise InputError(
            f"no SAE at {path}; train one with `wif sae train`, or give a directory in sae-lens format "
            "or a pretrained RELEASE:SAE_ID"
        )
    if not is_sae_dir(path):
        raise InputError(f"{path} is not an SAE in sae-lens format (it needs {CFG_FILE} and {WEIGHTS_FILE})")
    with heavy_imports():
        from sae_lens import SAE

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae = SAE.load_from_disk(str(path), device=device, dtype="float32")
    except Exception as exc:  # sae-lens raises many kinds for a bad config or weights file
        raise InputError(f"cannot load the SAE at {path}: {one_line(exc)}") from None
    return sae.eval()


def _from_pretrained(release: str, sae_id: str, device: str) -> Any:
    with heavy_imports():
        from sae_lens import SAE
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    known = get_pretrained_saes_directory().get(release)
    if known is not None and known.conversion_func in PICKLE_LOADERS:
        raise InputError(
            f"SAE release '{release}' ships pickled weights ({known.conversion_func}); wif reads only "
            "safetensors: convert it and pass its directory"
        )
    if known is None and "/" not in release:
        raise InputError(f"unknown SAE release '{release}'; see sae-lens's pretrained SAEs list, or give a directory")
    if known is not None and sae_id not in known.saes_map:
        ids = ", ".join(list(known.saes_map)[:4])
        raise InputError(f"release '{release}' has no SAE '{sae_id}' (it has e.g. {ids}, …)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae = SAE.from_pretrained(release, sae_id, device=device, dtype="float32")
    except Exception as exc:  # network, hub and format errors alike
        raise InputError(f"cannot load SAE {release}:{sae_id}: {one_line(exc)}") from None
    return sae.eval()


def check_width(sae: Any, d_model: int | None, run_id: str, source: str) -> None:
    """Refuse an SAE whose input width is not the run's activation width, in one line."""
    d_in = int(sae.cfg.d_in)
    if d_model is not None and d_in != int(d_model):
        raise InputError(
            f"the SAE {source} reads vectors of width {d_in}, but run {run_id}'s activations have width "
            f"{d_model}: use an SAE trained on this model's residual stream"
        )


def hook_note(sae: Any, layer: int) -> str | None:
    """A warning when a pretrained SAE's hook is not the residual stream after block ``layer``, else None.

    wif's layer L is the residual stream after block L (1-based), TransformerLens's
    ``blocks.{L-1}.hook_resid_post``.
    """
    hook = getattr(sae.cfg.metadata, "hook_name", None) if getattr(sae.cfg, "metadata", None) else None
    expected = f"blocks.{layer - 1}.hook_resid_post"
    if hook and hook != expected:
        return f"this SAE was trained on {hook}; wif's layer {layer} is {expected}"
    return None
