"""Metrics against scikit-learn (the oracle), hand-made cases and properties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score as sk_auc
from sklearn.metrics import roc_curve as sk_roc

from wif_core.errors import InputError
from wif_core.metrics import auc_ci, bootstrap_aucs, delong, paired_compare, roc_auc_score, roc_curve


def test_hand_made_cases():
    assert roc_auc_score([0, 1], [1, 0]) == 0.0
    assert roc_auc_score([0, 1], [0, 1]) == 1.0
    assert roc_auc_score([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300).astype(float)  # many ties
    assert roc_auc_score(y, s) == pytest.approx(sk_auc(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk_roc(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_ci_contains_estimate_and_perfect_predictor():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50), np.zeros(50)]
    for s in (rng.normal(size=100), y + rng.normal(0, 0.7, 100)):
        r = auc_ci(y, s)
        assert r.ci_low <= r.auc <= r.ci_high and r.n == 100 and r.n_pos == 50 and r.ci_level == 0.999
    perfect = auc_ci(y, y * 2.0)
    assert perfect.auc == perfect.ci_low == perfect.ci_high == 1.0


def test_bootstrap_matches_slow_loop():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80).astype(bool)
    y[:2] = [True, False]
    s = rng.normal(size=80)
    fast = bootstrap_aucs(y, s, n_resamples=50, seed=3)[0]
    # the oracle: the same stratified resamples, scored one at a time with scikit-learn
    r = np.random.default_rng(3)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    tp = pos[r.integers(0, len(pos), (50, len(pos)))]
    tn = neg[r.integers(0, len(neg), (50, len(neg)))]
    slow = [sk_auc(np.r_[np.ones(len(pos)), np.zeros(len(neg))], s[np.r_[a, b]]) for a, b in zip(tp, tn, strict=True)]
    np.testing.assert_allclose(fast, slow)


def test_ci_narrows_with_n():
    rng = np.random.default_rng(2)
    widths = []
    for n in (100, 1600):
        y = np.r_[np.ones(n // 2), np.zeros(n // 2)]
        r = auc_ci(y, y + rng.normal(0, 1.5, n), level=0.95)
        widths.append(r.ci_high - r.ci_low)
    assert widths[1] < widths[0] / 2


def test_paired_comparisons_agree_and_detect():
    rng = np.random.default_rng(4)
    n = 600
    y = rng.integers(0, 2, n)
    good = y + rng.normal(0, 0.8, n)
    weak = y + rng.normal(0, 3.0, n)
    boot = paired_compare(y, good, weak, level=0.95)
    dl = paired_compare(y, good, weak, method="delong", level=0.95)
    assert boot.diff == pytest.approx(dl.diff)
    assert boot.ci_low > 0 and dl.ci_low > 0 and boot.p_value < 0.01 and dl.p_value < 0.01
    same = paired_compare(y, good, good)
    assert same.diff == 0 and same.p_value == 1.0
    d, se, p = delong(y, weak, good)
    assert d < 0 and p < 0.01 and se > 0


def test_undefined_and_mismatched_inputs():
    with pytest.raises(InputError, match="undefined: all 3 items are failures"):
        roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="shape"):
        roc_auc_score([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="NaN"):
        auc_ci([0, 1], [np.nan, 0.2])


def test_a_drawn_roc_curve_keeps_at_most_its_cap_of_vertices_and_its_ends():
    from types import SimpleNamespace

    from wif_core.figures import ROC_POINTS, roc_figure

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 5 * ROC_POINTS)
    s = y + rng.normal(size=len(y))
    r = SimpleNamespace(y_test=y.tolist(), scores=s.tolist(), label="probe", tier="input", auc=roc_auc_score(y, s))
    fig, frame = roc_figure([r])  # type: ignore[list-item]
    fpr, tpr, _ = roc_curve(y, s)
    drawn = fig.data[0]
    assert len(drawn.x) <= ROC_POINTS and len(frame) == len(fpr)  # the data keeps every vertex
    assert (drawn.x[0], drawn.y[0], drawn.x[-1], drawn.y[-1]) == (0.0, 0.0, 1.0, 1.0)
    # every drawn vertex is a vertex of the curve, and no vertex is far from the drawn line
    assert set(zip(drawn.x, drawn.y, strict=True)) <= set(zip(fpr, tpr, strict=True))
    assert np.abs(np.interp(fpr, drawn.x, drawn.y) - tpr).max() < 0.01
