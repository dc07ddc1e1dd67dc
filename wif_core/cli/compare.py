"""``wif compare-runs``: two or more runs of one task side by side on the items they share."""

from __future__ import annotations

import argparse
from typing import Any

from wif_core.cli.common import AddCommon, emit, unit_interval


def _run_list(text: str) -> list[str]:
    """An argparse ``type``: ``A,B[,C]`` as a list of run ids."""
    ids = [p.strip() for p in text.split(",") if p.strip()]
    if len(ids) < 2:
        raise argparse.ArgumentTypeError(f"'{text}' names {len(ids)} run(s); give two or more as A,B (see `wif runs`)")
    return ids


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary(c: Any) -> str:
    """The readable summary of a ``Comparison``."""
    level = f"{c.ci_level:.1%}"
    lines = [f"task {c.task}: {len(c.runs)} runs on the {c.n_shared} items they share (matched by content)"]
    for r in c.runs:
        ck = f"  [checkpoint {r.checkpoint.get('label')}]" if r.checkpoint else ""
        lines.append(
            f"  {r.run_id}: accuracy {r.accuracy:.3f} ({level} Wilson CI [{r.ci_low:.3f}, {r.ci_high:.3f}], "
            f"n={r.n}); margins from {r.margin_source}{ck}"
        )
    for p in c.pairs:
        t = p.table
        lines += [
            f"{p.a} vs {p.b} (n={p.n}):",
            f"  both right {t['both_correct']}, only A right {t['only_a_correct']}, "
            f"only B right {t['only_b_correct']}, both failed {t['both_failed']}",
            f"  accuracy A − B {p.diff:+.3f} ({level} exact CI [{p.diff_ci_low:+.3f}, {p.diff_ci_high:+.3f}]), "
            f"McNemar exact p = {p.mcnemar_p:.3g}",
            f"  κ of errors {_fmt(p.kappa)}; margin correlation Pearson {_fmt(p.margin_pearson)}, "
            f"Spearman {_fmt(p.margin_spearman)} (n={p.n_margins})",
            f"  failed by A only: {len(p.failed_only_a)}; failed by B only: {len(p.failed_only_b)}",
        ]
    if c.segments:
        s = c.segments
        lines.append(f"segment shares of relevance ({s.method}, n={s.n} items attributed in every run, {level} CI):")
        for row in s.table:
            lines.append(
                f"  {row['run_id']} {row['segment']:<10} {row['share']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
            )
    elif c.segments_note:
        lines.append(f"segment shares: {c.segments_note}")
    if c.transfer:
        lines.append("explainer transfer (fitted on the first run, scored on the second's unseen test items):")
        for t in c.transfer:
            if t.auc is None:
                lines.append(f"  {t.source} → {t.target} {t.label}: {t.note}")
                continue
            own = f"; its own {_fmt(t.own_auc)}" if t.own_auc is not None else ""
            lines.append(
                f"  {t.source} → {t.target} {t.label} [{t.tier}]: AUC {t.auc:.3f} "
                f"[{_fmt(t.ci_low)}, {_fmt(t.ci_high)}], n={t.n_test}{own}"
            )
    if c.series:
        lines.append("checkpoints, in training order:")
        for pt in c.series:
            best = pt.best_input
            auc = f"; best input-tier {best['label']} AUC {best['auc']:.3f} (n={best['n_test']})" if best else ""
            lines.append(
                f"  {pt.label}: accuracy {pt.accuracy:.3f} [{pt.ci_low:.3f}, {pt.ci_high:.3f}], mean margin on the "
                f"{pt.n_final_failures} items failed at the end {_fmt(pt.mean_margin_final_failures)}{auc}"
            )
    return "\n".join(lines)


def cmd_compare_runs(args: argparse.Namespace) -> int:
    from wif_core.compare import compare_runs
    from wif_core.store import Store

    with Store.open(args.db) as store:
        result = compare_runs(
            store,
            args.runs,
            method=args.method,
            transfer=args.transfer,
            explainers=args.explainers,
            seed=args.seed,
            level=args.level,
        )
    emit(args, result.to_json(), summary(result))
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif compare-runs``."""
    p = common(
        sub.add_parser(
            "compare-runs",
            help="compare two or more runs of one task on the items they share (accuracy, McNemar, κ, margins)",
        )
    )
    p.add_argument("--runs", required=True, type=_run_list, help="run ids, comma-separated: A,B[,C]")
    p.add_argument("--method", default=None, help="attribution method for segment shares (default: one all runs have)")
    p.add_argument(
        "--transfer", action="store_true", help="also fit each run's input-tier explainers and score the other runs"
    )
    p.add_argument(
        "--explainers",
        action="store_true",
        help="for checkpoint runs, the best input-tier explainer per checkpoint (chosen on val, AUC on test)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the explainer fits")
    p.add_argument("--level", type=unit_interval, default=0.999, help="confidence level of every interval")
    p.set_defaults(func=cmd_compare_runs)
