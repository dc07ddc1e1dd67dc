"""Every source layout yields TaskItems; bad files fail with one line naming file and field."""

from __future__ import annotations

import json

import pytest
from conftest import BENCH

from wif_core.errors import InputError
from wif_core.runner import _lm_eval_records
from wif_core.tasks.sources import load_items, read_local, read_outcome_file

needs_bench = pytest.mark.skipif(not BENCH.exists(), reason="../shared/benchmarks not present")


@needs_bench
@pytest.mark.parametrize("task", ["piqa", "boolq", "winogrande"])
def test_shared_outcome_files(task):
    pairs = list(read_outcome_file(task, BENCH / task / "val.json"))
    assert len(pairs) == 1000
    assert sum(o.correct for _, o in pairs) == 500
    for item, outcome in pairs[:50] + pairs[-50:]:
        assert item.task == task and outcome.split == "val"
        assert (outcome.pred == item.gold) == outcome.correct


@needs_bench
def test_shared_boolq_fields():
    item, outcome = next(read_outcome_file("boolq", BENCH / "boolq" / "train.json"))
    assert item.choices == ("no", "yes")
    assert item.context.endswith("?\nAnswer:") and item.meta["passage"] in item.context
    assert item.item_id.startswith("boolq_")


@needs_bench
def test_shared_winogrande_keeps_loglikelihoods():
    item, outcome = next(read_outcome_file("winogrande", BENCH / "winogrande" / "test.json"))
    assert item.context.count("_") == 1 and outcome.ll is not None and len(outcome.ll) == 2


@needs_bench
def test_directory_source_reads_all_splits():
    assert len(read_local("boolq", BENCH / "boolq")) == 4000


def _write(path, doc):
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_original_layouts(tmp_path):
    piqa = _write(
        tmp_path / "piqa.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {"goal": "open a jar", "sol1": "twist the lid", "sol2": "hit it", "label": 0},
                {"goal": "dry hair", "sol1": "use a towel", "sol2": "use a rock", "label": 1},
            ]
        ),
    )
    items = load_items("piqa", str(piqa))
    assert [it.gold for it in items] == [0, 1] and items[0].context == "Question: open a jar\nAnswer:"
    boolq = _write(tmp_path / "boolq.json", [{"question": "is it", "passage": "It is.", "answer": True}])
    assert load_items("boolq", str(boolq))[0].gold == 1
    wino = _write(
        tmp_path / "w.json",
        [{"sentence": "A beat B because _ was strong.", "option1": "A", "option2": "B", "answer": "1"}],
    )
    assert load_items("winogrande", str(wino))[0].gold == 0
    siqa = _write(
        tmp_path / "s.jsonl",
        json.dumps(
            {
                "context": "Kim won.",
                "question": "How does Kim feel?",
                "answerA": "sad",
                "answerB": "happy",
                "answerC": "bored",
                "label": "2",
            }
        ),
    )
    item = load_items("siqa", str(siqa))[0]
    assert item.gold == 1 and item.choices == ("sad", "happy", "bored") and item.context.startswith("Q: Kim won.")


def test_siqa_outcome_layouts(tmp_path):
    original = {
        "context": "Kim won.",
        "question": "How does Kim feel?",
        "answerA": "sad",
        "answerB": "happy",
        "answerC": "bored",
        "label": "2",
        "is_correct": 1,
    }
    alternative = {
        "context": "Lee fell.",
        "question": "What next?",
        "answers": ["laugh", "get up", "fly"],
        "gold": 2,
        "pred": 1,
        "loglikelihoods": [-3.0, -4.0, -9.0],
        "is_correct": 0,
    }
    path = _write(tmp_path / "test.json", {"correct": [original], "incorrect": [alternative]})
    pairs = list(read_outcome_file("siqa", path))
    assert [o.correct for _, o in pairs] == [True, False]
    assert pairs[1][0].gold == 1 and pairs[1][1].pred == 0 and pairs[1][1].ll == (-3.0, -4.0, -9.0)
    assert pairs[0][1].split == "test"


def test_lm_eval_samples(tmp_path):
    lines = [
        {
            "doc_id": 0,
            "doc": {"goal": "open a jar", "sol1": "twist", "sol2": "hit", "label": 0},
            "target": 0,
            "filtered_resps": [[-5.0, False], [-2.0, False]],
            "acc": 0.0,
        },
        {
            "doc_id": 1,
            "doc": {"goal": "dry hair", "sol1": "towel", "sol2": "rock", "label": 0},
            "target": 0,
            "filtered_resps": [[-1.0, False], [-7.0, False]],
            "acc": 1.0,
        },
    ]
    path = _write(tmp_path / "samples_piqa.jsonl", "\n".join(json.dumps(x) for x in lines))
    pairs = _lm_eval_records("piqa", path)
    assert [(o.pred, o.correct) for _, o in pairs] == [(1, False), (0, True)]


@pytest.mark.parametrize(
    ("content", "task", "message"),
    [
        ("not json at all", "piqa", r"bad\.json: not valid JSON"),
        ([{"goal": "x", "sol1": "a", "label": 0}], "piqa", r"record 0: missing field 'sol2'"),
        ([{"goal": "x", "sol1": "a", "sol2": "b", "label": 2}], "piqa", r"field 'label'=2 is out of range"),
        ([{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}], "winogrande", r"'_' blank"),
        (
            {"correct": [{"goal": "x", "sol1": "a", "sol2": "b", "label": 0, "is_correct": 0}], "incorrect": []},
            "piqa",
            r"listed under 'correct'",
        ),
        (
            {
                "correct": [],
                "incorrect": [
                    {
                        "id": "b1",
                        "question": "q",
                        "passage": "p",
                        "correct_answer": "Maybe",
                        "gemma_answer": "No",
                        "is_correct": False,
                    }
                ],
            },
            "boolq",
            r"'correct_answer'='maybe' must be 'Yes' or 'No'",
        ),
    ],
)
def test_bad_files_name_file_and_field(tmp_path, content, task, message):
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(InputError, match=message) as err:
        load_items(task, str(path))
    assert "\n" not in str(err.value)


def test_unknown_task_and_source(tmp_path):
    with pytest.raises(InputError, match="unknown task 'nope'"):
        load_items("nope", "hf")
    with pytest.raises(InputError, match="not 'hf', 'generated' or an existing file"):
        load_items("piqa", str(tmp_path / "missing.json"))
    with pytest.raises(InputError, match="needs a generated task"):
        load_items("piqa", "generated")


@pytest.mark.hub
def test_hub_source_loads_real_items():
    pytest.importorskip("datasets")
    try:
        items = load_items("boolq", "hf", limit=3)
    except InputError as exc:
        pytest.skip(f"hub unreachable: {exc}")
    assert len(items) == 3 and items[0].choices == ("no", "yes")
