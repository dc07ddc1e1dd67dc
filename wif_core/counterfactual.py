"""Counterfactual edits of one item: change its text, choices or answer key and score it again as its run did.

An ``Edit`` holds what a person can change: the raw fields the item's template renders (``goal`` for a
two-choice item, ``passage`` and ``question`` for yes/no…), or, for an item whose fields do not render its
context, the scored context itself; its choices; its answer key. ``apply_edit`` turns it into a new
``TaskItem`` (refusing, in one line each, an empty text, fewer than two choices, a key out of range);
``check_fits`` refuses an edit longer than the model reads, and ``rescore`` scores it with
``models.scoring.score_items`` exactly as collection scored the run (its scoring rule and context length).

Nothing here writes a store. ``layout_record`` writes an edited item as a record of its task's original
layout (README, "Input layouts"), which ``wif collect --source FILE`` reads back as the same item, and
``collect_command`` is the command that makes those records a new run of the same model.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wif_core.errors import InputError
from wif_core.models.scoring import ScoredItem, Scoring, check_max_length, prepare, score_items
from wif_core.tasks.base import Format, TaskItem, choices_problem
from wif_core.tasks.templates import LETTERS, item_format, render_context, scoring_pairs

if TYPE_CHECKING:
    from wif_core.store import RunInfo

# The raw fields each format's template renders into the scored context (``templates.render_context``).
FIELDS: dict[Format, tuple[str, ...]] = {
    "two_choice": ("goal",),
    "yes_no": ("passage", "question"),
    "fill_blank": ("sentence",),
    "three_choice": ("context", "question"),
}
EDITED_FROM = "edited_from"  # the meta key naming the item an edited item was made from
YES_NO = ("no", "yes")  # a yes/no item's choices in its original layout (BoolQ's), which has no choice fields


@dataclass(frozen=True, kw_only=True)
class Edit:
    """What a person changed in an item.

    ``fields`` are the template's raw fields (``FIELDS``); they are empty, and ``context`` holds the scored
    context itself, for an item whose fields do not render its context (``edit_of`` decides). ``gold`` is
    0-based, like ``TaskItem.gold``.
    """

    fields: Mapping[str, str] = field(default_factory=dict)
    context: str | None = None
    choices: tuple[str, ...]
    gold: int


def edit_of(item: TaskItem) -> Edit:
    """The unchanged edit of an item: what an editor is prefilled with."""
    names = FIELDS[item_format(item)]
    fields = {name: item.meta.get(name) for name in names}
    if all(isinstance(v, str) for v in fields.values()) and _render(item, fields) == item.context:
        return Edit(fields={k: str(v) for k, v in fields.items()}, choices=tuple(item.choices), gold=item.gold)
    return Edit(context=item.context, choices=tuple(item.choices), gold=item.gold)


def _render(item: TaskItem, fields: Mapping[str, Any]) -> str | None:
    try:
        return render_context(item_format(item), {k: str(v) for k, v in fields.items()})
    except (KeyError, AttributeError):
        return None


def apply_edit(item: TaskItem, edit: Edit, *, item_id: str) -> TaskItem:
    """The item ``edit`` makes of ``item``, under ``item_id``; an ``InputError`` (one line) for an edit that
    cannot be scored. Its meta keeps the original's, with the edited fields and ``EDITED_FROM`` set."""
    fmt = item_format(item)
    if edit.fields:
        for name, value in edit.fields.items():
            if not value.strip():
                raise InputError(f"the {name} is empty; give the text the model reads")
        if fmt == "fill_blank" and edit.fields["sentence"].count("_") != 1:
            raise InputError("the sentence needs exactly one _ to mark the blank the options fill")
        context = render_context(fmt, dict(edit.fields))
    else:
        context = edit.context or ""
        if not context.strip():
            raise InputError("the context is empty; give the text the model reads before the answer")
    choices = tuple(edit.choices)
    if len(choices) < 2:
        raise InputError(
            f"{len(choices)} choice{'' if len(choices) == 1 else 's'} given; give at least two, one per line"
        )
    if len(choices) > len(LETTERS):
        raise InputError(f"{len(choices)} choices given; give at most {len(LETTERS)}")
    problem = choices_problem(choices)
    if problem:
        raise InputError(f"{problem}; every option needs its own answer text")
    if not 0 <= edit.gold < len(choices):
        raise InputError(
            f"the right answer {edit.gold + 1} is out of range: give an option number from 1 to {len(choices)}"
        )
    meta = {**item.meta, **edit.fields, EDITED_FROM: item.meta.get(EDITED_FROM, item.item_id)}
    edited = TaskItem(item_id=item_id, task=item.task, context=context, choices=choices, gold=edit.gold, meta=meta)
    scoring_pairs(edited)  # the template's own refusals (nothing after the blank): now, not while scoring
    return edited


def changes(item: TaskItem, edited: TaskItem) -> list[str]:
    """What an edit changed, in words: the fields (or the context), each choice, the answer key."""
    out = []
    names = FIELDS[item_format(item)]
    if edited.context != item.context:
        out += [n for n in names if item.meta.get(n) != edited.meta.get(n)] or ["context"]
    for j in range(max(len(item.choices), len(edited.choices))):
        old = item.choices[j] if j < len(item.choices) else None
        new = edited.choices[j] if j < len(edited.choices) else None
        if old != new:
            out.append(f"choice {LETTERS[j]}" + (" added" if old is None else " removed" if new is None else ""))
    if edited.gold != item.gold:
        out.append("answer key")
    return out


def check_fits(lm: Any, edited: TaskItem, original: TaskItem, *, max_length: int | None = None) -> None:
    """Refuse an edit that the model reads less of than of the original: one that collection would cut more of
    from the left (``max_length``: the run's, by default the model's own context). Tokenises only."""
    limit = check_max_length(lm.model, max_length)
    if limit is None:
        return
    cut = prepare(edited, lm.tokenizer, limit).truncated  # raises when its answers alone do not fit
    allowed = prepare(original, lm.tokenizer, limit).truncated
    if cut > allowed:
        raise InputError(
            f"the edited item is about {cut - allowed} tokens longer than the {limit} positions the model reads; "
            "shorten it (collection would cut that much from the start of its context)"
        )


def rescore(lm: Any, item: TaskItem, *, scoring: str | None = "sum", max_length: int | None = None) -> ScoredItem:
    """Score one item as collection scores a run's items (``score_items``, with the run's ``scoring`` and
    ``max_length``), capturing no activations: its ``ll_sum``, ``pred``, ``correct`` and ``margin``."""
    limit = check_max_length(lm.model, max_length)
    rule: Scoring = "norm" if scoring == "norm" else "sum"
    batches = score_items(lm.model, lm.tokenizer, [item], (), scoring=rule, max_length=limit)
    return next(s for batch in batches for s in batch)


def layout_record(item: TaskItem) -> dict[str, Any]:
    """An item as one record of its task's original layout (README, "Input layouts"), which ``wif collect
    --source FILE`` reads back as an item with the same id, context, choices and answer key; an
    ``InputError`` (one line) for an item that layout cannot hold."""
    fmt = item_format(item)
    fields = {name: item.meta.get(name) for name in FIELDS[fmt]}
    if not all(isinstance(v, str) for v in fields.values()) or _render(item, fields) != item.context:
        raise InputError(
            f"{item.item_id}: its context was edited as a whole, and the {item.task} layout holds only its fields "
            f"({', '.join(FIELDS[fmt])})"
        )
    n = 3 if fmt == "three_choice" else 2
    if len(item.choices) != n:
        raise InputError(f"{item.item_id}: {len(item.choices)} choices, and the {item.task} layout holds {n}")
    c, gold = item.choices, item.gold
    if fmt == "two_choice":
        return {"id": item.item_id, **fields, "sol1": c[0], "sol2": c[1], "label": gold}
    if fmt == "yes_no":
        if tuple(c) != YES_NO:
            raise InputError(f"{item.item_id}: the {item.task} layout's choices are always 'no' and 'yes'")
        return {"id": item.item_id, **fields, "label": gold}
    if fmt == "fill_blank":
        return {"id": item.item_id, **fields, "option1": c[0], "option2": c[1], "answer": str(gold + 1)}
    return {"id": item.item_id, **fields, "answerA": c[0], "answerB": c[1], "answerC": c[2], "label": str(gold + 1)}


def layout_jsonl(items: Sequence[TaskItem]) -> tuple[str, list[str]]:
    """The items that their layout holds as JSONL (``layout_record``), and why each of the others is left out."""
    lines, left_out = [], []
    for item in items:
        try:
            lines.append(json.dumps(layout_record(item), ensure_ascii=False))
        except InputError as exc:
            left_out.append(str(exc))
    return "".join(f"{line}\n" for line in lines), left_out


def collect_command(run: RunInfo, source: str, *, db: str | None = None) -> str:
    """The ``wif collect`` command that scores the items of ``source`` (a ``layout_jsonl`` file) as a new run of
    ``run``'s model, with its layers, scoring rule, context length and precision."""
    parts = ["wif", "collect", "--model", run.model, "--task", run.task, "--source", source]
    if run.layers:
        parts += ["--layers", ",".join(str(x) for x in run.layers)]
    if run.token_layers:
        parts += ["--token-layers", ",".join(str(x) for x in run.token_layers)]
    if run.scoring == "norm":
        parts += ["--scoring", "norm"]
    if run.config.get("max_length") is not None:
        parts += ["--max-length", str(run.config["max_length"])]
    if run.config.get("dtype"):
        parts += ["--dtype", str(run.config["dtype"])]
    if db is not None:
        parts += ["--db", db]
    return shlex.join(parts)
