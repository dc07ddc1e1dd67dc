"""A run's evaluation data: splits, failure labels, and tier-limited views built from the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wif_core.errors import InputError
from wif_core.explainers.base import RunFacts, Tier, View
from wif_core.label_quality import exclusion_digest, suspect_ids
from wif_core.store import RunInfo, Store

MIN_PER_CLASS = 10
ACTS_BUDGET = 4 * 2**30  # bytes of activations a RunData keeps read (see RunData._all_acts)
EXCLUSIONS = ("suspect",)  # what `RunData.load(exclude=...)` can leave out: the item-quality pass's flags


# what an evaluation reads of a run's items (``Store.items``): not the metadata, per-byte scores or token counts;
# the texts (TEXT_COLUMNS) only once a fit needs them, so that a page whose results are cached reads none
EVAL_COLUMNS = ("item_id", "split", "correct", "gold", "margin", "excluded", "ll_sum", "key")
TEXT_COLUMNS = ("context", "choices")


def _complete_scores(value: object, n_choices: int) -> bool:
    """Whether a stored ``ll_sum`` cell holds a finite score for each of the run's choices."""
    if not isinstance(value, list | np.ndarray) or len(value) != n_choices:
        return False
    scores = np.array([np.nan if x is None else x for x in value], dtype=float)
    return bool(np.isfinite(scores).all())


def _complete_column(cells: pd.Series, n_choices: int) -> pd.Series:
    """``_complete_scores`` of every cell; one array operation where every cell is a float array of one length
    (a collected run's), the cell-by-cell check otherwise."""
    if len(cells) and all(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in cells):
        lengths = np.fromiter((len(v) for v in cells), dtype=np.int64, count=len(cells))
        if (lengths == n_choices).all():
            return pd.Series(np.isfinite(np.stack(cells.to_list())).all(axis=1), index=cells.index)
    return cells.map(lambda v: _complete_scores(v, n_choices))


@dataclass
class RunData:
    """Everything the explainers of one run draw on, read once from the store."""

    store: Store
    facts: RunFacts
    frame: pd.DataFrame  # one row per evaluated item: item_id, split, failed, gold, ll_sum, key (+ texts: with_texts)
    # what was left out beyond leakage ({"suspect": digest of the ids, "n_suspect": {split: n}}), for cache keys
    excluded: dict[str, Any] = field(default_factory=dict)
    run: RunInfo | None = None  # the run's record as read with the items (split and run config for cache keys)
    _acts: dict[tuple[int, str], tuple[dict[str, int], np.ndarray]] = field(default_factory=dict, repr=False)
    _tokens: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    _by_key: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, store: Store, run_id: str, include_excluded: bool = False, exclude: str | None = None) -> RunData:
        """The run's train/val/test items (without those excluded for leakage, unless ``include_excluded``).

        ``exclude="suspect"`` also leaves out, from every split, the items the run's stored item-quality pass
        flags as suspect labels (``wif quality``); a run without one is refused in one line.
        """
        run = store.run(run_id)
        frame = store.items(run_id, include_excluded=include_excluded, columns=EVAL_COLUMNS)
        frame = frame[frame["split"].isin(["train", "val", "test"])].reset_index(drop=True)
        excluded: dict[str, Any] = {}
        if exclude is not None:
            if exclude not in EXCLUSIONS:
                raise InputError(f"--exclude {exclude}: wif can leave out {', '.join(EXCLUSIONS)}")
            suspect = set(suspect_ids(store, run_id))
            dropped = frame["item_id"].isin(suspect)
            counts = frame.loc[dropped, "split"].value_counts()
            excluded = {
                "suspect": exclusion_digest(sorted(suspect)),
                "n_suspect": {s: int(counts.get(s, 0)) for s in ("train", "val", "test")},
            }
            frame = frame[~dropped].reset_index(drop=True)
        frame["failed"] = (~frame["correct"].astype(bool)).astype(int)
        others = [r for r in store.runs().itertuples() if r.task == run.task and r.run_id != run_id and r.n_items > 0]
        complete = _complete_column(frame["ll_sum"], run.n_choices)
        has_scores = bool(len(frame)) and bool(complete.all())
        # a run with scores on some items only (imported nulls) offers none: a baseline on a subset would pretend
        scored_any = frame["ll_sum"].map(lambda v: isinstance(v, list | np.ndarray) and len(v) > 0)
        scores_missing = int((scored_any & ~complete).sum())
        facts = RunFacts(
            run_id=run_id,
            task=run.task,
            n_choices=run.n_choices,
            layers=list(run.layers),
            sites=list(run.sites),
            token_layers=list(run.token_layers),
            has_scores=has_scores,
            scores_missing=scores_missing,
            other_runs=[r.run_id for r in others],
            store_path=str(store.path),
        )
        data = cls(store, facts, frame, excluded=excluded, run=run)
        train_keys = set(frame.loc[frame["split"] == "train", "key"])
        data.facts.shared_train = {
            r.run_id: sum(k in train_keys for k in data._failed_by_key(r.run_id)) for r in others
        }
        data.check()
        return data

    def check(self) -> None:
        """Refuse runs that cannot give a defined AUC: too few items per class, or a one-class split."""
        counts = self.frame.groupby("failed").size()
        n_ok, n_fail = int(counts.get(0, 0)), int(counts.get(1, 0))
        if min(n_ok, n_fail) < MIN_PER_CLASS:
            raise InputError(
                f"run {self.facts.run_id} has {n_ok} correct and {n_fail} failed items in its splits; "
                f"explainers need at least {MIN_PER_CLASS} of each (collect more items)"
            )
        for split in ("train", "val", "test"):
            part = self.frame[self.frame["split"] == split]
            if part["failed"].nunique() < 2:
                raise InputError(
                    f"run {self.facts.run_id}: the {split} split has {len(part)} items of a single outcome; "
                    "AUC is undefined (redraw the splits with more items)"
                )

    # -- lazily read arrays, indexed by item id ------------------------------------------
    def _all_acts(self, layer: int, site: str) -> tuple[dict[str, int], np.ndarray]:
        """One (layer, site) of every evaluated item, read once and kept while the kept ones fit ``ACTS_BUDGET``
        (the oldest go first; the newest always stays): a run of 100,000 items holds 0.9 GB per layer at width
        2304, and a process that fits every layer in turn (the app's compare page) must not keep them all."""
        if (layer, site) in self._acts:
            self._acts[(layer, site)] = self._acts.pop((layer, site))  # the most recently used is kept longest
            return self._acts[(layer, site)]
        ids, arr = self.store.activations(self.facts.run_id, layer, site, list(self.frame["item_id"]))
        while self._acts and sum(a.nbytes for _, a in self._acts.values()) + arr.nbytes > ACTS_BUDGET:
            del self._acts[next(iter(self._acts))]
        self._acts[(layer, site)] = ({i: n for n, i in enumerate(ids)}, arr)
        return self._acts[(layer, site)]

    def _all_tokens(self, layer: int) -> dict[str, np.ndarray]:
        if layer not in self._tokens:
            ids, arrs = self.store.token_activations(self.facts.run_id, layer, list(self.frame["item_id"]))
            self._tokens[layer] = dict(zip(ids, arrs, strict=True))
        return self._tokens[layer]

    def _other_failures(self, other_run: str, keys: list[str]) -> np.ndarray:
        other = self.store.items(other_run, include_excluded=True)
        failed = dict(zip(other["key"], (~other["correct"].astype(bool)).astype(float), strict=True))
        return np.array([failed.get(k, np.nan) for k in keys])

    def _failed_by_key(self, other_run: str) -> dict[str, float]:
        if other_run not in self._by_key:
            self._by_key[other_run] = self.store.failed_by_key(other_run)
        return self._by_key[other_run]

    def _other_train_failures(self, other_run: str, keys: list[str]) -> np.ndarray:
        """``other_run``'s outcome on train items by key; NaN where the key is also a val or test item's here, so
        that no outcome on the content of an item this run is scored on is read."""
        if other_run not in self.facts.other_runs:
            raise InputError(
                f"run {self.facts.run_id}: '{other_run}' is not another run of task {self.facts.task} "
                f"(other runs: {', '.join(self.facts.other_runs) or 'none'})"
            )
        held_out = set(self.frame.loc[self.frame["split"] != "train", "key"])
        failed = self._failed_by_key(other_run)
        return np.array([np.nan if k in held_out else failed.get(k, np.nan) for k in keys])

    def with_texts(self) -> pd.DataFrame:
        """``frame`` with each item's ``context`` and ``choices``, read from the store the first time they are
        needed (``load`` leaves them out: a result read from the cache needs no text)."""
        if not all(c in self.frame for c in TEXT_COLUMNS):
            texts = self.store.items(self.facts.run_id, columns=("item_id", *TEXT_COLUMNS)).set_index("item_id")
            self.frame = self.frame.assign(
                **{c: texts[c].reindex(self.frame["item_id"]).to_numpy() for c in TEXT_COLUMNS}
            )
        return self.frame

    # -- views ----------------------------------------------------------------------------
    def split(self, name: str, tier: Tier, other_train: bool = False) -> tuple[View, np.ndarray]:
        """The ``name`` split as a ``tier`` view, and its failure labels (1 = failed).

        ``other_train`` (for an explainer that declares ``reads_other_train``) adds other runs' outcomes to the
        train view only: a val or test view never holds them.
        """
        frame = self.with_texts()
        part = frame[frame["split"] == name]
        ids = part["item_id"].tolist()
        keys = part["key"].tolist()

        def acts(layer: int, site: str) -> np.ndarray:
            index, arr = self._all_acts(layer, site)
            missing = [i for i in ids if i not in index]
            if missing:
                raise InputError(f"run {self.facts.run_id}: {len(missing)} items have no activations at layer {layer}")
            return arr[[index[i] for i in ids]]

        def token_acts(layer: int) -> list[np.ndarray]:
            table = self._all_tokens(layer)
            return [table[i] for i in ids]

        scores = (
            np.array([list(v) for v in part["ll_sum"]], dtype=float)
            if tier != "input" and self.facts.has_scores
            else None
        )
        view = View(
            tier=tier,
            item_ids=ids,
            task=self.facts.task,
            contexts=part["context"].tolist(),
            choices=[tuple(c) for c in part["choices"]],
            _acts=acts,
            _token_acts=token_acts,
            layers=list(self.facts.layers),
            _choice_scores=scores,
            _gold=part["gold"].to_numpy(dtype=int) if tier == "gold" else None,
            _other=(lambda run_id: self._other_failures(run_id, keys)) if tier == "gold" else None,
            _other_train=(
                (lambda run_id: self._other_train_failures(run_id, keys)) if other_train and name == "train" else None
            ),
        )
        return view, part["failed"].to_numpy(dtype=int)
