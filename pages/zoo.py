"""Zoo: tiny algorithmic models with known ground truth — accuracy, weights, failures, and estimates of accuracy."""

import streamlit as st
from wif_ui import charts, data, zoo

from wif_core.zoo.analysis import ARC_FIGURES, load_curve, sampling_advantage

data.ensure_entry()
st.title("Zoo")
st.caption(
    "ARC's AlgZoo argues we should fully explain a 432-parameter model before a billion-parameter one. These RNNs "
    "read a sequence of Gaussians and answer a position; we know which inputs are hard (for the 2nd argmax: the "
    "top two values close together), so they test whether an explainer recovers a known cause, and whether an "
    "estimate of accuracy beats random sampling at equal compute."
)
fmt = charts.export_format()
names = zoo.models()
if st.session_state.get("zoo_model") not in names:
    default = next((n for n in names if n == "2nd_argmax_d16_n10"), names[0])
    st.session_state["zoo_model"] = data.from_url("model", names, default, what="zoo model")
name = st.selectbox("Model", names, key="zoo_model")
data.to_url("model", name)
info, acc = zoo.summary(name), zoo.accuracy(name)
how = "handcrafted" if info["handcrafted"] else f"trained {info['steps']:,} steps ({info['train_seconds']} s on CPU)"
st.caption(
    f"`{name}`: {info['arch']} on **{info['task']}**, n = {info['n']}, hidden {info['hidden']}, "
    f"{info['parameters']} parameters, {how}."
)

cards = st.columns(4)
if acc.get("accuracy") is None:
    cards[0].metric("RMSE", f"{acc['rmse']:.4f}", help="Scalar task: root mean squared error on fresh samples.")
else:
    lo, hi = acc["accuracy_ci"]
    cards[0].metric(
        "Accuracy",
        f"{acc['accuracy']:.5f}",
        help=f"{acc['accuracy_level']:.1%} Clopper–Pearson CI "
        f"[{lo:.5f}, {hi:.5f}] on {acc['accuracy_n']:,} fresh samples"
        + (" (measured now)" if acc["measured_now"] else ""),
    )
    cards[1].metric("99.9% CI", f"[{lo:.4f}, {hi:.4f}]", help=f"{acc['accuracy_n']:,} samples")
arc = ARC_FIGURES.get(name)
cards[2].metric(
    "ARC's figure",
    arc[2] if arc else "—",
    help="As reported in ARC's AlgZoo post (trained on 2³⁰ sequences on a GPU; these CPU models see far fewer).",
)
exact = zoo.deduction(name)
cards[3].metric(
    "Deductive",
    "—" if exact is None else f"{exact:.7f}",
    help="Exact accuracy from the weights (Gaussian measure of the wedges where the sign is wrong); "
    "for two-input models (n = 3: the region deduction under Surprise accounting).",
)
for run_id in zoo.zoo_runs(name):
    zoo.run_link(run_id)

st.subheader("Weights")
maps = zoo.heatmaps(name)
if maps is None:
    st.caption("A transformer: its weights are not drawn here.")
else:
    st.caption(
        "Each hidden neuron rescaled so its input weight is ±1 (ReLU commutes with positive scaling, so "
        "the model computes exactly the same logits). Red negative, blue positive; each matrix has its own scale, saturating at its 95th percentile of |w| (hover for exact values)."
    )
    charts.show(*maps, f"wif_zoo_weights_{name}", fmt)

st.subheader("Failures")
cols = st.columns(3)
samples = cols[0].selectbox("Fresh samples", [2_000, 10_000, 50_000], key="zoo_samples")
seed = int(cols[1].number_input("Seed", 0, 10_000, 0, key="zoo_seed"))
wrong = zoo.failures(name, samples, seed)
cols[2].metric("Failures", f"{len(wrong):,}", help=f"of {samples:,} fresh inputs")
if wrong.empty:
    st.info(f"No failures in {samples:,} fresh samples; try more samples or another seed.")
else:
    shown = [c for c in ("sample", "true", "predicted", "gap12", "gap23", "max_pos", "logit_margin") if c in wrong]
    st.dataframe(
        wrong[shown],
        hide_index=True,
        height=240,
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("gap12", "gap23", "logit_margin")},
    )
    pick = st.selectbox(
        "Failure",
        list(range(len(wrong))),
        key="zoo_failure",
        format_func=lambda i: (
            f"sample {wrong['sample'][i]}: true {wrong['true'][i]}, predicted {wrong['predicted'][i]}"
        ),
    )
    row = next(wrong.iloc[[pick]].itertuples())
    st.plotly_chart(zoo.sequence_figure(row), config={"displaylogo": False})
    relevance = zoo.relevance_figure(name, row)
    if relevance is not None:
        fig, delta, total = relevance
        st.markdown(
            f"**Why this pick**: gradient × input of Δ = logit(predicted) − logit(true) = {delta:+.4f} per "
            f"position; the scores sum to {total:+.4f}, exactly Δ, because the bias-free ReLU RNN is "
            "positively homogeneous (Euler's theorem)."
        )
        st.plotly_chart(fig, config={"displaylogo": False})
    if "gap12" in wrong:
        st.caption(
            f"Top-2 gap of this input: {row.gap12:.4f}. Median top-2 gap among failures: "
            f"{wrong['gap12'].median():.4f} — the known cause: the model confuses the top two when they "
            "are close."
        )

st.subheader("Estimating accuracy: MSE against compute")
figure = zoo.curve_figure(name)
if figure is None:
    st.info(
        f"No cached curve for {name}; compute it with `wif zoo estimate {name} --curve` (writes "
        f"{zoo.zoo_dir()}/estimates_{name}.json)."
    )
else:
    curve = load_curve(name, zoo.zoo_dir())
    assert curve is not None
    gain = sampling_advantage(curve, "importance")
    strat = sampling_advantage(curve, "stratified")
    st.caption(
        f"Each estimator's mean squared error against the true accuracy of {curve.copies} weight-noised copies "
        f"(noise {curve.noise:.0%} of each matrix's RMS; truth by {curve.truth_method}), {curve.repeats} estimates "
        "per copy and budget. Plain sampling is the baseline ARC asks a mechanistic estimate to beat."
        + (
            f" At the largest budget, importance sampling of near ties has {gain:.1f}× less MSE than sampling."
            if gain
            else ""
        )
        + (
            f" The budgeted region estimate (heaviest error regions exact, sampling for the rest) has {strat:.1f}× "
            "less MSE than sampling at its largest budget."
            if strat
            else ""
        )
    )
    charts.show(*figure, f"wif_zoo_mse_{name}", fmt)

st.subheader("Surprise accounting")
st.caption(
    "ARC's second grade of an explanation: the bits of surprise of the checks it makes on the weights (a sign or a "
    "comparison 1 bit, a near-equality log₂(width / 2·tolerance)) plus the surprise of the true accuracy given "
    "the estimate. A good explanation needs far fewer bits than the weights hold."
)
zoo.surprise_section(name)
