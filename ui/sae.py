"""Cached accessors, tables and figures of the SAE page.

The run's codes (its items encoded by the SAE) come from the cache beside the store
(``codes.safetensors``, written by ``wif sae train``); only when it is missing does the page
import sae-lens and encode. Everything is keyed by the SAE's fingerprint, so a retrained SAE
is never answered from a stale cache.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError
from wif_ui import charts, data

from wif_core.errors import WifError, one_line
from wif_core.sae import SaeInfo, available, sae_info
from wif_core.sae import paths as sae_paths
from wif_core.sae.codes import FeatureCodes, run_codes
from wif_core.sae.diff import Context, SaeDiff, run_diff, run_items, visible

OUTCOME_COLOURS = {"failure": "#c62828", "success": "#2e7d32"}


def layers(run_id: str) -> dict[int, Path]:
    """The run's layers with an SAE beside the store (a directory listing: not cached, so a new SAE shows up)."""
    return available(data.store_path(), run_id)


def no_sae_message(run_id: str, token_layers: list[int]) -> str:
    """One line: how to get an SAE for this run."""
    db = data.db_path()
    if not token_layers:
        return (
            f"Run `{run_id}` kept no per-token activations, so it has no SAE: collect it again with "
            "`--token-layers L`, then `wif sae train`."
        )
    return (
        f"Run `{run_id}` has no SAE yet: train one with "
        f"`wif sae train --db {db} --run {run_id} --layer {token_layers[0]}`."
    )


@st.cache_data(show_spinner=False, max_entries=64)
def _info(path: str, fingerprint: str) -> SaeInfo:
    return sae_info(path)


def info(path: Path) -> SaeInfo:
    """The SAE's config and wif metrics (cached per fingerprint)."""
    return _info(str(path), sae_paths.fingerprint(path))


@st.cache_resource(show_spinner=False, max_entries=8)
def _codes(store_path: str, run_id: str, layer: int, fingerprint: str) -> FeatureCodes:
    return run_codes(data.store(store_path), run_id, layer)


@st.cache_data(show_spinner=False, max_entries=64)
def _diff(store_path: str, run_id: str, layer: int, *, fingerprint: str, top: int, by: str) -> SaeDiff:
    codes = _codes(store_path, run_id, layer, fingerprint)
    return run_diff(data.store(store_path), run_id, layer, top=top, by=by, n_contexts=5, codes=codes)


def diff(run_id: str, layer: int, sae: SaeInfo, top: int, by: str) -> tuple[SaeDiff, FeatureCodes]:
    """The ranked feature diff and the codes; on an error, its one line, and the page stops."""
    path = data.store_path()
    try:
        label = "Encoding the run's items with the SAE (once; the codes are then cached beside the store) …"
        slot = st.empty()  # the status shows while encoding runs, and goes once it is done
        with slot.status(label, expanded=False):
            codes = _codes(path, run_id, layer, sae.fingerprint)
            out = _diff(path, run_id, layer, fingerprint=sae.fingerprint, top=top, by=by), codes
        slot.empty()
        return out
    except WifError as exc:
        st.error(one_line(exc))
        st.stop()


def sae_line(sae: SaeInfo) -> str:
    """One markdown line: what the SAE is and how well it reconstructs."""
    m = sae.metrics
    parts = [f"**{sae.architecture}** SAE, {sae.d_sae} features on width {sae.d_in}"]
    if m.get("source"):
        parts.append(f"source {m['source']}")
    if m.get("explained_variance") is not None:
        parts.append(
            f"explained variance {m['explained_variance']:.3f} and mean L0 {m['mean_l0']:.1f} on "
            f"{m.get('n_eval_tokens', '?')} {m.get('eval_split', '')} tokens"
        )
    if m.get("n_tokens"):
        parts.append(
            f"trained on {m['n_tokens']} tokens of {m.get('n_items', '?')} {'/'.join(m.get('splits', []))} items"
        )
    return " · ".join(parts)


def diff_table(d: SaeDiff) -> pd.DataFrame:
    """One row per ranked feature: firing frequency by outcome, effect, AUC with CI, test AUC, strongest token."""
    return pd.DataFrame(
        [
            {
                "rank": f.rank,
                "feature": f.feature,
                "marks": f.direction,
                "freq_fail": f.freq_fail,
                "freq_success": f.freq_success,
                "effect": f.effect,
                "auc": f.auc,
                "ci_low": f.ci_low,
                "ci_high": f.ci_high,
                "auc_test": f.auc_test,
                "top token": visible(f.contexts[0].token) if f.contexts else "",
            }
            for f in d.features
        ],
        columns=[
            "rank",
            "feature",
            "marks",
            "freq_fail",
            "freq_success",
            "effect",
            "auc",
            "ci_low",
            "ci_high",
            "auc_test",
            "top token",
        ],
    )


def _on_row_select() -> None:
    rows = st.session_state["feature_table"].selection.rows
    ids = st.session_state.get("_feature_ids", [])
    if rows and rows[0] < len(ids):
        st.session_state["feature_pick"] = ids[rows[0]]


def feature_picker(d: SaeDiff, table: pd.DataFrame) -> int:
    """The diff table (click a row) and a feature selectbox kept in ``?feature=``."""
    ids = [f.feature for f in d.features]
    st.session_state["_feature_ids"] = ids
    fmt = {c: st.column_config.NumberColumn(format="%.3f") for c in ("auc", "ci_low", "ci_high", "auc_test")}
    fmt |= {c: st.column_config.NumberColumn(format="%.2f") for c in ("freq_fail", "freq_success", "effect")}
    st.dataframe(
        table,
        key="feature_table",
        on_select=_on_row_select,
        selection_mode="single-row",
        hide_index=True,
        height=min(420, 35 * (len(table) + 1)),
        column_config=fmt,
    )
    if st.session_state.get("feature_pick") not in ids:
        st.session_state["feature_pick"] = data.from_url("feature", ids, ids[0], what="feature", where="among these")
    feature = st.selectbox("Feature", ids, key="feature_pick", format_func=lambda f: f"feature {f}")
    data.to_url("feature", feature)
    return int(feature)


@st.cache_resource(show_spinner=False, max_entries=8)
def _item_max(store_path: str, run_id: str, layer: int, fingerprint: str) -> np.ndarray:
    return _codes(store_path, run_id, layer, fingerprint).item_max()


def item_activations(run_id: str, layer: int, sae: SaeInfo, codes: FeatureCodes, feature: int) -> pd.DataFrame:
    """Every evaluated item's activation of ``feature`` (max over its tokens), with its split and outcome."""
    items = run_items(data.store(data.store_path()), run_id)
    index = codes.index()
    items = items[items["item_id"].isin(index)]
    acts = _item_max(data.store_path(), run_id, layer, sae.fingerprint)
    col = acts[[index[i] for i in items["item_id"]], feature]
    return pd.DataFrame(
        {
            "item_id": items["item_id"].to_numpy(),
            "split": items["split"].to_numpy(),
            "outcome": np.where(items["failed"] == 1, "failure", "success"),
            "activation": col,
        }
    )


def histogram_figure(frame: pd.DataFrame, feature: int) -> go.Figure:
    """Overlaid histograms of a feature's item activation, failures against successes."""
    fig = go.Figure()
    for outcome, colour in OUTCOME_COLOURS.items():
        part = frame[frame["outcome"] == outcome]
        fig.add_histogram(
            x=part["activation"], name=f"{outcome} ({len(part)})", marker_color=colour, opacity=0.6, nbinsx=30
        )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=f"feature {feature}: max activation over the item's tokens (0: does not fire)")
    fig.update_yaxes(title="items")
    return charts.layout(fig, height=320)


def context_html(ctx: Context) -> str:
    """The item's listing prompt with each token shaded by the feature's activation on it (escaped HTML)."""
    top = max(ctx.acts) if ctx.acts and max(ctx.acts) > 0 else 1.0
    spans = []
    for token, a in zip(ctx.tokens, ctx.acts, strict=True):
        text = html.escape(token).replace("\n", "⏎<br>")
        if a > 0:
            spans.append(
                f'<span title="{a:.2f}" style="background: rgba(239, 108, 0, {0.15 + 0.75 * a / top:.2f}); '
                f'border-radius: 3px">{text}</span>'
            )
        else:
            spans.append(text)
    return (
        '<div style="font-family: monospace; font-size: 0.85em; line-height: 1.7; white-space: pre-wrap">'
        + "".join(spans)
        + "</div>"
    )


def item_link(run_id: str, item_id: str, label: str) -> None:
    """A link that opens the item in the failure browser.

    Through ``app.py``'s navigation it is an ``st.page_link``; where this page runs alone (a page
    script under AppTest), the failure browser is no registered page, so a plain link stands in.
    """
    query = {"run": run_id, "item": item_id}
    try:
        st.page_link("pages/failures.py", label=label, icon=":material/search:", query_params=query)
    except StreamlitPageNotFoundError:
        st.markdown(f"[{label}](failures?{urlencode(query)})")
