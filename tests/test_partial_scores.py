"""Outcome files whose per-choice scores are partly missing (null, NaN): imported, stored as null per
choice, and never used as if complete (issue 12, item 4: the released Social IQa outcomes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from wif_core.cli.main import main
from wif_core.errors import InputError
from wif_core.explainers.baselines import Confidence
from wif_core.explainers.data import RunData
from wif_core.runner import _lm_eval_records, import_outcomes
from wif_core.store import Store
from wif_core.tasks.sources import read_outcome_file

WORDS = "Kim Lee Sam Alex Jo went ran sang ate slept laughed cried home early late".split()


def _siqa_record(n: int, correct: bool, scores: list[float | None]) -> dict:
    """One record in the released Social IQa outcome layout (answers / 1-based gold / pred / loglikelihoods)."""
    gold = n % 3 + 1
    pred = gold if correct else gold % 3 + 1
    return {
        "context": f"{WORDS[n % 5]} {WORDS[5 + n % 7]} {WORDS[12 + n % 3]} on day {n}.",
        "question": f"What will {WORDS[(n + 1) % 5]} do next, case {n}?",
        "answers": [f"answer {n} a", f"answer {n} b", f"answer {n} c"],
        "gold": gold,
        "pred": pred,
        "loglikelihoods": scores,
        "is_correct": int(correct),
    }


def released_siqa_file(path: Path, n_per_class: int = 30, nan_as: str = "null") -> Path:
    """A balanced outcome file in the released layout where every fourth record has a missing score.

    ``nan_as`` is how the missing score is written: ``null`` (as in the release) or ``NaN``.
    """
    groups: dict[str, list[dict]] = {"correct": [], "incorrect": []}
    for n in range(2 * n_per_class):
        correct = n % 2 == 0
        scores: list[float | None] = [-3.0 - n % 3, -4.0, -5.5]
        if n % 4 == 1:
            scores[n % 3] = None if nan_as == "null" else math.nan
        groups["correct" if correct else "incorrect"].append(_siqa_record(n, correct, scores))
    path.write_text(json.dumps(groups))  # json writes math.nan as NaN, as Python tools do
    return path


def test_released_layout_with_nulls_is_read_with_the_outcomes_kept(tmp_path):
    for nan_as in ("null", "NaN"):
        path = released_siqa_file(tmp_path / f"siqa_{nan_as}.json", nan_as=nan_as)
        assert ("NaN" in path.read_text()) == (nan_as == "NaN")
        pairs = list(read_outcome_file("siqa", path))
        assert len(pairs) == 60
        partial = [o for _, o in pairs if o.ll is not None and None in o.ll]
        assert len(partial) == 15  # every fourth record: one option the model never scored
        assert all(o.pred is not None and (o.pred == it.gold) == o.correct for it, o in pairs)
        assert all(isinstance(x, float) for _, o in pairs for x in (o.ll or ()) if x is not None)


def test_import_stores_null_per_missing_choice_and_scores_are_not_pretended(tmp_path, capsys):
    path = released_siqa_file(tmp_path / "siqa_outcomes.json")
    db = tmp_path / "w.duckdb"
    assert main(["import", str(path), "--task", "siqa", "--model-name", "gemma-2-2b", "--db", str(db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_items"] == 60 and out["accuracy"] == 0.5
    with Store.open(db) as store:
        frame = store.items(out["run_id"])
        cells = [np.asarray(v, dtype=float) for v in frame["ll_sum"]]
        assert sum(bool(np.isnan(c).any()) for c in cells) == 15  # null per missing choice, nothing invented
        assert all(len(c) == 3 for c in cells)
        data = RunData.load(store, out["run_id"])
        view, _ = data.split("test", "output")  # a view reads the item texts from the store: while it is open
    assert not data.facts.has_scores and data.facts.scores_missing > 0
    why = Confidence.applicable(data.facts)
    assert why is not None and "no score for some choice" in why and "\n" not in why
    with pytest.raises(PermissionError):
        view.choice_scores  # noqa: B018 - an output-tier view of a run with partial scores has none
    assert main(["explain", "--run", out["run_id"], "--explainer", "confidence", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wif: error:") and "no score for some choice" in err and "\n" not in err


def test_complete_scores_stay_available(tmp_path):
    groups: dict[str, list[dict]] = {"correct": [], "incorrect": []}
    for n in range(60):
        groups["correct" if n % 2 == 0 else "incorrect"].append(_siqa_record(n, n % 2 == 0, [-3.0, -4.0, -5.5]))
    path = tmp_path / "siqa_complete.json"
    path.write_text(json.dumps(groups))
    with Store.open(tmp_path / "w.duckdb", write=True) as store:
        result = import_outcomes(store, path, "siqa", "m")
        data = RunData.load(store, result.run_id)
        view, _ = data.split("test", "output")  # a view reads the item texts from the store: while it is open
    assert data.facts.has_scores and data.facts.scores_missing == 0
    assert Confidence.applicable(data.facts) is None
    assert view.choice_scores.shape == (len(view.item_ids), 3)


def _wino(n: int, ll1: object, ll2: object) -> dict:
    return {
        "id": f"w{n}",
        "question": f"Pat beat Max {n} times because _ was stronger.",
        "option1": "Pat",
        "option2": "Max",
        "gold": "1",
        "gemma_answer": "1",
        "ll_option1": ll1,
        "ll_option2": ll2,
        "is_correct": 1,
    }


def test_winogrande_layout_with_null_scores(tmp_path):
    path = tmp_path / "wino.json"
    records = [_wino(0, -2.0, -3.0), _wino(1, None, -3.0), _wino(2, -2.0, float("nan")), _wino(3, None, None)]
    path.write_text(json.dumps({"correct": records, "incorrect": []}))
    got = [o.ll for _, o in read_outcome_file("winogrande", path)]
    assert got == [(-2.0, -3.0), (None, -3.0), (-2.0, None), None]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"correct": [_wino(0, "high", -3.0)], "incorrect": []}))
    with pytest.raises(InputError, match=r"correct\[0\]: field 'll_option1'='high' must be a number") as err:
        list(read_outcome_file("winogrande", bad))
    assert "\n" not in str(err.value)


def test_bad_loglikelihoods_get_one_line(tmp_path):
    for value, message in (
        ([-1.0, "x", -2.0], r"field 'loglikelihoods'\[1\]='x' must be a number"),
        ([-1.0, -2.0], r"field 'loglikelihoods' must be a list of 3 numbers"),
        ("-1,-2,-3", r"field 'loglikelihoods' must be a list of 3 numbers"),
    ):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"correct": [_siqa_record(0, True, value)], "incorrect": []}))  # type: ignore[arg-type]
        with pytest.raises(InputError, match=message) as err:
            list(read_outcome_file("siqa", path))
        assert "\n" not in str(err.value) and "bad.json correct[0]" in str(err.value)


def test_lm_eval_samples_with_a_null_score(tmp_path):
    doc = {"goal": "a", "sol1": "x", "sol2": "y", "label": 0}
    lines = [
        {"doc_id": 0, "doc": doc, "filtered_resps": [[None, False], [-2.0, False]], "acc": 0.0},
        {"doc_id": 1, "doc": {**doc, "goal": "b"}, "filtered_resps": [[-1.0, False], [-7.0, False]]},
    ]
    path = tmp_path / "samples_piqa.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    pairs = _lm_eval_records("piqa", path)
    assert [(o.pred, o.correct, o.ll) for _, o in pairs] == [(None, False, (None, -2.0)), (0, True, (-1.0, -7.0))]
    del lines[0]["acc"]  # a missing score and no 'acc': the outcome is unknown
    path.write_text("\n".join(json.dumps(x) for x in lines))
    with pytest.raises(InputError, match=r":1: field 'filtered_resps'\[0\] has no score and there is no field 'acc'"):
        _lm_eval_records("piqa", path)


def test_a_contrast_passes_over_unscored_choices():
    import pandas as pd

    from wif_core.attribution.pairs import contrast
    from wif_core.tasks.base import TaskItem

    item = TaskItem(item_id="s1", task="siqa", context="Q: x\nA:", choices=("a", "b", "c"), gold=0, meta={})
    assert contrast(item, {"pred": 0, "ll_sum": np.array([-1.0, -3.0, np.nan])}) == (1, 0)
    assert contrast(item, {"pred": 0, "ll_sum": [-1.0, None, -2.0]}) == (2, 0)
    assert contrast(item, {"pred": 0, "ll_sum": pd.NA}) == (1, 0)  # a NULL list as the store reads it
