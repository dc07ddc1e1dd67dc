"""The attribution page's pieces: token heatmaps, deletion curves, segment bars and layer profiles."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from wif_ui import charts, data

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
from wif_core.heavy import heavy_imports
from wif_core.sae.diff import visible

# red pushes toward the wrong answer, blue toward the right one (RdBu reversed: positive is red)
COLOURS = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]]
LINE_CHARS = 70


def _parts(row: Attribution) -> list[tuple[str, list[int]]]:
    """Token indices grouped into the shared text, then the wrong answer's own tokens, then the right one's."""
    shared = [i for i, g in enumerate(row.segments) if g not in ("wrong", "right")]
    return [
        ("", shared),
        ("wrong answer", [i for i, g in enumerate(row.segments) if g == "wrong"]),
        ("right answer", [i for i, g in enumerate(row.segments) if g == "right"]),
    ]


def heatmap_html(row: Attribution) -> str:
    """Escaped HTML: each token shaded by its relevance (hover shows the value and the segment)."""
    heat = row.heat()
    blocks = []
    for title, idx in _parts(row):
        if not idx:
            continue
        spans = []
        for i in idx:
            text = html.escape(row.tokens[i]).replace("\n", "⏎<br>")
            r = row.scores[i]
            spans.append(
                f'<span title="{r:+.4f} · {html.escape(row.segments[i])}" style="background: {charts.diverging_rgba(heat[i])}; '
                f'border-radius: 3px">{text}</span>'
            )
        head = f"<b>{title}:</b> " if title else ""
        blocks.append(f"<div>{head}{''.join(spans)}</div>")
    return (
        '<div style="font-family: monospace; font-size: 0.85em; line-height: 1.8; white-space: pre-wrap">'
        + "".join(blocks)
        + "</div>"
    )


def heatmap_page(row: Attribution, title: str) -> str:
    """A standalone HTML file of the heatmap, for the download button."""
    legend = "red pushes toward the wrong answer, blue toward the right one"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h3>{html.escape(title)}</h3><p>{legend}; Δ = {row.delta:+.4f}, Σ scores = {row.sum_scores:+.4f}</p>"
        f"{heatmap_html(row)}</body></html>"
    )


def _layout_lines(row: Attribution) -> list[list[int]]:
    """Token indices wrapped into lines of about LINE_CHARS characters; each part and newline starts a line."""
    lines: list[list[int]] = []
    for _, idx in _parts(row):
        line: list[int] = []
        width = 0
        for i in idx:
            n = max(1, len(visible(row.tokens[i])))
            if line and (width + n > LINE_CHARS or row.tokens[line[-1]].endswith("\n")):
                lines.append(line)
                line, width = [], 0
            line.append(i)
            width += n
        if line:
            lines.append(line)
    return lines


def heatmap_figure(row: Attribution, title: str) -> tuple[go.Figure, pd.DataFrame]:
    """The token heatmap as a plotly figure (exportable as PNG/SVG): one text row per wrapped line."""
    heat = row.heat()
    lines = _layout_lines(row)
    xs, ys, texts, values, hover = [], [], [], [], []
    for y, line in enumerate(lines):
        x = 0.0
        for i in line:
            w = max(1, len(visible(row.tokens[i])))
            xs.append(x + w / 2)
            ys.append(y)
            texts.append(visible(row.tokens[i]))
            values.append(heat[i])
            hover.append(f"{visible(row.tokens[i])}<br>r = {row.scores[i]:+.4f}<br>{row.segments[i]}")
            x += w
    fig = go.Figure()
    widths = [max(1, len(t)) for t in texts]
    fig.add_bar(
        x=widths,
        y=ys,
        base=[x - w / 2 for x, w in zip(xs, widths, strict=True)],
        orientation="h",
        width=0.9,
        marker={
            "color": values,
            "colorscale": COLOURS,
            "cmin": -1,
            "cmax": 1,
            "line": {"width": 0},
            "colorbar": {"title": "r / max|r|", "thickness": 12},
        },
        text=texts,
        textposition="inside",
        insidetextanchor="middle",
        textfont={"family": "monospace", "size": 12},
        hovertext=hover,
        hoverinfo="text",
        showlegend=False,
    )
    fig.update_yaxes(autorange="reversed", visible=False)
    fig.update_xaxes(visible=False, range=[0, LINE_CHARS + 2])
    fig.update_layout(
        title={"text": title, "font": {"size": 13}},
        height=80 + 26 * len(lines),
        bargap=0,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        plot_bgcolor="white",
        uniformtext={"minsize": 8, "mode": "show"},
    )
    frame = pd.DataFrame({"token": row.tokens, "segment": row.segments, "score": row.scores})
    return fig, frame


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
    marks = {r.item_id: ("✓" if r.correct else "✗") + (" · stored" if r.stored else "") for r in frame.itertuples()}
    return frame["item_id"].tolist(), marks


def outcome_frame(run_id: str) -> pd.DataFrame:
    """item_id, correct and pred of every scored item of the run."""
    return data.items(run_id, None, None, None, True)[["item_id", "correct", "pred", "gold", "margin"]]


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
