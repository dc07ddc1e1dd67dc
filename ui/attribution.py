"""The attribution page's pieces: token heatmaps (from ``wif_core.figures``), deletion curves, segment bars and layer profiles."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from wif_ui import data

from wif_core.attribution import (
    METHODS,
    Attribution,
    faithfulness_summary,
    item_attribution,
    layer_profile_clusters,
    recommend,
    segment_summary,
)
from wif_core.errors import WifError, one_line

# the heatmaps are built in the core, shared with `wif report`
from wif_core.figures import heatmap_figure as heatmap_figure
from wif_core.figures import heatmap_html as heatmap_html
from wif_core.figures import heatmap_page as heatmap_page
from wif_core.heavy import heavy_imports


def deletion_figure(rows: dict[str, Attribution]) -> tuple[go.Figure, pd.DataFrame]:
    """Δ as the top-attributed tokens are deleted (solid) against a random order (dotted), per method."""
    fig, parts = go.Figure(), []
    palette = ["#b2182b", "#2166ac", "#1b7837", "#762a83"]
    for n, (method, row) in enumerate(rows.items()):
        if not row.deletion:
            continue
        d = row.deletion
        x = d.get("fraction") or d.get("k")
        colour = palette[n % len(palette)]
        fig.add_scatter(x=x, y=d["top"], mode="lines+markers", name=f"{method}: top first", line={"color": colour})
        fig.add_scatter(
            x=x, y=d["random"], mode="lines", name=f"{method}: random order", line={"color": colour, "dash": "dot"}
        )
        parts.append(pd.DataFrame({"method": method, "x": x, "top": d["top"], "random": d["random"]}))
    fig.add_hline(y=0, line={"color": "#9e9e9e", "width": 1})
    fig.update_xaxes(title="context tokens deleted (share)" if rows and _has_fraction(rows) else "tokens deleted")
    fig.update_yaxes(title="Δ = log p(wrong) − log p(right)")
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig, (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame())


def _has_fraction(rows: dict[str, Attribution]) -> bool:
    return any(r.deletion and "fraction" in r.deletion for r in rows.values())


def segment_frame(row: Attribution) -> pd.DataFrame:
    """Relevance summed per segment, in order of first appearance."""
    frame = pd.DataFrame({"segment": row.segments, "score": row.scores})
    order = list(dict.fromkeys(row.segments))
    return frame.groupby("segment", sort=False)["score"].sum().reindex(order).reset_index()


def segment_figure(rows: dict[str, Attribution]) -> tuple[go.Figure, pd.DataFrame]:
    """One bar per segment and method: where the push toward the wrong answer comes from."""
    parts = [segment_frame(r).assign(method=m) for m, r in rows.items()]
    frame = pd.concat(parts, ignore_index=True)
    fig = go.Figure()
    for method, part in frame.groupby("method", sort=False):
        fig.add_bar(x=part["segment"], y=part["score"], name=str(method))
    fig.update_yaxes(title="relevance (+ toward wrong)")
    fig.update_layout(barmode="group", height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig, frame


def profile_figure(rows: dict[str, Attribution]) -> tuple[go.Figure, pd.DataFrame]:
    """Each method's layer profile: relevance at the final context position after each block."""
    fig, parts = go.Figure(), []
    for method, row in rows.items():
        if not row.layer_profile:
            continue
        layers = np.arange(1, len(row.layer_profile) + 1)
        fig.add_scatter(x=layers, y=row.layer_profile, mode="lines+markers", name=method)
        parts.append(pd.DataFrame({"method": method, "layer": layers, "relevance": row.layer_profile}))
    fig.add_hline(y=0, line={"color": "#9e9e9e", "width": 1})
    fig.update_xaxes(title="block")
    fig.update_yaxes(title="relevance (normalised)")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig, (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame())


def completeness_note(row: Attribution) -> str | None:
    """How far Σ scores is from Δ when the method does not promise equality, and what that means for trust."""
    cfg = row.config
    for key, what in (("conservation_error", "conservation"), ("completeness_error", "completeness")):
        err = cfg.get(key)
        if isinstance(err, int | float) and math.isfinite(err) and err > 0.01:
            return (
                f"{row.method}: {what} error {err:.0%} — the scores do not add up to Δ here; read the heatmap "
                "as a ranking, and check the deletion curve before trusting it."
            )
    return None


def number(value: float | None, fmt: str = "+.3f") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


# ---- cached accessors --------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def run_records(path: str, run_id: str) -> list[Attribution]:
    """Every stored attribution of a run (all methods)."""
    return [Attribution.from_row(r) for r in data.store(path).attributions(run_id)]


@st.cache_resource(show_spinner=False, max_entries=1)
def _model(spec: str) -> object:
    with heavy_imports():
        from wif_core.models.loading import load_model

    return load_model(spec)


def run_model(spec: str) -> Any:
    """A run's model (``load_model``), loaded once per process and shared by live attribution and the item editor."""
    return _model(spec)


@st.cache_data(show_spinner=False, max_entries=256)
def _computed(path: str, run_id: str, item_id: str, method: str, spec: str) -> Attribution:
    return item_attribution(data.store(path), run_id, item_id, method, _model(spec))[0]


def record(path: str, run_id: str, item_id: str, method: str, compute: bool) -> Attribution | str:
    """The stored record, else (when ``compute``) one computed now with the run's model; else why not."""
    stored = [r for r in run_records(path, run_id) if r.item_id == item_id and r.method == method]
    if stored:
        return stored[0]
    if not compute:
        return f"No stored {method} attribution of this item."
    spec = data.store(path).run(run_id).model
    try:
        with st.status(f"Computing {method} for {item_id} with {spec}…", expanded=False) as status:
            result = _computed(path, run_id, item_id, method, spec)
            status.update(label=f"{method}: computed in {result.seconds or 0:.1f} s (not stored)", state="complete")
        return result
    except (WifError, OSError, ValueError) as exc:
        return f"Cannot compute {method} here: {one_line(exc)}"


def method_order(records: list[Attribution], item_id: str) -> list[str]:
    """Every method, those stored for this item first (then AttnLRP, the paper's method)."""
    stored = sorted({r.method for r in records if r.item_id == item_id})
    rest = sorted(set(METHODS) - set(stored), key=lambda m: (m != "attnlrp", m))
    return stored + rest


def beside_options(records: list[Attribution], item_id: str, methods: list[str]) -> list[str]:
    """The second method's choices: another stored one first; with one stored, 'none' first (computing
    needs the run's model, which zoo and imported runs do not have); with none stored, the next method."""
    n_stored = len({r.method for r in records if r.item_id == item_id})
    if n_stored == 1:
        return ["none", *methods[1:], methods[0]]
    return [*methods[1:], methods[0], "none"]


def item_order(outcomes: pd.DataFrame, stored: set[str]) -> tuple[list[str], dict[str, str]]:
    """Item ids, failures first and attributed items first within each, with a mark per item."""
    frame = outcomes.assign(stored=outcomes["item_id"].isin(stored), correct=outcomes["correct"].astype(bool))
    frame = frame.sort_values(["correct", "stored"], ascending=[True, False], kind="stable")
    ids = frame["item_id"].tolist()
    outcome = np.where(frame["correct"].to_numpy(), "✓", "✗").astype(object)
    marks = outcome + np.where(frame["stored"].to_numpy(), " · stored", "").astype(object)
    return ids, dict(zip(ids, marks.tolist(), strict=True))


def outcome_frame(run_id: str) -> pd.DataFrame:
    """item_id, correct and pred of every scored item of the run."""
    return data.outcomes(run_id)


# ---- run-level figures -------------------------------------------------------------


def trust_table(records: list[Attribution], outcomes: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Faithfulness per method (99.9% bootstrap CI, n) and the method to trust on this run."""
    summary = faithfulness_summary(records, outcomes, level=0.999)
    return summary, recommend(summary)


def segment_outcome_figure(
    records: list[Attribution], outcomes: pd.DataFrame, method: str
) -> tuple[go.Figure, pd.DataFrame]:
    """Mean share of |relevance| per segment, failures vs successes, for one method."""
    frame = segment_summary([r for r in records if r.method == method], outcomes).by_outcome
    fig = go.Figure()
    colours = {"failure": "#b2182b", "success": "#4d9221"}
    for outcome, part in frame.groupby("outcome", sort=False):
        n = int(part["n"].max())
        fig.add_bar(
            x=part["segment"], y=part["share"], name=f"{outcome} (n={n})", marker_color=colours.get(str(outcome))
        )
    fig.update_yaxes(title="mean share of relevance (+ toward wrong)")
    fig.update_layout(barmode="group", height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig, frame


def profile_cluster_figure(
    records: list[Attribution], failed: set[str], method: str, k: int
) -> tuple[go.Figure, pd.DataFrame]:
    """Layer profiles of the failures clustered by k-means, each cluster's mean profile and a PCA map."""
    from plotly.subplots import make_subplots

    rows = [r for r in records if r.method == method and r.item_id in failed]
    pc = layer_profile_clusters(rows, k=k)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("cluster mean profiles", "PCA of the profiles"))
    palette = ["#1b7837", "#762a83", "#e08214", "#2166ac", "#b2182b", "#35978f"]
    for c in range(pc.k):
        n = int((pc.labels == c).sum())
        colour = palette[c % len(palette)]
        layers = np.arange(1, pc.centroids.shape[1] + 1)
        fig.add_scatter(
            x=layers, y=pc.centroids[c], mode="lines", name=f"cluster {c} (n={n})", line={"color": colour}, row=1, col=1
        )
        mask = pc.labels == c
        fig.add_scatter(
            x=pc.coords[mask, 0],
            y=pc.coords[mask, 1],
            mode="markers",
            showlegend=False,
            marker={"color": colour},
            hovertext=[i for i, m in zip(pc.item_ids, mask, strict=True) if m],
            hoverinfo="text",
            row=1,
            col=2,
        )
    fig.update_xaxes(title="block", row=1, col=1)
    ev = pc.explained_variance
    fig.update_xaxes(title=f"PC1 ({ev[0]:.0%})", row=1, col=2)
    fig.update_yaxes(title=f"PC2 ({ev[1]:.0%})", row=1, col=2)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    frame = pd.DataFrame({"item_id": pc.item_ids, "cluster": pc.labels, "pc1": pc.coords[:, 0], "pc2": pc.coords[:, 1]})
    return fig, frame
