"""What ``wif zoo`` offers and how zoo tasks are named in a store, light enough to import anywhere (no torch).

``tests/test_zoo.py`` checks these against the registries they summarise.
"""

TASK_NAMES = ("2nd_argmax", "argmedian", "median", "longest_cycle")
ESTIMATOR_NAMES = ("sampling", "deductive", "importance")
DEFAULT_STEPS = 150_000  # about 4 minutes for M16,10 on one CPU thread


def store_task(task: str, n: int) -> str:
    """The store's task name for a zoo task at length n (``zoo-2nd_argmax-n10``): a name only; what the run
    is (its number of choices, its family) is on its run record."""
    return f"zoo-{task}-n{n}"
