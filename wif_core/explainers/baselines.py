"""Baselines that use no model internals: the model's own confidence, the answer-key prior,
surface features, item text, and another model's outcomes on the same items."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from wif_core.explainers.base import Explainer, RunFacts, View
from wif_core.explainers.linear import fit_logistic, top_weights

NEGATIONS = frozenset(
    "not no never none nothing nobody neither nor cannot can't don't doesn't didn't isn't "
    "wasn't aren't weren't won't wouldn't shouldn't couldn't without".split()
)
_WORD = re.compile(r"[a-z']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class Confidence(Explainer):
    """The model's own margin between its top two choices: a small margin predicts failure."""

    name = "confidence"
    tier = "output"
    summary = "negative margin between the model's top two choice scores (no training)"

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        return run.why_no_scores()

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> Confidence:
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        top2 = np.sort(test.choice_scores, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        return 1 / (1 + margin)  # monotone in −margin, within (0, 1]

    def explain(self) -> dict[str, Any]:
        return {"rule": "P(failure) = 1 / (1 + top-1 score − top-2 score)"}


class LabelPrior(Explainer):
    """P(failure | which choice is right), learned on train: the answer-bias baseline."""

    name = "label-prior"
    tier = "gold"
    summary = "failure rate per gold answer index on train (answer bias)"

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> LabelPrior:
        k = max(len(c) for c in train.choices)
        self.rates_ = np.array(
            [(y_train[train.gold == j].sum() + 1) / ((train.gold == j).sum() + 2) for j in range(k)]
        )  # Laplace-smoothed, so an unseen index gives 1/2
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self.rates_[test.gold]

    def explain(self) -> dict[str, Any]:
        return {"failure_rate_by_gold_index": {int(j): float(r) for j, r in enumerate(self.rates_)}}


def surface_features(view: View) -> tuple[np.ndarray, list[str]]:
    """Lengths, length differences, context–choice word overlap and negation counts, in option order."""
    rows, names = [], []
    k = max(len(c) for c in view.choices)
    for context, choices in zip(view.contexts, view.choices, strict=True):
        ctx = _words(context)
        ctx_set = set(ctx)
        row: list[float] = [len(context), len(ctx), sum(w in NEGATIONS for w in ctx)]
        lens = [len(_words(c)) for c in choices]
        for c in choices:
            cw = _words(c)
            overlap = len(ctx_set & set(cw)) / max(1, len(set(cw)))
            row += [len(c), len(cw), overlap, sum(w in NEGATIONS for w in cw)]
        row += [lens[j] - lens[0] for j in range(1, len(choices))]
        rows.append(row)
    names = ["context chars", "context words", "context negations"]
    for j in range(k):
        names += [f"choice {j} chars", f"choice {j} words", f"choice {j} overlap", f"choice {j} negations"]
    names += [f"choice {j} − choice 0 words" for j in range(1, k)]
    return np.array(rows, dtype=float), names


class Surface(Explainer):
    """Logistic regression on surface features of the item's text (input tier)."""

    name = "surface"
    tier = "input"
    summary = "logistic regression on lengths, overlap and negation words"

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> Surface:
        Xt, self.names_ = surface_features(train)
        self.fit_ = fit_logistic(Xt, y_train, surface_features(val)[0], y_val, seed=self.seed)
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self.fit_.predict(surface_features(test)[0])

    def explain(self) -> dict[str, Any]:
        return {"C": self.fit_.C, "top_weights": top_weights(self.fit_.weights, self.names_)}


def item_text(view: View) -> list[str]:
    """The item as one string: context, then the options in order."""
    return [f"{c} || " + " || ".join(ch) for c, ch in zip(view.contexts, view.choices, strict=True)]


class Text(Explainer):
    """TF-IDF of the item's words and bigrams with logistic regression; no model internals."""

    name = "text"
    tier = "input"
    summary = "TF-IDF (1–2-grams) + logistic regression on the item text"

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> Text:
        self.vec_ = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000, sublinear_tf=True)
        Xt = self.vec_.fit_transform(item_text(train))
        Xv = self.vec_.transform(item_text(val))
        self.fit_ = fit_logistic(
            Xt, y_train, Xv, y_val, grid=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0), scale=False, seed=self.seed
        )
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        return self.fit_.predict(self.vec_.transform(item_text(test)))

    def explain(self) -> dict[str, Any]:
        return {"C": self.fit_.C, "top_words": top_weights(self.fit_.weights, list(self.vec_.get_feature_names_out()))}


class CrossModel(Explainer):
    """Another run's outcome on the same item (matched by normalised content) as the predictor."""

    name = "cross-model"
    tier = "gold"
    summary = "another model's failure on the same item (e.g. imported Gemma-2 2B outcomes)"
    options = ("other_run",)

    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        return None if run.other_runs else f"no other run of task {run.task} in the store to compare with"

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        return [{"other_run": r} for r in run.other_runs]

    def _other(self) -> str:
        other = self.settings.get("other_run")
        if not other:
            raise ValueError("cross-model needs other_run=RUN_ID")
        return str(other)

    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> CrossModel:
        other = train.other_run_failures(self._other())
        seen = ~np.isnan(other)
        self.base_rate_ = float(y_train.mean())
        self.coverage_ = float(seen.mean())
        self.agreement_ = float((other[seen] == y_train[seen]).mean()) if seen.any() else float("nan")
        return self

    def predict_proba(self, test: View) -> np.ndarray:
        other = test.other_run_failures(self._other())
        return np.where(np.isnan(other), self.base_rate_, other)

    def explain(self) -> dict[str, Any]:
        return {"other_run": self._other(), "train_coverage": self.coverage_, "train_agreement": self.agreement_}
