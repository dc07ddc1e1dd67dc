"""What ``wif zoo`` offers, in a module light enough to import when the CLI starts (no torch).

``tests/test_zoo.py`` checks these against the registries they summarise.
"""

TASK_NAMES = ("2nd_argmax", "argmedian", "median", "longest_cycle")
ESTIMATOR_NAMES = ("sampling", "deductive", "importance")
DEFAULT_STEPS = 150_000  # about 4 minutes for M16,10 on one CPU thread
