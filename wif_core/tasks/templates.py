"""Prompt templates, all in one place.

Continuation scoring follows lm-evaluation-harness: the answer is scored as a
continuation of the context after a single space (``target_delimiter``). WinoGrande
uses the harness's partial scoring: each option is put into the blank and the text
after the blank is the scored continuation, so the options differ in the prefix.

The paper-style prompt lists the context and every option, in their given order,
before ``Answer:``; its last token and its mean are the ``last`` and ``mean`` sites.
"""

from __future__ import annotations

from wif_core.errors import InputError
from wif_core.tasks.base import Format, TaskItem, get_task

TARGET_DELIMITER = " "
LETTERS = "ABCDEFGHIJ"
TEMPLATE_VERSION = "lm-eval-v1"


def render_context(fmt: Format, fields: dict[str, str]) -> str:
    """The scored context of an item from its raw fields (lm-evaluation-harness style)."""
    if fmt == "two_choice":
        return f"Question: {fields['goal']}\nAnswer:"
    if fmt == "yes_no":
        return f"{fields['passage']}\nQuestion: {fields['question'].rstrip('?')}?\nAnswer:"
    if fmt == "fill_blank":
        return fields["sentence"]
    if fmt == "three_choice":
        return f"Q: {fields['context']} {fields['question']}\nA:"
    raise InputError(f"unknown format '{fmt}'")


def item_format(item: TaskItem) -> Format:
    """The format the templates render an item of a named language-model task with (its task's spec).

    What a stored run is, is on its record (``RunInfo.family``); this is for items that come from no run.
    """
    return get_task(item.task).format


def scoring_pairs(item: TaskItem) -> list[tuple[str, str]]:
    """(prefix, continuation) per choice, in option order; the continuation is what is scored."""
    fmt = item_format(item)
    if fmt == "fill_blank":
        sentence = item.context
        idx = sentence.find("_")
        if idx < 0:
            raise InputError(f"item {item.item_id}: field 'sentence' has no '_' blank; mark the blank with _")
        tail = sentence[idx + 1 :].strip()
        if not tail:
            raise InputError(f"item {item.item_id}: nothing follows the blank, so there is nothing to score")
        return [(sentence[:idx] + opt, TARGET_DELIMITER + tail) for opt in item.choices]
    if not item.context.strip():
        raise InputError(f"item {item.item_id}: field 'context' is empty")
    return [(item.context, TARGET_DELIMITER + c) for c in item.choices]


def _stem(item: TaskItem) -> str:
    fmt = item_format(item)
    m = item.meta
    if fmt == "two_choice" and "goal" in m:
        return f"Goal: {m['goal']}"
    if fmt == "yes_no" and "passage" in m and "question" in m:
        return f"Passage: {m['passage']}\nQuestion: {str(m['question']).rstrip('?')}?"
    if fmt == "fill_blank":
        return f"Sentence: {item.context}"
    if fmt == "three_choice" and "question" in m and "context" in m:
        return f"Context: {m['context']}\nQuestion: {m['question']}"
    text = item.context.rstrip()
    for cue in ("\nAnswer:", "\nA:"):
        if text.endswith(cue):
            text = text[: -len(cue)]
    return text


def listing_parts(item: TaskItem) -> tuple[str, str]:
    """The paper-style prompt in two parts: the item (what a long input is cut from), then its options."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return _stem(item), f"\nOptions:\n{options}\nAnswer:"


def listing_prompt(item: TaskItem) -> str:
    """The paper-style prompt: the item and all its options in given order, then ``Answer:``."""
    return "".join(listing_parts(item))
