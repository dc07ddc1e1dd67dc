"""Unit tier: counterfactual edits of items (``wif_core.counterfactual``), with no model; and one integration
check that ``rescore`` is collection's scoring and ``check_fits`` refuses what the model cannot read whole."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from wif_core.counterfactual import (
    EDITED_FROM,
    apply_edit,
    changes,
    check_fits,
    collect_command,
    edit_of,
    layout_jsonl,
    layout_record,
    rescore,
)
from wif_core.errors import InputError
from wif_core.store import RunInfo
from wif_core.tasks.base import TaskItem
from wif_core.tasks.sources import read_local
from wif_core.tasks.templates import render_context


def _item(task: str) -> TaskItem:
    """One item per format, built as the local reader builds it (its raw fields in meta)."""
    if task == "piqa":
        fields = {"goal": "How do you open a jar?"}
        choices: tuple[str, ...] = ("twist the lid", "hit it with a sock")
        fmt = "two_choice"
    elif task == "boolq":
        fields = {"passage": "Water boils at one hundred degrees.", "question": "does water boil at 100"}
        choices, fmt = ("no", "yes"), "yes_no"
    elif task == "winogrande":
        fields = {"sentence": "The trophy did not fit in the case because the _ was too big."}
        choices, fmt = ("trophy", "case"), "fill_blank"
    else:
        fields = {"context": "Alex gave Sam a gift.", "question": "What will Sam do next?"}
        choices, fmt = ("say thank you", "ignore it", "cry"), "three_choice"
    return TaskItem(
        item_id=f"{task}-1",
        task=task,
        context=render_context(fmt, fields),
        choices=choices,
        gold=1 if task == "boolq" else 0,
        meta={**fields, "source_id": "x"},
    )


TASKS = ("piqa", "boolq", "winogrande", "siqa")


@pytest.mark.parametrize("task", TASKS)
def test_an_unchanged_edit_gives_the_item_back(task: str) -> None:
    item = _item(task)
    edit = edit_of(item)
    assert edit.fields and edit.context is None  # the template's fields, not the rendered context
    again = apply_edit(item, edit, item_id="e")
    assert (again.context, again.choices, again.gold) == (item.context, item.choices, item.gold)
    assert again.meta[EDITED_FROM] == item.item_id and again.meta["source_id"] == "x"
    assert changes(item, again) == []


@pytest.mark.parametrize("task", TASKS)
def test_edited_items_round_trip_through_the_layout_wif_collect_reads(task: str, tmp_path: Path) -> None:
    item = _item(task)
    start = edit_of(item)
    name = next(iter(start.fields))
    text = start.fields[name].replace("the", "a") + " Really"
    edit = replace(start, fields={**start.fields, name: text}, gold=(item.gold + 1) % len(item.choices))
    edited = apply_edit(item, edit, item_id=f"{task}-1~edit1")
    assert edited.context != item.context and changes(item, edited) == [name, "answer key"]
    body, left_out = layout_jsonl([edited])
    assert not left_out
    path = tmp_path / "edits.jsonl"
    path.write_text(body)
    [back] = read_local(task, path)
    assert (back.item_id, back.context, back.choices, back.gold) == (
        edited.item_id,
        edited.context,
        edited.choices,
        edited.gold,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": {"goal": "   "}}, "the goal is empty"),
        ({"choices": ("only one",)}, "1 choice given; give at least two"),
        ({"choices": ()}, "0 choices given"),
        ({"gold": 2}, "the right answer 3 is out of range: give an option number from 1 to 2"),
        ({"gold": -1}, "the right answer 0 is out of range"),
        ({"choices": ("twist the lid", "twist  the lid")}, "choices 1 and 2 are the same answer"),
        ({"choices": ("twist", " ")}, "choice 2 is empty"),
    ],
)
def test_bad_edits_are_refused_in_one_line(change: dict, message: str) -> None:
    item = _item("piqa")
    with pytest.raises(InputError, match=message) as exc:
        apply_edit(item, replace(edit_of(item), **change), item_id="e")
    assert "\n" not in str(exc.value)


def test_a_blank_edit_needs_exactly_one_blank() -> None:
    item = _item("winogrande")
    for sentence in ("No blank here.", "Two _ blanks _ here."):
        with pytest.raises(InputError, match="exactly one _"):
            apply_edit(item, replace(edit_of(item), fields={"sentence": sentence}), item_id="e")
    with pytest.raises(InputError, match="nothing follows the blank"):
        apply_edit(item, replace(edit_of(item), fields={"sentence": "It was the _"}), item_id="e")


def test_a_context_its_fields_do_not_render_is_edited_whole_and_cannot_be_saved() -> None:
    item = replace(_item("piqa"), meta={})  # no raw fields: the scored context itself is what is edited
    edit = edit_of(item)
    assert not edit.fields and edit.context == item.context
    with pytest.raises(InputError, match="the context is empty"):
        apply_edit(item, replace(edit, context=" \n"), item_id="e")
    edited = apply_edit(item, replace(edit, context="Question: why?\nAnswer:"), item_id="e")
    assert edited.context == "Question: why?\nAnswer:" and changes(item, edited) == ["context"]
    body, left_out = layout_jsonl([edited])
    assert body == "" and "edited as a whole" in left_out[0]


def test_the_layout_refuses_what_it_cannot_hold() -> None:
    three = apply_edit(
        _item("piqa"), replace(edit_of(_item("piqa")), choices=("a", "b", "c")), item_id="three"
    )  # scorable live, but PIQA's layout has two solutions
    with pytest.raises(InputError, match="3 choices, and the piqa layout holds 2"):
        layout_record(three)
    maybe = apply_edit(_item("boolq"), replace(edit_of(_item("boolq")), choices=("no", "maybe")), item_id="m")
    with pytest.raises(InputError, match="always 'no' and 'yes'"):
        layout_record(maybe)
    body, left_out = layout_jsonl([three, apply_edit(_item("piqa"), edit_of(_item("piqa")), item_id="ok")])
    assert body.count("\n") == 1 and '"id": "ok"' in body and len(left_out) == 1


def test_the_collect_command_keeps_what_defines_the_run() -> None:
    run = RunInfo(
        run_id="r",
        model="./my model",
        task="piqa",
        source="x",
        n_choices=2,
        family="two_choice",
        scoring="norm",
        layers=[2, 4],
        token_layers=[4],
        config={"max_length": 256, "dtype": "bfloat16"},
    )
    assert collect_command(run, "edits.jsonl", db="data/w.duckdb") == (
        "wif collect --model './my model' --task piqa --source edits.jsonl --layers 2,4 --token-layers 4 "
        "--scoring norm --max-length 256 --dtype bfloat16 --db data/w.duckdb"
    )


class _LM:
    def __init__(self, model: object, tokenizer: object) -> None:
        self.model, self.tokenizer = model, tokenizer


def test_rescore_is_collections_scoring_and_an_overlong_edit_is_refused(tiny_llama, tiny_tokenizer) -> None:
    from wif_core.models.scoring import score_items

    lm = _LM(tiny_llama, tiny_tokenizer)
    item = _item("piqa")
    edited = apply_edit(item, replace(edit_of(item), choices=("twist the lid", "use a sieve")), item_id="e")
    got = rescore(lm, edited, scoring="norm")
    [[want]] = list(score_items(tiny_llama, tiny_tokenizer, [edited], [2], scoring="norm"))
    assert (got.ll_sum, got.pred, got.margin) == (want.ll_sum, want.pred, want.margin)
    check_fits(lm, edited, item)  # fits: nothing to say
    long = apply_edit(item, replace(edit_of(item), fields={"goal": "open the jar " * 400}), item_id="l")
    with pytest.raises(InputError, match="longer than the 512 positions the model reads"):
        check_fits(lm, long, item)
    with pytest.raises(InputError, match="longer than the 64 positions"):
        check_fits(lm, long, item, max_length=64)
