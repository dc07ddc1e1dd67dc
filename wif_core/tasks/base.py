"""TaskItem, the one record every source yields, and the registry of task specs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wif_core.errors import InputError

Format = Literal["two_choice", "yes_no", "fill_blank", "three_choice"]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
        "piqa", "two_choice", 2, "baber/piqa", None, "PIQA physical commonsense"
    ),  # parquet mirror: no script
    "boolq": TaskSpec("boolq", "yes_no", 2, "google/boolq", None, "BoolQ yes/no passage QA"),
    "winogrande": TaskSpec(
        "winogrande", "fill_blank", 2, "allenai/winogrande", "winogrande_xl", "WinoGrande coreference"
    ),
    "siqa": TaskSpec("siqa", "three_choice", 3, "allenai/social_i_qa", None, "Social IQa"),
    "gen-physical": TaskSpec("gen-physical", "two_choice", 2, description="generated affordance (PIQA format)"),
    "gen-passage": TaskSpec("gen-passage", "yes_no", 2, description="generated passage QA (BoolQ format)"),
    "gen-coref": TaskSpec("gen-coref", "fill_blank", 2, description="generated coreference (WinoGrande format)"),
    "gen-social": TaskSpec("gen-social", "three_choice", 3, description="generated social reasoning (SIQA format)"),
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
