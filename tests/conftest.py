"""Shared fixtures: seeded RNGs, a tiny random Llama with a tokenizer built here, temp stores."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCH = SHARED / "benchmarks" / "wif-gemma-2-2b"

CORPUS = [
    "Question: how do you boil water?\nAnswer: put it in a pot and heat it.",
    "The cat sat on the mat because it was warm. Question: is the mat warm?\nAnswer: yes no",
    "Q: Alex gave Sam a gift. What will Sam do next?\nA: say thank you, ignore it, cry",
    "Options:\nA. use a pot\nB. use a sieve\nC. use a cup\nAnswer: A B C",
    "Sentence: The trophy did not fit in the suitcase because the _ was too big.",
    "Goal: To open a jar, twist the lid. Passage: water boils at one hundred degrees.",
]


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in memory on a few lines (no hub, no files)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


@pytest.fixture(scope="session")
def tiny_llama(tiny_tokenizer):
    """A randomly initialised 4-block Llama (width 32) over the tiny tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    return model


def _tiny_gemma3(tokenizer, attn: str = "sdpa"):
    """A randomly initialised 4-block Gemma 3 (width 32) whose sliding window (6) is shorter than the items.

    Layers 1, 2 and 4 slide, layer 3 is global; the (1 + w) norm weights are randomised so that every norm
    matters, and the final logits are soft-capped, so each Gemma-specific step is exercised.
    """
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=512,
        query_pre_attn_scalar=8,
        final_logit_softcapping=30.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.5)
            elif param.dim() == 2:
                param.normal_(0.0, 0.2)  # larger than the default init, so attention is far from uniform
    model.set_attn_implementation(attn)
    return model


@pytest.fixture(scope="session")
def tiny_gemma3(tiny_tokenizer):
    """The tiny random Gemma 3 of ``_tiny_gemma3`` with sdpa attention."""
    return _tiny_gemma3(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_gemma3_eager(tiny_tokenizer):
    """The same tiny Gemma 3 with eager attention (which adds the mask to the scores)."""
    return _tiny_gemma3(tiny_tokenizer, "eager")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_llama, tiny_tokenizer, tmp_path_factory) -> Path:
    """The tiny Llama saved as a local model directory (safetensors), loadable by `wif collect --model DIR`."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.save_pretrained(path, safe_serialization=True)
    tiny_tokenizer.save_pretrained(path)
    return path


def piqa_rows() -> list[dict]:
    """40 distinct PIQA-layout rows (goal, sol1, sol2, label)."""
    verbs = ["open", "clean", "fold", "cut", "dry", "heat", "cool", "fix", "paint", "move"]
    nouns = ["a jar", "a shirt", "the floor", "bread"]
    return [
        {
            "goal": f"How do you {v} {n}?",
            "sol1": f"use a tool to {v} it",
            "sol2": f"ask {n} to {v} itself",
            "label": (i + j) % 2,
        }
        for i, v in enumerate(verbs)
        for j, n in enumerate(nouns)
    ]


@pytest.fixture()
def items_file(tmp_path) -> Path:
    """A local PIQA-layout JSONL file of 40 distinct items."""
    import json

    path = tmp_path / "piqa_items.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in piqa_rows()))
    return path


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M (cached de-quantized copy after the first load)."""
    from wif_core.models.loading import EMBEDDED, load_model

    return load_model(EMBEDDED)


@pytest.fixture(scope="session")
def embedded_gemma3():
    """The embedded Gemma-3-270M (cached converted copy after the first load; skipped when not installed)."""
    from wif_core.errors import InputError
    from wif_core.models.loading import load_model

    try:
        return load_model("gemma3-270m")
    except InputError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    """A small demo store built as `wif demo` builds it (40 items per generated task, SAEs on 4096 samples
    as `wif demo --sae-samples 4096`: the pages read them the same way, in a fifth of the time)."""
    from wif_core.demo import build_demo

    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    build_demo(path, limit=40, sae_samples=4096)
    return path


# ---- app tier: a synthetic store (no model) and empty Streamlit caches ----------------------


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory) -> Path:
    """tests/store_factory.py's synthetic store, one per test module (pages write result caches beside it)."""
    from store_factory import make_synthetic_store

    path = tmp_path_factory.mktemp("store") / "synthetic.duckdb"
    make_synthetic_store(path)
    return path


@pytest.fixture
def fresh_st_caches(monkeypatch):
    """Streamlit caches the store and its reads per process: each app test starts and ends with them empty."""
    import streamlit as st

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # pages import `ui` from the root
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()  # closes the cached read-only Store


@pytest.fixture
def wif_db(synthetic_db, monkeypatch) -> Path:
    """The synthetic store, as the app's store (``WIF_DB``)."""
    monkeypatch.setenv("WIF_DB", str(synthetic_db))
    return synthetic_db
