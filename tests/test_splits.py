"""Balanced splits and the leakage check, on hand-made frames."""

from __future__ import annotations

import pandas as pd
import pytest

from wif_core.errors import InputError
from wif_core.splits import assign, balanced_splits, find_leakage


def _frame(n_correct: int, n_incorrect: int) -> pd.DataFrame:
    n = n_correct + n_incorrect
    return pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n)],
            "key": [f"k{j}" for j in range(n)],
            "correct": [True] * n_correct + [False] * n_incorrect,
        }
    )


def test_balanced_and_seeded():
    frame = _frame(60, 20)
    a = balanced_splits(frame, seed=1)
    merged = frame.merge(a, on="item_id")
    counts = merged[merged.split != "unused"].groupby(["split", "correct"]).size()
    assert counts.loc[("train", True)] == counts.loc[("train", False)] == 10
    assert counts.loc[("test", True)] == counts.loc[("test", False)] == 5
    assert (merged[~merged.correct].split != "unused").all()  # the smaller class is used whole
    assert a.equals(balanced_splits(frame, seed=1)) and not a.equals(balanced_splits(frame, seed=2))


def test_k_and_fraction_checks():
    with pytest.raises(InputError, match="out of range"):
        balanced_splits(_frame(10, 10), k=11)
    with pytest.raises(InputError, match="both outcomes"):
        balanced_splits(_frame(10, 0))
    with pytest.raises(InputError, match="summing to 1"):
        balanced_splits(_frame(10, 10), fractions=(0.5, 0.5, 0.5))


def test_leakage_kinds():
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e", "f", "g"],
            "key": ["x", "x", "y", "y", "z", "z", "w"],
            "correct": [True, False, True, True, True, True, False],
            "split": ["train", "train", "train", "test", "val", "val", "val"],
            "gold": [0, 0, 0, 0, 0, 0, 0],
            "choices": [["p", "q"], ["p", "q"], ["p", "q"], ["p", "q"], ["p", "q"], ["p", "q"], ["p", "q"]],
        }
    )
    findings, excluded = find_leakage(frame)
    kinds = {f.kind: f.item_ids for f in findings}
    assert kinds == {"both_outcomes": ["a", "b"], "cross_split": ["c", "d"], "repeat": ["e", "f"]}
    assert excluded == {
        "a": "both_outcomes",
        "b": "both_outcomes",
        "c": "cross_split",
        "d": "cross_split",
        "f": "repeat",
    }


def test_conflicting_answer_keys_are_found_even_with_swapped_choices():
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b"],
            "key": ["x", "x"],
            "correct": [True, False],
            "split": ["train", "val"],
            "gold": [0, 0],
            "choices": [["p", "q"], ["q", "p"]],
        }
    )
    findings, excluded = find_leakage(frame)
    assert "gold_conflict" in {f.kind for f in findings} and set(excluded) == {"a", "b"}


def test_drawn_splits_never_straddle_duplicates():
    frame = _frame(30, 30)
    frame.loc[frame.index[:6], "key"] = ["d0", "d0", "d1", "d1", "d2", "d2"]  # copies, same outcome
    splits, findings = assign(frame, given_splits=False, seed=3)
    assert {f.kind for f in findings} <= {"repeat"}
    merged = frame.merge(splits, on="item_id")
    assert merged.groupby("key").split.nunique().max() == 1
