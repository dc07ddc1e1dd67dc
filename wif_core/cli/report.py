"""``wif report``: one run as a self-contained HTML file that opens offline."""

from __future__ import annotations

import argparse
from typing import Any

from wif_core.cli.common import AddCommon, emit, positive_int


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif report``."""
    p = common(
        sub.add_parser(
            "report",
            help="write a run's report: one HTML file (figures included) that opens offline",
            description="Write one self-contained HTML file with the run's summary, leakage, explainer table "
            "with CIs, ROC and AUC-by-layer figures, SAE features, cluster cards and attribution heatmaps of a "
            "few failures. Results cached beside the store are used; the default explainer comparison and "
            "clustering are computed (and cached) where missing.",
        )
    )
    p.add_argument("--run", required=True)
    p.add_argument("--out", default=None, help="the HTML file to write (default report-<run>.html here)")
    p.add_argument("--failures", type=positive_int, default=5, help="attribution heatmaps of this many failures")
    p.add_argument("--method", default=None, help="attribution method of the heatmaps (default attnlrp if stored)")
    p.add_argument("--no-compute", action="store_true", help="use cached results only; compute nothing")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from wif_core.reports import write_report
    from wif_core.store import Store

    def progress(line: str) -> None:
        from wif_core.progress import step

        step(f"report: {line}")

    with Store.open(args.db) as store:
        written = write_report(
            store,
            args.run,
            args.out,
            failures=args.failures,
            method=args.method,
            compute=not args.no_compute,
            progress=progress,
        )
    empty = [k for k, v in written.sections.items() if v == "empty"]
    note = f"; nothing to show for {', '.join(empty)} (the report says why)" if empty else ""
    payload = {"path": written.path, "bytes": written.bytes, "sections": written.sections, "run_id": written.run_id}
    emit(args, payload, f"wrote {written.path} ({written.bytes / 1e6:.1f} MB, {written.n_figures} figures){note}")
    return 0
