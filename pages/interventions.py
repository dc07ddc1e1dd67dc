"""Interventions: does steering along an explainer's direction change what the model answers?"""

import streamlit as st
from wif_ui import charts, data
from wif_ui import interventions as iv

from wif_core.errors import WifError, one_line

data.ensure_entry()
st.title("Interventions")
run_id = data.run_selector(data.runs())
path = data.store_path()
run = data.store(path).run(run_id)
fmt = charts.export_format()
st.caption(
    "Steering adds α·v after a block while the run's own model scores its val and test items: v is the probe's "
    "direction at that layer (pointed against failure), α in units of the mean residual norm there. Each strength "
    "is also scored along random directions of the same norm. The **causal score** is the test flip rate minus "
    "the control's at the strength chosen on val, with its paired interval: does what predicts failure also cause it?"
)

scores = iv.stored(path, run_id)
layers = [layer for layer in run.layers] if {"last", "mean"} & set(run.sites) else []
with st.expander("Run a steering check", expanded=not scores):
    if not run.has_lm:
        st.info(
            f"Run {run_id} is a {run.kind} run of '{run.model}': wif has no model to steer. Collect the task with "
            "a model (`wif collect`), or run `wif intervene --run RUN --model DIR` from the command line."
        )
    elif not layers:
        st.info(f"Run {run_id} has no activations at site `last` or `mean`, where a probe has one direction.")
    else:
        with st.form("steer"):
            cols = st.columns(4)
            layer = cols[0].selectbox("Layer", layers, index=len(layers) - 1, help="The block whose output is steered.")
            site = cols[1].selectbox("Probe site", [s for s in ("last", "mean") if s in run.sites])
            controls = cols[2].number_input("Random directions", 1, 10, 1, help="Controls of the same norm per α.")
            limit = cols[3].number_input("Items per split (0: all)", 0, 100_000, 200, step=50)
            alphas = st.multiselect("Strengths α", list(iv.ALPHAS) + [4.0], default=list(iv.ALPHAS))
            submitted = st.form_submit_button("Steer", type="primary")
        if submitted:
            grid = sorted({0.0, *alphas})
            steps = 2 * len(grid)
            try:
                with st.status(f"Steering {run.model} at layer {layer}…", expanded=True) as status:
                    bar = st.progress(0.0, text="scoring")
                    done = [0]

                    def tick(n: int) -> None:
                        done[0] += n
                        bar.progress(min(1.0, done[0] / steps), text=f"{done[0]} of {steps} sweeps (val, then test)")

                    iv.compute(
                        path,
                        run_id,
                        layer=int(layer),
                        site=str(site),
                        alphas=grid,
                        controls=int(controls),
                        limit=int(limit) or None,
                        progress=tick,
                    )
                    status.update(label="Steering check stored", state="complete")
                st.rerun()
            except (WifError, OSError, ValueError) as exc:
                st.error(f"Cannot steer here: {one_line(exc)}")

if not scores:
    st.info(f"No steering check of run {run_id} is stored yet: run one above, or `wif intervene --run {run_id} ...`.")
    st.stop()

st.subheader("Causal scores")
table = iv.scores_table(scores)
st.dataframe(
    table,
    hide_index=True,
    column_config={
        **{c: st.column_config.NumberColumn(format="%+.3f") for c in ("causal_score", "ci_low", "ci_high")},
        "probe_val_auc": st.column_config.NumberColumn(format="%.3f", help="How well the probe predicts (val)."),
        "alpha": st.column_config.NumberColumn(help="The strength chosen on val."),
    },
)
st.download_button(
    "Download the table (CSV)",
    table.to_csv(index=False),
    file_name=f"wif_interventions_{run_id}.csv",
    on_click="ignore",
)
labels = [f"{s.direction} · α grid {', '.join(f'{r.alpha:g}' for r in s.test)} · n {len(s.items)}" for s in scores]
pick = st.selectbox("Check", range(len(scores)), format_func=lambda i: labels[i])
score = scores[pick]
ci = "" if score.ci is None else f" [{score.ci[0]:+.3f}, {score.ci[1]:+.3f}]"
cols = st.columns(4)
cols[0].metric(
    "Causal score", "—" if score.score is None else f"{score.score:+.3f}", help=f"{score.ci_level:.1%} CI{ci}"
)
cols[1].metric("Chosen α", f"{score.alpha:g}", help="The strength with the largest flip-rate gain over control on val.")
cols[2].metric("Test failures", score.n_test_failures)
cols[3].metric("Probe val AUC", "—" if score.source.get("val_auc") is None else f"{score.source['val_auc']:.3f}")
fig, frame = iv.curve_figure(score)
charts.show(fig, frame, f"wif_steering_{run_id}_L{score.layer}", fmt)

st.subheader("Items at the chosen strength")
st.caption("Each test item before steering, steered along the direction, and along the random control (averaged).")
items = data.items(run_id, split="test")
st.dataframe(iv.items_table(score, items), hide_index=True)
