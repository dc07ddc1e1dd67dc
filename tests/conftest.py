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


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_llama, tiny_tokenizer, tmp_path_factory) -> Path:
    """The tiny Llama saved as a local model directory (safetensors), loadable by `wif collect --model DIR`."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.save_pretrained(path, safe_serialization=True)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def items_file(tmp_path) -> Path:
    """A local PIQA-layout JSONL file of 40 distinct items."""
    import json

    verbs = ["open", "clean", "fold", "cut", "dry", "heat", "cool", "fix", "paint", "move"]
    nouns = ["a jar", "a shirt", "the floor", "bread"]
    rows = [
        {
            "goal": f"How do you {v} {n}?",
            "sol1": f"use a tool to {v} it",
            "sol2": f"ask {n} to {v} itself",
            "label": (i + j) % 2,
        }
        for i, v in enumerate(verbs)
        for j, n in enumerate(nouns)
    ]
    path = tmp_path / "piqa_items.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M (cached de-quantized copy after the first load)."""
    from wif_core.models.loading import EMBEDDED, load_model

    return load_model(EMBEDDED)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    """A small demo store built exactly as `wif demo` builds it (40 items per generated task)."""
    from wif_core.demo import build_demo

    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    build_demo(path, limit=40)
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
