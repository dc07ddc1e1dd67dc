"""The attribution page's item editor (LIT's datapoint editor, for failures): edit an item's text, choices or
answer key, re-score it with the run's model, and see its prediction, margin and attribution beside the original's.

Edited versions live in this browser session (``st.session_state``), never in the store, which the app opens
read-only. "Save as a new run" downloads them as a local dataset in the task's original layout, with the
``wif collect`` command that scores it as a new run (``wif_core.counterfactual``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st
from wif_ui import attribution as attr
from wif_ui import charts, data

from wif_core.attribution import Attribution, attribute_item, contrast
from wif_core.counterfactual import (
    EDITED_FROM,
    Edit,
    apply_edit,
    changes,
    check_fits,
    collect_command,
    edit_of,
    layout_jsonl,
    rescore,
)
from wif_core.errors import InputError, WifError, one_line
from wif_core.models.scoring import ScoredItem
from wif_core.store import RunInfo
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import LETTERS

STATE = "wif_edits"  # session state: run id → the run's edited versions, in the order they were made
FIELD_LABELS = {"goal": "Goal", "passage": "Passage", "question": "Question", "sentence": "Sentence"}
NO_MODEL = (
    "Editing re-scores the item with the run's model, so it needs a run whose model wif can load: this run's "
    "outcomes were {how} ({model}), with no model to run. Collect the items with a model "
    "(`wif collect --model …`) to edit them."
)


@dataclass(kw_only=True)
class Version:
    """One edited version of an item, as re-scored; ``attributions`` fills per method as they are drawn."""

    n: int
    item: TaskItem
    scored: ScoredItem
    changed: list[str]
    seconds: float
    attributions: dict[str, Attribution | str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"edit {self.n}: {', '.join(self.changed) or 'nothing changed'}"


def versions(run_id: str) -> list[Version]:
    """The edited versions of a run's items made in this session (kept across reruns and pages)."""
    kept: dict[str, list[Version]] = st.session_state.setdefault(STATE, {})
    return kept.setdefault(run_id, [])


def original_item(row: Any, task: str) -> TaskItem:
    """The stored item of an items-frame row as a ``TaskItem``."""
    return TaskItem(
        item_id=str(row.item_id),
        task=task,
        context=str(row.context),
        choices=tuple(row.choices),
        gold=int(row.gold),
        meta=data.meta_of(row),
    )


def draw(path: str, run_id: str, item_id: str, method: str, fmt: str) -> None:
    """The "Edit this item" expander of one item: the form, this item's edited versions beside the original
    (prediction, margin, per-choice scores, ``method``'s attribution), and the download of the run's edits."""
    run = data.store(path).run(run_id)
    mine = [v for v in versions(run_id) if v.item.meta.get(EDITED_FROM) == item_id]
    with st.expander("Edit this item (counterfactual)", expanded=bool(mine), icon=":material/edit:"):
        if not run.has_lm:
            how = "imported from another tool" if run.kind == "imported" else f"made by a {run.kind} model"
            st.info(NO_MODEL.format(how=how, model=run.model))
            return
        row = next(data.items(run_id, item_ids=[item_id]).itertuples())
        original = original_item(row, run.task)
        edit = _form(original, run_id)
        if edit is not None:
            _rescore(run, original, edit)
            mine = [v for v in versions(run_id) if v.item.meta.get(EDITED_FROM) == item_id]
        if mine:
            chosen = _pick(run_id, item_id, mine)
            _compare(row, chosen)
            _attributions(path, run, item_id, chosen, method=method, fmt=fmt)
        _save(path, run)


def _form(item: TaskItem, run_id: str) -> Edit | None:
    """The editor's form, prefilled with the item; the edit when "Re-score" was pressed."""
    start = edit_of(item)
    key = f"edit_{run_id}_{item.item_id}"
    with st.form(key, border=False):
        st.caption(
            "Change the text, the choices or the answer key and re-score: the run's model scores the edited item "
            "as collection scored the run. Edits stay in this session; the store is never written."
        )
        fields = {
            name: st.text_area(FIELD_LABELS.get(name, name.capitalize()), value, key=f"{key}_{name}")
            for name, value in start.fields.items()
        }
        context = None
        if start.context is not None:
            context = st.text_area("Context (as the model reads it)", start.context, key=f"{key}_context_text")
        text = st.text_area("Choices, one per line", "\n".join(start.choices), key=f"{key}_choices")
        gold = st.number_input(
            "Right answer (option number: 1 is A)",
            min_value=1,
            max_value=len(LETTERS),
            value=start.gold + 1,
            step=1,
            key=f"{key}_gold",
        )
        if not st.form_submit_button("Re-score", type="primary", key=f"{key}_go"):
            return None
    choices = tuple(line.rstrip("\r") for line in text.split("\n") if line.strip())
    return Edit(fields=fields, context=context, choices=choices, gold=int(gold) - 1)


def _rescore(run: RunInfo, original: TaskItem, edit: Edit) -> None:
    """Score the edit with the run's model (loaded once per session) and keep it as a new version."""
    kept = versions(run.run_id)
    n = max((v.n for v in kept), default=0) + 1
    try:
        edited = apply_edit(original, edit, item_id=f"{original.item_id}~edit{n}")
    except InputError as exc:
        st.error(f"Cannot re-score this edit: {one_line(exc)}")
        return
    max_length = run.config.get("max_length")
    try:
        with st.status(f"Re-scoring the edit with {run.model}…", expanded=False) as status:
            lm = _model(run.model)
            t0 = time.perf_counter()
            check_fits(lm, edited, original, max_length=max_length)
            scored = rescore(lm, edited, scoring=run.scoring, max_length=max_length)
            seconds = time.perf_counter() - t0
            status.update(label=f"Edit {n} re-scored in {seconds:.1f} s (kept in this session)", state="complete")
    except _ModelMissing as exc:
        st.error(f"Editing needs a loadable model: {run.model} does not load here ({exc.reason}).")
        return
    except (WifError, OSError, ValueError) as exc:
        st.error(f"Cannot re-score this edit: {one_line(exc)}")
        return
    kept.append(Version(n=n, item=edited, scored=scored, changed=changes(original, edited), seconds=seconds))
    st.session_state[f"edit_pick_{run.run_id}_{original.item_id}"] = n


class _ModelMissing(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _model(spec: str) -> Any:
    try:
        return attr.run_model(spec)
    except (WifError, OSError, ValueError) as exc:
        raise _ModelMissing(one_line(exc)) from None


def _pick(run_id: str, item_id: str, mine: list[Version]) -> Version:
    """This item's edited versions: one to show, and a button that removes it from the session."""
    by_n = {v.n: v for v in mine}
    key = f"edit_pick_{run_id}_{item_id}"
    if st.session_state.get(key) not in by_n:
        st.session_state[key] = mine[-1].n
    cols = st.columns([3, 1], vertical_alignment="bottom")
    n = cols[0].selectbox("Edited version", list(by_n), format_func=lambda k: by_n[k].label, key=key)
    cols[1].button("Remove this version", key=f"edit_remove_{run_id}_{item_id}", on_click=_remove, args=(run_id, n))
    return by_n[n]


def _remove(run_id: str, n: int) -> None:
    kept = versions(run_id)
    kept[:] = [v for v in kept if v.n != n]


def _verdict(pred: int | None, correct: bool) -> str:
    """A prediction as the metric shows it: its option letter, ✓ when right and ✗ when wrong."""
    return "—" if pred is None else f"{LETTERS[pred]} {'✓' if correct else '✗'}"


def _compare(row: Any, version: Version) -> None:
    """Original and edit side by side: prediction, correct or not, margin, and each choice's scores."""
    s = version.scored
    pred, margin = data.as_int(row.pred), None if data.is_missing(row.margin) else float(row.margin)
    left, right = st.columns(2)
    with left:
        st.markdown("**Original** (as collected)")
        m = st.columns(2)
        m[0].metric("Prediction", _verdict(pred, bool(row.correct)), help="The model's pick; ✓ when it is the key.")
        m[1].metric("Margin", attr.number(margin), help="Gold choice's score minus the best other choice's.")
    with right:
        st.markdown(f"**Edit {version.n}** ({', '.join(version.changed) or 'nothing changed'})")
        m = st.columns(2)
        m[0].metric("Prediction", _verdict(s.pred, s.correct), help="The model's pick; ✓ when it is the key.")
        m[1].metric(
            "Margin",
            attr.number(s.margin),
            None if margin is None else f"{s.margin - margin:+.3f}",
            help="Gold choice's score minus the best other choice's, with the change from the original.",
        )
    st.dataframe(comparison_table(row, version), column_config=_NUMBERS)
    if s.truncated:
        st.caption(f"The edit was cut by {s.truncated} tokens from the left of its context, as collection cuts.")


_NUMBERS = {c: st.column_config.NumberColumn(format="%.3f") for c in ("ll_sum", "ll_sum before", "ll_per_byte")}


def comparison_table(row: Any, version: Version) -> pd.DataFrame:
    """One row per option of the edit: its text, key and pick markers, its scores, and the original's ``ll_sum``."""
    item, s = version.item, version.scored
    before = data.as_list(row.ll_sum) or []
    k = len(item.choices)
    return pd.DataFrame(
        {
            "choice": list(item.choices),
            "gold": ["✓" if j == item.gold else "" for j in range(k)],
            "prediction": ["◀ model's pick" if j == s.pred else "" for j in range(k)],
            "ll_sum": s.ll_sum,
            "ll_per_byte": [ll / b for ll, b in zip(s.ll_sum, s.n_bytes, strict=True)],
            "tokens": s.n_tokens,
            "ll_sum before": [before[j] if j < len(before) else None for j in range(k)],
        },
        index=pd.Index(list(LETTERS[:k]), name="option"),
    )


def _attributions(path: str, run: RunInfo, item_id: str, version: Version, *, method: str, fmt: str) -> None:
    """``method``'s token attribution of the original and of the edit, side by side."""
    st.markdown(f"**{method} attribution**: the original beside the edit")
    edited = _edited_attribution(run, version, method)
    original = attr.record(path, run.run_id, item_id, method, True)
    for column, (name, result) in zip(
        st.columns(2), (("original", original), (f"edit {version.n}", edited)), strict=True
    ):
        with column:
            if isinstance(result, str):
                st.info(result)
                continue
            st.metric(
                "Δ (nats)",
                attr.number(result.delta),
                help="log p(wrong) − log p(right) of the attributed contrast; > 0 prefers wrong.",
            )
            fig, table = attr.heatmap_figure(result, f"{method} · {item_id} · {name}")
            charts.show(fig, table, f"wif_attr_{run.run_id}_{item_id}_{method}_{name.replace(' ', '')}", fmt)


def _edited_attribution(run: RunInfo, version: Version, method: str) -> Attribution | str:
    """The edit's attribution by ``method`` (computed once per version and method), or why there is none."""
    if method not in version.attributions:
        s = version.scored
        try:
            with st.status(f"Computing {method} for edit {version.n}…", expanded=False) as status:
                wrong, right = contrast(version.item, {"pred": s.pred, "ll_sum": s.ll_sum})
                version.attributions[method] = attribute_item(
                    _model(run.model),
                    version.item,
                    wrong,
                    right,
                    method,
                    family=run.family,
                    max_length=run.config.get("max_length"),
                )
                status.update(label=f"{method} of edit {version.n}: computed (kept in this session)", state="complete")
        except (_ModelMissing, WifError, OSError, ValueError) as exc:
            version.attributions[method] = f"Cannot compute {method} for the edit: {one_line(exc)}"
    return version.attributions[method]


SCOPES = {
    "with_originals": "the edits and the items they were made from",
    "edits": "the edits only",
    "whole_run": "the run's items with the edits added",
}
MIN_PER_OUTCOME = 2  # `wif collect` draws balanced splits: at least this many correct and incorrect items


def _save(path: str, run: RunInfo) -> None:
    """The run's edits as a local dataset (with the items they came from, or the whole run), and the
    ``wif collect`` command that makes it a new run."""
    kept = versions(run.run_id)
    if not kept:
        return
    st.markdown("**Save as a new run**")
    scope = st.radio(
        "Items in the file",
        list(SCOPES),
        format_func=SCOPES.__getitem__,
        horizontal=True,
        key=f"edit_scope_{run.run_id}",
        help="The originals are scored again in the new run, beside their edits, by the same model.",
    )
    items, outcomes = _scope_items(run, kept, scope)
    text, left_out = layout_jsonl(items)
    name = f"wif_edits_{run.run_id}.jsonl"
    n_right, n_wrong = sum(outcomes), len(outcomes) - sum(outcomes)
    if min(n_right, n_wrong) < MIN_PER_OUTCOME:
        st.warning(
            f"`wif collect` draws balanced splits, so a run needs at least {MIN_PER_OUTCOME} correct and "
            f"{MIN_PER_OUTCOME} incorrect items; these are {n_right} correct and {n_wrong} incorrect (as scored "
            "here): edit more items, or save the edits with the run's items."
        )
    if text:
        st.download_button(
            f"Download {len(items) - len(left_out)} items (JSONL)",
            text,
            file_name=name,
            mime="application/jsonl",
            on_click="ignore",
            key=f"edit_download_{run.run_id}",
        )
        st.caption(
            f"The app opens the store read-only and writes no run itself: the file holds the items in the "
            f"{run.task} layout that `wif collect` reads, and this command scores them as a new run of "
            f"{run.model} in this store (run it where the file was saved):"
        )
        st.code(collect_command(run, name, db=path), language="bash")
    if left_out:
        st.caption(
            f"Left out of the file ({len(left_out)}): " + "; ".join(left_out[:3]) + ("…" if len(left_out) > 3 else "")
        )


def _scope_items(run: RunInfo, kept: list[Version], scope: str) -> tuple[list[TaskItem], list[bool]]:
    """The items ``scope`` saves, and whether the model got each right (the edits as re-scored here)."""
    edits = [v.item for v in kept]
    right = [v.scored.correct for v in kept]
    if scope == "edits":
        return edits, right
    ids = None if scope == "whole_run" else list(dict.fromkeys(str(v.item.meta[EDITED_FROM]) for v in kept))
    frame = data.items(run.run_id, item_ids=ids, columns=("item_id", "correct", "context", "choices", "gold", "meta"))
    originals = [original_item(r, run.task) for r in frame.itertuples()]
    return [*originals, *edits], [*map(bool, frame["correct"]), *right]
