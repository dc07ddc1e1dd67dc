"""The one write path of every kind of run (``runner.write_run``): create, write batches, resume, split, complete."""

from __future__ import annotations

import pytest

from wif_core.runner import SplitOptions, write_run
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem

N = 40


def _items() -> list[TaskItem]:
    return [
        TaskItem(item_id=f"i{j:02d}", task="piqa", context=f"Question: q{j}?\nAnswer:", choices=("a", "b"), gold=j % 2)
        for j in range(N)
    ]


def _run() -> RunInfo:
    return RunInfo(run_id="r1", model="m", task="piqa", source="test", n_choices=2, family="two_choice")


def _scorer(seen: list[list[str]], die_after: int | None = None):
    """Outcomes in batches of 8 (every third item wrong); raises after ``die_after`` batches, like a kill."""

    def score(todo: list[TaskItem]):
        seen.append([it.item_id for it in todo])
        for n, start in enumerate(range(0, len(todo), 8)):
            if die_after is not None and n == die_after:
                raise KeyboardInterrupt
            yield [
                OutcomeRow(item_id=it.item_id, pred=0, correct=int(it.item_id[1:]) % 3 != 0)
                for it in todo[start : start + 8]
            ]

    return score


def test_an_interrupted_run_resumes_after_its_last_batch(tmp_path):
    seen: list[list[str]] = []
    with Store.open(tmp_path / "s.duckdb", write=True) as store:
        with pytest.raises(KeyboardInterrupt):
            write_run(store, _run(), _items(), _scorer(seen, die_after=2), split_options=SplitOptions())
        assert store.run("r1").status == "collecting" and len(store.done_item_ids("r1")) == 16
        result = write_run(store, _run(), _items()[:3], _scorer(seen), split_options=SplitOptions())
        assert result.n_new == N - 16 and result.n_skipped == 16  # the planned items are the stored ones
        assert seen[1] == [f"i{j:02d}" for j in range(16, N)]
        assert result.run.status == "complete" and store.counts("r1")["splits"] == N
        assert (result.run.n_choices, result.run.family, result.run.kind) == (2, "two_choice", "collected")


def test_fresh_writes_the_run_whole_and_extra_writes_come_before_the_splits(tmp_path):
    seen: list[list[str]] = []
    states: list[tuple[str, int]] = []
    with Store.open(tmp_path / "s.duckdb", write=True) as store:
        with pytest.raises(KeyboardInterrupt):
            write_run(store, _run(), _items(), _scorer(seen, die_after=1), split_options=SplitOptions())

        def after() -> None:
            states.append((store.run("r1").status, store.counts("r1")["splits"]))

        result = write_run(
            store, _run(), _items(), _scorer(seen), split_options=SplitOptions(), fresh=True, after_outcomes=after
        )
        assert len(seen[1]) == N and result.n_new == N and result.n_skipped == 0
        assert states == [("collecting", 0)] and store.counts("r1")["outcomes"] == N
        assert store.run("r1").status == "complete"
