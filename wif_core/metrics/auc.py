"""ROC AUC with bootstrap confidence intervals, and paired comparisons of two scorers.

The AUC is the Mann–Whitney statistic from average ranks, so ties count one half. The
bootstrap is stratified (failures and successes are resampled separately, keeping their
counts), so no resample is one-class, and vectorised: one ``[B, n]`` count of draws, scored
against the successes sorted once.
Paired comparisons resample the same items for both scorers, or use DeLong's test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from wif_core.errors import InputError

DEFAULT_LEVEL = 0.999
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True, kw_only=True)
class AucResult:
    """An AUC with its percentile bootstrap interval and the counts it rests on."""

    auc: float
    ci_low: float
    ci_high: float
    ci_level: float
    n: int
    n_pos: int
    n_resamples: int


@dataclass(frozen=True, kw_only=True)
class PairedResult:
    """AUC(a) − AUC(b) on the same items, its interval, and a two-sided p-value."""

    diff: float
    ci_low: float
    ci_high: float
    ci_level: float
    p_value: float
    method: str
    n: int


def _check(y: np.ndarray, *scores: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not len(y):
        raise InputError("labels must be a non-empty 1-D array")
    for s in scores:
        if np.shape(s) != y.shape:
            raise InputError(f"scores have shape {np.shape(s)} but labels have shape {y.shape}")
        if not np.all(np.isfinite(s)):
            raise InputError("scores contain NaN or infinity")
    y = y.astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise InputError(
            f"AUC is undefined: all {len(y)} items are {'failures' if n_pos else 'successes'}; "
            "the split needs both outcomes"
        )
    return y


def _auc_from_ranks(ranks: np.ndarray, pos: np.ndarray, n_pos: int, n_neg: int) -> np.ndarray:
    return ((ranks * pos).sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def roc_auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for ``y`` (1 = failure); ties count one half."""
    y = _check(y, score)
    return float(_auc_from_ranks(rankdata(score), y, int(y.sum()), int((~y).sum())))


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds, from (0, 0) to (1, 1)."""
    y = _check(y, score)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    s, t = np.asarray(score, dtype=float)[order], y[order]
    last = np.r_[np.diff(s) != 0, True]  # keep the last index of each run of tied scores
    tp = np.cumsum(t)[last]
    fp = np.cumsum(~t)[last]
    tpr = np.r_[0, tp / t.sum()]
    fpr = np.r_[0, fp / (~t).sum()]
    return fpr, tpr, np.r_[np.inf, s[last]]


def _stratified_counts(y: np.ndarray, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """How often each failure and each success is drawn in each stratified resample: ``[B, n_pos]`` and
    ``[B, n_neg]`` (the items in the order of ``y``'s failures and successes). The draws are those of
    resampling indices, failures first (``rng.integers`` over the failures for every resample, then over the
    successes), so a slow loop over the same indices scores the same resamples."""
    out = []
    for members in (np.flatnonzero(y), np.flatnonzero(~y)):
        m = len(members)
        draws = rng.integers(0, m, (n_resamples, m))
        counts = np.empty((n_resamples, m), dtype=np.int32)
        for start in range(0, n_resamples, _CHUNK):  # bincount per block of resamples: bounded temporaries
            block = draws[start : start + _CHUNK]
            flat = (block + (np.arange(len(block)) * m)[:, None]).ravel()
            counts[start : start + len(block)] = np.bincount(flat, minlength=len(block) * m).reshape(len(block), m)
        del draws
        out.append(counts)
    return out[0], out[1]


_CHUNK = 128  # resamples per block in the bootstrap: ~1 MB per 1,000 items of temporaries


def _weighted_aucs(s_pos: np.ndarray, s_neg: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> np.ndarray:
    """The AUC of each resample given how often it draws each item (``c_pos``, ``c_neg``: ``[B, m]``): the
    Mann-Whitney count of (failure, success) pairs where the failure scores higher, ties one half, weighted by
    the draws. No sort per resample: the successes are sorted once, and each failure's count of lower and tied
    successes is a difference of cumulative draws. Equal to the rank-sum AUC of the resampled items."""
    n_pos, n_neg = len(s_pos), len(s_neg)
    order = np.argsort(s_neg, kind="stable")
    sorted_neg = s_neg[order]
    lo = np.searchsorted(sorted_neg, s_pos, side="left")
    hi = np.searchsorted(sorted_neg, s_pos, side="right")
    out = np.empty(len(c_pos))
    for start in range(0, len(c_pos), _CHUNK):
        cum = np.zeros((len(c_pos[start : start + _CHUNK]), n_neg + 1), dtype=np.int64)
        np.cumsum(c_neg[start : start + _CHUNK][:, order], axis=1, out=cum[:, 1:])
        below_twice = cum[:, lo] + cum[:, hi]  # 2 × (successes below + half the tied ones), exact in integers
        out[start : start + len(cum)] = (c_pos[start : start + _CHUNK] * below_twice).sum(1) / 2
    return out / (n_pos * n_neg)


def bootstrap_aucs(
    y: np.ndarray, scores: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """AUCs of each scorer over the same stratified resamples: ``[n_scorers, n_resamples]``.

    ``scores`` is ``[n]`` or ``[n_scorers, n]``; every scorer sees the same resampled items,
    which is what a paired comparison needs. Time and memory grow as resamples × items (no sort per
    resample), so tens of thousands of test items take about a second.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    y = _check(y, *scores)
    c_pos, c_neg = _stratified_counts(y, n_resamples, np.random.default_rng(seed))
    return np.stack([_weighted_aucs(s[y], s[~y], c_pos, c_neg) for s in scores])


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    return float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha))


def auc_ci(
    y: np.ndarray, score: np.ndarray, level: float = DEFAULT_LEVEL, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> AucResult:
    """AUC with a percentile bootstrap interval (99.9% by default, as in the paper)."""
    if not 0 < level < 1:
        raise InputError(f"confidence level {level} must be between 0 and 1")
    y = _check(y, score)
    auc = roc_auc_score(y, score)
    low, high = _interval(bootstrap_aucs(y, score, n_resamples, seed)[0], level)
    # the percentile interval of a skewed statistic can miss the estimate by a hair at tiny n
    low, high = min(low, auc), max(high, auc)
    return AucResult(
        auc=auc, ci_low=low, ci_high=high, ci_level=level, n=len(y), n_pos=int(y.sum()), n_resamples=n_resamples
    )


def delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong's test for two correlated AUCs: (AUC(a) − AUC(b), its standard error, two-sided p)."""
    y = _check(y, a, b)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    m, n = len(pos), len(neg)
    v10, v01, aucs = [], [], []
    for s in (np.asarray(a, float), np.asarray(b, float)):
        tx, ty, tz = rankdata(s[pos]), rankdata(s[neg]), rankdata(np.r_[s[pos], s[neg]])
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[:m] - tx) / n)
        v01.append(1 - (tz[m:] - ty) / m)
    s10, s01 = np.cov(np.stack(v10)), np.cov(np.stack(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    diff = aucs[0] - aucs[1]
    if var <= 0:
        return float(diff), 0.0, 1.0 if diff == 0 else 0.0
    se = float(np.sqrt(var))
    return float(diff), se, float(2 * norm.sf(abs(diff) / se))


def paired_compare(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    method: str = "bootstrap",
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedResult:
    """Compare two scorers on the same items: AUC(a) − AUC(b) with an interval and a p-value."""
    if method == "delong":
        diff, se, p = delong(y, a, b)
        z = norm.ppf(1 - (1 - level) / 2)
        return PairedResult(
            diff=diff,
            ci_low=diff - z * se,
            ci_high=diff + z * se,
            ci_level=level,
            p_value=p,
            method="delong",
            n=len(np.asarray(y)),
        )
    if method != "bootstrap":
        raise InputError(f"unknown comparison method '{method}'; use 'bootstrap' or 'delong'")
    y = _check(y, a, b)
    boots = bootstrap_aucs(y, np.stack([a, b]), n_resamples, seed)
    d = boots[0] - boots[1]
    diff = roc_auc_score(y, a) - roc_auc_score(y, b)
    low, high = _interval(d, level)
    # two-sided p: how often the resampled difference lands on the other side of zero
    p = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))) + 1 / (n_resamples + 1))
    return PairedResult(
        diff=float(diff),
        ci_low=min(low, diff),
        ci_high=max(high, diff),
        ci_level=level,
        p_value=p,
        method="bootstrap",
        n=len(y),
    )
