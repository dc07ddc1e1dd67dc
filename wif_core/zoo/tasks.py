"""The zoo's tasks: what the input is, how it is drawn, what the right answer is, and what makes it hard.

Every task has a known input distribution, so accuracy is a well-defined number that a
mechanistic estimate can aim at: standard Gaussian sequences for the order-statistic
tasks, uniformly random functions on n points for the longest cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from wif_core.errors import InputError

Output = Literal["position", "scalar", "class"]
Inputs = Literal["gaussian", "function"]


@dataclass(frozen=True, kw_only=True)
class ZooTask:
    """One algorithmic task: its input distribution, output kind and the sequence lengths it accepts."""

    name: str
    inputs: Inputs
    output: Output
    description: str
    odd_only: bool = False
    min_n: int = 2

    def n_outputs(self, n: int) -> int:
        """Logits per sequence: one per position (or cycle length), one for a scalar."""
        return 1 if self.output == "scalar" else n

    def check(self, n: int) -> None:
        """Refuse sequence lengths the task is undefined for, naming the fix."""
        if n < self.min_n:
            raise InputError(f"task '{self.name}': --seq {n} is too short; use at least {self.min_n}")
        if self.odd_only and n % 2 == 0:
            raise InputError(
                f"task '{self.name}' needs an odd --seq (a unique middle element); got {n}, use {n - 1} or {n + 1}"
            )

    def sample(self, batch: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch`` fresh inputs ``[batch, n]``: float32 Gaussians, or int64 function tables."""
        if self.inputs == "function":
            return torch.randint(0, n, (batch, n), generator=generator)
        return torch.randn(batch, n, generator=generator)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The right answer per row: a position, a cycle length − 1 (int64), or the median (float)."""
        if self.name == "2nd_argmax":
            return second_argmax(x)
        if self.name == "argmedian":
            return x.argsort(dim=1)[:, x.shape[1] // 2]
        if self.name == "median":
            return x.sort(dim=1).values[:, x.shape[1] // 2]
        return longest_cycle(x) - 1


SECOND_ARGMAX = ZooTask(
    name="2nd_argmax",
    inputs="gaussian",
    output="position",
    description="position of the second-largest of n Gaussians",
)
ARGMEDIAN = ZooTask(
    name="argmedian",
    inputs="gaussian",
    output="position",
    description="position of the median of n Gaussians (odd n)",
    odd_only=True,
    min_n=3,
)
MEDIAN = ZooTask(
    name="median",
    inputs="gaussian",
    output="scalar",
    description="the median value of n Gaussians (odd n)",
    odd_only=True,
    min_n=3,
)
LONGEST_CYCLE = ZooTask(
    name="longest_cycle",
    inputs="function",
    output="class",
    description="length − 1 of the longest cycle of a random function on n points",
)


def get_task(name: str) -> ZooTask:
    """A zoo task by name, or a one-line error listing them."""
    from wif_core.zoo import TASKS

    return TASKS.lookup(name)


def store_task(task: str, n: int) -> str:
    """The store's task name for a zoo task at length n (``zoo-2nd_argmax-n10``): a name only; what the run
    is (its number of choices, its family) is on its run record."""
    return f"zoo-{task}-n{n}"


def second_argmax(x: torch.Tensor) -> torch.Tensor:
    """Position of the second-largest value in each row (ties have probability zero)."""
    return x.topk(2, dim=1).indices[:, 1]


def longest_cycle(f: torch.Tensor) -> torch.Tensor:
    """Length of the longest cycle of each row's function ``i ↦ f[i]`` on {0..n−1}.

    Iterating f n times from every point lands on a cycle; each point on a cycle returns to
    itself after its cycle's length, which is the smallest k ≤ n with f^k(i) = i.
    """
    b, n = f.shape
    point = torch.arange(n).expand(b, n).clone()
    for _ in range(n):
        point = f.gather(1, point)  # every start is now on its cycle
    length = torch.zeros(b, n, dtype=torch.long)
    cur = point.clone()
    for k in range(1, n + 1):
        cur = f.gather(1, cur)
        length = torch.where((length == 0) & (cur == point), torch.full_like(length, k), length)
    return length.max(dim=1).values


def order_factors(x: np.ndarray) -> dict[str, np.ndarray]:
    """Ground-truth difficulty of each Gaussian sequence: the gaps between the top three values and where they sit.

    ``gap12`` (largest − 2nd largest) is the known cause of 2nd-argmax failures: when the top
    two are close, telling which is which takes precision the tiny models lack.
    """
    order = np.argsort(-x, axis=1)
    top = np.take_along_axis(x, order[:, :3], axis=1) if x.shape[1] >= 3 else None
    s = np.sort(x, axis=1)[:, ::-1]
    out = {
        "gap12": s[:, 0] - s[:, 1],
        "max_pos": order[:, 0],
        "second_pos": order[:, 1],
    }
    out["gap23"] = (top[:, 1] - top[:, 2]) if top is not None else np.full(len(x), np.nan)
    return out
