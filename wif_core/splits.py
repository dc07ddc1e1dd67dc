"""Balanced k/k splits and the leakage check.

Items are grouped by their normalised content (``item_key``). A group whose copies carry
different answer keys (``gold_conflict``; PIQA outcome files have such pairs), a group
that holds items with both outcomes (the same question answered right and wrong), or whose items sit in
different splits, is leakage: all its items are excluded from evaluation by default.
Further copies of an item within one split and outcome are excluded as repeats, so no
item counts twice. Fresh splits are drawn per content group, so a collected run never
puts one question on both sides of a split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from wif_core.errors import InputError
from wif_core.tasks.base import normalise

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.5, 0.25, 0.25)


@dataclass(frozen=True)
class Finding:
    """A leakage finding: 'gold_conflict', 'both_outcomes', 'cross_split' or 'repeat'."""

    kind: str
    key: str
    item_ids: list[str]
    detail: str

    def as_row(self) -> tuple[str, str, list[str], str]:
        return (self.kind, self.key, self.item_ids, self.detail)


def find_leakage(frame: pd.DataFrame) -> tuple[list[Finding], dict[str, str]]:
    """Leakage in ``frame`` (item_id, key, correct, split): findings and item_id → exclusion reason."""
    findings: list[Finding] = []
    excluded: dict[str, str] = {}
    for key, group in frame.groupby("key", sort=True):
        if len(group) < 2:
            continue
        ids = group["item_id"].tolist()
        if "gold" in group and "choices" in group:
            golds = {normalise(list(ch)[g]) for ch, g in zip(group["choices"], group["gold"], strict=True)}
            if len(golds) > 1:
                findings.append(Finding("gold_conflict", str(key), ids, "the same item has different answer keys"))
                excluded.update({i: "gold_conflict" for i in ids})
        outcomes = group["correct"].nunique()
        splits = group["split"].dropna().nunique() if "split" in group else 0
        if outcomes > 1:
            findings.append(Finding("both_outcomes", str(key), ids, "the same item is listed as correct and incorrect"))
            excluded.update({i: excluded.get(i, "both_outcomes") for i in ids})
        if splits > 1:
            where = ", ".join(sorted(group["split"].dropna().unique()))
            findings.append(Finding("cross_split", str(key), ids, f"the same item is in splits {where}"))
            excluded.update({i: excluded.get(i, "cross_split") for i in ids})
        if outcomes == 1 and splits <= 1:
            findings.append(Finding("repeat", str(key), ids, f"{len(ids)} copies of one item"))
            excluded.update({i: "repeat" for i in ids[1:]})
    return findings, excluded


def check_options(
    k: int | None, fractions: tuple[float, float, float] | list[float], n_items: int | None = None
) -> None:
    """Refuse split options that cannot work, before any item is scored: ``fractions`` that are not three
    positive numbers summing to 1, ``k`` below 1 or above what ``n_items`` items can give per outcome."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        shown = ",".join(f"{f:g}" for f in fractions)
        raise InputError(
            f"split fractions {shown} must be three positive numbers summing to 1 (train,val,test, like 0.5,0.25,0.25)"
        )
    if k is not None and k < 1:
        raise InputError(f"--k {k}: give at least 1 item per outcome, or leave --k out to use every item")
    if k is not None and n_items is not None and k > n_items // 2:
        raise InputError(
            f"--k {k} is more than {n_items} items can give: a balanced split takes k correct and k incorrect "
            f"items, so at most {n_items // 2}; lower --k or score more items"
        )


def balanced_splits(
    frame: pd.DataFrame,
    k: int | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """Draw k correct and k incorrect items and split each class train/val/test by ``fractions``.

    ``frame`` has item_id, key, correct. Returns item_id, split ('train', 'val', 'test' or
    'unused'). Content groups are drawn whole, so duplicates never straddle two splits.
    """
    check_options(k, fractions)
    rng = np.random.default_rng(seed)
    first = frame.drop_duplicates("key")
    clean = first[~first["key"].isin(frame.groupby("key")["correct"].nunique().loc[lambda s: s > 1].index)]
    pos, neg = clean[~clean["correct"]], clean[clean["correct"]]
    available = min(len(pos), len(neg))
    if available < 2:
        n_right = int(frame["correct"].sum())
        left_out = len(frame) - len(clean)
        distinct = f", {len(neg)} and {len(pos)} of them distinct" if left_out else ""
        raise InputError(
            f"a balanced split needs at least 2 distinct items of both outcomes; of its {len(frame)} items the "
            f"model answered {n_right} correctly and {len(frame) - n_right} incorrectly{distinct}: "
            "score more items (a larger --limit, or another source)"
        )
    k = available if k is None else k
    if not 1 <= k <= available:
        raise InputError(f"--k {k} is out of range: at most {available} items per outcome are available")
    split_of_key: dict[str, str] = {}
    for cls in (pos, neg):
        chosen = cls["key"].to_numpy()[rng.permutation(len(cls))[:k]]
        n_train = int(round(k * fractions[0]))
        n_val = int(round(k * fractions[1]))
        for n, key in enumerate(chosen):
            split_of_key[key] = "train" if n < n_train else "val" if n < n_train + n_val else "test"
    out = frame[["item_id"]].copy()
    out["split"] = frame["key"].map(split_of_key).fillna("unused")
    return out


def assign(
    frame: pd.DataFrame,
    given_splits: bool,
    k: int | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[Finding]]:
    """Splits with exclusions for a run: given splits (imports) are kept, otherwise drawn.

    Returns (item_id, split, excluded, reason) and the leakage findings.
    """
    if given_splits:
        splits = frame[["item_id", "split"]].copy()
    else:
        splits = balanced_splits(frame, k, fractions, seed)
    cols = [c for c in ("item_id", "key", "correct", "gold", "choices") if c in frame]
    merged = frame[cols].merge(splits, on="item_id")
    findings, excluded = find_leakage(merged)
    splits["reason"] = splits["item_id"].map(excluded)
    splits["excluded"] = splits["reason"].notna()
    return splits[["item_id", "split", "excluded", "reason"]], findings


FINDING_KINDS = {
    "gold_conflict": "copies of one question carry different answer keys, so at least one key is wrong; "
    "every copy is left out of evaluation.",
    "both_outcomes": "the same question was answered right in one copy and wrong in another, so its outcome "
    "says nothing certain; every copy is left out of evaluation.",
    "cross_split": "copies of one question sit in different splits, so an explainer would be tested on what "
    "it was trained on; every copy is left out of evaluation.",
    "repeat": "one question appears more than once with one outcome in one split; the extra copies are left "
    "out so that no item counts twice.",
}


def findings_table(findings: pd.DataFrame) -> pd.DataFrame:
    """Leakage per run and kind: how many groups, a few example item ids, and one group's detail."""
    rows = []
    for (run_id, kind), group in findings.groupby(["run_id", "kind"], sort=True):
        examples = [", ".join(ids) for ids in group["item_ids"].head(3)]
        rows.append(
            {
                "run_id": run_id,
                "kind": kind,
                "groups": len(group),
                "items": sum(map(len, group["item_ids"])),
                "examples": " | ".join(examples),
                "detail": group["detail"].iloc[0],
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "kind", "groups", "items", "examples", "detail"])
