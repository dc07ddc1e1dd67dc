"""The plotly figures and HTML fragments that the app and ``wif report`` both draw (no Streamlit here).

Each figure builder takes records of the core (explainer results, attribution records) and returns a
``plotly`` figure, with the frame it draws where a page offers that frame as CSV. plotly is imported
with this module, which only the app and the report import, so ``import wif_core`` stays light.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from wif_core.attribution.record import Attribution
from wif_core.explainers.evaluate import PAPER_MODEL_LAYERS, ExplainResult
from wif_core.metrics.auc import roc_curve
from wif_core.sae.diff import visible

DASH = {"input": "solid", "output": "dash", "gold": "dot"}
CHANCE = {"color": "#9e9e9e", "dash": "dot", "width": 1}
PAPER_COLOUR = "#ef6c00"
# red pushes toward the wrong answer, blue toward the right one (RdBu reversed: positive is red)
HEAT_COLOURS = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]]
LINE_CHARS = 70
ROC_POINTS = 1000  # vertices a drawn ROC curve keeps at most; its data (the figure's CSV) keeps every one


def diverging_rgba(value: float, lo: float = 0.0, hi: float = 0.85) -> str:
    """Red for value > 0 (toward the wrong answer), blue otherwise; opacity from lo to hi as |value| goes 0 → 1."""
    v = max(-1.0, min(1.0, value))
    r, g, b = (178, 24, 43) if v > 0 else (33, 102, 172)
    return f"rgba({r}, {g}, {b}, {lo + (hi - lo) * abs(v):.2f})"


def layout(fig: go.Figure, **kwargs: Any) -> go.Figure:
    # a run can have a dozen curves: a palette of 24 keeps them apart
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"font": {"size": 11}},
        colorway=px.colors.qualitative.Dark24,
        **kwargs,
    )
    return fig


def _thin(n: int, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` of ``n`` curve vertices, evenly spaced, the first and last among them. An ROC
    curve over 20,000 test items has as many vertices; between two kept ones it moves by at most ``n / cap``
    steps of one item, which no screen shows, and the figure stays small enough to draw at once."""
    if n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(int))


def roc_figure(results: list[ExplainResult]) -> tuple[go.Figure, pd.DataFrame]:
    """ROC curves of every result on its test items, line style by tier, and the chance diagonal."""
    fig, parts = go.Figure(), []
    for r in results:
        fpr, tpr, thr = roc_curve(np.asarray(r.y_test), np.asarray(r.scores))
        name = f"{r.label} · {r.tier} · AUC {r.auc:.3f}"
        keep = _thin(len(fpr), ROC_POINTS)
        fig.add_scatter(x=fpr[keep], y=tpr[keep], mode="lines", name=name, line={"dash": DASH[r.tier]})
        parts.append(pd.DataFrame({"label": r.label, "tier": r.tier, "fpr": fpr, "tpr": tpr, "threshold": thr}))
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance (AUC 0.5)", line=CHANCE)
    # a square plot on the left half, the legend (long labels) beside it
    fig.update_xaxes(
        title="false-positive rate (correct items flagged)", range=[0, 1], domain=[0, 0.5], constrain="domain"
    )
    fig.update_yaxes(title="true-positive rate (failures caught)", range=[0, 1], scaleanchor="x", scaleratio=1)
    fig = layout(fig, height=480)
    fig.update_layout(legend={"x": 0.52, "y": 1, "xanchor": "left", "yanchor": "top"})
    return fig, pd.concat(parts, ignore_index=True)


def layer_frame(results: list[ExplainResult]) -> pd.DataFrame:
    """One row per result that has a layer: explainer, site, layer and the AUC with its CI."""
    rows = [
        {
            "explainer": r.explainer,
            "site": r.site,
            "tier": r.tier,
            "layer": r.layer,
            "auc": r.auc,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "ci_level": r.ci_level,
            "n_test": r.n_test,
        }
        for r in results
        if r.layer is not None
    ]
    columns = ["explainer", "site", "tier", "layer", "auc", "ci_low", "ci_high", "ci_level", "n_test"]
    return pd.DataFrame(rows, columns=columns).sort_values(["explainer", "site", "layer"], ignore_index=True)


def _auc_trace(fig: go.Figure, x: np.ndarray, part: pd.DataFrame, name: str, **kwargs: Any) -> None:
    fig.add_scatter(
        x=x,
        y=part["auc"],
        name=name,
        mode="lines+markers",
        error_y={"type": "data", "array": part["ci_high"] - part["auc"], "arrayminus": part["auc"] - part["ci_low"]},
        customdata=np.stack([part["layer"], part["ci_low"], part["ci_high"], part["n_test"]], axis=1),
        hovertemplate="layer %{customdata[0]}: AUC %{y:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}], "
        "n=%{customdata[3]}<extra>" + name + "</extra>",
        **kwargs,
    )


def layer_figure(frame: pd.DataFrame) -> go.Figure:
    """AUC by layer with CI bars, one line per (explainer, site): the paper's Figure 1 for any run."""
    fig = go.Figure()
    groups = list(frame.groupby(["explainer", "site"], sort=True))
    for n, ((explainer, site), part) in enumerate(groups):
        dodge = (n - (len(groups) - 1) / 2) * 0.06  # side by side, so the CI bars do not hide each other
        _auc_trace(fig, part["layer"].to_numpy(float) + dodge, part, f"{explainer} · {site}")
    fig.add_hline(y=0.5, line=CHANCE, annotation_text="chance", annotation_position="bottom left")
    ticks = sorted(frame["layer"].unique())
    pad = max(0.5, 0.04 * (ticks[-1] - ticks[0]))  # room beside the outer CI bars for the chance label
    fig.update_xaxes(
        title="layer (residual stream after block L)", tickvals=ticks, range=[ticks[0] - pad, ticks[-1] + pad]
    )
    level = frame["ci_level"].iloc[0] if len(frame) else 0.999
    fig.update_yaxes(title=f"test AUC ({level:.1%} CI)", range=[-0.02, 1.02])
    return layout(fig, height=400)


def paper_figure(rows: pd.DataFrame, paper: dict[str, float], model: str) -> tuple[go.Figure, pd.DataFrame]:
    """This run's probe-paper AUC by relative depth with CI bars, beside the paper's reported AUCs."""
    fig = go.Figure()
    _auc_trace(
        fig,
        rows["relative_depth"].to_numpy(float),
        rows,
        f"this run: {model}",
        text=[f"L{x}" for x in rows["layer"]],
        textposition="middle right",
    )
    fig.data[0].mode = "lines+markers+text"
    ref = pd.DataFrame({"paper_layer": [int(k) for k in paper], "paper_auc": list(paper.values())})
    ref["relative_depth"] = ref["paper_layer"] / PAPER_MODEL_LAYERS
    if len(ref):
        fig.add_scatter(
            x=ref["relative_depth"],
            y=ref["paper_auc"],
            name="paper: Gemma-2 2B",
            mode="lines+markers+text",
            marker={"symbol": "diamond", "size": 9, "color": PAPER_COLOUR},
            line={"dash": "dash", "color": PAPER_COLOUR},
            text=[f"L{x}" for x in ref["paper_layer"]],
            textposition="bottom center",
        )
    fig.add_hline(y=0.5, line=CHANCE, annotation_text="chance", annotation_position="bottom left")
    fig.update_xaxes(title="relative depth (layer / number of blocks)", range=[0, 1.08])
    fig.update_yaxes(title="test AUC", range=[-0.02, 1.02])
    ours = rows[["layer", "relative_depth", "auc", "ci_low", "ci_high", "n_test"]].assign(source=f"this run: {model}")
    theirs = ref.rename(columns={"paper_layer": "layer", "paper_auc": "auc"}).assign(source="paper: gemma-2-2b")
    return layout(fig, height=420), pd.concat([ours, theirs], ignore_index=True)


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
                f'<span title="{r:+.4f} · {html.escape(row.segments[i])}" style="background: {diverging_rgba(heat[i])}; '
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
            "colorscale": HEAT_COLOURS,
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
