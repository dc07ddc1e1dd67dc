"""The ``wif`` parser (one ``add_commands`` per command group) and ``main``: one exit code, one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from wif_core.cli import (
    attribute,
    cluster,
    collect,
    compare,
    demo,
    explain,
    intervene,
    quality,
    report,
    runs,
    sae,
    shards,
    zoo,
)
from wif_core.cli.common import add_common
from wif_core.errors import WifError

# In the order `wif --help` lists them.
GROUPS = (collect, shards, runs, quality, explain, compare, sae, attribute, intervene, cluster, report, zoo, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wif", description="Why It Failed: failure analysis for language models")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub, add_common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        import torch

        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 8)))
        return int(args.func(args))
    except WifError as exc:
        print(f"wif: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("wif: interrupted; finished batches are stored, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
