"""Paper reproduction: the paper's last-token probe at every layer of a run, beside the paper's reported AUCs."""

import pandas as pd
import streamlit as st
from wif_ui import charts, data, explain

data.ensure_entry()
st.title("Paper reproduction")
run_id = data.run_selector(data.runs())
run = explain.run_data(run_id)
fmt = charts.export_format()
layers = [v.settings["layer"] for v in explain.variants(run) if v.name == "probe-paper"]
if not layers:
    st.info(
        f"The paper's probe reads the last token of the options-listing prompt (site `last`); run {run_id} has "
        f"no activations there (layers {run.facts.layers or 'none'}, sites {run.facts.sites or 'none'})."
    )
    st.stop()

rep = explain.reproduce(run_id, layers)
rows = pd.DataFrame(rep["results"])
paper = rep["paper"]
task = rep["paper_task"]
st.caption(
    "The paper's protocol: `LogisticRegression(C=100, max_iter=1000)` on the unscaled residual stream at the "
    "last token of a prompt that lists the context and every option before “Answer:”, trained on train and "
    f"scored on test. This run: **{rep['model']}** on **{rep['task']}**"
    + (f" (the paper's **{task}**)." if task != rep["task"] else ".")
)
best = rows.loc[rows["auc"].idxmax()]
cols = st.columns(3)
cols[0].metric("Best layer", f"L{int(best['layer'])}", help="This run's layer with the highest test AUC.")
cols[1].metric(
    "Its AUC",
    f"{best['auc']:.3f}",
    help=f"{best['ci_level']:.1%} CI [{best['ci_low']:.3f}, "
    f"{best['ci_high']:.3f}] over {int(best['n_test'])} test items.",
)
cols[2].metric("Paper's best AUC", f"{max(paper.values()):.3f}" if paper else "—", help="Gemma-2 2B, this task.")

fig, frame = charts.paper_figure(rows, paper, rep["model"])
charts.show(fig, frame, f"wif_reproduce_{run_id}", fmt)
if paper:
    st.caption(
        "Layers are aligned by **relative depth**: this run's layer L of its N blocks sits at L/N, and the "
        "paper's layer L at L/26, since the paper's numbers are for **Gemma-2 2B** (26 blocks). The paper "
        "reports no intervals, so its points have no bars; this run's bars are bootstrap CIs."
    )
else:
    st.caption(f"The paper reports no AUCs for task {task}; only this run's curve is drawn.")

st.subheader("Per layer")
table = rows[["layer", "relative_depth", "auc", "ci_low", "ci_high", "ci_level", "n_test", "paper_layer", "paper_auc"]]
st.dataframe(
    table,
    hide_index=True,
    column_config={
        **{c: st.column_config.NumberColumn(format="%.3f") for c in ("relative_depth", "auc", "ci_low", "ci_high")},
        "paper_layer": st.column_config.NumberColumn(help="The paper's layer nearest this one in relative depth."),
        "paper_auc": st.column_config.NumberColumn(format="%.3f", help="The paper's test AUC at that layer."),
    },
)
st.download_button(
    "Download the table (CSV)",
    table.to_csv(index=False),
    file_name=f"wif_reproduce_{run_id}.csv",
    mime="text/csv",
    on_click="ignore",
)
