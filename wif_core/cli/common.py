"""What every command shares: ``--db``/``--json``/``-v``, printing one result, progress bars."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wif_core.paths import DEFAULT_DB

AddCommon = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_common(p: argparse.ArgumentParser, db: Path = DEFAULT_DB) -> argparse.ArgumentParser:
    """The options every command takes: ``--db`` (default ``db``), ``--json`` and ``-v``."""
    p.add_argument("--db", default=str(db), help=f"store path (default {db})")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    return p


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1 (``--limit 0`` and ``--limit -5`` are refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number; give one of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; give a whole number of at least 1")
    return value


def unit_interval(text: str) -> float:
    """An argparse ``type``: a number strictly between 0 and 1 (a confidence level)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number; give one between 0 and 1, like 0.999") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1); give a level between 0 and 1, like 0.999")
    return value


def key_value(text: str) -> tuple[str, str]:
    """An argparse ``type``: ``KEY=VALUE`` as a pair (``--set foo`` without ``=`` is refused)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE; give a setting like k=8")
    return key.strip(), value


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """Print ``payload`` as one JSON document with ``--json``, else ``text``."""
    if args.json:
        from wif_core.jsondir import jsonable

        print(json.dumps(jsonable(payload), indent=None))
    else:
        print(text)


def progress_bar(args: argparse.Namespace, desc: str, total: int | None = None, unit: str = "item") -> Any:
    """Progress on stderr (``wif_core.progress.Bar``): a tqdm bar on a terminal, otherwise a line when the
    phase's first unit is done, one at most every 10 s and one when it ends, so a log or a pipe is never silent
    (``--json`` output goes to stdout and is not mixed with it); a command refused before any work prints its
    one error line alone."""
    from wif_core.progress import Bar

    return Bar(desc, total, unit, stream=sys.stderr, eager=False)


def add_device_options(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``: where the model runs and in what precision (``wif_core.models.devices``)."""
    from wif_core.models.devices import DEVICES, DTYPES

    p.add_argument(
        "--device",
        default="auto",
        help=f"{', '.join(DEVICES)} or cuda:N; auto (the default) is a GPU when torch sees one, else the CPU",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="the model's precision (default float32); log-likelihoods are computed in float32 whatever it is, "
        "and a run in another precision is another run",
    )


def device_and_dtype(args: argparse.Namespace) -> tuple[str, str]:
    """``--device`` resolved (one line if torch does not see it) before anything loads, and ``--dtype``; the
    precision is checked against the device when the model loads (``load_model``), before its weights are read."""
    from wif_core.models.devices import resolve_device

    return str(resolve_device(args.device)), args.dtype


def cache_dir(args: argparse.Namespace) -> Path | None:
    """``--cache-dir`` as a path, when given."""
    return Path(args.cache_dir) if getattr(args, "cache_dir", None) else None


def findings_summary(findings: Any) -> dict[str, int]:
    """Leakage findings counted by kind."""
    out: dict[str, int] = {}
    for f in findings:
        out[f.kind] = out.get(f.kind, 0) + 1
    return out
