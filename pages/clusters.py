"""Clusters: groups of failures that may share a cause, or the slices where the model fails most."""

import json

import streamlit as st
from wif_ui import charts, data, explain
from wif_ui import clusters as cl

from wif_core.clusters import SPACES

data.ensure_entry()
st.title("Clusters")
st.caption(
    "Cluster the failures in the model's own spaces (activations, SAE codes, attributions) or in the item text, "
    "and read each cluster as a card. Mode **all** clusters every item and ranks clusters by failure rate "
    "(slice discovery). To score clusters as an explanation on held-out items, fit the `cluster` explainer "
    "on the Compare page."
)
run_id = data.run_selector(data.runs())
fmt = charts.export_format()
reasons = cl.spaces(run_id)

cols = st.columns(7, vertical_alignment="bottom")
space = cl.pick(
    cols[0],
    "Space",
    list(SPACES),
    next((s for s in SPACES if not reasons[s]), SPACES[0]),
    "space",
    format_func=lambda s: cl.space_label(s, reasons),
    help="Activations, SAE codes and text are input tier; attributions read the answer key (gold).",
)
if reasons[space]:
    st.info(f"This run has no {space} space: {reasons[space]}")
    st.stop()
mode = explain.choice(
    cols[1],
    "Mode",
    ["failures", "all"],
    "mode",
    help="failures: cluster the failed items; all: cluster every item, rank by failure rate.",
)
algorithm = explain.choice(cols[2], "Algorithm", ["kmeans", "hdbscan"], "algorithm")
k = explain.choice(
    cols[3],
    "k",
    ["auto", *range(2, 16)],
    "k",
    disabled=algorithm != "kmeans",
    help="auto: the k in 2..10 with the best silhouette.",
)
layer = site = None
if space in ("activations", "sae"):
    layer = cl.pick(cols[4], "Layer", *cl.layer_options(run_id, space), key="layer")
if space == "activations":
    site = cl.pick(cols[5], "Site", *cl.site_options(run_id), key="site")
map_method = explain.choice(cols[6], "Map", ["pca", "umap"], "map", help="UMAP takes a few seconds more.")

r = cl.result(
    run_id,
    space=space,
    mode=mode,
    algorithm=algorithm,
    k=None if k == "auto" or algorithm != "kmeans" else int(k),
    layer=layer,
    site=site,
    map_method=map_method,
)
st.markdown(cl.summary(r))

cols = st.columns([1, 1, 2], vertical_alignment="bottom")
colour = cols[0].radio("Colour by", ["cluster", "outcome"], horizontal=True, key="colour")
outcome = cols[1].radio("Show", ["all", "failed", "correct"], horizontal=True, key="outcome")
biggest = max((c.size for c in r.clusters), default=1)
min_size = cols[2].slider("Smallest cluster shown", 1, max(biggest, 2), 1, key="min_size")
shown_ids = {c.id for c in r.clusters if c.size >= min_size}
frame = cl.map_frame(r)
shown = frame[frame["cluster"].isin(shown_ids)]
shown = shown if outcome == "all" else shown[shown["outcome"] == outcome]
drawn = cl.map_sample(shown)
drawn = cl.with_text(drawn, data.items(run_id, item_ids=list(drawn["item_id"]), columns=("item_id", "context")))
if len(drawn) < len(shown):
    st.caption(
        f"The map draws a uniform random sample of {len(drawn):,} of these {len(shown):,} items (seed 0: each "
        "cluster keeps about its share); the CSV below lists them all."
    )
name = f"wif_clusters_{run_id}_{space}_{mode}"
charts.show(cl.scatter_figure(drawn, colour, mode, map_method), shown, name, fmt)
st.download_button(
    "Download the whole result (JSON)",
    lambda: json.dumps(r.to_json(), default=str),  # built when clicked: the items' arrays run to megabytes
    file_name=f"{name}.json",
    mime="application/json",
    on_click="ignore",
)

if r.factor_ami:
    ami = ", ".join(f"{f} {v:.2f}" for f, v in sorted(r.factor_ami.items(), key=lambda kv: -kv[1]))
    st.markdown(
        f"**Do the clusters recover known causes?** Adjusted mutual information with each generator "
        f"factor (0: chance, 1: the same grouping): {ami}."
    )

st.subheader("Clusters, by failure rate" if mode == "all" else "Clusters of failures, largest first")
for n, c in enumerate(c for c in r.clusters if c.id in shown_ids):
    with st.expander(cl.card_label(c, r), expanded=n == 0):
        cl.card(c, r)
