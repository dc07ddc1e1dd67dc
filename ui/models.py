"""The Compare models page's cached accessors, tables and figures (``wif_core.compare`` does the statistics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from wif_ui import data

from wif_core.compare import Comparison, TransferResult, compare_runs, default_selection, explainer_transfer
from wif_core.errors import WifError, one_line

OUTCOME_PAIRS = {  # (A right, B right) → label and colour of the scatter's points
    (True, True): ("both right", "#2e7d32"),
    (True, False): ("only A right", "#1565c0"),
    (False, True): ("only B right", "#ef6c00"),
    (False, False): ("both failed", "#c62828"),
}


@st.cache_data(show_spinner=False, max_entries=64)
def _comparison(path: str, run_ids: tuple[str, ...], method: str | None, explainers: bool) -> Comparison | str:
    try:
        return compare_runs(data.store(path), list(run_ids), method=method, explainers=explainers, items=data.items)
    except WifError as exc:
        return one_line(exc)


@st.cache_data(show_spinner=False, max_entries=64)
def _transfer(path: str, source: str, target: str) -> list[TransferResult] | str:
    try:
        return explainer_transfer(data.store(path), source, target)
    except WifError as exc:
        return one_line(exc)


@st.cache_data(show_spinner=False)
def _default(path: str) -> list[str]:
    return default_selection(data.store(path), items=data.items)


def comparison(run_ids: Sequence[str], method: str | None = None, explainers: bool = False) -> Comparison | str:
    """The comparison of these runs, or its one-line reason for none (cached per store, runs and method)."""
    return data._read(_comparison, data.store_path(), tuple(run_ids), method, explainers)


def transfer(source: str, target: str) -> list[TransferResult] | str:
    """The explainer transfer from ``source`` to ``target`` (cached here and beside the store)."""
    return data._read(_transfer, data.store_path(), source, target)


def run_picker(runs: pd.DataFrame) -> list[str]:
    """A multiselect of runs kept in ``?runs=A,B``; unknown ids in the URL get one warning and are dropped."""
    labels = {r.run_id: data.run_label(r) for r in runs.itertuples()}
    if "models_pick" not in st.session_state:
        wanted = [w for w in (st.query_params.get("runs") or "").split(",") if w]
        unknown = [w for w in wanted if w not in labels]
        if unknown and ",".join(wanted) != st.session_state.get("_url_runs"):
            st.warning(f"No run {data.shown(unknown[0])} in this store; it is left out.")
        known = list(dict.fromkeys(w for w in wanted if w in labels))
        st.session_state["models_pick"] = known if len(known) >= 2 else data._read(_default, data.store_path())
    picked = st.multiselect(
        "Runs to compare", list(labels), format_func=labels.__getitem__, key="models_pick", placeholder="two or more"
    )
    data.to_url("runs", ",".join(picked))
    return [str(p) for p in picked]


def no_second_run(runs: pd.DataFrame) -> str:
    """What an empty page says when no task has two scored runs: what to run to get one."""
    scored = runs[runs["n_items"] > 0]
    task = str(scored["task"].iloc[0]) if len(scored) else "TASK"
    return (
        f"No second run of this task to compare with: score the same items with another model, e.g. "
        f"`wif collect --model gemma3-270m --task {task}`."
    )


def accuracy_table(c: Comparison) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run": [r.run_id for r in c.runs],
            "model": [r.model for r in c.runs],
            "checkpoint": [(r.checkpoint or {}).get("label") for r in c.runs],
            "accuracy": [r.accuracy for r in c.runs],
            "CI low": [r.ci_low for r in c.runs],
            "CI high": [r.ci_high for r in c.runs],
            "n": [r.n for r in c.runs],
            "margins from": [r.margin_source for r in c.runs],
        }
    )


def pairs_table(c: Comparison) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "A": p.a,
                "B": p.b,
                "n": p.n,
                "acc A − B": p.diff,
                "CI low": p.diff_ci_low,
                "CI high": p.diff_ci_high,
                "McNemar p": p.mcnemar_p,
                "κ of errors": p.kappa,
                "margin r (Pearson)": p.margin_pearson,
                "margin ρ (Spearman)": p.margin_spearman,
            }
            for p in c.pairs
        ]
    )


def two_by_two(table: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "B right": [table["both_correct"], table["only_b_correct"]],
            "B failed": [table["only_a_correct"], table["both_failed"]],
        },
        index=["A right", "A failed"],
    )


def scatter(c: Comparison, a: str, b: str) -> tuple[go.Figure, pd.DataFrame]:
    """Margins of A against B per shared item, coloured by the pair of outcomes; hover shows the item ids."""
    items = c.items
    frame = pd.DataFrame(
        {
            "key": items["key"],
            "item_a": items[f"{a}:item_id"],
            "item_b": items[f"{b}:item_id"],
            "margin_a": items[f"{a}:margin"],
            "margin_b": items[f"{b}:margin"],
            "a_right": items[f"{a}:correct"],
            "b_right": items[f"{b}:correct"],
        }
    )
    fig = go.Figure()
    for (ra, rb), (label, colour) in OUTCOME_PAIRS.items():
        part = frame[(frame["a_right"] == ra) & (frame["b_right"] == rb)]
        fig.add_trace(
            go.Scatter(
                x=part["margin_a"],
                y=part["margin_b"],
                mode="markers",
                name=f"{label} ({len(part)})",
                marker={"color": colour, "size": 7, "opacity": 0.75},
                customdata=part[["item_a", "item_b"]].to_numpy(),
                hovertemplate="A: %{customdata[0]}<br>B: %{customdata[1]}<br>Δ A %{x:.3f}, Δ B %{y:.3f}<extra></extra>",
            )
        )
    fig.add_hline(y=0, line={"color": "grey", "width": 1})
    fig.add_vline(x=0, line={"color": "grey", "width": 1})
    fig.update_layout(
        xaxis_title="margin Δ of A = log p(gold) − log p(best other)",
        yaxis_title="margin Δ of B",
        height=460,
        margin={"t": 30},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig, frame


def failure_links(c: Comparison, failed: str, other: str, keys: Sequence[str]) -> pd.DataFrame:
    """The items ``failed`` got wrong and ``other`` right: id, both margins, and a link into the failure browser."""
    rows = c.items.set_index("key").loc[list(keys)] if keys else c.items.iloc[:0].set_index("key")
    ids = rows[f"{failed}:item_id"].astype(str)
    return pd.DataFrame(
        {
            "item": ids.to_numpy(),
            "open": [f"failures?{urlencode({'run': failed, 'item': i})}" for i in ids],
            "context": rows["context"].map(lambda t: " ".join(str(t).split())[:200]).to_numpy(),
            f"margin ({failed})": rows[f"{failed}:margin"].to_numpy(),
            f"margin ({other})": rows[f"{other}:margin"].to_numpy(),
            f"item in {other}": rows[f"{other}:item_id"].astype(str).to_numpy(),
        }
    )


def segment_figure(c: Comparison) -> tuple[go.Figure, pd.DataFrame]:
    """Mean share of relevance per segment, one bar group per run, with bootstrap CIs."""
    assert c.segments is not None
    frame = pd.DataFrame(c.segments.table)
    fig = go.Figure()
    for run_id, part in frame.groupby("run_id", sort=False):
        fig.add_trace(
            go.Bar(
                x=part["segment"],
                y=part["share"],
                name=str(run_id),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": part["ci_high"] - part["share"],
                    "arrayminus": part["share"] - part["ci_low"],
                },
            )
        )
    fig.update_layout(barmode="group", yaxis_title="mean share of relevance", height=380, margin={"t": 30})
    return fig, frame


def transfer_table(rows: Sequence[TransferResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "fitted on": r.source,
                "scored on": r.target,
                "explainer": r.label,
                "tier (for scored run)": r.tier,
                "AUC": r.auc,
                "CI low": r.ci_low,
                "CI high": r.ci_high,
                "n test": r.n_test,
                "own AUC": r.own_auc,
                "own CI low": r.own_ci_low,
                "own CI high": r.own_ci_high,
                "note": r.note or "",
            }
            for r in rows
        ]
    )


def series_frame(c: Comparison) -> pd.DataFrame:
    rows = []
    for p in c.series:
        row: dict[str, Any] = {
            "checkpoint": p.label,
            "samples": p.samples,
            "step": p.step,
            "accuracy": p.accuracy,
            "acc CI low": p.ci_low,
            "acc CI high": p.ci_high,
            "mean margin on final failures": p.mean_margin_final_failures,
            "margin CI low": p.margin_ci_low,
            "margin CI high": p.margin_ci_high,
            "n final failures": p.n_final_failures,
            "best input-tier AUC": (p.best_input or {}).get("auc"),
            "AUC CI low": (p.best_input or {}).get("ci_low"),
            "AUC CI high": (p.best_input or {}).get("ci_high"),
            "best input-tier explainer": (p.best_input or {}).get("label") or p.best_input_note,
        }
        row |= {f"share: {s}": v for s, v in p.segments.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def series_figure(frame: pd.DataFrame, column: str, low: str | None, high: str | None) -> go.Figure:
    """One curve against training progress (samples seen, else steps, else checkpoint order)."""
    x_col = "samples" if frame["samples"].notna().all() else "step" if frame["step"].notna().all() else "checkpoint"
    error = None
    if low and high and frame[low].notna().all():
        error = {"type": "data", "symmetric": False, "array": frame[high] - frame[column]}
        error["arrayminus"] = frame[column] - frame[low]
    fig = go.Figure(
        go.Scatter(
            x=frame[x_col],
            y=frame[column],
            mode="lines+markers",
            error_y=error,
            text=frame["checkpoint"],
            hovertemplate="%{text}: %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(xaxis_title=x_col, yaxis_title=column, height=320, margin={"t": 20})
    if x_col in ("samples", "step"):
        fig.update_xaxes(type="log")
    return fig


def segment_series_figure(frame: pd.DataFrame) -> go.Figure | None:
    cols = [c for c in frame.columns if c.startswith("share: ")]
    if not cols:
        return None
    x_col = "samples" if frame["samples"].notna().all() else "checkpoint"
    fig = go.Figure([go.Scatter(x=frame[x_col], y=frame[c], mode="lines+markers", name=c[7:]) for c in cols])
    fig.update_layout(xaxis_title=x_col, yaxis_title="mean share of relevance", height=320, margin={"t": 20})
    return fig
