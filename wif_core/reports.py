"""One run as a self-contained HTML report: summary, leakage, explainers, figures, SAE features, clusters.

The module behind ``wif report`` and ``wif_core.report`` (named ``reports`` so that importing it does not
shadow that verb on the package).

The file needs no server and no network: plotly.js is inlined once in its head and every figure
is embedded as plotly JSON, so it opens from disk in any browser, offline. Every text that comes
from the store (item text, tokens, run ids, task and model names) is HTML-escaped.

What the report shows is what the pages show, drawn by the same builders (``wif_core.figures``),
read from the caches beside the store where the app or the CLI put results already. What is not
cached is computed as the page would (the default explainer comparison, the default clustering),
unless ``compute`` is off; with ``write_cache`` off (the app: it opens the store read-only and
writes nothing beside it) results computed here are kept in memory only. A section the run has
nothing for says so, with the command that would fill it.
"""

from __future__ import annotations

import html
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wif_core.errors import InputError, WifError, one_line
from wif_core.store import RunInfo, Store

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from wif_core.clusters.run import ClusterResult
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import ExplainResult

log = logging.getLogger(__name__)
LEVEL = 0.999  # every interval in the report, as in the paper
N_FAILURES = 5  # attribution heatmaps of this many failures
N_FEATURES = 10  # SAE features listed per layer
SECTIONS = ("summary", "leakage", "explainers", "sae", "clusters", "attribution")
Progress = Callable[[str], None]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #212121; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #e0e0e0; padding-bottom: 0.2rem;
margin-top: 2.2rem; } h3 { font-size: 1.05rem; margin-bottom: 0.3rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #e0e0e0; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.input td { background: rgba(46, 125, 50, 0.08); }
.empty { color: #616161; background: #fafafa; border-left: 3px solid #bdbdbd; padding: 0.4rem 0.8rem; }
.note { color: #616161; font-size: 0.9rem; } code { background: #f5f5f5; padding: 0 0.2rem; border-radius: 3px; }
.card { border: 1px solid #e0e0e0; border-radius: 6px; padding: 0.5rem 1rem; margin: 0.6rem 0; }
footer { margin-top: 3rem; border-top: 1px solid #e0e0e0; padding-top: 0.5rem; color: #616161; font-size: 0.85rem; }
"""


@dataclass(kw_only=True)
class Section:
    """One part of the report: its HTML, and whether the run had anything for it (else it says why not)."""

    key: str
    title: str
    body: str
    filled: bool


@dataclass(kw_only=True)
class Report:
    """A built report: the whole HTML document, its sections' states and how many figures it embeds."""

    run_id: str
    store_path: str
    html: str
    sections: dict[str, str]  # section key → "filled" or "empty"
    n_figures: int


@dataclass(kw_only=True)
class ReportFile:
    """A report written to disk (what ``wif report --json`` prints)."""

    path: str
    bytes: int
    run_id: str
    sections: dict[str, str] = field(default_factory=dict)
    n_figures: int = 0


class _Figures:
    """The report's figures, each a div with its plotly JSON; plotly.js itself goes once into the head."""

    def __init__(self) -> None:
        self.count = 0

    def div(self, fig: go.Figure) -> str:
        self.count += 1
        return str(
            fig.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"wif-fig-{self.count}",
                config={"displaylogo": False, "responsive": True},
            )
        )


def esc(value: object) -> str:
    """Any value as escaped HTML text."""
    return html.escape(str(value))


def _empty(text: str) -> str:
    return f'<p class="empty">{text}</p>'


def _num(value: Any, fmt: str = ".3f") -> str:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if f != f else format(f, fmt)  # NaN


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = (), classes=None) -> str:
    """An HTML table; cells are escaped, columns in ``numeric`` right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{esc(classes[n])}"' if classes else ""
        cells = "".join(
            f'<td class="num">{esc(c)}</td>' if j in numeric else f"<td>{esc(c)}</td>" for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ---- sections ---------------------------------------------------------------------------


def _summary(store: Store, run: RunInfo) -> Section:
    from wif_core.clusters.cards import wilson

    counts = store.split_counts(run.run_id)
    n = int(counts["n"].sum()) if len(counts) else 0
    n_correct = int(counts.loc[counts["correct"].astype(bool), "n"].sum()) if n else 0
    rate = wilson(n_correct, n, LEVEL)
    accuracy = (
        f"{rate.rate:.3f} ({n_correct} of {n}; {LEVEL:.1%} Wilson interval [{rate.ci_low:.3f}, {rate.ci_high:.3f}])"
        if n
        else "n/a (no scored items)"
    )
    acts = (
        f"layers {', '.join(map(str, run.layers))} at sites {', '.join(run.sites)}"
        if run.layers
        else "none (outcomes only)"
    )
    facts = [
        ("run", run.run_id),
        ("model", run.model),
        ("task", f"{run.task} ({run.family}, {run.n_choices} choices)"),
        ("source", run.source),
        ("kind", run.kind),
        ("status", run.status),
        ("items", f"{n} scored of {run.n_planned} planned"),
        ("accuracy", accuracy),
        ("activations", acts),
        ("per-token activations", ", ".join(map(str, run.token_layers)) or "none"),
        ("scoring", run.scoring or "—"),
        ("seed", run.seed),
    ]
    if run.has_lm and (truncated := store.n_truncated(run.run_id)):
        facts.append(("truncated items", f"{truncated} (context cut from the left to fit the model)"))
    rows = []
    for split in ("train", "val", "test", None):
        part = counts[counts["split"].isna()] if split is None else counts[counts["split"] == split]
        if split is None and part.empty:
            continue
        kept = part[~part["excluded"].astype(bool)]
        ok = int(kept.loc[kept["correct"].astype(bool), "n"].sum())
        bad = int(kept.loc[~kept["correct"].astype(bool), "n"].sum())
        excluded = int(part.loc[part["excluded"].astype(bool), "n"].sum())
        rows.append((split or "none", ok, bad, excluded, ok + bad))
    body = _table(["", ""], facts).replace("<thead><tr><th></th><th></th></tr></thead>", "")
    body += "<h3>Splits and their balance</h3>"
    body += (
        '<p class="note">Explainers are fitted on train, tuned on val and scored on test; each split should hold '
        "as many correct as incorrect items. Items excluded for leakage are counted apart.</p>"
    )
    body += _table(["split", "correct", "incorrect", "excluded", "in the split"], rows, numeric=(1, 2, 3, 4))
    return Section(key="summary", title="Run summary", body=body, filled=True)


def _leakage(store: Store, run: RunInfo) -> Section:
    from wif_core.splits import FINDING_KINDS, findings_table

    found = findings_table(store.findings(run.run_id))
    if found.empty:
        text = (
            "No leakage found: no question appears twice with different answer keys, outcomes or splits "
            "(items are compared by normalised content: whitespace, case and answer order ignored)."
        )
        return Section(key="leakage", title="Leakage", body=_empty(text), filled=False)
    rows = [(r.kind, r.groups, r.items, r.examples, r.detail) for r in found.itertuples()]
    body = _table(["kind", "groups", "items", "examples", "detail"], rows, numeric=(1, 2))
    body += "<ul>" + "".join(
        f"<li><b>{esc(k)}</b>: {esc(FINDING_KINDS.get(k, 'see wif_core.splits.'))}</li>"
        for k in sorted(set(found["kind"]))
    )
    body += "</ul>"
    return Section(key="leakage", title="Leakage", body=body, filled=True)


def _val_auc(explanation: dict[str, Any]) -> float | None:
    """The validation AUC of the setting the explainer chose: the best of its ``val_auc_by_*`` curve."""
    for key, value in explanation.items():
        if key.startswith("val_auc") and isinstance(value, dict) and value:
            numbers = [v for v in value.values() if isinstance(v, int | float) and v == v]
            return max(numbers) if numbers else None
    return None


def _chosen(r: ExplainResult) -> str:
    """The settings a result was fitted with and what it chose on val (C, k, epoch), as one line."""
    parts = [f"{k}={v}" for k, v in sorted(r.settings.items()) if v is not None and k not in ("layer", "site")]
    parts += [
        f"{k}={_num(v, '.4g') if isinstance(v, float) else v}"
        for k, v in r.explanation.items()
        if isinstance(v, str | int | float) and not isinstance(v, bool) and k != "layer"
    ]
    return ", ".join(parts) or "—"


def explainer_results(
    data: RunData, cache: Any, compute: bool, progress: Progress | None
) -> tuple[list[ExplainResult], list[str]]:
    """Every result of this run in the cache, with the default comparison computed where it is missing.

    Returns the results and one line per default variant that failed or was left uncomputed.
    """
    from wif_core.explainers import evaluate as ev

    results, notes, seen = [], [], set()
    defaults = ev.variants(data, list(ev.DEFAULT_COMPARISON))
    for name, s in ev.variants(data):
        try:
            hit = ev.cached(data, name, cache, **s)
        except WifError:
            continue
        if hit is not None:
            results.append(hit)
            seen.add((name, repr(sorted(s.items()))))
    missing = [(n, s) for n, s in defaults if (n, repr(sorted(s.items()))) not in seen]
    for k, (name, s) in enumerate(missing, 1):
        label = ev.label_of(name, s)
        if not compute:
            notes.append(f"{label}: not cached")
            continue
        if progress:
            progress(f"fitting {label} ({k}/{len(missing)})")
        try:
            results.append(ev.evaluate(data, name, cache=cache, **s))
        except WifError as exc:
            notes.append(f"{label}: {one_line(exc)}")
    return results, notes


def _explainers(store: Store, run: RunInfo, figures: _Figures, opts: _Options) -> Section:
    from wif_core import figures as figs
    from wif_core.explainers import TIERS
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import ResultCache

    title = "Explainers: can failure be read before the model answers?"
    try:
        data = RunData.load(store, run.run_id)
    except WifError as exc:
        return Section(
            key="explainers", title=title, body=_empty(f"No explainer applies: {esc(one_line(exc))}"), filled=False
        )
    cache = ResultCache.beside(store.path, writable=opts.write_cache)
    results, notes = explainer_results(data, cache, opts.compute, opts.progress)
    if not results:
        why = "; ".join(notes) or "no explainer applies to this run"
        hint = f"fit them with <code>wif explain --db {esc(store.path)} --run {esc(run.run_id)} --all</code>"
        return Section(
            key="explainers", title=title, body=_empty(f"No explainer results ({esc(why)}); {hint}."), filled=False
        )
    from wif_core.explainers.evaluate import best_of

    ordered = sorted(results, key=lambda r: (TIERS.index(r.tier), -r.auc))  # type: ignore[arg-type]
    chosen: dict[str, ExplainResult | None] = {tier: best_of(results, tier) for tier in TIERS}
    rows = [
        (
            r.label + (" ✓" if r is chosen[r.tier] else ""),
            r.tier,
            _num(r.auc),
            f"[{_num(r.ci_low)}, {_num(r.ci_high)}]",
            f"{r.n_test} ({r.n_test_failed} failed)",
            _num(r.val_auc if r.val_auc is not None else _val_auc(r.explanation)),
            _chosen(r),
        )
        for r in ordered
    ]
    level = ordered[0].ci_level
    body = (
        '<p class="note">Each explainer is fitted on train, tuned on val and scored on the held-out test items: '
        f"AUC of P(failure) with a {level:.1%} bootstrap interval and n. Only <b>input</b>-tier rows (shaded) "
        "answer whether failure can be read from the item and the model's internals before it answers; "
        "output and gold tiers are baselines and diagnostics. ✓ marks the best of each tier, <b>chosen by its val "
        "AUC</b>: report its test AUC (the others' test AUCs are shown, not chosen).</p>"
    )
    body += _table(
        ["explainer", "tier", "test AUC", f"{level:.1%} CI", "n test", "val AUC", "settings (chosen on val)"],
        rows,
        numeric=(2, 3, 4, 5),
        classes=[r.tier for r in ordered],
    )
    if notes:
        body += '<p class="note">Not shown: ' + esc("; ".join(notes)) + "</p>"
    body += "<h3>ROC curves</h3>" + figures.div(figs.roc_figure(ordered)[0])
    by_layer = figs.layer_frame(ordered)
    body += "<h3>AUC by layer</h3>"
    if by_layer.empty:
        body += _empty("No result reads one layer (this run has no activations, or no probe was fitted).")
    else:
        body += figures.div(figs.layer_figure(by_layer))
    return Section(key="explainers", title=title, body=body, filled=True)


def _codes_cached(store: Store, run_id: str, layer: int) -> bool:
    """Whether the codes of the run's SAE at ``layer`` are cached and current (reading them encodes nothing)."""
    from wif_core.sae.codes import FeatureCodes
    from wif_core.sae.paths import CODES_FILE, sae_dir, sae_info

    path = sae_dir(store.path, run_id, layer)
    try:
        codes = FeatureCodes.load(path / CODES_FILE)
        return codes.fingerprint == sae_info(path).fingerprint and codes.item_ids == store.token_item_ids(run_id, layer)
    except (OSError, KeyError, ValueError, WifError):
        return False


def _sae(store: Store, run: RunInfo, opts: _Options) -> Section:
    from wif_core.sae import available, sae_info
    from wif_core.sae.codes import run_codes
    from wif_core.sae.diff import run_diff, visible

    title = "SAE features that separate failures from successes"
    saes = available(store.path, run.run_id)
    if not saes:
        if run.token_layers:
            hint = (
                f"no SAE trained for this run: <code>wif sae train --db {esc(store.path)} --run {esc(run.run_id)} "
                f"--layer {run.token_layers[0]}</code>"
            )
        else:
            hint = (
                "no SAE for this run: it kept no per-token activations (collect it with <code>--token-layers L</code>)"
            )
        return Section(key="sae", title=title, body=_empty(hint[0].upper() + hint[1:] + "."), filled=False)
    body, filled = "", False
    for layer, path in saes.items():
        body += f"<h3>Layer {layer}</h3>"
        if not opts.compute and not _codes_cached(store, run.run_id, layer):
            body += _empty(
                f"The SAE's codes are not cached: <code>wif sae diff --run {esc(run.run_id)} --layer {layer}</code>."
            )
            continue
        try:
            if opts.progress:
                opts.progress(f"SAE feature diff at layer {layer}")
            codes = run_codes(store, run.run_id, layer, save=opts.write_cache)
            d = run_diff(store, run.run_id, layer, top=N_FEATURES, codes=codes)
            info = sae_info(path)
        except WifError as exc:
            body += _empty(esc(one_line(exc)))
            continue
        if not d.features:
            body += _empty("No feature of this SAE fires on the run's items.")
            continue
        filled = True
        body += (
            f'<p class="note">{esc(info.architecture)} SAE, {info.d_sae} features on width {info.d_in}; '
            f"{d.n_live} fire on some item. Statistics on the train split ({d.n_train_failed} failed, "
            f"{d.n_train_success} successful items); <b>test AUC</b> (the {d.n_test} test items, which chose "
            "nothing) is the honest check on a feature picked among thousands.</p>"
        )
        rows = [
            (
                f.rank,
                f.feature,
                f"{f.freq_fail:.0%}",
                f"{f.freq_success:.0%}",
                f"{f.effect:+.2f}",
                _num(f.auc),
                f"[{_num(f.ci_low)}, {_num(f.ci_high)}]",
                _num(f.auc_test),
                visible(f.contexts[0].token) if f.contexts else "",
            )
            for f in d.features
        ]
        ci = f"{d.features[0].ci_level:.1%} CI"
        header = ["rank", "feature", "fires on failures", "on successes", "effect d", "AUC (train)", ci, "AUC (test)"]
        body += _table([*header, "top token"], rows, numeric=(0, 1, 2, 3, 4, 5, 7))
    return Section(key="sae", title=title, body=body, filled=filled)


def _cluster_result(store: Store, run: RunInfo, opts: _Options) -> ClusterResult | str:
    """The page's default clustering (activations, failures, k-means, k by silhouette), cached or computed
    where the run has activations; else the run's most recent cached clustering; else why there is none."""
    from wif_core.clusters.run import ClusterCache, ClusterResult, cluster_run
    from wif_core.clusters.spaces import why_not
    from wif_core.sae import available

    cache = ClusterCache.beside(store.path, writable=opts.write_cache)
    reason = why_not(store, run.run_id, "activations")
    if reason is None and opts.compute:
        first = next(iter(available(store.path, run.run_id)), None)
        # reading the SAE's codes for the cards must not encode (and write) them when nothing may be written
        sae_ok = first is None or opts.write_cache or _codes_cached(store, run.run_id, first)
        if opts.progress:
            opts.progress("clustering the failures")
        try:
            return cluster_run(store, run.run_id, sae_features=sae_ok, cache=cache)
        except WifError as exc:
            reason = one_line(exc)
    folder = cache.directory
    docs = list(folder.glob("*.json")) if folder is not None and folder.is_dir() else []
    for doc in sorted(docs, key=lambda p: p.stat().st_mtime, reverse=True):
        got = cache.read(doc.stem)
        if isinstance(got, dict) and got.get("run_id") == run.run_id:
            try:
                return ClusterResult.from_json(got)
            except (ValueError, TypeError, KeyError):
                continue
    return reason or "none is cached"


def _clusters(store: Store, run: RunInfo, opts: _Options) -> Section:
    title = "Clusters of failures"
    r = _cluster_result(store, run, opts)
    if isinstance(r, str):
        space = "" if run.layers else " --space text"  # without activations, the items' text is the space left
        hint = f"<code>wif cluster --db {esc(store.path)} --run {esc(run.run_id)}{space}</code>"
        return Section(
            key="clusters", title=title, body=_empty(f"No clusters for this run: {esc(r)}; try {hint}."), filled=False
        )
    what = "failed items" if r.mode == "failures" else "items"
    how = f"k = {r.k}, chosen by {r.k_chosen_by}" if r.algorithm == "kmeans" else f"HDBSCAN found {r.k} clusters"
    body = (
        f'<p class="note">{r.n_clustered} {esc(what)} clustered in {esc(r.description)} ({esc(r.tier)} tier); '
        f"{esc(r.algorithm)}, {esc(how)}, silhouette {_num(r.silhouette)}. Base failure rate {r.base_rate:.1%} "
        f"over {r.n_items} items. A card's failure rate counts its failures and the successes nearest to it.</p>"
    )
    for c in r.clusters:
        name = "Noise (no dense region)" if c.is_noise else f"Cluster {c.id}"
        body += f'<div class="card"><h3>{name} · {c.size} {esc(what)}</h3>'
        body += (
            f"<p>Failure rate <b>{c.failure_rate:.0%}</b> ({c.n_failed} of {c.n_region}; {c.ci_level:.1%} Wilson "
            f"interval [{c.ci_low:.0%}, {c.ci_high:.0%}]), {c.failure_rate - r.base_rate:+.0%} vs the run. Splits: "
            + esc(" / ".join(f"{k} {v}" for k, v in sorted(c.splits.items())) or "—")
            + "</p>"
        )
        if c.top_words:
            body += f"<p><b>Distinguishing words</b>: {esc(', '.join(c.top_words))}</p>"
        if c.factors:
            shares = "; ".join(f"{f.factor} = {f.value} {f.share_in:.0%} here vs {f.share_all:.0%}" for f in c.factors)
            body += f"<p><b>Over-represented generator factors</b>: {esc(shares)}</p>"
        if c.top_features:
            feats = ", ".join(f"{f.feature} ({f.freq_in:.0%} vs {f.freq_out:.0%})" for f in c.top_features)
            body += f"<p><b>SAE features</b> (fires here vs elsewhere): {esc(feats)}</p>"
        reps = "".join(
            f"<li><code>{esc(i)}</code> {esc(t)}</li>" for i, t in zip(c.representatives, c.examples, strict=False)
        )
        body += f"<p><b>Representative items</b> (nearest the centroid)</p><ul>{reps}</ul></div>"
    return Section(key="clusters", title=title, body=body, filled=bool(r.clusters))


def _attribution(store: Store, run: RunInfo, figures: _Figures, opts: _Options) -> Section:
    from wif_core import figures as figs
    from wif_core.attribution import DEFAULT_METHOD
    from wif_core.attribution.record import Attribution

    title = "Attribution heatmaps of failures"
    counts = store.attribution_counts(run.run_id)
    failed_counts = counts[~counts["correct"].astype(bool)] if len(counts) else counts
    methods = list(failed_counts.sort_values("n", ascending=False)["method"]) if len(failed_counts) else []
    if not methods:
        hint = (
            f"store some with <code>wif attribute --db {esc(store.path)} --run {esc(run.run_id)} --failures-only</code>"
            if run.has_lm
            else f"this {esc(run.kind)} run has no language model wif can run, so there is nothing to attribute"
        )
        return Section(
            key="attribution", title=title, body=_empty(f"No stored attributions of failures: {hint}."), filled=False
        )
    method = opts.method if opts.method in methods else DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0]
    failed = set(store.items(run.run_id, outcome="incorrect")["item_id"])
    rows = [Attribution.from_row(a) for a in store.attributions(run.run_id, method) if a.item_id in failed]
    rows = rows[: opts.failures]
    body = (
        f'<p class="note">{len(rows)} failure(s) attributed by <b>{esc(method)}</b>: Δ = log p(wrong) − log p(right), '
        "attributed to the input tokens. <b>Red</b> pushes toward the wrong answer (the one the model chose), "
        "<b>blue</b> toward the right one; colours are scaled by the largest |relevance| outside special tokens.</p>"
    )
    for a in rows:
        body += f"<h3><code>{esc(a.item_id)}</code> · Δ = {_num(a.delta, '+.3f')}, Σ scores = {_num(a.sum_scores, '+.3f')}</h3>"
        body += figures.div(figs.heatmap_figure(a, f"{a.method} · {a.item_id}")[0])
    return Section(key="attribution", title=title, body=body, filled=bool(rows))


# ---- the document -----------------------------------------------------------------------


@dataclass(kw_only=True)
class _Options:
    failures: int = N_FAILURES
    method: str | None = None
    compute: bool = True
    write_cache: bool = True
    progress: Progress | None = None


def build(
    store: Store | str | Path,
    run_id: str,
    *,
    failures: int = N_FAILURES,
    method: str | None = None,
    compute: bool = True,
    write_cache: bool = True,
    progress: Progress | None = None,
) -> Report:
    """The report of ``run_id`` as a ``Report`` (the HTML and which sections had something to show).

    ``store`` is an open store or a path (then opened read-only here and closed). An unknown run is
    one line listing the store's runs. ``failures`` caps the attribution heatmaps; ``method`` picks
    their attribution method (default: AttnLRP where stored, else the method with most failures).
    """
    if isinstance(store, Store):
        return _build(
            store,
            run_id,
            _Options(failures=failures, method=method, compute=compute, write_cache=write_cache, progress=progress),
        )
    with Store.open(store) as opened:
        return _build(
            opened,
            run_id,
            _Options(failures=failures, method=method, compute=compute, write_cache=write_cache, progress=progress),
        )


def build_report(store: Store | str | Path, run_id: str, **options: Any) -> str:
    """The report of ``run_id`` as one self-contained HTML document (``build``'s options)."""
    return build(store, run_id, **options).html


def _build(store: Store, run_id: str, opts: _Options) -> Report:
    import plotly.offline

    import wif_core

    run = store.run(run_id)  # an unknown run: one line listing the runs there
    figures = _Figures()
    sections = [
        _summary(store, run),
        _leakage(store, run),
        _explainers(store, run, figures, opts),
        _sae(store, run, opts),
        _clusters(store, run, opts),
        _attribution(store, run, figures, opts),
    ]
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    split_seed = run.split_config.get("seed", run.seed)
    nav = " · ".join(f'<a href="#{s.key}">{esc(s.title.split(":")[0])}</a>' for s in sections)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>wif report · {esc(run.run_id)}</title>",
        f"<style>{STYLE}</style>",
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>Why it failed: {esc(run.model)} on {esc(run.task)}</h1>",
        f'<p class="note">Run <code>{esc(run.run_id)}</code> · {nav}</p>',
    ]
    for s in sections:
        parts.append(
            f'<section id="{s.key}" data-filled="{str(s.filled).lower()}"><h2>{esc(s.title)}</h2>{s.body}</section>'
        )
    parts.append(
        f"<footer>wif {esc(wif_core.__version__)} · store <code>{esc(store.path)}</code> · run "
        f"<code>{esc(run.run_id)}</code> · created {created} · seeds: run {run.seed}, splits {esc(split_seed)}, "
        "explainers 0, bootstrap 0, clusters 0 · intervals at "
        f"{LEVEL:.1%} · written by <code>wif report</code>; opens offline (plotly.js inlined)</footer>"
    )
    parts.append("</body></html>")
    return Report(
        run_id=run.run_id,
        store_path=str(store.path),
        html="\n".join(parts),
        sections={s.key: "filled" if s.filled else "empty" for s in sections},
        n_figures=figures.count,
    )


def default_name(run_id: str) -> str:
    """``report-<run>.html`` with every character outside letters, digits, ``.``, ``_`` and ``-`` made ``_``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip(".") or "run"
    return f"report-{safe[:150]}.html"


def write_report(store: Store | str | Path, run_id: str, out: str | Path | None = None, **options: Any) -> ReportFile:
    """Build the report and write it to ``out`` (default ``report-<run>.html`` in the working directory).

    The file appears whole or not at all: it is written to a temporary file beside ``out`` and renamed.
    A directory that is missing or not writable is one ``InputError`` line, before anything is built.
    """
    path = Path(out) if out is not None else Path(default_name(run_id))
    if path.is_dir():
        path = path / default_name(run_id)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write the report to {path}: no directory {folder}; create it or pick another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the report to {path}: {folder} is not writable; pick another --out")
    report = build(store, run_id, **options)
    data = report.html.encode("utf-8")
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wif-report-", suffix=".tmp", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
        raise InputError(f"cannot write the report to {path}: {one_line(exc)}; pick another --out") from None
    return ReportFile(
        path=str(path), bytes=len(data), run_id=report.run_id, sections=report.sections, n_figures=report.n_figures
    )
