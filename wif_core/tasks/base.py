"""TaskItem, the one record every source yields, and the registry of task specs."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wif_core.errors import InputError

Format = Literal["two_choice", "yes_no", "fill_blank", "three_choice"]


@dataclass(frozen=True, kw_only=True)
class TaskItem:
    """One multiple-choice item.

    ``context`` is the text before the answer as the item's format renders it (for
    ``fill_blank`` the sentence with ``_`` marking the blank); ``meta`` holds the raw
    fields the templates need (``goal``, ``passage``, ``question``…), source ids and, for
    generated items, the generator's factors.
    """

    item_id: str
    task: str
    context: str
    choices: tuple[str, ...]
    gold: int
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.choices:
            raise InputError(f"item {self.item_id}: field 'choices' is empty; give at least two answers")
        if not 0 <= self.gold < len(self.choices):
            raise InputError(
                f"item {self.item_id}: field 'gold'={self.gold} is out of range for "
                f"{len(self.choices)} choices; use a 0-based index below {len(self.choices)}"
            )


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What wif knows of a task: its format (which picks the templates) and choice count."""

    name: str
    format: Format
    n_choices: int
    hf_id: str | None = None
    hf_config: str | None = None
    description: str = ""


TASKS: dict[str, TaskSpec] = {
    "piqa": TaskSpec(
        name="piqa",
        format="two_choice",
        n_choices=2,
        hf_id="baber/piqa",  # a parquet mirror: no loading script
        description="PIQA physical commonsense",
    ),
    "boolq": TaskSpec(
        name="boolq", format="yes_no", n_choices=2, hf_id="google/boolq", description="BoolQ yes/no passage QA"
    ),
    "winogrande": TaskSpec(
        name="winogrande",
        format="fill_blank",
        n_choices=2,
        hf_id="allenai/winogrande",
        hf_config="winogrande_xl",
        description="WinoGrande coreference",
    ),
    "siqa": TaskSpec(
        name="siqa", format="three_choice", n_choices=3, hf_id="allenai/social_i_qa", description="Social IQa"
    ),
    "gen-physical": TaskSpec(
        name="gen-physical", format="two_choice", n_choices=2, description="generated affordance (PIQA format)"
    ),
    "gen-passage": TaskSpec(
        name="gen-passage", format="yes_no", n_choices=2, description="generated passage QA (BoolQ format)"
    ),
    "gen-coref": TaskSpec(
        name="gen-coref", format="fill_blank", n_choices=2, description="generated coreference (WinoGrande format)"
    ),
    "gen-social": TaskSpec(
        name="gen-social", format="three_choice", n_choices=3, description="generated social reasoning (SIQA format)"
    ),
}


def get_task(name: str) -> TaskSpec:
    """The spec of a language-model task, or a clear error listing the known ones.

    Only the tasks above: what a stored run is (its number of choices, its format) is on its run
    record (``RunInfo.n_choices``, ``RunInfo.family``), zoo runs included.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise InputError(f"unknown task '{name}'; use one of: {', '.join(TASKS)}") from None


_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Whitespace-collapsed, lower-cased text: the key for duplicate detection."""
    return _WS.sub(" ", text).strip().lower()


def item_key(item: TaskItem) -> str:
    """A hash identifying an item's content regardless of whitespace, case and choice order.

    Two items with the same context and the same set of answers are the same question,
    even when a source lists the answers in the other order.
    """
    parts = [normalise(item.context)] + sorted(normalise(c) for c in item.choices)
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def same_answer(a: str, b: str) -> bool:
    """Whether two options are the same answer to the model: equal once whitespace is collapsed."""
    return " ".join(a.split()) == " ".join(b.split())


def choices_problem(choices: Sequence[str]) -> str | None:
    """Why these options cannot be scored (one is empty or blank, two are the same answer), or None."""
    for j, c in enumerate(choices):
        if not c.strip():
            return f"choice {j + 1} is empty or blank"
    for j, c in enumerate(choices):
        for i in range(j):
            if same_answer(choices[i], c):
                return f"choices {i + 1} and {j + 1} are the same answer ({_short(c)!r})"
    return None


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def items_digest(items: Sequence[TaskItem]) -> str:
    """A hash of what a run scores: every item's id, context, choices, answer key and meta, in order.

    Stored items give the same digest as the items they were read from (meta goes through the same
    JSON as the store's), so a run's digest says whether a source still holds what the run scored.
    """
    doc = [[it.item_id, it.context, list(it.choices), it.gold, dict(it.meta)] for it in items]
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
