"""Task adapters: every source yields TaskItems."""

from wif_core.tasks.base import TASKS, TaskItem, TaskSpec, get_task, item_key, normalise
from wif_core.tasks.templates import listing_prompt, render_context, scoring_pairs

__all__ = [
    "TASKS",
    "TaskItem",
    "TaskSpec",
    "get_task",
    "item_key",
    "listing_prompt",
    "normalise",
    "render_context",
    "scoring_pairs",
]
