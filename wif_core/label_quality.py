"""Item quality: flag a run's suspect labels (answer keys that look wrong), each with its evidence.

A model that "fails" an item whose answer key is wrong may be right, and no explainer can predict noise in
the key. The pass reads only the store and looks at every scored item of the run, with three signals:

- **duplicates**: copies of one question with different answer keys: the leakage check's ``gold_conflict``
  findings (``wif_core.splits``), read from the store rather than recomputed;
- **consensus**: the other runs of the task in the store (matched by item key, their choices by text, so
  another order of the options is no obstacle) that chose one answer other than the key's, confidently: at
  least ``min_agree`` of them, at least ``agree_share`` of those that cover the item, and a mean probability
  of that answer (each run's own, below) of at least ``min_confidence``;
- **confident learning** (Northcutt, Jiang & Chuang 2021), exactly as cleanlab's ``find_label_issues`` with
  its default ``filter_by="prune_by_noise_rate"``, on out-of-sample probabilities that each choice is right:

  - a text-only classifier, cross-fitted over the run's items in ``folds`` folds (copies of one question in
    one fold): TF-IDF 1–2-grams of "context || choice", centred within the item (pairwise: only how a choice
    differs from the item's other choices counts), and the answer position, in a conditional logit (a
    softmax over the item's choices);
  - every run of the task in the store (the run itself included), from its own choice scores: a softmax of
    ``ll_sum`` (``ll_norm`` for a run that picks by it) at the temperature that fits that run's own keys best;
    a run with predictions only gives its prediction the run's accuracy as probability.

  A source no better than the answer-position prior on the run's keys (skill = 1 − its log loss over the
  prior's, at most 0) is left out and listed as skipped. The others are stacked: a conditional logit on their
  log-probabilities, cross-fitted over the same folds, so that the combination is calibrated to the keys and
  independent sources that agree add up (an average would not); a run too small for K-fold averages them,
  weighted by skill. On the combination the per-choice thresholds are t_j = the mean probability of choice j
  over the items keyed j; the confident joint counts, per given key, the items whose probability of some choice
  reaches its threshold; calibrated to the key counts, it says how many items of key i are truly j, and for
  each (i, j) that many items keyed i with the largest p_j − p_i are issues, unless the key is still the most
  probable choice. Beyond cleanlab, a flag needs the suggested choice's probability at least
  ``min_probability``: on probabilities near chance (balanced outcome files, weak text cues) confident
  learning alone flags about 40% of the items.

Flags are stored per run (``Store.write_quality``), apart from the leakage findings, which a split rewrite
replaces; ``wif explain --exclude suspect`` evaluates explainers with and without them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.store import SuspectRow
from wif_core.tasks.base import normalise

if TYPE_CHECKING:
    from wif_core.store import RunInfo, Store

log = logging.getLogger(__name__)

QUALITY_VERSION = 1
METHOD = "prune_by_noise_rate"
SIGNALS = ("duplicates", "consensus", "text", "scores")
REASONS = {
    "gold_conflict": "another copy of this question carries a different answer key, so one of the keys is wrong",
    "consensus": "several other models chose the same other answer, confidently",
    "confident_learning": "the out-of-sample probabilities (text classifier and the models' own scores) favour "
    "another answer beyond the per-choice thresholds of confident learning",
}
MIN_PER_FOLD = 10  # items per fold the text classifier and the stacking need
STACK_C = 1.0  # inverse regularisation of the stacking (a handful of coefficients)
_TEMPERATURES = np.logspace(-2, 3, 121)  # the grid a run's softmax temperature is fitted on
_EPS = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON


@dataclass(kw_only=True)
class QualityConfig:
    """Settings of an item-quality pass (all recorded with its result)."""

    folds: int = 5  # K of the text classifier's cross-fitting
    seed: int = 0  # folds
    text_c: float = 1.0  # inverse regularisation of the text classifier
    min_agree: int = 2  # consensus: at least this many other runs chose the same non-key answer ...
    agree_share: float = 0.75  # ... at least this share of the other runs that cover the item ...
    min_confidence: float = 0.7  # ... with this mean probability of it (each run's own, calibrated)
    min_probability: float = 0.8  # a confident-learning flag needs the suggested answer this probable


@dataclass(kw_only=True)
class Source:
    """One source of probabilities that each choice is right: the text classifier or one run's scores."""

    name: str  # 'text' or a run id
    kind: str  # 'text', 'scores' (softmax of log-likelihoods) or 'predictions' (a prediction at the run's accuracy)
    model: str | None = None
    probs: np.ndarray = field(repr=False)  # [n, k] in the run's option order; NaN rows where it has no value
    chosen: np.ndarray = field(repr=False)  # [n] the choice it picked (the run's order), -1 where unknown
    margin: np.ndarray = field(repr=False)  # [n] the run's stored margin (its own key), NaN where none
    temperature: float | None = None
    skill: float = 0.0  # 1 - log loss / the answer-position prior's, on the run's keys
    weight: float = 0.0  # in the combination: the stacking coefficient, or the skill (mean); 0: left out

    @property
    def covered(self) -> np.ndarray:
        return ~np.isnan(self.probs).any(axis=1)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "n_items": int(self.covered.sum()),
            "skill": round(self.skill, 4),
            "weight": round(self.weight, 4),
            "temperature": None if self.temperature is None else round(self.temperature, 4),
        }


@dataclass(kw_only=True)
class QualityResult:
    """What an item-quality pass found on one run: the flags with their evidence, and what it used."""

    run_id: str
    task: str
    n_items: int
    flags: list[SuspectRow]
    signals: list[str]  # the signals used
    skipped: dict[str, str]  # signal (or source) -> why it was not used
    sources: list[dict[str, Any]]  # the probability sources, with their skill and weight
    thresholds: list[float] | None  # confident learning's per-choice thresholds, None when it did not run
    combine: str | None  # how the sources were combined: 'stacked' (out-of-fold) or 'mean'; None: no source
    config: QualityConfig

    @property
    def n_flagged(self) -> int:
        return len(self.flags)

    def counts(self) -> dict[str, int]:
        """Flagged items per reason (an item may have several)."""
        return {r: sum(r in f.reasons for f in self.flags) for r in REASONS}

    def record(self) -> dict[str, Any]:
        """What the store keeps of the pass beside its flags (``quality_passes.config``)."""
        return {
            "version": QUALITY_VERSION,
            "method": METHOD,
            "settings": asdict(self.config),
            "skipped": self.skipped,
            "sources": self.sources,
            "thresholds": self.thresholds,
            "combine": self.combine,
            "counts": self.counts(),
        }

    def summary(self, top: int | None = None) -> dict[str, Any]:
        """The JSON contract of ``wif quality``: counts, signals, and the flags, most suspect first (``top``)."""
        worst = sorted(self.flags, key=lambda f: -f.score)[:top]
        return {
            "run_id": self.run_id,
            "task": self.task,
            "n_items": self.n_items,
            "n_flagged": self.n_flagged,
            "counts": self.counts(),
            "signals": self.signals,
            "skipped": self.skipped,
            "sources": self.sources,
            "thresholds": self.thresholds,
            "combine": self.combine,
            "method": METHOD,
            "settings": asdict(self.config),
            "flags": [asdict(f) for f in worst],
        }


# ---- confident learning ------------------------------------------------------------------------------------


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """Integers of ``values`` that keep their rounded sum (cleanlab's ``round_preserving_sum``)."""
    ints = values.round()
    target = float(np.sum(values).round())
    while abs(target - ints.sum()) > _EPS:
        diff = np.round(target - ints.sum())
        step = -1 if diff < 0 else 1
        for i in np.argsort(values - ints)[::-step][: min(int(abs(diff)), len(values))]:
            ints[i] += step
    return ints.astype(int)


def confident_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """t_j: the mean probability of choice j over the items keyed j (2, never reached, for a choice never keyed)."""
    k = probs.shape[1]
    t = np.array([probs[labels == j, j].mean() if (labels == j).any() else 2.0 for j in range(k)])
    return np.clip(t, 2 * _EPS, None)


def confident_joint(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """C[i, j]: items keyed i that are confidently j, calibrated so that row i sums to the items keyed i."""
    k = probs.shape[1]
    confident = probs >= thresholds - _EPS
    n_confident = confident.sum(axis=1)
    guess = np.where(n_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    # counted as cleanlab counts them (the transpose of a confusion matrix of guesses by keys), so that its sums,
    # and with them the rounding's ties, come out the same
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (guess[n_confident > 0], labels[n_confident > 0]), 1)
    joint = confusion.T
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    counts = np.bincount(labels, minlength=k)
    calibrated = (joint.T / np.clip(joint.sum(axis=1), 1e-100, None) * counts).T
    calibrated = calibrated / np.clip(np.sum(calibrated), 1e-100, None) * sum(counts)
    return np.array([_round_preserving_sum(row) for row in calibrated])


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning's label issues (cleanlab ``filter_by="prune_by_noise_rate"``) and the thresholds.

    For every given key i and other choice j, the ``C[i, j]`` items keyed i with the largest p_j − p_i are
    issues; an item whose key is still its most probable choice is never one.
    """
    labels = np.asarray(labels, dtype=int)
    thresholds = confident_thresholds(labels, probs)
    joint = confident_joint(labels, probs, thresholds)
    issues = np.zeros(len(labels), dtype=bool)
    for i in range(probs.shape[1]):
        rows = np.flatnonzero(labels == i)
        if len(rows) <= 1:
            continue
        for j in range(probs.shape[1]):
            if j != i and joint[i, j] > 0:
                order = np.argsort(-(probs[rows, j] - probs[rows, i]), kind="stable")
                issues[rows[order[: joint[i, j]]]] = True
    bonus = probs.copy()
    bonus[np.arange(len(labels)), labels] += _EPS
    issues &= bonus.argmax(axis=1) != labels
    return issues, thresholds


# ---- probability sources -----------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature (on a log grid, 0.01…1000) that gives ``labels`` the least log loss."""
    losses = [-np.log(_softmax(scores / t)[np.arange(len(labels)), labels] + 1e-12).mean() for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


def skill(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray) -> float:
    """1 − the log loss of ``probs`` on ``labels`` over that of the answer-position ``prior`` (0: no better)."""
    covered = ~np.isnan(probs).any(axis=1)
    if not covered.any():
        return 0.0
    y = labels[covered]
    loss = -np.log(np.clip(probs[covered][np.arange(len(y)), y], 1e-12, None)).mean()
    base = -np.log(prior[y]).mean()
    return float(1 - loss / base) if base > 0 else 0.0


def fold_of(keys: list[str], folds: int, seed: int) -> np.ndarray:
    """Each item's fold, drawn per content key (seeded), so copies of one question share a fold."""
    unique = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold = {unique[n]: rank % folds for rank, n in enumerate(order)}
    return np.array([fold[k] for k in keys])


def fit_choice_logit(x: Any, labels: np.ndarray, k: int, c: float, free: int = 0) -> np.ndarray:
    """The weights of a conditional logit over each item's ``k`` choices: P(choice j) = softmax_j(x_ij · w).

    ``x`` holds one row per (item, choice), item by item (dense or sparse); the objective is scikit-learn's,
    ``c`` × the summed log loss + ½‖w‖², except that the last ``free`` columns (the answer position, which
    stands in for an intercept) are not penalised. Fitted by L-BFGS from zero.
    """
    with heavy_imports():
        from scipy.optimize import minimize

    n, d = x.shape[0] // k, x.shape[1]
    y = np.zeros((n, k))
    y[np.arange(n), labels] = 1.0
    penalised = np.ones(d)
    if free:
        penalised[d - free :] = 0.0

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        scores = np.asarray(x @ w).reshape(n, k)
        scores = scores - scores.max(axis=1, keepdims=True)
        log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
        loss = -c * float((y * log_p).sum()) + 0.5 * float((penalised * w * w).sum())
        grad = c * np.asarray(x.T @ (np.exp(log_p) - y).ravel()).ravel() + penalised * w
        return loss, grad

    return minimize(objective, np.zeros(d), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x


def _choice_probs(x: Any, w: np.ndarray, k: int) -> np.ndarray:
    return _softmax(np.asarray(x @ w).reshape(-1, k))


def _positions(n: int, k: int) -> np.ndarray:
    """The centred one-hot answer position of each (item, choice) row: the prior of each position."""
    return np.tile(np.eye(k) - 1.0 / k, (n, 1))


def text_oof_probs(
    contexts: list[str],
    choices: list[tuple[str, ...]],
    labels: np.ndarray,
    folds: np.ndarray,
    trainable: np.ndarray,
    c: float = 1.0,
) -> np.ndarray:
    """Out-of-fold P(choice j is right) from the item's text alone, ``[n, k]``.

    Each (item, choice) is the TF-IDF vector of "context || choice" minus the mean over the item's choices,
    with the answer position (``_positions``); a conditional logit (``fit_choice_logit``) fitted on the other
    folds' ``trainable`` items (the vocabulary too) gives the held-out fold's probabilities.
    """
    with heavy_imports():
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfVectorizer

    n, k = len(contexts), len(choices[0])
    docs = np.array([f"{ctx} || {a}" for ctx, ch in zip(contexts, choices, strict=True) for a in ch], dtype=object)

    def features(vec: Any, rows: np.ndarray) -> Any:
        x = vec.transform(docs[(rows[:, None] * k + np.arange(k)).ravel()])
        mean = sparse.kron(sparse.identity(len(rows), format="csr"), np.full((k, k), 1.0 / k), format="csr")
        return sparse.hstack([x - mean @ x, sparse.csr_matrix(_positions(len(rows), k))], format="csr")

    out = np.full((n, k), np.nan)
    for f in np.unique(folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero((folds != f) & trainable)
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50000, sublinear_tf=True)
        vec.fit(docs[(train[:, None] * k + np.arange(k)).ravel()])
        w = fit_choice_logit(features(vec, train), labels[train], k, c, free=k)
        out[test] = _choice_probs(features(vec, test), w, k)
    return out


def _stack_features(probs: list[np.ndarray]) -> np.ndarray:
    """(item, choice) rows of each source's centred log-probability (0 where it does not cover the item) and the
    answer position: ``[n * k, len(probs) + k]``."""
    n, k = probs[0].shape
    cols = []
    for p in probs:
        logp = np.log(np.clip(p, 1e-6, 1.0))
        z = logp - logp.mean(axis=1, keepdims=True)
        cols.append(np.nan_to_num(z, nan=0.0).ravel())
    return np.column_stack([*cols, _positions(n, k)])


def stack_oof(probs: list[np.ndarray], labels: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold probabilities of the sources combined: a conditional logit on their log-probabilities,
    fitted on the other folds, so that the combination is calibrated to the keys and sources that agree because
    they are right add up; and each source's coefficient when fitted on every item (what the evidence shows)."""
    n, k = probs[0].shape
    x = _stack_features(probs).reshape(n, k, -1)
    d = x.shape[2]
    out = np.full((n, k), np.nan)
    for f in np.unique(folds):
        test, train = folds == f, folds != f
        w = fit_choice_logit(x[train].reshape(-1, d), labels[train], k, STACK_C, free=k)
        out[test] = _choice_probs(x[test].reshape(-1, d), w, k)
    whole = fit_choice_logit(x.reshape(-1, d), labels, k, STACK_C, free=k)
    return out, [float(v) for v in whole[: len(probs)]]


class _Items:
    """The run's items as the pass reads them: ids, content keys, choices, answer keys, rows by key."""

    def __init__(self, frame: pd.DataFrame, k: int) -> None:
        self.frame = frame
        self.k = k
        self.n = len(frame)
        self.ids: list[str] = frame["item_id"].tolist()
        self.keys: list[str] = frame["key"].tolist()
        self.labels = frame["gold"].to_numpy(dtype=int)
        self.choices: list[tuple[str, ...]] = [tuple(c) for c in frame["choices"]]
        self.index: list[dict[str, int]] = [{normalise(a): j for j, a in enumerate(ch)} for ch in self.choices]
        self.rows_of_key: dict[str, list[int]] = {}
        for n, key in enumerate(self.keys):
            self.rows_of_key.setdefault(key, []).append(n)

    def answer(self, item_id: str) -> str:
        """The answer an item's key names."""
        n = self.ids.index(item_id)
        return self.choices[n][self.labels[n]]


def _scores_of(value: Any, k: int) -> np.ndarray | None:
    """A stored per-choice score list as an array, or None unless it scores all ``k`` choices."""
    if not isinstance(value, list | np.ndarray) or len(value) != k:
        return None
    arr = np.array([np.nan if v is None else v for v in value], dtype=float)
    return arr if np.isfinite(arr).all() else None


def _pick(row: Any, scores: np.ndarray | None, k: int) -> int:
    """The choice a run picked (in its own option order): its prediction, else its best score, else (two
    choices) what its outcome says; -1 when nothing says."""
    if not pd.isna(row.pred):
        return int(row.pred)
    if scores is not None:
        return int(np.argmax(scores))
    if k == 2 and not pd.isna(row.correct):
        return int(row.gold) if bool(row.correct) else 1 - int(row.gold)
    return -1


def run_source(store: Store, other: RunInfo, items: _Items) -> Source | None:
    """One run's probabilities of each choice of ``items`` (matched by content key, the choices by their text),
    or None when it covers none of them or gives neither scores nor predictions.

    A run that scores every item gives a softmax of its scores (``ll_norm`` for a run that picks by it, else
    ``ll_sum``) at the temperature that fits its own answer keys best; otherwise its prediction gets the run's
    accuracy as probability and the other choices share the rest.
    """
    k = items.k
    rows = list(store.items(other.run_id, include_excluded=True).itertuples())
    scores = [_scores_of(r.ll_norm if other.scoring == "norm" else r.ll_sum, k) for r in rows]
    picks = [_pick(r, s, k) for r, s in zip(rows, scores, strict=True)]
    own_gold = np.array([int(r.gold) for r in rows])
    temperature = None
    if rows and all(s is not None for s in scores):
        kind = "scores"
        stacked = np.array(scores)
        temperature = fit_temperature(stacked, own_gold)
        own: list[np.ndarray | None] = list(_softmax(stacked / temperature))
    else:
        kind = "predictions"
        known = [n for n, c in enumerate(picks) if c >= 0]
        if not known:
            return None
        hit = float(np.clip(np.mean([picks[n] == own_gold[n] for n in known]), 1.0 / k, 0.99))
        own = [None if c < 0 else np.where(np.arange(k) == c, hit, (1 - hit) / (k - 1)) for c in picks]
    probs = np.full((items.n, k), np.nan)
    chosen = np.full(items.n, -1)
    margin = np.full(items.n, np.nan)
    seen: set[str] = set()
    for r, p, c in zip(rows, own, picks, strict=True):
        if r.key in seen or r.key not in items.rows_of_key:  # copies within that run: the first one speaks
            continue
        seen.add(r.key)
        for n in items.rows_of_key[r.key]:
            order = [items.index[n].get(normalise(a), -1) for a in r.choices]  # its option j is our order[j]
            if sorted(order) != list(range(k)):
                continue
            if p is not None:
                probs[n, order] = p
            chosen[n] = order[c] if c >= 0 else -1
            margin[n] = np.nan if pd.isna(r.margin) else float(r.margin)
    if np.isnan(probs).any(axis=1).all():
        return None
    return Source(
        name=other.run_id,
        kind=kind,
        model=other.model,
        probs=probs,
        chosen=chosen,
        margin=margin,
        temperature=temperature,
    )


# ---- the pass ----------------------------------------------------------------------------------------------


def _rounded(values: np.ndarray) -> list[float] | None:
    return None if np.isnan(values).any() else [round(float(v), 4) for v in values]


def _conflict_copies(store: Store, run_id: str) -> dict[str, list[str]]:
    """item id → the other copies of its question that carry another answer key (``gold_conflict`` findings)."""
    found = store.findings(run_id)
    copies: dict[str, list[str]] = {}
    for ids in found.loc[found["kind"] == "gold_conflict", "item_ids"]:
        for item_id in ids:
            copies[item_id] = [i for i in ids if i != item_id]
    return copies


def _consensus(sources: list[Source], labels: np.ndarray, config: QualityConfig) -> dict[int, dict[str, Any]]:
    """Row → the other runs' confident agreement on one answer other than the key (see the module docstring)."""
    out: dict[int, dict[str, Any]] = {}
    k = sources[0].probs.shape[1]
    picks = np.stack([s.chosen for s in sources])  # [runs, n]
    for n in range(len(labels)):
        cover = picks[:, n] >= 0
        if cover.sum() < config.min_agree:
            continue
        votes = np.bincount(picks[cover, n], minlength=k)
        votes[labels[n]] = 0
        if votes.max() == 0:  # every covering run chose the key
            continue
        answer = int(votes.argmax())
        agree = [s for s in sources if s.chosen[n] == answer]
        probs = [s.probs[n, answer] for s in agree if not np.isnan(s.probs[n, answer])]
        confidence = float(np.mean(probs)) if probs else 0.0
        if (
            len(agree) >= config.min_agree
            and len(agree) / cover.sum() >= config.agree_share
            and confidence >= config.min_confidence
        ):
            out[n] = {"answer": answer, "runs": len(agree), "of": int(cover.sum()), "confidence": round(confidence, 4)}
    return out


def _combine(sources: list[Source], labels: np.ndarray, folds: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The sources' probabilities combined (sets each one's ``weight``): stacked out of fold where ``folds``
    are given, else their skill-weighted mean (NaN rows where no source covers an item)."""
    if folds is not None:
        combined, weights = stack_oof([s.probs for s in sources], labels, folds)
        for s, w in zip(sources, weights, strict=True):
            s.weight = w
        return combined, "stacked"
    total = np.zeros(sources[0].probs.shape)
    weight = np.zeros(len(labels))
    for s in sources:
        s.weight = s.skill
        total[s.covered] += s.skill * s.probs[s.covered]
        weight[s.covered] += s.skill
    combined = np.full(total.shape, np.nan)
    combined[weight > 0] = total[weight > 0] / weight[weight > 0, None]
    return combined, "mean"


def _suggested(
    n: int, items: _Items, combined: np.ndarray, consensus: dict[int, dict[str, Any]], copies: list[str]
) -> int | None:
    """The choice the evidence favours for row ``n``: the combined probabilities' best when it is not the key,
    else the consensus' answer, else the answer another copy's key names."""
    given = int(items.labels[n])
    if not np.isnan(combined[n]).any() and int(combined[n].argmax()) != given:
        return int(combined[n].argmax())
    if n in consensus:
        return int(consensus[n]["answer"])
    for other in copies:
        j = items.index[n].get(normalise(items.answer(other)))
        if j is not None and j != given:
            return j
    return None


def _evidence(
    n: int,
    items: _Items,
    *,
    run_id: str,
    sources: list[Source],
    combined: np.ndarray,
    suggested: int | None,
) -> dict[str, Any]:
    """What a flag shows: the given and suggested answers, the combined and the text classifier's probabilities,
    and every run's pick, probabilities, stored margin and weight."""
    choices, given = items.choices[n], int(items.labels[n])
    text = next((s for s in sources if s.kind == "text"), None)
    return {
        "given": given,
        "given_answer": choices[given],
        "suggested": suggested,
        "suggested_answer": None if suggested is None else choices[suggested],
        "probability": _rounded(combined[n]),
        "text": None if text is None else _rounded(text.probs[n]),
        "runs": [
            {
                "run_id": s.name,
                "model": s.model,
                "self": s.name == run_id,
                "kind": s.kind,
                "choice": None if s.chosen[n] < 0 else int(s.chosen[n]),
                "answer": None if s.chosen[n] < 0 else choices[int(s.chosen[n])],
                "p": _rounded(s.probs[n]),
                "margin": None if np.isnan(s.margin[n]) else round(float(s.margin[n]), 4),
                "weight": round(s.weight, 4),
            }
            for s in sources
            if s.kind != "text" and (s.chosen[n] >= 0 or s.covered[n])
        ],
    }


def quality_pass(store: Store, run_id: str, config: QualityConfig | None = None) -> QualityResult:
    """Flag the run's suspect labels with their evidence; nothing is written (``run_quality`` stores them)."""
    config = config or QualityConfig()
    if config.folds < 2:
        raise InputError(f"--folds {config.folds}: cross-fitting needs at least 2 folds (the default is 5)")
    run = store.run(run_id)  # an unknown run: one line naming the store's runs
    if run.kind == "zoo":
        raise InputError(f"run {run_id} is a zoo run: its answers are computed, not labelled, so none is suspect")
    frame = store.items(run_id, include_excluded=True).reset_index(drop=True)
    if frame.empty:
        raise InputError(f"run {run_id} has no scored items; collect or import its outcomes first")
    items = _Items(frame, run.n_choices)
    labels = items.labels
    skipped: dict[str, str] = {}
    copies = _conflict_copies(store, run_id)

    # probability sources: the text classifier, then every run of the task, this one first
    sources: list[Source] = []
    needed = MIN_PER_FOLD * config.folds
    folds = fold_of(items.keys, config.folds, config.seed) if items.n >= needed else None
    if folds is None:
        skipped["text"] = (
            f"run {run_id} has {items.n} items; {config.folds}-fold cross-fitting of the text classifier needs "
            f"at least {needed} ({MIN_PER_FOLD} per fold): score more items or lower --folds"
        )
    else:
        trainable = np.array([i not in copies for i in items.ids])
        probs = text_oof_probs(frame["context"].tolist(), items.choices, labels, folds, trainable, c=config.text_c)
        sources.append(
            Source(name="text", kind="text", probs=probs, chosen=probs.argmax(axis=1), margin=np.full(items.n, np.nan))
        )
    others = [
        store.run(r.run_id)
        for r in store.runs().itertuples()
        if r.task == run.task and r.n_items and r.run_id != run_id
    ]
    sources += [s for s in (run_source(store, r, items) for r in [run, *others]) if s is not None]
    counts = np.bincount(labels, minlength=items.k) + 1.0
    for s in sources:
        s.skill = skill(s.probs, labels, counts / counts.sum())
        if s.skill <= 0:
            what = "the text classifier" if s.kind == "text" else f"the {s.kind} of run {s.name}"
            skipped[f"source {s.name}"] = (
                f"{what}: no better than the answer-position prior on this run's keys "
                f"(skill {s.skill:.3f}), so it gets no weight"
            )
    useful = [s for s in sources if s.skill > 0]

    # (b) consensus of the other runs
    voters = [s for s in sources if s.kind != "text" and s.name != run_id]
    consensus: dict[int, dict[str, Any]] = {}
    if not others:
        skipped["consensus"] = f"no other run of task {run.task} in the store, so no consensus to compare keys with"
    elif len(voters) < config.min_agree:
        skipped["consensus"] = (
            f"consensus needs at least {config.min_agree} other runs of task {run.task} on these items; "
            f"{len(voters)} of the store's {len(others)} cover them"
        )
    else:
        consensus = _consensus(voters, labels, config)

    # (c) confident learning on the combined probabilities
    combined = np.full((items.n, items.k), np.nan)
    thresholds, combine = None, None
    issues = np.zeros(items.n, dtype=bool)
    if useful:
        combined, combine = _combine(useful, labels, folds)
        has = np.flatnonzero(~np.isnan(combined).any(axis=1))
        mask, t = find_label_issues(labels[has], combined[has])
        issues[has[mask & (combined[has].max(axis=1) >= config.min_probability)]] = True
        thresholds = [round(float(x), 4) for x in t]
    else:
        skipped["confident_learning"] = "no probability source is better than the answer-position prior on this run"

    flags = []
    for n, item_id in enumerate(items.ids):
        reasons = [
            reason
            for reason, hit in (
                ("gold_conflict", item_id in copies),
                ("consensus", n in consensus),
                ("confident_learning", bool(issues[n])),
            )
            if hit
        ]
        if not reasons:
            continue
        suggested = _suggested(n, items, combined, consensus, copies.get(item_id, []))
        evidence = _evidence(n, items, run_id=run_id, sources=sources, combined=combined, suggested=suggested)
        if n in consensus:
            evidence["consensus"] = consensus[n]
        if item_id in copies:
            evidence["copies"] = [{"item_id": i, "answer": items.answer(i)} for i in copies[item_id] if i in items.ids]
        given_p = combined[n, items.labels[n]]
        flags.append(
            SuspectRow(
                item_id=item_id,
                key=items.keys[n],
                reasons=reasons,
                score=1.0 if np.isnan(given_p) else round(float(1 - given_p), 6),
                suggested=suggested,
                evidence=evidence,
            )
        )
    signals = [
        name
        for name, used in (
            ("duplicates", True),
            ("consensus", "consensus" not in skipped),
            ("text", any(s.kind == "text" for s in useful)),
            ("scores", any(s.kind != "text" for s in useful)),
        )
        if used
    ]
    return QualityResult(
        run_id=run_id,
        task=run.task,
        n_items=items.n,
        flags=flags,
        signals=signals,
        skipped=skipped,
        sources=[s.describe() for s in sources],
        thresholds=thresholds,
        combine=combine,
        config=config,
    )


def run_quality(store: Store, run_id: str, config: QualityConfig | None = None) -> QualityResult:
    """The pass, stored (``store`` open for writing): it replaces the run's earlier pass and flags."""
    result = quality_pass(store, run_id, config)
    store.write_quality(run_id, result.flags, n_items=result.n_items, signals=result.signals, config=result.record())
    log.info("run %s: %d of %d items flagged as suspect labels", run_id, result.n_flagged, result.n_items)
    return result


def suspect_ids(store: Store, run_id: str) -> list[str]:
    """The run's stored suspect items, or a one-line error saying how to flag them when it had no pass."""
    if store.quality_passes(run_id).empty:
        raise InputError(
            f"run {run_id} has no item-quality pass, so no suspect items to exclude; "
            f"flag them first with `wif quality --run {run_id} --db {store.path}`"
        )
    return store.quality_flags(run_id)["item_id"].tolist()


def exclusion_digest(item_ids: list[str]) -> str:
    """A short digest of a set of excluded items: what a cached result's key records of them."""
    return hashlib.sha1(json.dumps(sorted(item_ids)).encode()).hexdigest()[:16]
