"""Class-based TF-IDF: the words that distinguish each cluster's items from the other clusters'.

All of a cluster's texts are one document (BERTopic's c-TF-IDF): a word's weight in cluster c
is ``tf(w, c) · log(1 + A / f(w))``, where ``tf`` is its share of the cluster's words, ``f`` its
count over all clusters and ``A`` the mean number of words per cluster. Stop words, numbers
and words in more than ``max_df`` of all texts (a prompt template's "Question", "Answer") are
left out, and a cluster's top words are only those more frequent in it than in the rest:
a word spread evenly over all clusters describes none of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | {"q", "a", "b", "c", "d", "s", "t"}


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stop words, numbers or one-letter tokens."""
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS]


@dataclass
class ClassWords:
    """One cluster's distinguishing words, best first, with their c-TF-IDF weights."""

    cluster: int
    words: list[str]
    scores: list[float]


def class_tfidf(
    texts: Sequence[str], labels: Sequence[int], top: int = 8, max_df: float = 0.9, min_count: int = 1
) -> dict[int, ClassWords]:
    """The ``top`` distinguishing words of every label in ``labels`` (one label per text).

    ``max_df`` is applied only with at least 10 texts (in a tiny corpus every word is frequent);
    ``min_count`` is the fewest times a word must occur in a cluster to be listed for it.
    """
    labels = [int(x) for x in labels]
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    tokens = [words(t) for t in texts]
    df = Counter(w for toks in tokens for w in set(toks))
    banned = {w for w, n in df.items() if n > max_df * len(texts)} if len(texts) >= 10 else set()
    classes = sorted(set(labels))
    counts = {c: Counter() for c in classes}  # type: ignore[var-annotated]
    for toks, c in zip(tokens, labels, strict=True):
        counts[c].update(w for w in toks if w not in banned)
    vocab = sorted(set().union(*counts.values())) if counts else []
    if not vocab:
        return {c: ClassWords(c, [], []) for c in classes}
    index = {w: i for i, w in enumerate(vocab)}
    M = np.zeros((len(classes), len(vocab)))
    for row, c in enumerate(classes):
        for w, n in counts[c].items():
            M[row, index[w]] = n
    totals = M.sum(1, keepdims=True)
    tf = M / np.where(totals > 0, totals, 1)
    freq = M.sum(0)
    idf = np.log(1 + M.sum() / len(classes) / freq)
    weight = tf * idf
    out = {}
    for row, c in enumerate(classes):
        rest = M.sum(0) - M[row]
        rest_tf = rest / max(rest.sum(), 1)
        keep = (tf[row] > rest_tf) & (M[row] >= min_count)
        order = [i for i in np.argsort(-weight[row], kind="stable") if keep[i]][:top]
        out[c] = ClassWords(c, [vocab[i] for i in order], [float(weight[row, i]) for i in order])
    return out
