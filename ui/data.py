"""Cached accessors to the store, the frames the pages draw, and the shared run and item pickers.

The store path comes from the ``WIF_DB`` environment variable (``wif app`` and ``wif demo``
set it), else the CLI's default store (``wif_core.paths.DEFAULT_DB``), and is read here only.
Reads are cached per (store path, run, filters); nothing here holds SQL.

The app holds the store only while it reads: each read opens it read-only and closes it
(``Store.reader``), so a writer (``wif collect``, ``wif import``…) can take the file between reads.
DuckDB lets one process write a file or several read it, never both, so while a writer holds
it the pages go on showing what they have read and say so for anything else; once the file
has changed and opens again, every cached read is dropped and the store is read afresh.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from wif_core.errors import StoreBusy, StoreError, one_line
from wif_core.label_quality import REASONS as SUSPECT_REASONS
from wif_core.paths import DEFAULT_DB

# the leakage tables are built in the core, shared with `wif report`
from wif_core.splits import FINDING_KINDS as FINDING_KINDS
from wif_core.splits import findings_table as findings_table
from wif_core.store import LM_KIND, Store

T = TypeVar("T")
R = TypeVar("R")

EVAL_SPLITS = ("train", "val", "test")
SPLITS = (*EVAL_SPLITS, "unused")
LETTERS = "ABCDEFGHIJ"


def ensure_entry() -> None:
    """Run this script through ``app.py``'s navigation, even on a fresh server's first requests.

    Streamlit treats a ``pages/`` folder beside the entry script as a v1 multipage app until a
    script has called ``st.navigation``: it then runs a page file alone (its ``_mpa_v1``: a
    sidebar of file names, "app" among them, and no wide layout). That mode is one process-wide
    flag, which the first navigation call turns off, so sessions that arrived together have all
    been sent down the v1 path already. Each run therefore asks whether it is on that path itself,
    and if so turns the mode off and reruns: the same URL then goes through ``app.py``.
    """
    if _run_by_pages_folder():
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
        st.rerun()


def _run_by_pages_folder() -> bool:
    """Whether Streamlit's v1 multipage mode is running this script (its ``_mpa_v1`` is on the stack)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import script_runner

    v1 = getattr(getattr(script_runner, "_mpa_v1", None), "__code__", None)
    if v1 is None:  # a Streamlit without that function: fall back on its flag
        return bool(PagesManager.uses_pages_directory)
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is v1:
            return True
        frame = frame.f_back
    return False


def db_path() -> str:
    """The store this app reads: ``$WIF_DB``, else the CLI's default store."""
    return os.environ.get("WIF_DB", str(DEFAULT_DB))


BUSY_HINT = (
    "DuckDB lets one process write a store or several read it, never both: what this page has read already "
    "stays on screen, and the rest shows once the writer (a collection, an import) is done; reload then."
)
_read_at: dict[str, tuple[int, ...]] = {}  # store path → the file's stamp when the cached reads were made
_read_lock = threading.Lock()


def _fail(message: str, hint: str | None = None) -> NoReturn:
    st.error(message)
    st.info(
        hint
        or "Build and open the demo store with `make demo` (or `wif demo`), or open a store of your own with "
        "`wif app --db PATH`."
    )
    st.stop()


def _stamp(path: str) -> tuple[int, ...]:
    """The store file's and its write-ahead log's size and time of change: what changes when anyone writes."""
    out: list[int] = []
    for name in (path, f"{path}.wal"):
        try:
            info = os.stat(name)
            out += [info.st_mtime_ns, info.st_size]
        except OSError:
            out += [0, 0]
    return tuple(out)


@st.cache_resource(show_spinner=False)
def _reader(path: str) -> Store:
    return Store.reader(path)


def _path() -> str:
    """The store path once the store is known to open; otherwise show its one-line error and stop the page.

    The file is opened only when it has changed since the cached reads were made, and then every
    cached read is dropped; while a writer holds a store read before, the cached reads stand.
    """
    path = db_path()
    stamp = _stamp(path)
    with _read_lock:
        if _read_at.get(path) == stamp:
            return path
        try:
            Store.open(path).close()  # it opens: a wif store of this schema, and no writer holds it now
        except StoreBusy as exc:
            if path not in _read_at:
                _fail(one_line(exc), BUSY_HINT)
            st.info(f"Another wif process is writing to this store. {BUSY_HINT}")
            return path
        except StoreError as exc:
            _fail(one_line(exc))
        if path in _read_at:  # written since: nothing read before is known to hold
            st.cache_data.clear()
            st.cache_resource.clear()
        _read_at[path] = stamp
    return path


@st.cache_data(show_spinner=False)
def _runs(path: str) -> pd.DataFrame:
    return _reader(path).runs()


@st.cache_data(show_spinner=False)
def _split_counts(path: str) -> pd.DataFrame:
    return _reader(path).split_counts()


@st.cache_data(show_spinner=False)
def _findings(path: str) -> pd.DataFrame:
    return _reader(path).findings()


@st.cache_data(show_spinner=False)
def _quality_passes(path: str) -> pd.DataFrame:
    return _reader(path).quality_passes()


@st.cache_data(show_spinner=False)
def _quality_flags(path: str) -> pd.DataFrame:
    return _reader(path).quality_flags()


@st.cache_data(show_spinner=False, max_entries=256)
def _items(
    path: str,
    run_id: str,
    *,
    outcome: str | None,
    split: str | None,
    search: str | None,
    excluded: bool,
    limit: int | None = None,
    item_ids: tuple[str, ...] | None = None,
    columns: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    return _reader(path).items(
        run_id, outcome, split, search, limit, include_excluded=excluded, item_ids=item_ids, columns=columns
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _count_items(
    path: str,
    run_id: str,
    *,
    outcome: str | None,
    split: str | None,
    search: str | None,
    excluded: bool,
    item_ids: tuple[str, ...] | None,
) -> int:
    return _reader(path).count_items(run_id, outcome, split, search, include_excluded=excluded, item_ids=item_ids)


def _read(read: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``read(*args, **kwargs)``; when a writer has taken the store since, its one line, and the page stops."""
    try:
        return read(*args, **kwargs)
    except StoreBusy as exc:
        _fail(one_line(exc), BUSY_HINT)


def store_path() -> str:
    """The store's path once it is known to open; otherwise the page shows its one-line error and stops."""
    return _path()


def store(path: str) -> Store:
    """The process's read-only ``Store`` at ``path``: one object, holding the file only while a call reads it."""
    return _reader(path)


def runs() -> pd.DataFrame:
    """One row per run (``Store.runs``)."""
    return _read(_runs, _path())


def split_counts() -> pd.DataFrame:
    """Items per (run_id, split, correct, excluded) over all runs (``Store.split_counts``)."""
    return _read(_split_counts, _path())


def findings() -> pd.DataFrame:
    """Every run's leakage findings (``Store.findings``)."""
    return _read(_findings, _path())


def quality_passes() -> pd.DataFrame:
    """Every run's item-quality pass, if it had one (``Store.quality_passes``)."""
    return _read(_quality_passes, _path())


def quality_flags(run_id: str | None = None) -> pd.DataFrame:
    """Suspect labels with their evidence, of one run or all (``Store.quality_flags``)."""
    flags = _read(_quality_flags, _path())
    return flags if run_id is None else flags[flags["run_id"] == run_id].reset_index(drop=True)


def items(
    run_id: str,
    outcome: str | None = None,
    split: str | None = None,
    search: str | None = None,
    excluded: bool = True,
    *,
    limit: int | None = None,
    item_ids: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A run's items with outcomes and splits, filtered in the store with SQL parameters (``Store.items``).

    A page that draws a selection asks for it: ``limit`` rows in item order, only ``item_ids``, only ``columns``.
    Every cached frame is pickled in and out of Streamlit's cache, so a whole large run read for five columns
    costs seconds that a narrow read does not."""
    return _read(
        _items,
        _path(),
        run_id,
        outcome=outcome,
        split=split,
        search=search or None,
        excluded=excluded,
        limit=limit,
        item_ids=None if item_ids is None else tuple(item_ids),
        columns=None if columns is None else tuple(columns),
    )


def count_items(
    run_id: str,
    outcome: str | None = None,
    split: str | None = None,
    search: str | None = None,
    excluded: bool = True,
    *,
    item_ids: Sequence[str] | None = None,
) -> int:
    """How many items ``items`` gives with these filters and no limit (counted in the store)."""
    ids = None if item_ids is None else tuple(item_ids)
    return _read(
        _count_items,
        _path(),
        run_id,
        outcome=outcome,
        split=split,
        search=search or None,
        excluded=excluded,
        item_ids=ids,
    )


ITEMS_SHOWN = 1000  # rows of the failure browser's table: a large run's first matching items, not all of them


def items_shown(run_id: str, wanted: str | None = None, **filters: Any) -> pd.DataFrame:
    """The first ``ITEMS_SHOWN`` items that match ``filters`` (those of ``items``), in item order, and the item
    ``wanted`` (a shared link's) after them when it matches and is not among them, so that the link opens it."""
    frame = items(run_id, **filters, limit=ITEMS_SHOWN)
    if wanted and len(frame) == ITEMS_SHOWN and wanted not in set(frame["item_id"]):
        ids = filters.pop("item_ids", None)
        if ids is None or wanted in set(ids):
            frame = pd.concat([frame, items(run_id, **filters, item_ids=[wanted])], ignore_index=True)
    return frame


OUTCOME_COLUMNS = ("item_id", "correct", "pred", "gold", "margin")


def outcomes(run_id: str) -> pd.DataFrame:
    """Every scored item of a run with its outcome only (``OUTCOME_COLUMNS``): no texts, no per-choice scores."""
    return items(run_id, columns=OUTCOME_COLUMNS)


# ---- frames the pages draw ---------------------------------------------------------


def as_list(value: Any) -> list[Any] | None:
    """A list column's cell as a list, or None where the store has no value (imported runs)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return list(value)


def is_missing(value: Any) -> bool:
    """Whether a scalar cell holds no value (None, NaN or NA)."""
    return value is None or bool(pd.isna(value))


def as_int(value: Any) -> int | None:
    """A nullable integer cell (``pred`` of imported runs may be missing)."""
    return None if pd.isna(value) else int(value)


def run_label(run: Any) -> str:
    """How a run is named in pickers: task · model · run id."""
    return f"{run.task} · {run.model} · {run.run_id}"


def runs_table(runs: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """The overview's runs table: what each run is, its class balance, what the splits hold."""
    in_eval = counts[counts["split"].isin(EVAL_SPLITS) & ~counts["excluded"]].groupby("run_id")["n"].sum()
    return pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "task": runs["task"],
            "model": runs["model"],
            "kind": runs["kind"],
            "status": runs["status"],
            "items": runs["n_items"],
            "accuracy": runs["accuracy"],
            "n_correct": runs["n_correct"],
            "n_incorrect": runs["n_incorrect"],
            "in_splits": runs["run_id"].map(in_eval).fillna(0).astype(int),
            "excluded": runs["n_duplicates"],
            "layers": runs["layers"].map(lambda v: ", ".join(str(int(x)) for x in v) if len(v) else "—"),
            "planned": runs["n_planned"],
        }
    )


def split_balance(runs: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """Counts per run, split and class, where class is correct, incorrect or excluded (left out for leakage)."""
    labels = {r.run_id: f"{r.task} · {r.model} · {r.run_id.rsplit('--', 1)[-1]}" for r in runs.itertuples()}
    out = counts.assign(
        run=pd.Categorical(counts["run_id"].map(labels), categories=list(labels.values())),  # keeps the runs' order
        split=counts["split"].fillna("none"),
        group=[
            "excluded" if x else "correct" if c else "incorrect"
            for c, x in zip(counts["correct"], counts["excluded"], strict=True)
        ],
    )
    out = out.groupby(["run", "split", "group"], as_index=False, observed=True)["n"].sum()
    return out.assign(run=out["run"].astype(str))


def quality_table(runs: pd.DataFrame, passes: pd.DataFrame, flags: pd.DataFrame, examples: int = 3) -> pd.DataFrame:
    """The overview's suspect labels: per run, the items its item-quality pass looked at and flagged, by reason,
    the most suspect few, and the signals it used (a run without a pass names the command that makes one)."""
    by_run = {p.run_id: p for p in passes.itertuples()}
    rows = []
    for run in runs.itertuples():
        found = by_run.get(run.run_id)
        counts = found.config.get("counts", {}) if found is not None else {}
        mine = flags[flags["run_id"] == run.run_id].sort_values("score", ascending=False, kind="stable")
        rows.append(
            {
                "run_id": run.run_id,
                "task": run.task,
                "model": run.model,
                "checked": None if found is None else int(found.n_items),
                "flagged": None if found is None else int(found.n_flagged),
                **{reason: counts.get(reason) if found is not None else None for reason in SUSPECT_REASONS},
                "most suspect": ", ".join(mine["item_id"].head(examples)),
                "signals": f"`wif quality --run {run.run_id}`" if found is None else ", ".join(found.signals),
            }
        )
    table = pd.DataFrame(rows)
    counted = ["checked", "flagged", *SUSPECT_REASONS]
    return table.astype(dict.fromkeys(counted, "Int64")) if len(table) else table


def with_suspects(frame: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """A run's items with ``suspect`` (the reasons its item-quality flag gives, "" when none) and ``suspect_score``."""
    reasons = dict(zip(flags["item_id"], flags["reasons"].map(", ".join), strict=True))
    scores = dict(zip(flags["item_id"], flags["score"], strict=True))
    return frame.assign(suspect=frame["item_id"].map(reasons).fillna(""), suspect_score=frame["item_id"].map(scores))


SUSPECT_MARK = "⚑"


def items_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The failure browser's table: one row per item with a one-line preview of its context (and, when the
    frame has them, its suspect-label marker: ``with_suspects``)."""
    table = pd.DataFrame(
        {
            "item_id": frame["item_id"],
            "split": frame["split"],
            "correct": frame["correct"],
            "gold": frame["gold"],
            "pred": frame["pred"],
            "margin": frame["margin"],
            "excluded": frame["excluded"],
            "reason": frame["reason"],
            "context": frame["context"].map(lambda t: (s := " ".join(t.split()))[:90] + ("…" if len(s) > 90 else "")),
        }
    )
    if "suspect" in frame:
        table.insert(1, "suspect", frame["suspect"].map(lambda r: f"{SUSPECT_MARK} {r}" if r else ""))
    return table


def suspect_runs_table(evidence: dict[str, Any]) -> pd.DataFrame:
    """One row per run whose choice or scores a suspect label's evidence holds: what it picked and how sure."""
    given, suggested = evidence.get("given"), evidence.get("suggested")
    rows = []
    for r in evidence.get("runs", []):
        p = r.get("p")
        rows.append(
            {
                "model": r.get("model"),
                "run_id": r.get("run_id") + (" (this run)" if r.get("self") else ""),
                "picked": "—" if r.get("choice") is None else LETTERS[int(r["choice"])],
                "answer": r.get("answer") or "—",
                "P(key)": None if p is None or given is None else p[int(given)],
                "P(suggested)": None if p is None or suggested is None else p[int(suggested)],
                "margin": r.get("margin"),
                "weight": r.get("weight"),
            }
        )
    return pd.DataFrame(
        rows, columns=["model", "run_id", "picked", "answer", "P(key)", "P(suggested)", "margin", "weight"]
    )


def suspect_choices_table(row: Any, evidence: dict[str, Any]) -> pd.DataFrame:
    """One row per choice of a suspect item: key and suggested markers, the combined and the text classifier's
    out-of-fold probabilities."""
    choices = list(row.choices)
    combined, text = evidence.get("probability"), evidence.get("text")
    return pd.DataFrame(
        {
            "choice": choices,
            "key": ["✓" if j == evidence.get("given") else "" for j in range(len(choices))],
            "suggested": [SUSPECT_MARK if j == evidence.get("suggested") else "" for j in range(len(choices))],
            "P(right), combined": combined or [None] * len(choices),
            "P(right), text only": text or [None] * len(choices),
        },
        index=pd.Index(list(LETTERS[: len(choices)]), name="option"),
    )


def choice_table(row: Any) -> pd.DataFrame:
    """One row per choice of an item: its text, gold and prediction markers, and the model's scores."""
    choices, pred = list(row.choices), as_int(row.pred)
    ll_sum, ll_norm, n_tok = as_list(row.ll_sum), as_list(row.ll_norm), as_list(row.n_tokens)
    return pd.DataFrame(
        {
            "choice": choices,
            "gold": ["✓" if j == row.gold else "" for j in range(len(choices))],
            "prediction": ["◀ model's pick" if j == pred else "" for j in range(len(choices))],
            "ll_sum": ll_sum or [None] * len(choices),
            "ll_per_byte": ll_norm or [None] * len(choices),
            "tokens": n_tok or [None] * len(choices),
        },
        index=pd.Index(list(LETTERS[: len(choices)]), name="option"),
    )


def meta_of(row: Any) -> dict[str, Any]:
    """An item's ``meta`` as a dict (empty when absent)."""
    return json.loads(row.meta) if isinstance(row.meta, str) and row.meta else {}


# ---- values from the URL -----------------------------------------------------------

SHOWN = 80  # characters of a value from the URL that a message repeats


def shown(value: object, limit: int = SHOWN) -> str:
    """A value from the URL as it goes into a message: one line of at most ``limit`` characters (then "…"),
    as inline code, so that Markdown and HTML in it show as typed and never become a link or markup."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[:limit] + "…"
    if not text:
        return "(empty)"
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"  # the spaces let the value start or end with a backtick


def from_url(key: str, options: Sequence[T], default: T, *, what: str, where: str = "here") -> T:
    """The option that ``?key=`` names (compared as text), else ``default``.

    A value in the URL that names no option gets one warning, saying what is shown instead,
    unless it is the value this session itself put there (``to_url``) and the options have since
    changed (another run picked): that is no surprise to anyone.
    """
    wanted = st.query_params.get(key)
    if not wanted:
        return default
    by_text = {str(o): o for o in options}
    if wanted in by_text:
        return by_text[wanted]
    if wanted != st.session_state.get(f"_url_{key}"):
        st.warning(f"No {what} {shown(wanted)} {where}; showing {shown(default)} instead.")
    return default


def to_url(key: str, value: object) -> None:
    """Keep ``value`` in ``?key=`` so a shared link opens the same view."""
    st.query_params[key] = str(value)
    st.session_state[f"_url_{key}"] = str(value)


# ---- shared pickers ----------------------------------------------------------------


def run_selector(runs: pd.DataFrame) -> str:
    """A run picker kept in ``?run=`` so a shared link opens the same run."""
    if runs.empty:
        _fail(f"the store at {db_path()} has no runs yet; add one with `wif collect` or `wif import`")
    labels = {r.run_id: run_label(r) for r in runs.itertuples()}
    if st.session_state.get("run_pick") not in labels:
        first = next(iter(labels))
        st.session_state["run_pick"] = from_url("run", list(labels), first, what="run", where="in this store")
    run_id = st.selectbox("Run", list(labels), format_func=labels.__getitem__, key="run_pick")
    to_url("run", run_id)
    run = next(runs[runs["run_id"] == run_id].itertuples())
    accuracy = "n/a" if is_missing(run.accuracy) else f"{run.accuracy:.3f}"
    layers = ", ".join(str(int(x)) for x in run.layers)
    acts = f"activations at layers {layers}" if layers else "no activations (outcomes only)"
    st.caption(
        f"`{run_id}`: {run.kind} run of **{run.model}** on **{run.task}**, {run.n_items} items, "
        f"accuracy {accuracy}, {acts}"
    )
    return str(run_id)


def has_model(run_id: str) -> bool:
    """Whether a run's model is a language model wif loads and runs (``RunInfo.has_lm``: collected runs)."""
    kinds = runs().set_index("run_id")["kind"]
    return run_id in kinds.index and kinds[run_id] == LM_KIND


def item_link(page: str, run_id: str, item_id: str, label: str, icon: str) -> None:
    """An ``st.page_link`` to one item on ``pages/<page>.py``; where that page is not registered (a page run
    alone, under AppTest), a plain link to its URL path stands in."""
    from streamlit.errors import StreamlitPageNotFoundError

    query = {"run": run_id, "item": item_id}
    try:
        st.page_link(f"pages/{page}.py", label=label, icon=icon, query_params=query)
    except StreamlitPageNotFoundError:
        st.markdown(f"[{label}]({page}?{urlencode(query)})")


def _on_row_select() -> None:
    rows = st.session_state["items_table"].selection.rows
    ids = st.session_state.get("_item_ids", [])
    if rows and rows[0] < len(ids):
        st.session_state["item_pick"] = ids[rows[0]]


def item_picker(frame: pd.DataFrame) -> str:
    """The items table (click a row) and an item selectbox kept in ``?item=``; returns the chosen item id."""
    ids = frame["item_id"].tolist()
    st.session_state["_item_ids"] = ids
    st.dataframe(
        items_table(frame),
        key="items_table",
        on_select=_on_row_select,
        selection_mode="single-row",
        hide_index=True,
        height=300,
        column_config={"margin": st.column_config.NumberColumn(format="%.3f")},
    )
    if st.session_state.get("item_pick") not in ids:
        st.session_state["item_pick"] = from_url("item", ids, ids[0], what="item", where="among these items")
    marks = dict(zip(ids, frame["correct"].map({True: "✓", False: "✗"}), strict=True))
    if "suspect" in frame:  # a suspect label's marker beside its outcome
        marks = {
            i: m + (f" {SUSPECT_MARK}" if r else "") for (i, m), r in zip(marks.items(), frame["suspect"], strict=True)
        }
    item_id = st.selectbox("Item", ids, key="item_pick", format_func=lambda i: f"{marks[i]} {i}")
    to_url("item", item_id)
    return str(item_id)
