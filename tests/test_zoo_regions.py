"""Unit tier: the activation-region deduction, the budgeted estimator and surprise accounting (issue 19).

Oracles: the wedge deduction for n = 2 (equal to floating point), fresh samples for n = 3
(inside a 99.9% Clopper–Pearson interval), closed forms for simple cones, Monte Carlo for the
uniform-sum law the surprise uses.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from wif_core.errors import InputError
from wif_core.zoo.deductive import deduce
from wif_core.zoo.estimators import ESTIMATORS, get_estimator, mse_curve
from wif_core.zoo.evaluate import evaluate
from wif_core.zoo.models import ZooRNN, ZooSpec, handcrafted_2nd_argmax
from wif_core.zoo.regions import cone_mass, deduce_regions, patterns_and_correct, region_error
from wif_core.zoo.surprise import surprise, uniform_sum_cdf
from wif_core.zoo.weights import load, save

torch.set_num_threads(1)


def _random_rnn(n: int, d: int, task: str = "2nd_argmax", seed: int = 0) -> ZooRNN:
    torch.manual_seed(seed)
    return ZooRNN(ZooSpec(name=f"random_d{d}_n{n}", task=task, n=n, hidden=d))


# ---- cone measures ------------------------------------------------------------------------------------------


def test_cone_measures_match_closed_forms() -> None:
    e = np.eye(3)
    assert cone_mass([], 3) == pytest.approx(1.0, abs=1e-12)
    assert cone_mass([-e[0]], 3) == pytest.approx(0.5, abs=1e-12)  # a half-space
    assert cone_mass([-e[0], -e[1], -e[2]], 3) == pytest.approx(1 / 8, abs=1e-12)  # an octant
    wedge = [-e[1], np.array([-math.sin(1.0), math.cos(1.0), 0.0])]  # polar angle in [0, 1] rad, any x₃
    assert cone_mass(wedge, 3) == pytest.approx(1.0 / (2 * math.pi), abs=1e-12)  # dihedral angle 1 rad
    order = [e[1] - e[0], e[2] - e[1]]  # x₁ ≥ x₂ ≥ x₃: one of 3! orders
    assert cone_mass([r / np.linalg.norm(r) for r in order], 3) == pytest.approx(1 / 6, abs=1e-12)
    assert cone_mass([-np.eye(2)[0], -np.eye(2)[1]], 2) == pytest.approx(0.25, abs=1e-15)


# ---- the region deduction against its oracles ----------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [load("2nd_argmax_d2_n2"), handcrafted_2nd_argmax(2), *(_random_rnn(2, 4, seed=s) for s in range(3))],
    ids=lambda m: m.spec.name,
)
def test_regions_equal_the_wedge_deduction_on_two_inputs(model: ZooRNN) -> None:
    regions, wedges = deduce_regions(model), deduce(model)
    assert regions.exact and regions.stderr == 0.0
    assert regions.accuracy == pytest.approx(wedges.accuracy, abs=1e-13)
    assert regions.mass_total == pytest.approx(1.0, abs=1e-13)


@pytest.mark.parametrize(("d", "seed", "task"), [(2, 0, "2nd_argmax"), (3, 1, "2nd_argmax"), (4, 2, "argmedian")])
def test_regions_match_exhaustive_sampling_on_random_three_input_rnns(d: int, seed: int, task: str) -> None:
    model = _random_rnn(3, d, task=task, seed=seed)
    exact = deduce_regions(model)
    assert exact.mass_total == pytest.approx(1.0, abs=1e-10)
    assert all(0 <= r.correct_mass <= r.mass + 1e-15 for r in exact.regions)
    sampled = evaluate(model, 1_000_000, seed=seed + 11)
    assert sampled.ci_low <= exact.accuracy <= sampled.ci_high
    x = np.random.default_rng(seed).standard_normal((200_000, 3))  # each region's mass, sampled
    keys, _ = patterns_and_correct(model, x)
    heaviest = max(exact.regions, key=lambda r: r.mass)
    share = float((keys == np.array(heaviest.pattern)).all(axis=1).mean())
    assert share == pytest.approx(heaviest.mass, abs=5 * math.sqrt(heaviest.mass / 200_000) + 1e-4)


def test_the_shipped_m43_deduction_sits_inside_a_million_samples_ci() -> None:
    model = load("2nd_argmax_d4_n3")
    exact = deduce_regions(model)
    assert exact.exact and exact.n_regions == len(exact.regions) > 10 and exact.lp_calls > 0 and exact.flops > 0
    assert exact.regions_per_step[-1] == exact.n_regions and exact.mass_total == pytest.approx(1.0, abs=1e-10)
    sampled = evaluate(model, 1_000_000, seed=3)
    assert sampled.ci_low <= exact.accuracy <= sampled.ci_high
    one = max(exact.regions, key=lambda r: r.mass - r.correct_mass)
    got = region_error(model, one.pattern)
    assert got is not None and got[0] == pytest.approx(one.mass, abs=1e-12)
    assert got[1] == pytest.approx(one.mass - one.correct_mass, abs=1e-12)


def test_four_inputs_fall_back_to_stated_qmc_with_an_error_bar() -> None:
    model = _random_rnn(4, 2, seed=5)
    est = deduce_regions(model, qmc_points=2**12, qmc_replicates=4, seed=1)
    assert not est.exact and "QMC" in est.method and est.stderr > 0
    sampled = evaluate(model, 500_000, seed=2)
    assert abs(est.accuracy - sampled.accuracy) < 5 * est.stderr + 0.003
    assert est.mass_total == pytest.approx(1.0, abs=1e-9)


def test_too_many_regions_stop_with_one_line() -> None:
    with pytest.raises(InputError, match="stops scaling") as info:
        deduce_regions(load("2nd_argmax_d16_n10"), max_regions=50)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="2nd argmax or argmedian"):
        deduce_regions(_random_rnn(3, 2, task="median"))


# ---- the estimators ---------------------------------------------------------------------------------------------


def test_region_estimators_are_registered_exact_and_unbiased() -> None:
    assert {"regions", "stratified"} <= set(ESTIMATORS)
    model = load("2nd_argmax_d4_n3")
    truth = deduce_regions(model).accuracy
    assert get_estimator("regions").estimate(model, 0).accuracy == truth
    assert "n = 10" in (get_estimator("stratified").applicable(load("2nd_argmax_d16_n10")) or "")
    got = [get_estimator("stratified").estimate(model, 20_000, seed=s) for s in range(8)]
    mean = float(np.mean([g.accuracy for g in got]))
    spread = float(np.std([g.accuracy for g in got]) / math.sqrt(len(got)))
    assert abs(mean - truth) < 4 * spread + 1e-4
    assert all(g.detail["exact_regions"] >= 1 and g.flops > 0 for g in got)


def test_mse_curve_on_m43_scores_against_the_exact_truth() -> None:
    model = load("2nd_argmax_d4_n3")
    curve = mse_curve(model, ["sampling", "regions", "stratified"], [1_000, 4_000], copies=2, repeats=2, noise=0.02)
    by = {(p.method, p.budget): p for p in curve.points}
    assert curve.truth_method == "regions (exact)" and curve.truth_stderr == 0.0
    assert by[("regions", None)].mse < 1e-24 and ("stratified", 4_000) in by


# ---- surprise accounting ---------------------------------------------------------------------------------------


def test_uniform_sum_law_against_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    widths = [0.3, 1.0, 0.5]
    u = rng.uniform(size=(400_000, 3)) * widths
    for c in (0.2, 0.7, 1.4):
        assert uniform_sum_cdf(widths, c) == pytest.approx(float((u.sum(axis=1) <= c).mean()), abs=0.003)
    assert uniform_sum_cdf([], 0.0) == 1.0 and uniform_sum_cdf([1.0], -1) == 0.0


def test_m22_surprise_reproduces_arcs_breakdown() -> None:
    s = surprise(load("2nd_argmax_d2_n2"))
    g = s.groups
    assert g["signs"] + g["magnitudes"] == 14 and g["coefficient comparisons"] == 4  # ARC: 14 and 4
    assert 18 < g["near-equalities"] < 26  # ARC: about 22
    assert 36 < s.total_bits < 44 and s.total_bits == pytest.approx(s.explanation_bits + s.observation_bits)
    assert [t.group for t in s.terms].count("near-equalities") == 2 and s.terms[-1].group == "observation"
    assert s.weight_bits == 320 and s.estimate == pytest.approx(deduce(load("2nd_argmax_d2_n2")).accuracy)


def test_the_handcrafted_m22_surprise_lists_its_terms() -> None:
    model = handcrafted_2nd_argmax(2)
    exact = surprise(model)  # error exactly 0: each boundary equals the diagonal, at float32's cost
    assert exact.groups["signs"] == 10 and exact.groups["near-equalities"] == 48 and exact.observation_bits == 0
    arc = surprise(model, target_error=1 / 13_000)  # ARC's phenomenon: error at most 1 in 13,000
    assert 30 < arc.total_bits < 44 and len(arc.terms) == 10 + 2 + 1
    assert all(t.what and t.bits >= 0 for t in arc.terms)


def test_region_surprise_counts_its_decisions_against_the_weight_bits() -> None:
    s = surprise(load("2nd_argmax_d4_n3"))
    assert s.method.startswith("regions") and s.observation_bits == 0.0  # exact estimate, exact truth
    assert s.groups["LP decisions"] > 0 and s.weight_bits == 32 * (4 + 16 + 12)
    with pytest.raises(InputError, match="target-error"):
        surprise(load("2nd_argmax_d4_n3"), target_error=0.01)


# ---- the CLI, on any stored checkpoint ------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    from wif_core.cli import build_parser

    args: argparse.Namespace = build_parser().parse_args(["zoo", *argv, "--json"])
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_regions_and_surprise_on_a_stored_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = save(_random_rnn(3, 3, seed=7), tmp_path / "checkpoint_step_100.safetensors")
    out = _run(capsys, ["regions", str(path)])
    assert out["n_regions"] > 0 and out["exact"] and out["mass_total"] == pytest.approx(1.0, abs=1e-10)
    out = _run(capsys, ["surprise", str(path)])
    assert out["total_bits"] > 0 and out["weight_bits"] == 32 * (3 + 9 + 9)
    out = _run(capsys, ["surprise", "2nd_argmax_d2_n2"])
    assert {"signs", "magnitudes", "coefficient comparisons", "near-equalities", "observation"} <= set(out["groups"])
    from wif_core.cli import main

    code = main(["zoo", "surprise", "2nd_argmax_d4_n3", "--target-error", "2"])
    assert code == 2 and capsys.readouterr().err.count("\n") == 1
