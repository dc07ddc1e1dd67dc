"""Failure browser: filter a run's items, pick one, and see its context, choices and the model's scores."""

import plotly.express as px
import streamlit as st
from wif_ui import data

EXPORT = {"toImageButtonOptions": {"format": "png"}}

data.ensure_entry()
st.title("Failure browser")
run_id = data.run_selector(data.runs())

cols = st.columns([1, 1, 2, 1, 1], vertical_alignment="bottom")
# A shared link to one item opens with every outcome shown, so the item is not filtered out.
outcome = cols[0].selectbox(
    "Outcome", ["all", "incorrect", "correct"], index=0 if "item" in st.query_params else 1, key="outcome"
)
split = cols[1].selectbox("Split", ["all", *data.SPLITS], key="split")
search = cols[2].text_input("Search", placeholder="words in the context, a choice or the item id", key="search")
excluded = cols[3].toggle("Show excluded", value=True, key="excluded", help="Items left out for leakage.")
suspect_only = cols[4].toggle(
    f"Suspect only {data.SUSPECT_MARK}", value=False, key="suspect", help="Items flagged as suspect labels."
)

flags = data.quality_flags(run_id)
filters = {
    "outcome": None if outcome == "all" else outcome,
    "split": None if split == "all" else split,
    "search": search,
    "excluded": excluded,
    "item_ids": list(flags["item_id"]) if suspect_only else None,
}
n_match = data.count_items(run_id, **filters)
frame = data.with_suspects(data.items_shown(run_id, st.query_params.get("item"), **filters), flags)
st.caption(f"{n_match} items match.")
if n_match > len(frame):
    st.caption(
        f"The table lists the first {data.ITEMS_SHOWN:,} in item order (and the item the link names); search or "
        "filter to find the others."
    )
if frame.empty:
    st.info("No items match these filters.")
    st.stop()
item_id = data.item_picker(frame)
row = next(frame[frame["item_id"] == item_id].itertuples())

st.subheader(item_id)
cards = st.columns(4)
cards[0].metric("Outcome", "correct" if row.correct else "incorrect")
cards[1].metric(
    "Margin",
    "—" if data.is_missing(row.margin) else f"{row.margin:+.3f}",
    help="Gold choice's score minus the best other choice's; negative when the model was wrong.",
)
cards[2].metric("Split", "—" if data.is_missing(row.split) else row.split)
cards[3].metric("Excluded", row.reason if row.excluded else "no")

flag = flags[flags["item_id"] == item_id]
if not flag.empty:
    evidence = flag["evidence"].iloc[0]
    st.warning(
        f"{data.SUSPECT_MARK} Suspect label ({', '.join(flag['reasons'].iloc[0])}; score {flag['score'].iloc[0]:.3f}): "
        + "; ".join(data.SUSPECT_REASONS[r] for r in flag["reasons"].iloc[0])
        + "."
    )
    with st.expander("Evidence", expanded=True):
        st.table(data.suspect_choices_table(row, evidence))
        if evidence.get("consensus"):
            c = evidence["consensus"]
            st.caption(f"{c['runs']} of the {c['of']} other runs that cover this item chose the suggested answer.")
        if evidence.get("copies"):
            st.caption(
                "Other copies of this question: "
                + "; ".join(
                    f"{data.shown(c['item_id'])} keyed {data.shown(c['answer'], 60)}" for c in evidence["copies"]
                )
            )
        st.dataframe(
            data.suspect_runs_table(evidence),
            hide_index=True,
            column_config={
                "margin": st.column_config.NumberColumn(
                    format="%.3f", help="That run's own margin: the key's score minus the best other choice's."
                ),
                "weight": st.column_config.NumberColumn(
                    format="%.3f", help="The run's weight in the combined probabilities (0: no better than chance)."
                ),
            },
        )

st.markdown("**Context**")
st.code(row.context, language=None, wrap_lines=True)

st.markdown("**Choices**")
choices = data.choice_table(row)
st.table(choices)
if data.as_int(row.pred) is None:
    st.caption("The outcomes of this run give no prediction for this item (imported outcomes).")
scores = choices.reset_index().melt(
    id_vars=["option", "gold", "prediction"], value_vars=["ll_sum", "ll_per_byte"], var_name="score"
)
scores = scores.dropna(subset=["value"])
if scores.empty:
    st.caption("This run stores no per-choice log-likelihoods (imported outcomes carry none).")
else:
    scores["role"] = [
        "gold" + (" + pick" if p else "") if g else ("model's pick" if p else "other")
        for g, p in zip(scores["gold"], scores["prediction"], strict=True)
    ]
    fig = px.bar(
        scores,
        x="option",
        y="value",
        color="role",
        facet_col="score",
        height=300,
        color_discrete_map={"gold": "#2e7d32", "gold + pick": "#2e7d32", "model's pick": "#c62828", "other": "#9e9e9e"},
        labels={"value": "log-likelihood (higher: more likely)", "option": "", "role": ""},
    )
    names = {"ll_sum": "sum over the choice's tokens", "ll_per_byte": "per byte of the choice"}
    fig.for_each_annotation(lambda a: a.update(text=names.get(a.text.split("=", 1)[-1], a.text)))
    fig.update_yaxes(matches=None, showticklabels=True)
    st.plotly_chart(fig, config=EXPORT)
if data.has_model(run_id):  # the item editor re-scores with the run's model
    data.item_link(
        "attribution", run_id, item_id, "Edit this item and re-score it (Attribution page)", ":material/edit:"
    )

meta = data.meta_of(row)
st.markdown("**Item metadata**")
factors = [f for f in meta.get("factors", []) if f in meta]
if factors:
    st.caption("Generator factors: what built this item.")
    st.table({"factor": factors, "value": [str(meta[f]) for f in factors]})
with st.expander("All metadata (JSON)", expanded=not factors):
    st.json(meta)
