"""Cached accessors and figures of the zoo page. Models are the shipped ones and those in the user's zoo
directory (``$WIF_ZOO_DIR``, set by ``wif app``; else ``data/zoo``), no store needed; a zoo run in the
store, if there is one, is linked to the failure browser."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError
from wif_ui import charts, data

from wif_core.errors import WifError
from wif_core.heavy import heavy_imports
from wif_core.paths import DEFAULT_ZOO_DIR
from wif_core.zoo import analysis
from wif_core.zoo.analysis import accuracy_fields, model_summary
from wif_core.zoo.deductive import deduce
from wif_core.zoo.estimators import ESTIMATORS
from wif_core.zoo.evaluate import evaluate
from wif_core.zoo.models import ZooModel, ZooRNN
from wif_core.zoo.weights import available, load

LIVE_SAMPLES = 200_000  # models without a measured accuracy (the handcrafted ones) are measured on open
COLOURS = {
    "sampling": "#546e7a",
    "importance": "#ef6c00",
    "deductive": "#2e7d32",
    "regions": "#1b5e20",
    "stratified": "#6a1b9a",
}
EXACT_REGIONS_MAX_N = 3  # the region method measures cones exactly up to n = 3; past that its regions explode


def zoo_dir() -> Path:
    """The user's zoo directory: ``$WIF_ZOO_DIR``, else ``data/zoo`` (looked up before the shipped models)."""
    return Path(os.environ.get("WIF_ZOO_DIR", DEFAULT_ZOO_DIR))


@st.cache_data(show_spinner=False)
def models() -> list[str]:
    """Every model, each trained one followed by its checkpoints (``NAME.ckpt/SAMPLES``, by samples seen)."""
    return available(zoo_dir(), with_checkpoints=True)


@st.cache_resource(show_spinner=False, max_entries=16)
def model(name: str) -> ZooModel:
    return load(name, zoo_dir())


@st.cache_data(show_spinner=False)
def summary(name: str) -> dict[str, Any]:
    return model_summary(name, zoo_dir())


@st.cache_data(show_spinner="Measuring accuracy…")
def accuracy(name: str) -> dict[str, Any]:
    """The accuracy recorded with the model, or measured now on fresh samples when none is recorded."""
    meta = model(name).spec.meta
    if meta.get("accuracy") is not None:
        return {**meta, "measured_now": False}
    return {**accuracy_fields(evaluate(model(name), LIVE_SAMPLES, seed=0)), "measured_now": True}


@st.cache_data(show_spinner=False)
def deduction(name: str) -> float | None:
    """The exact deductive accuracy where it applies (two inputs), else None."""
    m = model(name)
    if ESTIMATORS["deductive"]().applicable(m) is not None:
        return None
    return deduce(m).accuracy


@st.cache_data(show_spinner=False)
def failures(name: str, samples: int, seed: int) -> pd.DataFrame:
    return analysis.failure_table(model(name), samples, seed)


def heatmaps(name: str) -> tuple[go.Figure, pd.DataFrame] | None:
    """W_hi, W_hh and W_oh side by side, each neuron rescaled so W_hi ∈ {±1}; None for a transformer."""
    m = model(name)
    if not isinstance(m, ZooRNN):
        return None
    w = analysis.rescaled(m)
    d = m.spec.hidden
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        column_widths=[0.08, 0.5, 0.42],
        horizontal_spacing=0.06,
        subplot_titles=["W_hi", "W_hh (row ← column)", "W_oh (logit ← neuron)"],
    )

    def style(z: np.ndarray) -> dict[str, Any]:
        # a per-matrix scale saturating at the 95th percentile: rescaling makes a few weights huge
        # (neurons with a tiny input weight), and one shared scale would leave the rest blank
        bound = float(max(np.quantile(np.abs(z), 0.95), 1e-9))
        return {
            "colorscale": "RdBu",
            "zmid": 0.0,
            "zmin": -bound,
            "zmax": bound,
            "showscale": False,
            "hovertemplate": "%{y} ← %{x}: %{z:.4g}<extra></extra>",
        }

    neurons = [f"h{i}" for i in range(d)]
    fig.add_heatmap(z=w["W_hi"][:, None], y=neurons, x=["x"], **style(w["W_hi"]), row=1, col=1)
    fig.add_heatmap(z=w["W_hh"], y=neurons, x=neurons, **style(w["W_hh"]), row=1, col=2)
    outs = [f"out {j}" for j in range(w["W_oh"].shape[0])]
    fig.add_heatmap(z=w["W_oh"], y=outs, x=neurons, **style(w["W_oh"]), row=1, col=3)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(280, 22 * d + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    rows = [
        {"matrix": k, "row": i, "col": j, "value": float(v)}
        for k in ("W_hi", "W_hh", "W_oh")
        for (i, j), v in np.ndenumerate(np.atleast_2d(w[k].T).T)
    ]
    return fig, pd.DataFrame(rows)


def sequence_figure(row: Any) -> go.Figure:
    """One input sequence as bars: the true answer green, the model's pick red."""
    values = list(row.inputs)
    colours = [
        "#2e7d32" if p == row.true else "#c62828" if p == row.predicted else "#9e9e9e" for p in range(len(values))
    ]
    fig = go.Figure(
        go.Bar(
            x=[str(p) for p in range(len(values))],
            y=values,
            marker_color=colours,
            hovertemplate="position %{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(title="position (green: true answer, red: the model's pick)")
    fig.update_yaxes(title="input value")
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    return fig


def curve_figure(name: str) -> tuple[go.Figure, pd.DataFrame] | None:
    """MSE against FLOPs on log-log axes, one line per estimator; exact estimates sit on a marked floor."""
    curve = analysis.load_curve(name, zoo_dir())
    if curve is None:
        return None
    frame = analysis.curve_frame(curve)
    positive = frame.loc[frame["mse"] > 0, "mse"]
    floor = float(positive.min() / 100) if len(positive) else 1e-12
    fig = go.Figure()
    for method, part in frame.groupby("method", sort=False):
        exact = part["mse"] <= 0
        y = part["mse"].where(~exact, floor)
        fig.add_scatter(
            x=part["flops"],
            y=y,
            name=f"{method}" + (" (MSE 0: exact)" if exact.all() else ""),
            mode="lines+markers" if len(part) > 1 else "markers",
            marker={
                "size": 12 if exact.all() else 7,
                "symbol": "star" if exact.all() else "circle",
                "color": COLOURS.get(str(method)),
            },
            customdata=np.stack([part["budget"].fillna(0), part["n_runs"]], axis=1),
            hovertemplate="%{x:.3g} FLOPs, budget %{customdata[0]:.0f}: MSE %{y:.3g} "
            "(%{customdata[1]} runs)<extra>" + str(method) + "</extra>",
        )
    fig.update_xaxes(type="log", title="compute per estimate (FLOPs)")
    fig.update_yaxes(type="log", title="mean squared error vs the true accuracy")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig, frame


def zoo_runs(name: str) -> list[str]:
    """Runs of this model in the app's store, if a store is there (the page works without one): of a checkpoint,
    the runs of that checkpoint; of a model, its runs that are no checkpoint's."""
    spec = model(name).spec
    mine = spec.meta.get("checkpoint", {}).get("samples") if isinstance(spec.meta.get("checkpoint"), dict) else None
    try:
        store = data.store(data.db_path())
        runs = [store.run(r) for r in store.run_ids()]
    except (WifError, OSError):
        return []
    return [
        r.run_id
        for r in runs
        if r.model == f"zoo:{spec.name}" and (r.config.get("checkpoint") or {}).get("samples") == mine
    ]


def run_link(run_id: str) -> None:
    """A link to the run in the failure browser (a plain link where this page runs outside app.py's navigation)."""
    label = f"This model's run in the store: {run_id}"
    try:
        st.page_link("pages/failures.py", label=label, icon=":material/search:", query_params={"run": run_id})
    except StreamlitPageNotFoundError:
        st.markdown(f"[{label}](failures?{urlencode({'run': run_id})})")


def relevance_figure(name: str, row: Any) -> tuple[go.Figure, float, float] | None:
    """Gradient × input of logit(predicted) − logit(true) per position (exact for the bias-free RNNs); None otherwise."""
    with heavy_imports():
        import torch

        from wif_core.zoo.attribution import position_scores

    m = model(name)
    if not isinstance(m, ZooRNN):
        return None
    x = torch.tensor([list(row.inputs)], dtype=torch.float64)
    scores, delta, _ = position_scores(m, x, torch.tensor([int(row.predicted)]), torch.tensor([int(row.true)]))
    values = scores[0]
    top = float(np.abs(values).max()) or 1.0
    colours = [charts.diverging_rgba(v / top, lo=0.2, hi=1.0) for v in values]
    fig = go.Figure(
        go.Bar(
            x=[str(p) for p in range(len(values))],
            y=values,
            marker_color=colours,
            hovertemplate="position %{x}: relevance %{y:+.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(title="position (red pushes toward the wrong pick, blue toward the true answer)")
    fig.update_yaxes(title="relevance")
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    return fig, float(delta[0]), float(values.sum())


@st.cache_data(show_spinner=False)
def surprise_of(name: str) -> dict[str, Any]:
    """The surprise accounting of a model's deductive estimate (wedges for n = 2, regions for n = 3)."""
    with heavy_imports():
        from wif_core.zoo.surprise import surprise

    return surprise(model(name)).as_dict()


def surprise_section(name: str) -> None:
    """Surprise accounting on the page: at once for two-input models, behind a button for n = 3 (about a second)."""
    m = model(name)
    if not isinstance(m, ZooRNN) or m.spec.task not in ("2nd_argmax", "argmedian"):
        st.caption("Surprise accounting covers the position-task RNNs.")
        return
    if m.spec.n > EXACT_REGIONS_MAX_N:
        st.caption(
            f"n = {m.spec.n}: the region method stops scaling here (each of the {m.spec.hidden} neurons' hyperplanes "
            "cuts every cone at every step; M16,10 passes 20,000 regions by step 4), so no deductive estimate "
            "to account for: `wif zoo regions` says where it stops."
        )
        return
    if m.spec.n == 3 and not st.button("Deduce by activation regions and account surprise", key="zoo_surprise"):
        st.caption("The region deduction of an n = 3 model takes about a second: press to run it.")
        return
    with st.status("Enumerating activation regions…", expanded=False) as status:
        s = surprise_of(name)
        status.update(label=f"Surprise accounting: {s['method']}", state="complete")
    cols = st.columns(4)
    cols[0].metric("Total surprise", f"{s['total_bits']:.1f} bits")
    cols[1].metric("Explanation", f"{s['explanation_bits']:.1f} bits")
    cols[2].metric("Observation", f"{s['observation_bits']:.2f} bits", help="the true accuracy given the estimate")
    cols[3].metric("Bits in the weights", f"{s['weight_bits']:,}", help=f"{s['parameters']} float32 weights")
    frame = pd.DataFrame(s["terms"])[["group", "what", "bits"]]
    st.dataframe(
        frame,
        hide_index=True,
        height=min(400, 36 * len(frame) + 40),
        column_config={"bits": st.column_config.NumberColumn(format="%.2f")},
    )
    for note in s["notes"]:
        st.caption(note)
