"""The Interventions page's data: stored causal checks of a run, one computed on demand, and their figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from wif_core.heavy import heavy_imports
from wif_core.interventions.causal import CausalScore
from wif_core.interventions.run import InterventionCache, check_key, steering_check

ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0)


def stored(path: str, run_id: str) -> list[CausalScore]:
    """The run's stored causal checks (``wif intervene`` or this page), newest first."""
    return InterventionCache.beside(path, writable=False).of_run(run_id)


def key_of(
    run_id: str, model: str, layer: int, site: str, alphas: Sequence[float], controls: int, limit: int | None
) -> str:
    grid = sorted({0.0, *(float(a) for a in alphas)})
    return check_key(
        run_id,
        model,
        explainer="probe",
        layer=layer,
        site=site,
        alphas=grid,
        controls=controls,
        seed=0,
        limit=limit,
        dtype="float32",
    )


@st.cache_resource(show_spinner=False, max_entries=1)
def _model(spec: str) -> Any:
    with heavy_imports():
        from wif_core.models.loading import load_model

    return load_model(spec)


def compute(
    path: str,
    run_id: str,
    *,
    layer: int,
    site: str,
    alphas: Sequence[float],
    controls: int,
    limit: int | None,
    progress: Callable[[int], None],
) -> CausalScore:
    """Run one steering check with the run's model and store it beside the store (the store stays read-only)."""
    from wif_ui import data

    store = data.store(path)
    run = store.run(run_id)
    score = steering_check(
        store,
        _model(run.model),
        run_id,
        layer=layer,
        site=site,
        alphas=alphas,
        n_controls=controls,
        limit=limit,
        progress=progress,
    )
    InterventionCache.beside(path).put(
        key_of(run_id, run.model, layer=layer, site=site, alphas=alphas, controls=controls, limit=limit), score
    )
    return score


def scores_table(scores: list[CausalScore]) -> pd.DataFrame:
    """One row per stored check: the causal score with its interval, beside the probe's predictive val AUC."""
    rows = []
    for s in scores:
        rows.append(
            {
                "direction": s.direction,
                "layer": s.layer,
                "site": s.site,
                "alpha": s.alpha,
                "causal_score": s.score,
                "ci_low": None if s.ci is None else s.ci[0],
                "ci_high": None if s.ci is None else s.ci[1],
                "n_test_failures": s.n_test_failures,
                "probe_val_auc": s.source.get("val_auc"),
                "controls": s.source.get("n_controls"),
                "limit": s.source.get("limit"),
            }
        )
    return pd.DataFrame(rows)


def curve_figure(score: CausalScore) -> tuple[go.Figure, pd.DataFrame]:
    """Flip and broken rates on test against α, for the direction and its random control."""
    frame = pd.DataFrame(
        [
            {
                "alpha": r.alpha,
                "flip_rate": r.flip_rate,
                "flip_rate_control": r.flip_rate_control,
                "broken_rate": r.broken_rate,
                "broken_rate_control": r.broken_rate_control,
            }
            for r in score.test
        ]
    )
    fig = go.Figure()
    styles = (
        ("flip_rate", "flips (failures now right)", "#1f77b4", "solid"),
        ("flip_rate_control", "flips, random control", "#1f77b4", "dot"),
        ("broken_rate", "breaks (successes now wrong)", "#d62728", "solid"),
        ("broken_rate_control", "breaks, random control", "#d62728", "dot"),
    )
    for col, name, color, dash in styles:
        fig.add_trace(
            go.Scatter(
                x=frame.alpha, y=frame[col], name=name, mode="lines+markers", line={"color": color, "dash": dash}
            )
        )
    fig.add_vline(x=score.alpha, line_dash="dash", line_color="grey", annotation_text="chosen on val")
    fig.update_layout(
        xaxis_title="strength α (× mean residual norm)",
        yaxis_title="share of test items",
        yaxis_range=[0, 1],
        height=380,
        margin={"t": 30},
    )
    return fig, frame


def items_table(score: CausalScore, items: pd.DataFrame) -> pd.DataFrame:
    """The test items at the chosen strength: before, steered and control outcomes and margins, failures first."""
    rows = []
    text = items.set_index("item_id")["context"].to_dict() if len(items) else {}
    for item_id, v in score.items.items():
        rows.append(
            {
                "item_id": item_id,
                "context": str(text.get(item_id, ""))[:160],
                "failed_before": not v["correct_before"],
                "correct_after": v["correct_after"],
                "correct_control": v["correct_control"],
                "margin_before": v["margin_before"],
                "margin_after": v["margin_after"],
                "margin_control": v["margin_control"],
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["failed_before", "correct_after"], ascending=[False, False], kind="stable")
    return frame
