"""Bad input is refused in one line before any work (before the model loads, before an item is scored),
what should not be accepted is not, and a failed command creates no store file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import wif_core
from wif_core.cli import main
from wif_core.errors import InputError
from wif_core.runner import SplitOptions, write_run
from wif_core.splits import balanced_splits
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.sources import load_items


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    return lines[-1]


def _refused_by_argparse(capsys, argv: list[str]) -> str:
    """argparse's answer: exit 2, `usage: …` and one error line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    line = _err_line(capsys)
    assert ": error: " in line
    return line


def _collect(model_dir: Path, source: Path, db: Path, *extra: str) -> list[str]:
    argv = ["collect", "--model", str(model_dir), "--task", "piqa", "--source", str(source), "--layers", "2"]
    return [*argv, "--db", str(db), *extra]


def _write(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows))
    return path


# ---- checks that come before the work --------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fractions", "1,1,1"], "summing to 1"),
        (["--fractions", "0.5,0.5,0"], "summing to 1"),
        (["--k", "0"], "at least 1"),
        (["--k", "-3"], "at least 1"),
        (["--limit", "0"], "at least 1"),
        (["--limit", "-5"], "at least 1"),
        (["--sample", "-1"], "at least 1"),
        (["--max-tokens", "0"], "at least 1"),
    ],
)
def test_collect_options_are_refused_before_anything_runs(tmp_path, capsys, extra, message):
    db = tmp_path / "w.duckdb"
    line = _refused_by_argparse(capsys, _collect(Path("no-such-model-dir"), Path("x.json"), db, *extra))
    assert message in line and not db.exists()


def test_split_options_are_refused_before_any_item_is_scored(tmp_path, capsys, monkeypatch, items_file):
    """Through the API too: `--fractions` and a `--k` above what the items can give, with nothing scored."""
    from wif_core import runner

    def no_scoring(*args, **kwargs):
        raise AssertionError("an item was scored")

    monkeypatch.setattr(runner, "score_items", no_scoring)
    items = load_items("piqa", str(items_file))

    class Lm:  # collect refuses before it needs anything of the model but its name and depth
        name, n_layers, d_model = "lm", 4, 32

    with wif_core.open_store(tmp_path / "s.duckdb", write=True) as store:
        with pytest.raises(InputError, match="summing to 1"):
            wif_core.collect(store, Lm(), "piqa", items, layers=[2], fractions=(1, 1, 1))  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"--k 21 is more than 40 items can give.*at most 20"):
            wif_core.collect(store, Lm(), "piqa", items, layers=[2], k=21)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="--k 0"):
            wif_core.collect(store, Lm(), "piqa", items, layers=[2], k=0)  # type: ignore[arg-type]
        assert store.run_ids() == []
    db = tmp_path / "cli.duckdb"
    assert main(_collect(Path("org/never-loaded"), items_file, db, "--k", "21")) == 2
    assert "at most 20" in _err_line(capsys) and not db.exists()


def test_input_files_are_checked_before_the_model_loads(tmp_path, capsys, monkeypatch, tiny_model_dir):
    from wif_core.models import loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the input file was checked")

    monkeypatch.setattr(loading, "load_model", no_loading)
    bad = _write(tmp_path / "bad.json", [{"goal": "g", "sol1": "a", "label": 0}])
    dup = _write(tmp_path / "dup.json", [{"id": "x", "goal": "g", "sol1": "a", "sol2": "b", "label": 0}] * 2)
    db = tmp_path / "w.duckdb"
    assert main(_collect(tiny_model_dir, bad, db)) == 2
    assert "bad.json record 0: missing field 'sol2'" in _err_line(capsys)
    assert main(_collect(tiny_model_dir, dup, db)) == 2
    assert "item id 'x' appears twice" in _err_line(capsys)
    assert main(_collect(tiny_model_dir, tmp_path / "missing.json", db)) == 2
    assert "not 'hf', 'generated' or an existing file" in _err_line(capsys)
    assert not db.exists()


def _small_run(tmp_path: Path, n_correct: int, n: int = 8) -> str:
    items = [TaskItem(item_id=f"i{j}", task="piqa", context=f"Q{j}?", choices=("a", "b"), gold=0) for j in range(n)]
    run = RunInfo(run_id="r1", model="m", task="piqa", source="test", n_choices=2, family="two_choice")

    def score(todo):
        yield [OutcomeRow(item_id=it.item_id, pred=0, correct=j < n_correct) for j, it in enumerate(todo)]

    with Store.open(tmp_path / "s.duckdb", write=True) as store, pytest.raises(InputError) as err:
        write_run(store, run, items, score, split_options=SplitOptions())
    return str(err.value)


def test_a_run_with_one_outcome_class_says_its_real_counts_and_the_fix(tmp_path):
    message = _small_run(tmp_path, n_correct=8)
    assert "of its 8 items the model answered 8 correctly and 0 incorrectly" in message
    assert "score more items" in message and "wif runs --delete r1" in message and "\n" not in message
    (tmp_path / "b").mkdir()
    message = _small_run(tmp_path / "b", n_correct=7)
    assert "answered 7 correctly and 1 incorrectly" in message  # both outcomes, but one of them only once
    import pandas as pd

    frame = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(6)],
            "key": ["a", "a", "b", "c", "d", "e"],
            "correct": [False] * 2 + [True] * 4,
        }
    )
    with pytest.raises(
        InputError, match=r"answered 4 correctly and 2 incorrectly, 4 and 1 of them distinct: score more"
    ):
        balanced_splits(frame)


# ---- inputs that should not be accepted ------------------------------------------------------------


PIQA = {"goal": "How do you open a jar?", "sol1": "twist the lid", "sol2": "hit it", "label": 0}


@pytest.mark.parametrize(
    ("task", "record", "message"),
    [
        ("piqa", {**PIQA, "sol2": ""}, r"bad\.json record 0: field 'sol2' is empty"),
        ("piqa", {**PIQA, "sol1": "   \t"}, r"record 0: field 'sol1' is empty"),
        ("piqa", {**PIQA, "label": 0.9}, r"record 0: field 'label'=0\.9 is not an answer index; give a whole number"),
        ("piqa", {**PIQA, "label": "0.9"}, r"field 'label'='0\.9' is not an answer index"),
        ("piqa", {**PIQA, "label": True}, r"field 'label'=True is not an answer index"),
        (
            "piqa",
            {**PIQA, "id": "p7", "sol2": " twist  the lid "},
            r"record 0: item p7 has the same answer in fields 'sol1' and 'sol2'; give distinct options",
        ),
        (
            "winogrande",
            {"sentence": "The _ is big.", "option1": "cat", "option2": "", "answer": "1"},
            r"field 'option2' is empty",
        ),
        (
            "siqa",
            {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "a", "label": "1"},
            r"same answer in fields 'answerA' and 'answerC'",
        ),
        (
            "siqa",
            {"context": "c", "question": "q", "answers": ["a", " ", "c"], "gold": 1, "is_correct": True},
            r"field 'answers\[1\]' is empty",
        ),
    ],
)
def test_options_and_answer_keys_that_cannot_be_scored_are_refused(tmp_path, task, record, message):
    path = _write(tmp_path / "bad.json", [record])
    with pytest.raises(InputError, match=message) as err:
        load_items(task, str(path))
    assert "\n" not in str(err.value)


def test_a_limit_below_one_is_refused_through_the_api_too(items_file):
    for limit in (0, -5):
        with pytest.raises(InputError, match=f"--limit {limit} is out of range"):
            wif_core.load_items("piqa", str(items_file), limit=limit)
    with pytest.raises(InputError, match="--limit 0"):
        wif_core.load_items("gen-physical", "generated", limit=0)  # not the generator's 400
    assert len(wif_core.load_items("piqa", str(items_file), limit=3)) == 3


def test_whole_number_labels_are_still_read():
    from wif_core.tasks.sources import _Rec

    assert _Rec({"label": 1.0}, "x").index("label", 2) == 1 and _Rec({"label": "1"}, "x").index("label", 2) == 1


def test_items_given_in_python_with_blank_or_repeated_options_are_refused(tmp_path):
    class Lm:
        name, n_layers, d_model = "lm", 4, 32

    blank = [TaskItem(item_id="a", task="piqa", context="c", choices=("x", " "), gold=0)]
    same = [TaskItem(item_id="b", task="piqa", context="c", choices=("x", "x"), gold=0)]
    with wif_core.open_store(tmp_path / "s.duckdb", write=True) as store:
        with pytest.raises(InputError, match="item a: choice 2 is empty or blank"):
            wif_core.collect(store, Lm(), "piqa", blank, layers=[2])  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"item b: choices 1 and 2 are the same answer \('x'\)"):
            wif_core.collect(store, Lm(), "piqa", same, layers=[2])  # type: ignore[arg-type]
        assert store.run_ids() == []


def _store_with_run(tmp_path: Path) -> Path:
    items = [
        TaskItem(item_id=f"i{j:02d}", task="piqa", context=c, choices=("a", "b"), gold=j % 2)
        for j, c in enumerate(["50% off", "snake_case", "back\\slash"] + [f"plain {j}" for j in range(37)])
    ]
    run = RunInfo(run_id="r1", model="m", task="piqa", source="test", n_choices=2, family="two_choice")

    def score(todo):
        yield [OutcomeRow(item_id=it.item_id, pred=0, correct=j % 3 != 0) for j, it in enumerate(todo)]

    db = tmp_path / "s.duckdb"
    with Store.open(db, write=True) as store:
        write_run(store, run, items, score, split_options=SplitOptions())
    return db


def test_search_matches_percent_underscore_and_backslash_literally(tmp_path):
    with Store.open(_store_with_run(tmp_path)) as store:
        assert store.items("r1", search="%")["context"].tolist() == ["50% off"]
        assert store.items("r1", search="_")["context"].tolist() == ["snake_case"]
        assert store.items("r1", search="\\")["context"].tolist() == ["back\\slash"]
        assert store.items("r1", search="e_c")["context"].tolist() == ["snake_case"]
        assert len(store.items("r1", search="plain")) == 37 and len(store.items("r1", search="a_e")) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["items", "--run", "r1", "--limit", "-1"], "argument --limit: -1 is too small"),
        (["items", "--run", "r1", "--limit", "0"], "argument --limit: 0 is too small"),
        (["items", "--run", "r1", "--limit", "ten"], "argument --limit: 'ten' is not a whole number"),
        (["attribute", "--run", "r1", "--limit", "-3"], "argument --limit: -3 is too small"),
        (["demo", "--limit", "0", "--no-app"], "argument --limit: 0 is too small"),
        (["explain", "--run", "r1", "--explainer", "surface", "--set", "foo"], "'foo' is not KEY=VALUE"),
        (["explain", "--run", "r1", "--explainer", "surface", "--resamples", "0"], "argument --resamples: 0 is"),
        (["explain", "--run", "r1", "--explainer", "surface", "--resamples", "-5"], "argument --resamples: -5 is"),
        (["explain", "--run", "r1", "--explainer", "surface", "--level", "0"], "argument --level: 0 is outside"),
        (["explain", "--run", "r1", "--explainer", "surface", "--level", "1.5"], "argument --level: 1.5 is outside"),
        (["sae", "diff", "--run", "r1", "--layer", "1", "--resamples", "0"], "argument --resamples: 0 is"),
        (["zoo", "eval", "x", "--level", "1"], "argument --level: 1 is outside"),
    ],
)
def test_option_values_are_one_line_not_a_traceback(tmp_path, capsys, argv, message):
    db = tmp_path / "s.duckdb"
    line = _refused_by_argparse(capsys, [*argv, "--db", str(db)])
    assert message in line and not db.exists()


def test_unknown_explainer_settings_are_refused_naming_the_settings(tmp_path, capsys):
    db = str(_store_with_run(tmp_path))
    assert main(["explain", "--run", "r1", "--explainer", "surface", "--set", "foo=bar", "--db", db]) == 2
    assert _err_line(capsys) == "wif: error: explainer 'surface' has no setting 'foo'; it takes no settings"
    assert main(["explain", "--run", "r1", "--explainer", "attention-probe", "--set", "hedas=2", "--db", db]) == 2
    line = _err_line(capsys)
    assert "no setting 'hedas'; its settings are heads, epochs, lr, weight_decay" in line
    with Store.open(db) as store, pytest.raises(InputError, match="no setting 'C'"):
        wif_core.evaluate(store, "r1", "text", C=1)


# ---- smaller ---------------------------------------------------------------------------------------


def test_a_failed_command_creates_no_store_file(tmp_path, capsys, tiny_model_dir, items_file):
    bad = _write(tmp_path / "bad.json", {"correct": [{"goal": "g", "sol1": "a", "label": 0}], "incorrect": []})
    db = tmp_path / "new.duckdb"
    assert main(["import", str(bad), "--task", "piqa", "--model-name", "m", "--db", str(db)]) == 2
    assert "missing field 'sol2'" in _err_line(capsys)
    assert not db.exists() and not Path(str(db) + ".wal").exists()
    assert main(_collect(tiny_model_dir, items_file, db, "--token-layers", "99")) == 2  # fails once the model loaded
    assert not db.exists()
    existing = _store_with_run(tmp_path)
    assert main(["import", str(bad), "--task", "piqa", "--model-name", "m", "--db", str(existing)]) == 2
    with Store.open(existing) as store:  # a store that was there stays, unchanged
        assert store.run_ids() == ["r1"]


def test_the_token_layers_error_names_token_layers(tmp_path, capsys, tiny_model_dir, items_file):
    assert main(_collect(tiny_model_dir, items_file, tmp_path / "w.duckdb", "--token-layers", "99")) == 2
    line = _err_line(capsys)
    assert line.startswith("wif: error: --token-layers [99]: the model has blocks 1..4") and "--layers " not in line
