"""Overview: the runs in the store, each split's class balance, the leakage and the suspect labels found in each run."""

import plotly.express as px
import streamlit as st
from wif_ui import data
from wif_ui import report as report_ui

EXPORT = {"toImageButtonOptions": {"format": "png"}}
COLOURS = {"correct": "#2e7d32", "incorrect": "#c62828", "excluded": "#9e9e9e"}

data.ensure_entry()
st.title("Overview")
st.caption(f"Store: `{data.db_path()}`")
runs = data.runs()
if runs.empty:
    st.info("This store has no runs yet; add one with `wif collect` or `wif import`.")
    st.stop()
counts, findings = data.split_counts(), data.findings()

cards = st.columns(4)
cards[0].metric("Runs", len(runs))
cards[1].metric("Items", int(runs["n_items"].sum()))
cards[2].metric("Failures", int(runs["n_incorrect"].sum()), help="Items the model answered wrongly, over all runs.")
cards[3].metric("Excluded for leakage", int(runs["n_duplicates"].sum()))

st.subheader("Runs")
table = data.runs_table(runs, counts)
st.dataframe(
    table,
    hide_index=True,
    column_config={
        **{c: st.column_config.NumberColumn(width="small") for c in ("items", "planned")},
        "accuracy": st.column_config.NumberColumn(format="%.3f", width="small"),
        "n_correct": st.column_config.NumberColumn("correct", width="small"),
        "n_incorrect": st.column_config.NumberColumn("incorrect", width="small"),
        "in_splits": st.column_config.NumberColumn("in splits", help="Items in train/val/test, not excluded."),
        "excluded": st.column_config.NumberColumn(help="Items left out of evaluation for leakage."),
    },
)
st.download_button("Download runs (CSV)", table.to_csv(index=False), file_name="wif_runs.csv", mime="text/csv")

st.subheader("Report")
st.caption(
    "One HTML file per run to hand out: summary, leakage, the explainer table with CIs, ROC and AUC-by-layer "
    "figures, SAE features, cluster cards and attribution heatmaps of a few failures. It opens offline; "
    "`wif report --run RUN_ID` writes the same file."
)
report_ui.report_download(runs)

st.subheader("Split balance")
st.caption(
    "Explainers are fitted on train, tuned on val and scored on test; each split should hold as many "
    "correct as incorrect items. Excluded items (leakage) are counted apart; `unused` items are in no split."
)
balance = data.split_balance(runs, counts)
n_runs = balance["run"].nunique()
fig = px.bar(
    balance,
    x="split",
    y="n",
    color="group",
    barmode="group",
    facet_col="run",
    facet_col_wrap=2,
    facet_row_spacing=0.12,
    color_discrete_map=COLOURS,
    height=320 * ((n_runs + 1) // 2),
    category_orders={
        "split": [*data.SPLITS, "none"],
        "group": list(COLOURS),
        "run": list(dict.fromkeys(balance["run"])),
    },
    labels={"n": "items", "group": "", "split": ""},
)
fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
fig.update_yaxes(matches=None, showticklabels=True)
st.plotly_chart(fig, config=EXPORT)

st.subheader("Leakage")
st.caption(
    "Items are grouped by normalised content (whitespace, case and answer order ignored); "
    "a group is leakage when its copies disagree or could be scored twice."
)
summary = data.findings_table(findings)
for run in runs.itertuples():
    st.markdown(f"**{run.task}** · {run.model} · `{run.run_id}`")
    found = summary[summary["run_id"] == run.run_id].drop(columns="run_id")
    if found.empty:
        st.caption("No leakage found.")
    else:
        st.dataframe(found, hide_index=True)
kinds = sorted(set(summary["kind"])) or list(data.FINDING_KINDS)
st.markdown("**What the kinds mean**")
st.markdown("\n".join(f"- **{k}**: {data.FINDING_KINDS.get(k, 'see wif_core.splits.')}" for k in kinds))

st.subheader("Suspect labels")
st.caption(
    "Items whose answer key looks wrong, found by `wif quality --run RUN_ID`: copies with different keys, other "
    "models' confident consensus on another answer, and confident learning on out-of-fold probabilities (a "
    "text-only classifier and the models' own scores). A model that fails such an item may be right; "
    "`wif explain --exclude suspect` reports explainers with and without them. The failure browser marks "
    f"each one ({data.SUSPECT_MARK}) with its evidence."
)
quality = data.quality_table(runs, data.quality_passes(), data.quality_flags())
checked = quality["checked"].notna()
if not checked.any():
    st.caption("No run has had an item-quality pass yet: `wif quality --run RUN_ID` makes one.")
else:
    st.metric("Suspect labels", int(quality.loc[checked, "flagged"].sum()), help="Flagged items over the runs checked.")
    st.dataframe(
        quality,
        hide_index=True,
        column_config={
            "checked": st.column_config.NumberColumn(help="Items the pass looked at; empty: no pass yet."),
            "flagged": st.column_config.NumberColumn(help="Items with at least one reason (an item may have several)."),
            "most suspect": st.column_config.TextColumn(
                help="The highest-scoring flags: open them in the failure browser."
            ),
            "signals": st.column_config.TextColumn(help="The signals the pass used, or the command that makes one."),
        },
    )
    st.markdown("**What the reasons mean**")
    st.markdown("\n".join(f"- **{reason}**: {text}." for reason, text in data.SUSPECT_REASONS.items()))
