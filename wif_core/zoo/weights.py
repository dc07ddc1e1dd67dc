"""Zoo models on disk: one safetensors file per model, its spec and provenance in the metadata header.

Only safetensors is read (never a pickle). The shipped models are package data
(``wif_core/zoo/shipped/<name>.safetensors``, ``ZOO_DIR``); models a user trains live in a zoo
directory of their own (``wif zoo train`` saves to ``data/zoo`` unless told otherwise). A name
resolves in the given zoo directory first, then among the shipped models; a path is read as is.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from wif_core.errors import InputError
from wif_core.paths import shipped_zoo_dir
from wif_core.zoo.models import ZooModel, ZooRNN, ZooSpec, build, handcrafted_2nd_argmax, rnn_from_weights

ZOO_DIR = shipped_zoo_dir()  # the shipped models (read-only package data)
HANDCRAFTED = {"handcrafted_2nd_argmax_n2": 2, "handcrafted_2nd_argmax_n10": 10}
_SPEC_KEY = "wif_zoo_spec"


def save(model: ZooModel, path: Path) -> Path:
    """Write the model's weights and spec (with its provenance in ``spec.meta``) as one safetensors file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.weights().items()}
    save_file(tensors, str(path), metadata={_SPEC_KEY: json.dumps(asdict(model.spec))})
    return path


def search_dirs(zoo_dir: Path | None = None) -> list[Path]:
    """Where model names are looked up, in order: ``zoo_dir`` (when given), then the shipped models."""
    return [zoo_dir, ZOO_DIR] if zoo_dir is not None and Path(zoo_dir) != ZOO_DIR else [ZOO_DIR]


def zoo_file(filename: str, zoo_dir: Path | None = None) -> Path:
    """The first of the search directories that holds ``filename``, else where ``zoo_dir`` (or the shipped
    directory) would hold it."""
    dirs = search_dirs(zoo_dir)
    return next((d / filename for d in dirs if (d / filename).exists()), dirs[0] / filename)


def model_path(name: str, zoo_dir: Path | None = None) -> Path:
    """Where a model name or path lives (not checked)."""
    p = Path(name)
    if p.suffix == ".safetensors" or p.exists():
        return p
    return zoo_file(f"{name}.safetensors", zoo_dir)


def available(zoo_dir: Path | None = None) -> list[str]:
    """Names of the saved models in ``zoo_dir`` and the shipped ones, then the handcrafted ones (built, not stored)."""
    saved = sorted({p.stem for d in search_dirs(zoo_dir) if d.exists() for p in d.glob("*.safetensors")})
    return saved + [h for h in HANDCRAFTED if h not in saved]


def load(name: str, zoo_dir: Path | None = None) -> ZooModel:
    """A zoo model by name (``2nd_argmax_d16_n10``), handcrafted name, or safetensors path, checked against its spec."""
    if name in HANDCRAFTED and not model_path(name, zoo_dir).exists():
        return handcrafted_2nd_argmax(HANDCRAFTED[name])
    path = model_path(name, zoo_dir)
    if not path.exists():
        known = ", ".join(available(zoo_dir)) or "none"
        raise InputError(
            f"no zoo model '{name}' ({path} does not exist); models: {known} (or train one: wif zoo train)"
        )
    try:
        tensors = load_file(str(path))

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"{path} is not a readable safetensors file ({exc}); re-save it with `wif zoo train`"
        ) from None
    if _SPEC_KEY not in header:
        raise InputError(
            f"{path}: metadata field '{_SPEC_KEY}' is missing; save zoo models with wif_core.zoo.weights.save"
        )
    try:
        spec = ZooSpec(**json.loads(header[_SPEC_KEY]))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: metadata field '{_SPEC_KEY}' is malformed ({exc}); re-save the model") from None
    return from_tensors(spec, tensors, str(path))


def from_tensors(spec: ZooSpec, tensors: dict[str, torch.Tensor], where: str = "weights") -> ZooModel:
    """Build ``spec``'s model and load ``tensors`` into it, naming any missing or mis-shaped weight."""
    model = build(spec)
    if isinstance(model, ZooRNN):
        missing = [k for k in ("W_hi", "W_hh", "W_oh") if k not in tensors]
        if missing:
            raise InputError(f"{where}: weights {missing} are missing; an RNN needs W_hi, W_hh and W_oh")
        return rnn_from_weights(spec, tensors["W_hi"], tensors["W_hh"], tensors["W_oh"])
    own = model.state_dict()
    for key, value in own.items():
        if key not in tensors:
            raise InputError(f"{where}: weight '{key}' is missing for a {spec.arch} of hidden={spec.hidden}")
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise InputError(
                f"{where}: weight '{key}' has shape {tuple(tensors[key].shape)}, but hidden={spec.hidden}, "
                f"n={spec.n} need {tuple(value.shape)}; fix the weights or the metadata"
            )
    model.load_state_dict({k: tensors[k] for k in own})
    return model
