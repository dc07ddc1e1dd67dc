"""Zoo models on disk: one safetensors file per model, its spec and provenance in the metadata header.

Only safetensors is read (never a pickle). The shipped models are package data
(``wif_core/zoo/shipped/<name>.safetensors``, ``ZOO_DIR``); models a user trains live in a zoo
directory of their own (``wif zoo train`` saves to ``data/zoo`` unless told otherwise). A name
resolves in the given zoo directory first, then among the shipped models; a path is read as is.

Checkpoints of a trained model (``wif zoo train`` keeps one at each power of two of samples seen) sit
beside it, ``<zoo-dir>/<name>.ckpt/<samples>.safetensors``, in the same format, their header also holding
``samples``, ``step`` and the training ``seed``; ``<name>.ckpt/<samples>`` is a name that loads like any other.
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
CHECKPOINT_SUFFIX = ".ckpt"
_CHECKPOINT_KEYS = ("samples", "step", "seed")


def save(model: ZooModel, path: Path) -> Path:
    """Write the model's weights and spec (with its provenance in ``spec.meta``) as one safetensors file.

    A checkpoint (``spec.meta["checkpoint"]``) also gets its ``samples``, ``step`` and ``seed`` as header fields.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.weights().items()}
    header = {_SPEC_KEY: json.dumps(asdict(model.spec))}
    ckpt = model.spec.meta.get("checkpoint")
    if isinstance(ckpt, dict):
        header.update({k: str(ckpt[k]) for k in _CHECKPOINT_KEYS if k in ckpt})
    save_file(tensors, str(path), metadata=header)
    return path


def checkpoint_dir(name: str, zoo_dir: Path | None = None) -> Path:
    """Where the checkpoints of the model ``name`` (or of the model file ``name``) live (not checked)."""
    path = model_path(name, zoo_dir)
    return path.with_name(path.stem + CHECKPOINT_SUFFIX)


def save_checkpoints(checkpoints: list[ZooModel], directory: Path) -> list[Path]:
    """Write each checkpoint as ``directory/<samples>.safetensors``, replacing what an earlier training left."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.safetensors"):
        old.unlink()
    return [save(m, directory / f"{m.spec.meta['checkpoint']['samples']}.safetensors") for m in checkpoints]


def checkpoints(name: str, zoo_dir: Path | None = None) -> list[Path]:
    """The checkpoint files of the model ``name`` (a name, a model file or its ``.ckpt`` directory), in order of
    samples seen; refuses a model without any."""
    given = Path(name)
    directory = given if given.is_dir() else checkpoint_dir(name, zoo_dir)
    files = sorted((p for p in directory.glob("*.safetensors") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not files:
        raise InputError(
            f"model '{name}' has no checkpoints ({directory} holds no <samples>.safetensors files); train it "
            "with `wif zoo train` (which keeps one at each power of two of samples seen)"
        )
    return files


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


def available(zoo_dir: Path | None = None, with_checkpoints: bool = False) -> list[str]:
    """Names of the saved models in ``zoo_dir`` and the shipped ones, then the handcrafted ones (built, not stored).

    ``with_checkpoints`` lists each model's checkpoints after it (``<name>.ckpt/<samples>``, by samples seen).
    """
    saved = sorted({p.stem for d in search_dirs(zoo_dir) if d.exists() for p in d.glob("*.safetensors")})
    names = []
    for name in saved:
        names.append(name)
        if with_checkpoints:
            directory = zoo_file(f"{name}{CHECKPOINT_SUFFIX}", zoo_dir)
            stems = sorted(int(p.stem) for p in directory.glob("*.safetensors") if p.stem.isdigit())
            names += [f"{name}{CHECKPOINT_SUFFIX}/{n}" for n in stems]
    return names + [h for h in HANDCRAFTED if h not in saved]


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
