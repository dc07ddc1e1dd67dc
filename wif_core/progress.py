"""Progress a person can see, on a terminal or not.

On a terminal, a tqdm bar. Anywhere else (a log file, CI, a notebook cell, a pipe) one line when a
phase starts, a progress line at most every ``interval`` seconds (what, done/total, elapsed, an
estimate of what is left) and one line when it ends, so a long job is never silent::

    [wif] collect gen-coref: started (500 items)
    [wif] collect gen-coref: 212/500 items (42%), 10 s elapsed, ~14 s left
    [wif] collect gen-coref: done, 500 items in 24 s

``watch`` receives every update as a ``Tick`` (the demo build writes them to a status file the app reads).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

INTERVAL_S = 10.0  # the most seconds between two progress lines off a terminal
PREFIX = "[wif]"


@dataclass(kw_only=True)
class Tick:
    """Where a phase stands: done of total (None: unknown) units, seconds since it started, finished or not."""

    desc: str
    done: int
    total: int | None
    unit: str
    elapsed: float
    finished: bool = False
    initial: int = 0  # units already done when the phase started (a resumed job): not part of its rate

    @property
    def eta(self) -> float | None:
        """Seconds left at this phase's own rate so far (None until it has done something, or with no total)."""
        ran = self.done - self.initial
        if self.total is None or ran <= 0 or self.finished:
            return None
        return max(0.0, self.elapsed / ran * (self.total - self.done))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Tick:
        """A tick as the demo build's status file stores it (missing fields: nothing done yet)."""
        return cls(
            desc=str(doc.get("name") or doc.get("desc") or ""),
            done=int(doc.get("done") or 0),
            total=doc.get("total"),
            unit=str(doc.get("unit") or "unit"),
            elapsed=float(doc.get("elapsed") or 0.0),
            initial=int(doc.get("initial") or 0),
        )

    def line(self) -> str:
        """The phase's state as one line (without the prefix)."""
        if self.finished:
            return f"{self.desc}: done, {self.done} {self.unit}s in {duration(self.elapsed)}"
        if self.total:
            pct = 100 * self.done / self.total
            text = f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct:.0f}%), {duration(self.elapsed)} elapsed"
        else:
            text = f"{self.desc}: {self.done} {self.unit}s, {duration(self.elapsed)} elapsed"
        eta = self.eta
        return text if eta is None else f"{text}, ~{duration(eta)} left"


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class Bar:
    """One phase's progress: ``update(n)`` as units finish; a context manager that reports the end.

    ``mode`` is ``"tty"`` (a tqdm bar), ``"lines"`` (log lines) or ``"off"`` (nothing printed;
    ``watch`` still sees every tick). By default a terminal on ``stream`` gets a bar, anything else lines.
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "item",
        *,
        mode: str | None = None,
        stream: IO[str] | None = None,
        interval: float = INTERVAL_S,
        watch: Callable[[Tick], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        eager: bool = True,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.stream = stream if stream is not None else sys.stderr
        if mode is None:
            isatty = getattr(self.stream, "isatty", None)
            mode = "tty" if callable(isatty) and isatty() else "lines"
        self.mode, self.interval, self.watch, self.clock = mode, interval, watch, clock
        self.done = self._initial = 0
        self._start = self._last = clock()
        self._tqdm: Any = None
        self._closed = False
        self.eager = eager  # False: the first line waits for the first unit, so a command that fails at once
        self._announced = False  # prints its one error line alone

    def __enter__(self) -> Bar:
        self._start = self._last = self.clock()
        if self.mode == "tty":
            from tqdm import tqdm

            self._tqdm = tqdm(desc=self.desc, total=self.total, unit=self.unit, file=self.stream)
        elif self.mode == "lines" and self.eager:
            self._announce()
        self._notify(finished=False)
        return self

    def _announce(self) -> None:
        if not self._announced:
            self._announced = True
            size = f" ({self.total} {self.unit}s)" if self.total else ""
            self._print(f"{self.desc}: started{size}")

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(ok=exc_type is None)

    def tick(self) -> Tick:
        """The phase's state now."""
        return Tick(
            desc=self.desc,
            done=self.done,
            total=self.total,
            unit=self.unit,
            elapsed=self.clock() - self._start,
            initial=self._initial,
        )

    def set_total(self, total: int | None) -> None:
        """Set the total once it is known."""
        self.total = total
        if self._tqdm is not None:
            self._tqdm.total = total
            self._tqdm.refresh()

    def resumed(self, n: int) -> None:
        """``n`` units were done before this phase started (a resumed job): counted, but not in its rate."""
        self._initial += n
        self.update(n)

    def update(self, n: int = 1) -> None:
        """``n`` more units are done; off a terminal, a line when ``interval`` seconds have passed since the last."""
        self.done += n
        if self.mode == "lines":
            self._announce()
        if self._tqdm is not None:
            self._tqdm.update(n)
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            if self.mode == "lines":
                self._print(self.tick().line())
        self._notify(finished=False)

    def close(self, ok: bool = True) -> None:
        """End the phase: its last line says it is done, or where it stopped."""
        if self._closed:
            return
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.mode == "lines" and (self._announced or ok):
            self._announce()
            t = self.tick()
            t.finished = ok
            self._print(t.line() if ok else f"{t.line()} (stopped)")
        if ok:
            self._notify(finished=True)

    def _notify(self, finished: bool) -> None:
        if self.watch is not None:
            t = self.tick()
            t.finished = finished
            self.watch(t)

    def _print(self, text: str) -> None:
        try:
            print(f"{PREFIX} {text}", file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed pipe must not stop the work it reports on
            pass


def step(text: str, stream: IO[str] | None = None) -> None:
    """One line that a phase without units starts (``[wif] loading the model``), on a terminal or not."""
    try:
        print(f"{PREFIX} {text}", file=stream if stream is not None else sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
