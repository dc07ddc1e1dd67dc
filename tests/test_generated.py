"""Tests of the seeded generated task suite (no model needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from wif_core.errors import InputError
from wif_core.tasks.base import TASKS, TaskItem, item_key
from wif_core.tasks.generated import GENERATED_TASKS, generate
from wif_core.tasks.templates import listing_prompt, render_context, scoring_pairs

RAW_FIELDS = {
    "two_choice": ("goal",),
    "yes_no": ("passage", "question"),
    "fill_blank": ("sentence",),
    "three_choice": ("context", "question"),
}


@cache
def _items(task: str, n: int = 400, seed: int = 0) -> tuple[TaskItem, ...]:
    return tuple(generate(task, n, seed))


def _snapshot(items: tuple[TaskItem, ...]) -> list[tuple]:
    return [(i.item_id, i.context, i.choices, i.gold, json.dumps(dict(i.meta), sort_keys=True)) for i in items]


def test_task_names_match_registry() -> None:
    assert set(GENERATED_TASKS) <= set(TASKS)
    assert all(t.startswith("gen-") for t in GENERATED_TASKS)


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_same_seed_same_items(task: str) -> None:
    assert _snapshot(_items(task)) == _snapshot(tuple(generate(task, 400, 0)))


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_different_seed_different_items(task: str) -> None:
    a, b = _items(task), _items(task, 400, 1)
    assert {item_key(i) for i in a} != {item_key(i) for i in b}
    assert _snapshot(a) != _snapshot(b)


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_400_distinct_items(task: str) -> None:
    items = _items(task)
    assert len(items) == 400
    assert len({item_key(i) for i in items}) == 400
    assert [i.item_id for i in items] == [f"{task}-{k:04d}" for k in range(400)]


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_more_than_400_distinct_items(task: str) -> None:
    items = generate(task, 1000, 7)
    assert len({item_key(i) for i in items}) == 1000


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_every_item_renders(task: str) -> None:
    spec = TASKS[task]
    for item in _items(task):
        assert item.task == task
        pairs = scoring_pairs(item)
        assert len(pairs) == len(item.choices)
        assert all(prefix and cont.strip() for prefix, cont in pairs)
        prompt = listing_prompt(item)
        assert prompt.endswith("Answer:")
        assert all(choice in prompt for choice in item.choices)
        if spec.format == "fill_blank":
            assert item.context.count("_") == 1
            assert item.context.split("_", 1)[1].strip()


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_context_is_rendered_from_raw_fields(task: str) -> None:
    fmt = TASKS[task].format
    for item in _items(task):
        fields = {k: item.meta[k] for k in RAW_FIELDS[fmt]}
        assert all(isinstance(v, str) and v.strip() for v in fields.values())
        assert item.context == render_context(fmt, fields)


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_choice_counts_and_gold_range(task: str) -> None:
    k = TASKS[task].n_choices
    for item in _items(task):
        assert len(item.choices) == k
        assert len(set(item.choices)) == k
        assert all(isinstance(c, str) and c.strip() for c in item.choices)
        assert 0 <= item.gold < k


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_gold_position_balanced(task: str) -> None:
    k = TASKS[task].n_choices
    for n, seed in ((400, 0), (150, 3)):
        counts = Counter(i.gold for i in generate(task, n, seed))
        assert set(counts) == set(range(k))
        assert max(counts.values()) - min(counts.values()) <= max(2, n // 20)


def test_yes_no_choices_are_no_then_yes() -> None:
    for item in _items("gen-passage"):
        assert item.choices == ("no", "yes")
        assert item.meta["gold_position"] == item.gold


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_meta_factors_present_flat_and_serialisable(task: str) -> None:
    for item in _items(task):
        meta = item.meta
        json.dumps(dict(meta))
        assert meta["generator"] == task
        factors = meta["factors"]
        assert isinstance(factors, list) and factors
        for name in ("template", "negation", "distractor", "gold_position"):
            assert name in factors
        for name in factors:
            assert isinstance(meta[name], bool | int | float | str), (name, meta[name])
        assert isinstance(meta["negation"], bool) and isinstance(meta["distractor"], bool)
        assert meta["gold_position"] == item.gold


@pytest.mark.parametrize("task", GENERATED_TASKS)
def test_difficulty_factors_take_both_values(task: str) -> None:
    items = _items(task)
    for name in ("negation", "distractor"):
        share = sum(bool(i.meta[name]) for i in items) / len(items)
        assert 0.1 < share < 0.9, (name, share)
    assert len({i.meta["template"] for i in items}) >= 4


def test_task_specific_factors() -> None:
    phys = _items("gen-physical")
    assert {"none", "small", "medium", "large"} <= {i.meta["magnitude"] for i in phys}
    assert any(i.meta["lexical_overlap"] for i in phys)
    passage = _items("gen-passage")
    assert {i.meta["passage_len"] for i in passage} >= {2, 3, 4, 5, 6}
    coref = _items("gen-coref")
    assert {i.meta["answer_role"] for i in coref} == {"first", "second"}
    social = _items("gen-social")
    assert {i.meta["question_type"] for i in social} == {"feel", "trait", "next"}


def test_negation_words_appear_only_when_negated() -> None:
    for item in _items("gen-coref"):
        assert (" not " in item.context.split("_", 1)[1]) == item.meta["negation"]
    for item in _items("gen-passage"):
        assert (" not " in f" {item.meta['question']} ") == item.meta["negation"]


def test_unknown_task_raises_input_error() -> None:
    with pytest.raises(InputError, match="unknown generated task") as err:
        generate("gen-nope")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError):
        generate("piqa")


def test_bad_n() -> None:
    assert generate("gen-coref", 0) == []
    with pytest.raises(InputError):
        generate("gen-coref", -1)


@pytest.mark.parametrize("n", [-1, 2.5, "3", True])
def test_bad_n_values_raise(n: object) -> None:
    with pytest.raises(InputError, match="not a valid item count"):
        generate("gen-physical", n)  # type: ignore[arg-type]


def test_deterministic_across_processes() -> None:
    code = (
        "import hashlib, json; from wif_core.tasks.generated import GENERATED_TASKS, generate; "
        "print(hashlib.sha1(json.dumps([[i.context, i.choices, i.gold, dict(i.meta)] "
        "for t in GENERATED_TASKS for i in generate(t, 50, 5)], sort_keys=True).encode()).hexdigest())"
    )
    root = Path(__file__).resolve().parents[1]
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(digests) == 1
