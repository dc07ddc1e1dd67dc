"""SAE features: which sparse features of a run's SAE fire differently on failures than on successes."""

import streamlit as st
from wif_ui import build, charts, data, explain
from wif_ui import sae as sae_ui

from wif_core.sae.diff import visible

data.ensure_entry()
st.title("SAE features")
run_id = data.run_selector(data.runs())
fmt = charts.export_format()
saes = sae_ui.layers(run_id)
if not saes:
    run = data.store(data.store_path()).run(run_id)
    st.info(build.pending_note(run.task, "SAE") or sae_ui.no_sae_message(run_id, list(run.token_layers)))
    st.stop()

cols = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
layer = explain.choice(cols[0], "Layer", list(saes), "layer", help="Layers of this run that have an SAE.")
by = explain.choice(
    cols[1], "Rank by", ["auc", "effect"], "by", help="auc: |AUC − 0.5| of the feature alone; effect: |Cohen's d|."
)
top = explain.choice(cols[2], "Features", [20, 50, 100, 10], "top", help="How many ranked features to list.")
sae = sae_ui.info(saes[layer])
cols[3].markdown(sae_ui.sae_line(sae))
d, codes = sae_ui.diff(run_id, layer, sae, top, by)

st.subheader("Features that separate failures from successes")
st.caption(
    f"{d.n_live} of {d.d_sae} features fire on some item ({d.n_dead} never do and are left out). An item's "
    "activation of a feature is its maximum over the tokens of the prompt that lists the options. Statistics on "
    f"the **train** split ({d.n_train_failed} failed, {d.n_train_success} successful items): how often the feature "
    "fires on failures and on successes, Cohen's d (failures − successes), and its AUC for failure alone with a "
    f"{d.features[0].ci_level:.1%} bootstrap CI. Picking the best of thousands inflates train AUCs: **auc_test** "
    f"(the {d.n_test} test items, which chose nothing) is the honest check."
    if d.features
    else "No feature fires on this run's items."
)
if not d.features:
    st.stop()
table = sae_ui.diff_table(d)
feature = sae_ui.feature_picker(d, table)
st.download_button(
    "Download the table (CSV)",
    table.to_csv(index=False),
    file_name=f"wif_sae_{run_id}_L{layer}.csv",
    mime="text/csv",
    on_click="ignore",
)

f = next(x for x in d.features if x.feature == feature)
st.subheader(f"Feature {feature}")
cards = st.columns(5)
cards[0].metric("AUC (train)", f"{f.auc:.3f}", help=f"{f.ci_level:.1%} CI [{f.ci_low:.3f}, {f.ci_high:.3f}]")
cards[1].metric("AUC (test)", "—" if f.auc_test is None else f"{f.auc_test:.3f}", help="On items that chose nothing.")
cards[2].metric("Fires on failures", f"{f.freq_fail:.0%}", help="Share of failed train items where it fires.")
cards[3].metric("Fires on successes", f"{f.freq_success:.0%}", help="Share of successful train items where it fires.")
cards[4].metric("Effect (d)", f"{f.effect:+.2f}", help="Cohen's d of the item activation, failures − successes.")

split = explain.choice(st, "Items in the histogram", ["train", "test", "val", "all"], "hist_split")
acts = sae_ui.item_activations(run_id, layer, sae, codes, feature)
shown = acts if split == "all" else acts[acts["split"] == split]
charts.show(sae_ui.histogram_figure(shown, feature), shown, f"wif_sae_{run_id}_L{layer}_f{feature}", fmt)

st.markdown("**Top-activating contexts** (any split; shading: the feature's activation on each token)")
for ctx in f.contexts:
    outcome = "failed" if ctx.failed else "correct"
    sae_ui.item_link(
        run_id,
        ctx.item_id,
        f"{ctx.item_id} · {outcome} · {ctx.split or 'no split'} · max "
        f"{ctx.activation:.2f} at “{visible(ctx.token.strip() or ctx.token)}”",
    )
    st.markdown(sae_ui.context_html(ctx), unsafe_allow_html=True)
