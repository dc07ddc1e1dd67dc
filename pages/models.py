"""Compare models: two or more runs of one task on the items they share; checkpoints against training progress."""

import streamlit as st
from wif_ui import charts, data, models

from wif_core.attribution import METHODS

data.ensure_entry()
st.title("Compare models")
runs = data.runs()
if runs.empty:
    st.info(f"The store at {data.shown(data.db_path())} has no runs yet; add two with `wif collect`.")
    st.stop()
fmt = charts.export_format()
st.caption(
    "Runs are paired by item content (whitespace, case and option order aside), whatever their ids. Accuracy "
    "with a Wilson interval; the paired difference with the exact McNemar test; Cohen's κ of the errors; "
    "margins Δ = log p(gold) − log p(best other) from each run's stored choice scores."
)
picked = models.run_picker(runs)
if len(picked) < 2:
    st.info(models.no_second_run(runs) if runs["task"].value_counts().max() < 2 else "Pick two or more runs above.")
    st.stop()
method = data.from_url("method", list(METHODS), None, what="attribution method")
result = models.comparison(picked, method)
if isinstance(result, str):
    st.info(f"These runs cannot be compared: {result}")
    st.stop()
c = result

st.subheader("Accuracy")
st.caption(f"On the {c.n_shared} items all chosen runs share; {c.ci_level:.1%} Wilson intervals.")
number = st.column_config.NumberColumn(format="%.3f")
st.dataframe(
    models.accuracy_table(c),
    hide_index=True,
    column_config={k: number for k in ("accuracy", "CI low", "CI high")},
)
st.dataframe(
    models.pairs_table(c),
    hide_index=True,
    column_config={
        **{k: number for k in ("acc A − B", "CI low", "CI high", "κ of errors")},
        **{k: number for k in ("margin r (Pearson)", "margin ρ (Spearman)")},
        "McNemar p": st.column_config.NumberColumn(format="%.3g", help="Exact: binomial test of the discordant pairs."),
    },
)

labels = [f"{p.a}  vs  {p.b}" for p in c.pairs]
pair = c.pairs[labels.index(st.selectbox("Pair", labels)) if len(labels) > 1 else 0]
a, b = pair.a, pair.b
st.subheader("Outcomes side by side")
cols = st.columns([1, 2])
cols[0].markdown(f"**A** {data.shown(a)}  \n**B** {data.shown(b)}")
cols[0].dataframe(models.two_by_two(pair.table))
cols[0].caption(
    f"A − B {pair.diff:+.3f} [{pair.diff_ci_low:+.3f}, {pair.diff_ci_high:+.3f}], McNemar p = {pair.mcnemar_p:.3g}; "
    f"κ of errors {'n/a' if pair.kappa is None else f'{pair.kappa:.3f}'} (n = {pair.n})."
)
with cols[1]:
    if pair.n_margins:
        fig, frame = models.scatter(c, a, b)
        charts.show(fig, frame, f"wif_margins_{a}_{b}", fmt)
    else:
        st.info("No margins to plot: one of these runs has no choice scores (an import without them).")

link = st.column_config.LinkColumn("open", display_text="failure browser", help="Opens the item in the failure browser")
for failed, other, keys in ((a, b, pair.failed_only_a), (b, a, pair.failed_only_b)):
    st.markdown(f"**Failed by {data.shown(failed)} only** ({len(keys)} items; the other run got them right)")
    if keys:
        st.dataframe(models.failure_links(c, failed, other, keys), hide_index=True, column_config={"open": link})
    else:
        st.caption("None.")

st.subheader("Segment shares of relevance")
if c.segments is not None:
    st.caption(
        f"{c.segments.method} on the {c.segments.n} shared items attributed in every run: each segment's relevance "
        f"over the item's total |relevance|, mean with a {c.segments.ci_level:.1%} bootstrap interval "
        f"(seed {c.segments.seed})."
    )
    fig, frame = models.segment_figure(c)
    charts.show(fig, frame, "wif_segment_shares", fmt)
else:
    st.info(f"No segment shares: {c.segments_note}")

st.subheader("Explainer transfer")
st.caption(
    "Each input-tier explainer fitted on one run's failures (train, tuned on val) scores the other run's test "
    "items it never saw; it reads only the item text and the scored run's own internals, so it is input tier "
    "there. The gold-tier row scores them by the first run's outcomes. 'own' is the scored run's own explainer "
    "on the same items."
)
rows = []
with st.status("Fitting the explainer transfer (cached per pair)…", expanded=False) as status:
    for source, target in ((a, b), (b, a)):
        got = models.transfer(source, target)
        if isinstance(got, str):
            st.write(f"{data.shown(source)} → {data.shown(target)}: {got}")
        else:
            rows += got
    status.update(label="Explainer transfer", state="complete")
if rows:
    table = models.transfer_table(rows)
    st.dataframe(table, hide_index=True, column_config={k: number for k in table.columns if "AUC" in k or "CI" in k})

if c.series:
    st.subheader("Checkpoints")
    with st.status("Best input-tier explainer per checkpoint (cached)…", expanded=False) as status:
        series = models.comparison(picked, method, explainers=True)
        status.update(label="Checkpoint explainers", state="complete")
    if isinstance(series, str):
        series = c
    frame = models.series_frame(series)
    st.caption(
        "In training order. Mean margin on the items the last checkpoint fails (bootstrap CI); the best input-tier "
        "explainer of the default comparison is chosen on each checkpoint's val split and scored on its test split."
    )
    cols = st.columns(2)
    cols[0].plotly_chart(models.series_figure(frame, "accuracy", "acc CI low", "acc CI high"))
    cols[1].plotly_chart(
        models.series_figure(frame, "mean margin on final failures", "margin CI low", "margin CI high")
    )
    if frame["best input-tier AUC"].notna().any():
        cols[0].plotly_chart(models.series_figure(frame, "best input-tier AUC", "AUC CI low", "AUC CI high"))
    seg = models.segment_series_figure(frame)
    if seg is not None:
        cols[1].plotly_chart(seg)
    st.dataframe(frame, hide_index=True)
