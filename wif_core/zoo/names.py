"""What ``wif zoo`` offers and how zoo tasks are named in a store, light enough to import anywhere (no torch).

``tests/test_zoo.py`` checks these against the registries they summarise.
"""

from wif_core.tasks.base import TASKS, TaskSpec

TASK_NAMES = ("2nd_argmax", "argmedian", "median", "longest_cycle")
ESTIMATOR_NAMES = ("sampling", "deductive", "importance")
DEFAULT_STEPS = 150_000  # about 4 minutes for M16,10 on one CPU thread


def store_task(task: str, n: int) -> str:
    """The store's task name for a zoo task at length n (``zoo-2nd_argmax-n10``), registered so the
    explainers can look up its number of choices."""
    name = f"zoo-{task}-n{n}"
    if name not in TASKS:
        TASKS[name] = TaskSpec(name, "three_choice", n, description=f"AlgZoo {task}, n = {n} (one choice per output)")
    return name


def register_task_name(name: str) -> bool:
    """Register a store task name like ``zoo-2nd_argmax-n10``; False if it is not a zoo task name.

    The hook for ``wif_core.tasks.base.get_task``: a zoo task's choice count depends on n, so its
    names cannot all be listed up front.
    """
    if not name.startswith("zoo-"):
        return False
    base, _, n = name[4:].rpartition("-n")
    if base not in TASK_NAMES or not n.isdigit():
        return False
    store_task(base, int(n))
    return True
