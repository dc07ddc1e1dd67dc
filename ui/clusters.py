"""Cached accessors, the scatter and the cluster cards of the Clusters page.

Results come from ``wif_core.clusters.cluster_run`` with its JSON cache beside the store
(``<store>.clusters/``, shared with ``wif cluster``), and are kept in ``st.cache_data`` per
(store path, run, options), so a page's second render computes nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError
from wif_ui import charts, data, explain

from wif_core.clusters import SPACES, ClusterCache, ClusterResult, cluster_run
from wif_core.clusters.cards import ClusterCard
from wif_core.clusters.run import snippet
from wif_core.clusters.spaces import SPACE_NOTES, SPACE_TIERS, default_layer, default_site, why_not
from wif_core.errors import WifError, one_line
from wif_core.sae import available

OUTCOME_COLOURS = {"failed": "#c62828", "correct": "#2e7d32"}
NOISE = "#bdbdbd"


@st.cache_data(show_spinner=False, max_entries=64)
def _spaces(path: str, run_id: str) -> dict[str, str | None]:
    return {s: why_not(data.store(path), run_id, s) for s in SPACES}


def spaces(run_id: str) -> dict[str, str | None]:
    """Each space: None where the run has it, else one line saying why not and how to get it."""
    return _spaces(data.store_path(), run_id)


def space_label(space: str, reasons: dict[str, str | None]) -> str:
    return f"{space} · {SPACE_TIERS[space]}" + (" (not available)" if reasons.get(space) else "")


def layer_options(run_id: str, space: str) -> tuple[list[int], int | None]:
    """The layers a space can be read at (collected layers, or layers with an SAE) and the default one."""
    if space == "sae":
        saes = list(available(data.store_path(), run_id))
        return saes, (saes[0] if saes else None)
    layers = [int(x) for x in data.store(data.store_path()).run(run_id).layers]
    return layers, default_layer(layers)


def site_options(run_id: str) -> tuple[list[str], str | None]:
    """The run's activation sites and the default one (``last``)."""
    sites = list(data.store(data.store_path()).run(run_id).sites)
    return sites, default_site(sites)


def pick(where: Any, label: str, options: list[Any], default: Any, key: str, **kwargs: Any) -> Any:
    """``explain.choice`` that starts from ``default`` (not the first option) when neither the session nor the
    URL names a valid one."""
    if st.session_state.get(key) not in options:
        fallback = default if default in options else options[0]
        st.session_state[key] = data.from_url(key, options, fallback, what=label.lower())
    return explain.choice(where, label, options, key, **kwargs)


@st.cache_data(show_spinner=False, max_entries=128)
def _result(path: str, run_id: str, options_json: str) -> ClusterResult:
    return cluster_run(data.store(path), run_id, cache=ClusterCache.beside(path), **json.loads(options_json))


def result(run_id: str, **options: Any) -> ClusterResult:
    """The clusters for these options (computed once, then from the cache); on an error, its one line, and stop."""
    try:
        slot = st.empty()  # the status shows while clustering runs, and goes once it is done
        with slot.status("Clustering (once; the result is then cached beside the store) …", expanded=False):
            out = _result(data.store_path(), run_id, json.dumps(options, sort_keys=True))
        slot.empty()
        return out
    except WifError as exc:
        st.error(one_line(exc))
        st.stop()


def summary(r: ClusterResult) -> str:
    """One markdown line: what was clustered, how, and how well the clusters separate."""
    what = "failed items" if r.mode == "failures" else "items"
    how = f"k = {r.k}, chosen by {r.k_chosen_by}" if r.algorithm == "kmeans" else f"HDBSCAN found {r.k} clusters"
    sil = "" if r.silhouette is None or not np.isfinite(r.silhouette) else f", silhouette {r.silhouette:.3f}"
    return (
        f"**{r.n_clustered} {what}** clustered in {r.description} (**{r.tier}** tier: "
        f"{SPACE_NOTES[r.space]}); {r.algorithm}, {how}{sil}. Base failure rate {r.base_rate:.1%} over "
        f"{r.n_items} items."
    )


MAP_POINTS = 5000  # points the 2-D map draws at most: a seeded random sample of a larger run's items


def map_frame(r: ClusterResult) -> pd.DataFrame:
    """One row per item of the result: its cluster, outcome, split and map position (no text: see ``with_text``)."""
    return pd.DataFrame(
        {
            "item_id": r.item_ids,
            "cluster": r.labels,
            "clustered": r.clustered,
            "outcome": np.where(np.asarray(r.failed) == 1, "failed", "correct"),
            "split": [s or "none" for s in r.splits],
            "x": r.x,
            "y": r.y,
        }
    )


def with_text(frame: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a text snippet of each item's context (from ``items``: item_id, context)."""
    text = items.set_index("item_id")["context"].reindex(frame["item_id"]).fillna("")
    return frame.assign(text=[snippet(t, 120) for t in text])


def item_frame(r: ClusterResult, items: pd.DataFrame) -> pd.DataFrame:
    """One row per item of the result: its cluster, outcome, split, map position and a text snippet."""
    return with_text(map_frame(r), items)


def map_sample(frame: pd.DataFrame, cap: int = MAP_POINTS, seed: int = 0) -> pd.DataFrame:
    """At most ``cap`` rows of ``frame`` for the map, drawn at random (``seed``) and kept in their order: tens of
    thousands of points make a figure of many megabytes that the browser draws slowly and no one reads point by
    point; a uniform sample keeps about each cluster's share."""
    if len(frame) <= cap:
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), cap, replace=False))
    return frame.iloc[keep]


def scatter_figure(frame: pd.DataFrame, colour: str, mode: str, map_method: str) -> go.Figure:
    """The 2-D map, one trace per cluster (or outcome); in mode failures, placed successes are hollow."""
    fig = go.Figure()
    palette = px.colors.qualitative.Dark24
    groups = sorted(frame["cluster"].unique()) if colour == "cluster" else list(OUTCOME_COLOURS)
    for g in groups:
        part = frame[frame["cluster"] == g] if colour == "cluster" else frame[frame["outcome"] == g]
        if part.empty:
            continue
        name = (f"cluster {g}" if g >= 0 else "noise") if colour == "cluster" else str(g)
        tint = (palette[int(g) % len(palette)] if g >= 0 else NOISE) if colour == "cluster" else OUTCOME_COLOURS[g]
        hollow = ~part["clustered"].to_numpy() if mode == "failures" else np.zeros(len(part), bool)
        fig.add_scatter(
            x=part["x"],
            y=part["y"],
            mode="markers",
            name=f"{name} ({len(part)})",
            marker={
                "color": tint,
                "size": 8,
                "symbol": np.where(hollow, "circle-open", "circle").tolist(),
                "line": {"width": 1},
            },
            customdata=part[["item_id", "cluster", "outcome", "split", "text"]].to_numpy(),
            hovertemplate="<b>%{customdata[0]}</b> · cluster %{customdata[1]} · %{customdata[2]} · "
            "%{customdata[3]}<br>%{customdata[4]}<extra></extra>",
        )
    fig.update_xaxes(title=f"{map_method.upper()} 1", showticklabels=False)
    fig.update_yaxes(title=f"{map_method.upper()} 2", showticklabels=False)
    return charts.layout(fig, height=520)


def card_label(c: ClusterCard, r: ClusterResult) -> str:
    """An expander's title: the cluster, its size, its failure rate with CI, and its first words."""
    name = "noise (no dense region)" if c.is_noise else f"Cluster {c.id}"
    size = f"{c.size} failures" if r.mode == "failures" else f"{c.size} items"
    return (
        f"{name} · {size} · failure rate {c.failure_rate:.0%} [{c.ci_low:.0%}, {c.ci_high:.0%}] · "
        f"{', '.join(c.top_words[:4]) or '—'}"
    )


def _link(page: str, run_id: str, item_id: str, label: str, icon: str) -> None:
    """An ``st.page_link`` to ``pages/<page>.py``; where that page is not registered (the page run alone under
    AppTest, or the attribution page not yet added), a plain link to its URL path stands in."""
    query = {"run": run_id, "item": item_id}
    try:
        st.page_link(f"pages/{page}.py", label=label, icon=icon, query_params=query)
    except StreamlitPageNotFoundError:
        st.markdown(f"[{label}]({page}?{urlencode(query)})")


def card(c: ClusterCard, r: ClusterResult) -> None:
    """One cluster's card: rate metrics, distinguishing words, SAE features, factors, representatives."""
    cols = st.columns(4)
    cols[0].metric("Items clustered", c.size, help="Failures only in mode 'failures'.")
    cols[1].metric(
        "Failure rate",
        f"{c.failure_rate:.0%}",
        help=f"{c.n_failed} of {c.n_region} items; {c.ci_level:.1%} Wilson interval [{c.ci_low:.1%}, {c.ci_high:.1%}]",
    )
    cols[2].metric("vs base rate", f"{c.failure_rate - r.base_rate:+.0%}", help="Cluster rate − the run's rate.")
    cols[3].metric("Splits", " / ".join(f"{k} {v}" for k, v in sorted(c.splits.items())) or "—")
    if r.mode == "failures" and not c.is_noise:
        st.caption(f"Rate over the cluster's {c.size} failures and the {c.n_region - c.size} successes nearest to it.")
    if c.top_words:
        st.markdown("**Distinguishing words** (c-TF-IDF vs the other clusters): " + ", ".join(c.top_words))
    if c.factors:
        st.markdown(
            "**Over-represented generator factors**: "
            + "; ".join(
                f"`{f.factor} = {f.value}` {f.share_in:.0%} here vs {f.share_all:.0%} overall" for f in c.factors
            )
        )
    if c.top_features:
        st.dataframe(
            pd.DataFrame([vars(f) for f in c.top_features]),
            hide_index=True,
            column_config={
                k: st.column_config.NumberColumn(format="%.3f") for k in ("mean_in", "mean_out", "freq_in", "freq_out")
            },
        )
    st.markdown("**Representative items** (nearest the centroid)")
    for item_id, text in zip(c.representatives, c.examples, strict=False):
        left, mid, right = st.columns([6, 1, 1], vertical_alignment="center")
        left.caption(f"`{item_id}` {text}")
        with mid:
            _link("failures", r.run_id, item_id, "browser", ":material/search:")
        with right:
            _link("attribution", r.run_id, item_id, "attribution", ":material/insights:")
