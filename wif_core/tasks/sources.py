"""Sources of TaskItems: the Hugging Face hub, local files in a dataset's original field
layout, and balanced outcome files (``{"correct": [...], "incorrect": [...]}``) such as
the Why-It-Failed release, whose records also say whether a model got them right.

Every parser names the file, the record and the field when something is wrong.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wif_core.errors import InputError
from wif_core.tasks.base import TaskItem, get_task, same_answer
from wif_core.tasks.templates import render_context

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


Scores = tuple[float | None, ...]


@dataclass(frozen=True)
class RecordOutcome:
    """What an outcome file says of one item: correctness, and the prediction where known.

    ``ll`` holds the per-choice log-likelihoods in option order, ``None`` for a choice the file left
    unscored (``null``, ``NaN`` or an infinity: the released Social IQa outcomes have such records);
    ``ll`` itself is ``None`` when the record gives no score at all.
    """

    correct: bool
    pred: int | None = None
    ll: Scores | None = None
    split: str | None = None


def score_value(value: Any, where: str, name: str) -> float | None:
    """One log-likelihood from a file: a number (or numeric text), ``None`` when missing or not finite."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"{where}: field {name}={value!r} must be a number (a log-likelihood) or null")
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{where}: field {name}={value!r} must be a number (a log-likelihood) or null") from None
    return number if math.isfinite(number) else None


def complete_or_none(scores: Scores) -> Scores | None:
    """The scores, or None when not one choice has a score (nothing to keep)."""
    return None if all(x is None for x in scores) else scores


class _Rec:
    """A record with field access that fails with the file, the record and the field."""

    def __init__(self, rec: Any, where: str) -> None:
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        self.rec, self.where = rec, where

    def has(self, name: str) -> bool:
        return name in self.rec and self.rec[name] is not None

    def text(self, name: str) -> str:
        if not self.has(name):
            raise InputError(f"{self.where}: missing field '{name}'")
        value = self.rec[name]
        if not isinstance(value, str):
            raise InputError(f"{self.where}: field '{name}' must be text, got {type(value).__name__}")
        return value

    def index(self, name: str, n: int, base: int = 0) -> int:
        """An answer index stored as int or digit string, ``base``-based, checked against ``n`` choices."""
        if not self.has(name):
            raise InputError(f"{self.where}: missing field '{name}'")
        raw = self.rec[name]
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):  # int(0.9) would be 0
            raise InputError(f"{self.where}: field '{name}'={raw!r} is not an answer index; give a whole number")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise InputError(
                f"{self.where}: field '{name}'={raw!r} is not an answer index; give a whole number"
            ) from None
        if not base <= value < n + base:
            raise InputError(f"{self.where}: field '{name}'={raw!r} is out of range; expected {base}..{n + base - 1}")
        return value - base

    def scores(self, name: str, n: int) -> Scores | None:
        """A list field of ``n`` per-choice log-likelihoods; null/NaN entries are kept as None (unscored)."""
        if not self.has(name):
            return None
        raw = self.rec[name]
        if not isinstance(raw, list) or len(raw) != n:
            raise InputError(
                f"{self.where}: field '{name}' must be a list of {n} numbers (null for an unscored choice), "
                f"got {raw!r:.60}"
            )
        return complete_or_none(tuple(score_value(x, self.where, f"'{name}'[{j}]") for j, x in enumerate(raw)))

    def score_fields(self, names: tuple[str, ...]) -> Scores | None:
        """Per-choice log-likelihoods kept in one field per choice (``ll_option1``…); None if none is there."""
        if not any(name in self.rec for name in names):
            return None
        return complete_or_none(tuple(score_value(self.rec.get(name), self.where, f"'{name}'") for name in names))

    def flag(self, name: str) -> bool:
        if not self.has(name):
            raise InputError(f"{self.where}: missing field '{name}'")
        value = self.rec[name]
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "0", "1"):
            return value.strip().lower() in ("true", "yes", "1")
        raise InputError(f"{self.where}: field '{name}'={value!r} must be true/false or 1/0")


def _check_choices(rec: _Rec, item_id: str, fields: tuple[str, ...], choices: tuple[str, ...]) -> None:
    """Refuse an empty or blank option, and two options that are the same answer (the tie would go to the first)."""
    for name, text in zip(fields, choices, strict=True):
        if not text.strip():
            raise InputError(f"{rec.where}: field '{name}' is empty; every option needs its answer text")
    for j, text in enumerate(choices):
        for i in range(j):
            if same_answer(choices[i], text):
                raise InputError(
                    f"{rec.where}: item {item_id} has the same answer in fields '{fields[i]}' and '{fields[j]}'; "
                    "give distinct options or drop the record"
                )


def _yes_no(rec: _Rec, name: str) -> int:
    value = rec.text(name).strip().lower()
    if value not in ("yes", "no"):
        raise InputError(f"{rec.where}: field '{name}'={value!r} must be 'Yes' or 'No'")
    return 1 if value == "yes" else 0


def parse_item(task: str, rec: _Rec, item_id: str) -> tuple[TaskItem, RecordOutcome | None]:
    """One record in the task's original layout or its outcome-file layout → item (+ outcome)."""
    fmt = get_task(task).format
    outcome: RecordOutcome | None = None
    choices: tuple[str, ...]
    pred: int | None
    ll: Scores | None
    correct = rec.flag("is_correct") if rec.has("is_correct") else None
    if fmt == "two_choice":
        goal = rec.text("goal")
        choices = (rec.text("sol1"), rec.text("sol2"))
        _check_choices(rec, item_id, ("sol1", "sol2"), choices)
        gold = rec.index("label", 2)
        item = TaskItem(
            item_id=item_id,
            task=task,
            context=render_context(fmt, {"goal": goal}),
            choices=choices,
            gold=gold,
            meta={"goal": goal},
        )
        if correct is not None:
            outcome = RecordOutcome(correct, gold if correct else 1 - gold)
    elif fmt == "yes_no":
        passage, question = rec.text("passage"), rec.text("question")
        if rec.has("correct_answer"):
            gold = _yes_no(rec, "correct_answer")
        elif rec.has("answer"):
            gold = int(rec.flag("answer"))
        else:
            gold = rec.index("label", 2)
        fields = {"passage": passage, "question": question}
        item = TaskItem(
            item_id=item_id,
            task=task,
            context=render_context(fmt, fields),
            choices=("no", "yes"),
            gold=gold,
            meta=fields,
        )
        if correct is not None:
            pred = _yes_no(rec, "gemma_answer") if rec.has("gemma_answer") else (gold if correct else 1 - gold)
            outcome = RecordOutcome(correct, pred)
    elif fmt == "fill_blank":
        sentence = rec.text("sentence") if rec.has("sentence") else rec.text("question")
        if sentence.count("_") != 1:
            raise InputError(f"{rec.where}: the sentence must contain exactly one '_' blank")
        choices = (rec.text("option1"), rec.text("option2"))
        _check_choices(rec, item_id, ("option1", "option2"), choices)
        gold = rec.index("answer" if rec.has("answer") else "gold", 2, base=1)
        item = TaskItem(
            item_id=item_id, task=task, context=sentence, choices=choices, gold=gold, meta={"sentence": sentence}
        )
        if correct is not None:
            pred = rec.index("gemma_answer", 2, base=1) if rec.has("gemma_answer") else None
            ll = rec.score_fields(("ll_option1", "ll_option2"))
            outcome = RecordOutcome(correct, pred if pred is not None else (gold if correct else 1 - gold), ll)
    else:  # three_choice: Social IQa, original layout or the alternative outcome layout
        context, question = rec.text("context"), rec.text("question")
        if rec.has("answers"):
            answers = rec.rec["answers"]
            if not isinstance(answers, list) or len(answers) != 3 or not all(isinstance(a, str) for a in answers):
                raise InputError(f"{rec.where}: field 'answers' must be a list of three strings")
            choices = tuple(answers)
            _check_choices(rec, item_id, ("answers[0]", "answers[1]", "answers[2]"), choices)
            gold = rec.index("gold", 3, base=1)
        else:
            choices = (rec.text("answerA"), rec.text("answerB"), rec.text("answerC"))
            _check_choices(rec, item_id, ("answerA", "answerB", "answerC"), choices)
            gold = rec.index("label", 3, base=1)
        fields = {"context": context, "question": question}
        item = TaskItem(
            item_id=item_id, task=task, context=render_context(fmt, fields), choices=choices, gold=gold, meta=fields
        )
        if correct is not None:
            pred = rec.index("pred", 3, base=1) if rec.has("pred") else None
            ll = rec.scores("loglikelihoods", 3)
            outcome = RecordOutcome(correct, pred, ll)
    if outcome is not None and outcome.pred is not None and (outcome.pred == item.gold) != outcome.correct:
        raise InputError(
            f"{rec.where}: field 'is_correct'={outcome.correct} contradicts the prediction and the answer key"
        )
    return item, outcome


def read_json_records(path: Path) -> Any:
    """A JSON document, or the records of a JSONL file; clear errors for anything else."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; give a JSON or JSONL file") from None
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must be one object") from None
        return out
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); give a JSON or JSONL file"
        ) from None


def is_outcome_layout(doc: Any) -> bool:
    return isinstance(doc, dict) and "correct" in doc and "incorrect" in doc


def _split_of(path: Path) -> str | None:
    stem = path.stem.lower()
    return {"validation": "val", "dev": "val"}.get(stem, stem if stem in SPLIT_NAMES else None)


def outcome_files(path: Path) -> list[Path]:
    """The outcome files at ``path``: the file itself, or a directory's train/val/test JSON."""
    if path.is_dir():
        files = [path / f"{s}.json" for s in SPLIT_NAMES if (path / f"{s}.json").exists()]
        if not files:
            raise InputError(f"{path}: a directory must hold train.json, val.json and/or test.json")
        return files
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return [path]


def read_outcome_file(task: str, path: Path) -> Iterator[tuple[TaskItem, RecordOutcome]]:
    """Items with outcomes from one balanced outcome file; the split comes from the file name."""
    doc = read_json_records(path)
    if not is_outcome_layout(doc):
        raise InputError(f"{path}: expected an object with 'correct' and 'incorrect' lists")
    split = _split_of(path)
    prefix = f"{task}-{split or path.stem}"
    for group in ("correct", "incorrect"):
        records = doc[group]
        if not isinstance(records, list):
            raise InputError(f"{path}: field '{group}' must be a list of items")
        for n, raw in enumerate(records):
            rec = _Rec(raw, f"{path} {group}[{n}]")
            item_id = (
                str(raw["id"]) if isinstance(raw, dict) and raw.get("id") is not None else f"{prefix}-{group[0]}{n:05d}"
            )
            item, outcome = parse_item(task, rec, item_id)
            listed = group == "correct"
            if outcome is None:
                outcome = RecordOutcome(listed)
            elif outcome.correct != listed:
                raise InputError(f"{rec.where}: 'is_correct'={outcome.correct} but the item is listed under '{group}'")
            yield item, RecordOutcome(outcome.correct, outcome.pred, outcome.ll, split)


def read_local(task: str, path: Path, limit: int | None = None) -> list[TaskItem]:
    """Items from a local file: the original layout (JSON list or JSONL) or an outcome file/dir."""
    doc = None if path.is_dir() else read_json_records(path)
    if doc is None or is_outcome_layout(doc):
        items = [it for f in outcome_files(path) for it, _ in read_outcome_file(task, f)]
    else:
        if isinstance(doc, dict):
            doc = doc.get("data", doc.get("items"))
        if not isinstance(doc, list):
            raise InputError(f"{path}: expected a list of items (JSON array or JSONL), or an outcome file")
        items = []
        for n, raw in enumerate(doc):
            item_id = (
                str(raw.get("id") or raw.get("idx") or f"{task}-{path.stem}-{n:05d}") if isinstance(raw, dict) else ""
            )
            items.append(parse_item(task, _Rec(raw, f"{path} record {n}"), item_id)[0])
    if not items:
        raise InputError(f"{path} holds no items; give a JSON array or JSONL file of {task} records")
    return items[:limit] if limit else items


def read_hf(
    task: str, limit: int | None = None, split: str = "validation", dataset: str | None = None
) -> list[TaskItem]:
    """Items from the Hugging Face hub with ``datasets`` (needs the hub to be reachable)."""
    spec = get_task(task)
    hf_id, config = (dataset, None) if dataset else (spec.hf_id, spec.hf_config)
    if hf_id is None:
        raise InputError(f"task '{task}' is not on the hub; use --source generated or a local file")
    if hf_id and ":" in hf_id:
        hf_id, config = hf_id.split(":", 1)
    from wif_core import hub

    name = f"{hf_id}{':' + config if config else ''} ({split})"
    fix = "use a local file with --source PATH"
    try:
        import datasets
    except ImportError:
        raise InputError(f"--source hf needs the package datasets (`pip install datasets`); or {fix}") from None
    reason = hub.unreachable()
    try:
        if reason is None:
            ds = datasets.load_dataset(hf_id, config, split=split)
        else:
            log.info("%s; looking for %s in the local datasets cache", reason, name)
            with hub.cache_only():
                ds = datasets.load_dataset(hf_id, config, split=split)
    except Exception as exc:  # the hub raises many types; the user needs one line
        if reason is not None:
            raise hub.not_available(f"dataset {name}", reason, fix) from None
        raise InputError(f"cannot load {name} from the Hugging Face hub: {hub.whole_line(exc)}; {fix}") from None
    items = []
    for n, raw in enumerate(ds):
        if limit and n >= limit:
            break
        rec = dict(raw)
        item_id = f"{task}-{split}-{rec.get('idx', n)}"
        items.append(parse_item(task, _Rec(rec, f"{hf_id} {split}[{n}]"), item_id)[0])
    return items


def load_items(
    task: str, source: str, limit: int | None = None, seed: int = 0, sample: int | None = None
) -> list[TaskItem]:
    """Items of ``task`` from ``source``: 'hf', 'hf:ORG/NAME[:CONFIG]', 'generated', or a path.

    ``limit`` keeps the first N items; ``sample`` a seeded random N (in source order); both at least 1.
    """
    if limit is not None and limit < 1:  # 0 is not "all", and -5 would drop the last five
        raise InputError(f"--limit {limit} is out of range: give at least 1, or no limit for every item")
    items = _load_items(task, source, limit, seed)
    if sample is not None:
        if not 0 < sample <= len(items):
            raise InputError(f"--sample {sample} is out of range: the source has {len(items)} items")
        keep = sorted(random.Random(seed).sample(range(len(items)), sample))
        items = [items[i] for i in keep]
    return items


def _load_items(task: str, source: str, limit: int | None, seed: int) -> list[TaskItem]:
    get_task(task)
    if source == "generated":
        if not task.startswith("gen-"):
            raise InputError(f"--source generated needs a generated task (gen-physical, …), not '{task}'")
        from wif_core.tasks.generated import generate

        return generate(task, n=limit or 400, seed=seed)
    if source == "hf" or source.startswith("hf:"):
        return read_hf(task, limit, dataset=source[3:] or None if source.startswith("hf:") else None)
    path = Path(source)
    if not path.exists():
        raise InputError(f"--source {source}: not 'hf', 'generated' or an existing file or directory")
    return read_local(task, path, limit)
