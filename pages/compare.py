"""Compare explainers: fit those a run supports, overlay their ROC curves, AUC by layer, paired comparisons."""

import streamlit as st
from wif_ui import charts, data, explain

from wif_core.explainers import TIER_NOTES

data.ensure_entry()
st.title("Compare explainers")
run_id = data.run_selector(data.runs())
run = explain.run_data(run_id)
fmt = charts.export_format()
options = explain.variants(run)
st.caption(
    "Each explainer is fitted on train, tuned on val and scored on test (AUC of P(failure), bootstrap CI). "
    + " ".join(f"**{t}** tier ({explain.ROLES[t]}): {TIER_NOTES[t]}." for t in explain.ROLES)
)
chosen = explain.pick_variants(run_id, options)
if not chosen:
    st.info("Pick at least one explainer above.")
    st.stop()
results = explain.fit_all(run_id, chosen)
if not results:
    st.stop()

pair = explain.headline(results)
if pair:
    inner, base = pair["internals"], pair["baseline"]
    cols = st.columns([1, 3], vertical_alignment="center")
    cols[0].metric("Internals − text (ΔAUC)", f"{pair['diff']:+.3f}", help="Paired on the same test items.")
    cols[1].markdown(
        f"The best input-tier explainer that reads the model's internals, **{inner.label}** (test AUC "
        f"{inner.auc:.3f}), against the best input-tier baseline that reads only the item's text, **{base.label}** "
        f"(test AUC {base.auc:.3f}), each chosen by its val AUC: difference {pair['diff']:+.3f}, {pair['ci_level']:.1%} CI "
        f"[{pair['ci_low']:+.3f}, {pair['ci_high']:+.3f}], p = {pair['p_value']:.3g} "
        f"(paired bootstrap over {pair['n']} test items)."
    )
else:
    st.caption(
        "Pick an internals explainer (probe, attention-probe) and a text baseline (surface, text) "
        "of the input tier to see how much the model's internals add."
    )

st.subheader("Results")
table = explain.results_table(results)
st.caption(
    "Only **input-tier** rows (shaded) answer the paper's question, whether failure can be read from the "
    "item and the model's internals before it answers; output- and gold-tier rows are baselines and "
    "diagnostics. **Selection is on val:** the ✓ row of each tier has the highest val AUC, and its test AUC is "
    "the one to report; every other row's test AUC is shown for completeness, not chosen (picking the highest "
    "test AUC among many settings would flatter the winner). Δ vs best and p pair each row with the table's "
    "val-selected best on the same test items."
)
shade = ["background-color: rgba(46, 125, 50, 0.12)" if t == "input" else "" for t in table["tier"]]
st.dataframe(
    table.style.apply(lambda col: shade, axis=0),
    hide_index=True,
    column_config={
        **{
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("val AUC", "AUC", "CI low", "CI high", "Δ vs best")
        },
        "selected": st.column_config.CheckboxColumn(
            "selected (on val)", help="The best of its tier by val AUC: report its test AUC.", width="small"
        ),
        "AUC": st.column_config.NumberColumn("test AUC", format="%.3f"),
        "CI level": st.column_config.NumberColumn(format="%.3f", width="small"),
        "p (paired)": st.column_config.NumberColumn(format="%.3g"),
        "fit s": st.column_config.NumberColumn(
            format="%.2f", help="Seconds the fit took when it first ran (results are cached)."
        ),
    },
)
st.download_button(
    "Download the results (CSV)",
    table.to_csv(index=False),
    file_name=f"wif_compare_{run_id}.csv",
    mime="text/csv",
    on_click="ignore",
)

st.subheader("ROC curves")
st.caption(
    "Line style by tier: solid input, dashed output, dotted gold. Layer and site narrow the curves "
    "drawn for explainers that read one layer; the others are always drawn."
)
facts, cols = run.facts, st.columns(4)
layer = explain.choice(cols[0], "Layer", [explain.ALL, *sorted({*facts.layers, *facts.token_layers})], "layer")
site = explain.choice(cols[1], "Site", [explain.ALL, *facts.sites, *(["tokens"] if facts.token_layers else [])], "site")
shown = [r for r in results if r.layer is None or (layer in (explain.ALL, r.layer) and site in (explain.ALL, r.site))]
fig, frame = charts.roc_figure(shown)
charts.show(fig, frame, f"wif_roc_{run_id}", fmt)

st.subheader("AUC by layer")
by_layer = charts.layer_frame(results)
if by_layer.empty:
    st.caption("No chosen explainer reads one layer; pick probe-paper or probe variants to see AUC by layer.")
else:
    st.caption(
        "The paper's Figure 1 for this run: test AUC of each layer's probe with its CI, one line per "
        "explainer and site; points are nudged sideways so their CI bars stay apart."
    )
    charts.show(charts.layer_figure(by_layer), by_layer, f"wif_auc_by_layer_{run_id}", fmt)

st.subheader("Explanations")
for r in sorted(results, key=lambda r: -r.auc):
    with st.expander(f"{r.label} · {r.tier} · AUC {r.auc:.3f}"):
        st.caption(
            f"{r.explainer}: {explain.REGISTRY[r.explainer].summary}. Trained on {r.n_train}, tuned on "
            f"{r.n_val}, tested on {r.n_test} items ({r.n_test_failed} failed); seed {r.seed}."
        )
        tables, line, rest = explain.explanation_parts(r.explanation)
        if line:
            st.markdown(line)
        for name, frame in tables:
            st.markdown(f"**{name.replace('_', ' ')}** (positive pushes toward failure)")
            st.dataframe(frame, hide_index=True, height=min(400, 35 * (len(frame) + 1)))
        if rest:
            st.caption(f"More: {', '.join(k.replace('_', ' ') for k in rest)}")
            st.json(rest, expanded=False)
