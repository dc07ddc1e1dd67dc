"""Drawing figures in the app: the sidebar's export format, and a figure with its data as CSV.

The figures themselves are built in ``wif_core.figures`` (shared with ``wif report``) and
re-exported here, so the pages draw exactly what a report shows.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from wif_core.figures import (
    CHANCE,
    DASH,
    PAPER_COLOUR,
    diverging_rgba,
    layer_figure,
    layer_frame,
    layout,
    paper_figure,
    roc_figure,
)

__all__ = [
    "CHANCE",
    "DASH",
    "PAPER_COLOUR",
    "diverging_rgba",
    "export_format",
    "layer_figure",
    "layer_frame",
    "layout",
    "paper_figure",
    "roc_figure",
    "show",
]


def export_format() -> str:
    """The sidebar's choice of image format for every figure's download button (plotly's modebar)."""
    return str(
        st.sidebar.radio(
            "Figure download format",
            ["png", "svg"],
            key="fig_format",
            horizontal=True,
            help="The camera icon above each figure downloads it in this format.",
        )
    )


def show(fig: go.Figure, frame: pd.DataFrame, name: str, fmt: str) -> None:
    """Draw a figure with its image export set to ``fmt``, and offer its data as CSV."""
    st.plotly_chart(fig, config={"toImageButtonOptions": {"format": fmt, "filename": name}, "displaylogo": False})
    st.download_button(
        "Download the data of this figure (CSV)",
        lambda: frame.to_csv(index=False),  # written when clicked, not on every render (a large run's frame)
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"csv_{name}",
        on_click="ignore",
    )
