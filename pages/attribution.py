"""Contrastive attribution: which tokens pushed the model toward the wrong answer, and which method to trust."""

import streamlit as st
from wif_ui import attribution as attr
from wif_ui import build, charts, data, editor, explain

from wif_core.errors import WifError, one_line

data.ensure_entry()
st.title("Contrastive attribution")
st.caption(
    "Δ = log p(wrong answer) − log p(right answer), summed over the answer tokens, attributed to the input tokens. "
    "For a failure the wrong answer is the one the model chose; for a success, the best wrong one. "
    "**Red** pushes toward the wrong answer, **blue** toward the right one; colours are scaled by the largest "
    "|relevance| outside special tokens."
)
run_id = data.run_selector(data.runs())
fmt = charts.export_format()
path = data.store_path()
records = attr.run_records(path, run_id)
outcomes = attr.outcome_frame(run_id)
failed = set(outcomes.loc[~outcomes["correct"].astype(bool), "item_id"])

st.subheader("Which method to trust on this run")
if records:
    pending = build.pending_note(data.store(path).run(run_id).task, "attribute")
    if pending:  # the demo build is still attributing this run's failures: these summaries will grow
        st.info(f"{pending} The summaries below cover the items stored so far.")
    summary, verdict = attr.trust_table(records, outcomes)
    stored = sorted({r.method for r in records})
    st.markdown(
        f"**{len({r.item_id for r in records})}** items have stored attributions ({', '.join(stored)}). "
        "Faithfulness: how much faster Δ falls when the top-attributed context tokens are deleted first than in a "
        "random order (nats, mean over deletion steps; higher is better), with a 99.9% bootstrap CI. "
        + (f"**Verdict:** {verdict['reason']}." if verdict["method"] else verdict["reason"])
    )
    st.dataframe(
        summary,
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ["mean", "ci_low", "ci_high", "vs_best", "vs_best_low", "vs_best_high"]
        },
    )
    cols = st.columns([1, 1, 4], vertical_alignment="bottom")
    agg_method = explain.choice(cols[0], "Method", stored, "agg_method", help="Stored method to aggregate.")
    k = explain.choice(cols[1], "Profile clusters", [3, 2, 4, 5], "profile_k", help="k of the k-means.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Where relevance comes from** (segment shares, failures vs successes)")
        fig, frame = attr.segment_outcome_figure(records, outcomes, agg_method)
        charts.show(fig, frame, f"wif_segments_{run_id}_{agg_method}", fmt)
    with right:
        st.markdown("**Layer profiles of the failures**, clustered as in the paper")
        try:
            fig, frame = attr.profile_cluster_figure(records, failed, agg_method, k)
            charts.show(fig, frame, f"wif_profiles_{run_id}_{agg_method}", fmt)
        except WifError as exc:
            st.info(one_line(exc))
else:
    pending = build.pending_note(data.store(data.store_path()).run(run_id).task, "attribute")
    st.info(
        pending
        or f"No attributions are stored for this run yet. Store them with `wif attribute --run {run_id} "
        "--failures-only`; meanwhile pick an item below and compute it here."
    )

st.subheader("One item")
ids, marks = attr.item_order(outcomes, {r.item_id for r in records})
if not ids:
    st.info("This run has no scored items.")
    st.stop()
cols = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
item_id = explain.choice(cols[0], "Item (✗ failed, ✓ correct)", ids, "item", format_func=lambda i: f"{i} {marks[i]}")
methods = attr.method_order(records, item_id)
m1 = explain.choice(cols[1], "Method", methods, "method_a")
m2 = explain.choice(cols[2], "Beside it", attr.beside_options(records, item_id, methods), "method_b")
compute = cols[3].toggle(
    "Compute if not stored",
    value=True,
    key="compute",
    help="Loads the run's model (CPU) and attributes this item now; nothing is written.",
)

chosen = [m1] if m2 in ("none", m1) else [m1, m2]
results = {m: attr.record(path, run_id, item_id, m, compute) for m in chosen}
shown = {m: r for m, r in results.items() if not isinstance(r, str)}
for column, (method, result) in zip(st.columns(len(chosen)), results.items(), strict=True):
    with column:
        if isinstance(result, str):
            st.info(result)
            continue
        if result.fallback:
            st.warning(result.fallback)
        m = st.columns(3)
        m[0].metric("Δ (nats)", attr.number(result.delta), help="log p(wrong) − log p(right); > 0 prefers wrong.")
        m[1].metric("Σ scores", attr.number(result.sum_scores), help="Equals Δ for complete methods.")
        m[2].metric("Faithfulness", attr.number(result.faithfulness), help="Random minus top-first deletion, nats.")
        if note := attr.completeness_note(result):
            st.caption(note)
        fig, table = attr.heatmap_figure(result, f"{method} · {item_id}")
        charts.show(fig, table, f"wif_attr_{run_id}_{item_id}_{method}", fmt)
        st.download_button(
            "Download the heatmap (HTML)",
            attr.heatmap_page(result, f"{method} · {item_id}"),
            file_name=f"wif_attr_{item_id}_{method}.html",
            mime="text/html",
            on_click="ignore",
            key=f"html_{method}",
        )
        with st.expander("Token text view"):
            st.markdown(attr.heatmap_html(result), unsafe_allow_html=True)
editor.draw(path, run_id, item_id, m1, fmt)  # edit the item, re-score it live, see it beside the original
if not shown:
    st.stop()
left, right = st.columns(2)
with left:
    st.markdown("**Deletion curves**: Δ as top-attributed tokens are removed, vs a random order")
    fig, frame = attr.deletion_figure(shown)
    charts.show(fig, frame, f"wif_deletion_{run_id}_{item_id}", fmt)
with right:
    st.markdown("**Relevance by prompt segment**")
    fig, frame = attr.segment_figure(shown)
    charts.show(fig, frame, f"wif_item_segments_{run_id}_{item_id}", fmt)
st.markdown("**Layer profile**: relevance of the final context position after each block")
fig, frame = attr.profile_figure(shown)
charts.show(fig, frame, f"wif_item_profile_{run_id}_{item_id}", fmt)
