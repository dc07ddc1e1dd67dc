"""The adversarial suite: every command fed malformed input answers with one line and leaves the store as it was.

For each case: exit code 2; stderr holds no traceback and ends in one line (``wif: error: …`` or
argparse's ``error:`` line) that contains the expected words (what is wrong and, where a file is
involved, which file, record and field); every table of the store has the same rows afterwards.
The app's side (every page with hostile query parameters) is in ``tests/test_hostile_urls.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from store_factory import COLLECTED_RUN, IMPORTED_RUN, make_synthetic_store

from wif_core.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("adversarial") / "s.duckdb"
    make_synthetic_store(path, with_sae=False)
    return path


def _counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # noqa: S608 - names from the catalogue
    finally:
        con.close()


def _files(tmp: Path) -> dict[str, Path]:
    """Malformed inputs, one per way a real file goes wrong."""
    good = {"goal": "open a jar", "sol1": "twist the lid", "sol2": "hit it", "label": 0}
    out = {
        "not_json.json": "{ this is not json",
        "latin1.jsonl": None,
        "missing_field.jsonl": json.dumps({"goal": "g", "sol1": "a", "label": 0}),
        "label_range.jsonl": json.dumps({**good, "label": 5}),
        "label_fraction.jsonl": json.dumps({**good, "label": 0.9}),
        "label_null.jsonl": json.dumps({**good, "label": None}),
        "blank_choice.jsonl": json.dumps({**good, "sol2": "   "}),
        "same_choices.jsonl": json.dumps({**good, "sol2": "twist the lid"}),
        "not_records.json": json.dumps([1, 2, 3]),
        "empty.jsonl": "",
        "outcomes_bad.json": json.dumps({"correct": [{**good, "is_correct": "maybe"}], "incorrect": []}),
    }
    paths = {}
    for name, text in out.items():
        p = tmp / name
        if text is None:
            p.write_bytes(json.dumps(good).replace("jar", "jär").encode("latin-1"))
        else:
            p.write_text(text)
        paths[name] = p
    (tmp / "dup_ids.jsonl").write_text("\n".join(json.dumps({**good, "id": "x", "goal": f"g{i}"}) for i in range(2)))
    paths["dup_ids.jsonl"] = tmp / "dup_ids.jsonl"
    (tmp / "a_text_file.duckdb").write_text("not a database")
    paths["text_db"] = tmp / "a_text_file.duckdb"
    return paths


FILE_CASES = [  # (file, words the one line must hold)
    ("not_json.json", ["not_json.json"]),
    ("latin1.jsonl", ["latin1.jsonl"]),
    ("missing_field.jsonl", ["missing_field.jsonl", "sol2"]),
    ("label_range.jsonl", ["label_range.jsonl", "label"]),
    ("label_fraction.jsonl", ["label_fraction.jsonl", "label"]),
    ("label_null.jsonl", ["label_null.jsonl", "label"]),
    ("blank_choice.jsonl", ["blank_choice.jsonl", "sol2"]),
    ("same_choices.jsonl", ["same_choices.jsonl", "sol1", "sol2"]),
    ("not_records.json", ["not_records.json"]),
    ("empty.jsonl", ["empty.jsonl"]),
    ("dup_ids.jsonl", ["twice"]),
]


def _refused(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusal
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, f"{argv}: exit {code}\n{err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and ("wif: error: " in lines[-1] or ": error: " in lines[-1]), err
    if "wif: error: " in lines[-1]:
        assert len(lines) == 1, f"more than one line: {err}"
    return lines[-1]


@pytest.mark.parametrize(("name", "words"), FILE_CASES)
def test_collect_refuses_a_bad_file_in_one_line_and_writes_nothing(
    name, words, store, tmp_path, capsys, tiny_model_dir
) -> None:
    files = _files(tmp_path)
    before = _counts(store)
    argv = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--source", str(files[name])]
    line = _refused(capsys, [*argv, "--layers", "2", "--db", str(store)])
    assert all(w in line for w in words), line
    assert _counts(store) == before


@pytest.mark.parametrize(
    ("name", "words"), [("outcomes_bad.json", ["outcomes_bad.json", "is_correct"]), ("not_json.json", ["not_json"])]
)
def test_import_refuses_a_bad_outcome_file_and_writes_nothing(name, words, store, tmp_path, capsys) -> None:
    files = _files(tmp_path)
    before = _counts(store)
    line = _refused(capsys, ["import", str(files[name]), "--task", "piqa", "--model-name", "m", "--db", str(store)])
    assert all(w in line for w in words), line
    assert _counts(store) == before


def _command_cases(store: Path, tmp: Path) -> list[tuple[list[str], list[str]]]:
    db = ["--db", str(store)]
    return [
        (["runs", "--db", str(_files(tmp)["text_db"])], ["a_text_file.duckdb"]),
        (["runs", "--db", str(tmp / "absent.duckdb")], ["no store at"]),
        (["runs", "--delete", "no-such-run", *db], ["no-such-run"]),
        (["items", "--run", "no-such-run", *db], ["no-such-run"]),
        (["items", "--run", COLLECTED_RUN, "--limit", "-1", *db], ["--limit"]),
        (["collect", "--model", "no-such-model", "--task", "piqa", "--source", "generated", *db], ["no-such-model"]),
        (["collect", "--model", "x", "--task", "no-such-task", *db], ["no-such-task"]),
        (["explain", "--run", COLLECTED_RUN, "--explainer", "no-such-explainer", *db], ["no-such-explainer"]),
        (["explain", "--run", COLLECTED_RUN, "--explainer", "probe", "--layer", "99", *db], ["layer"]),
        (["explain", "--run", COLLECTED_RUN, "--explainer", "surface", "--set", "foo=bar", *db], ["foo"]),
        (["explain", "--run", COLLECTED_RUN, "--explainer", "surface", "--set", "foo", *db], ["--set"]),
        (["explain", "--run", COLLECTED_RUN, "--all", "--resamples", "0", *db], ["--resamples"]),
        (["explain", "--run", COLLECTED_RUN, "--all", "--level", "1.5", *db], ["--level"]),
        (["explain", "--run", IMPORTED_RUN, "--explainer", "probe", *db], ["probe"]),
        (["explain", "--run", COLLECTED_RUN, "--explainer", "surface", "--exclude", "suspect", *db], ["wif quality"]),
        (["explain", "--run", COLLECTED_RUN, "--explainer", "surface", "--exclude", "dups", *db], ["--exclude"]),
        (["quality", "--run", "no-such-run", *db], ["no-such-run"]),
        (["quality", "--run", COLLECTED_RUN, "--folds", "1", *db], ["--folds 1"]),
        (["quality", "--run", COLLECTED_RUN, "--folds", "0", *db], ["--folds"]),
        (["quality", "--run", COLLECTED_RUN, "--db", str(tmp / "absent.duckdb")], ["no store at"]),
        (["reproduce", "--run", "no-such-run", *db], ["no-such-run"]),
        (["sae", "diff", "--run", COLLECTED_RUN, "--layer", "2", *db], ["layer 2"]),
        (["attribute", "--run", COLLECTED_RUN, "--method", "no-such-method", *db], ["no-such-method"]),
        (["attribute", "--run", COLLECTED_RUN, "--limit", "-3", *db], ["--limit"]),
        (["attribute", "--run", IMPORTED_RUN, *db], ["--model"]),
        (["cluster", "--run", COLLECTED_RUN, "--k", "1", "--no-cache", *db], ["--k"]),
        (["cluster", "--run", IMPORTED_RUN, "--space", "activations", "--no-cache", *db], ["activations"]),
        (["zoo", "eval", "no-such-zoo-model", "--samples", "10"], ["no-such-zoo-model"]),
        (["zoo", "eval", "2nd_argmax_d2_n2", "--samples", "0"], ["--samples"]),
        (["zoo", "train", "no-such-task", "--hidden", "2", "--seq", "2"], ["no-such-task"]),
        (["migrate", "--db", str(tmp / "absent.duckdb")], ["no store at"]),
        (["app", "--db", str(tmp / "absent.duckdb")], ["no store at"]),
    ]


def test_every_command_refuses_bad_options_in_one_line_and_leaves_the_store(store, tmp_path, capsys) -> None:
    before = _counts(store)
    failures = []
    for argv, words in _command_cases(store, tmp_path):
        try:
            line = _refused(capsys, argv)
        except AssertionError as exc:
            failures.append(f"{' '.join(argv)}: {exc}")
            continue
        if not all(w in line for w in words):
            failures.append(f"{' '.join(argv)}: {line!r} lacks {words}")
    assert not failures, "\n".join(failures)
    assert _counts(store) == before
    assert not (tmp_path / "absent.duckdb").exists()
