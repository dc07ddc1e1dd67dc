"""Cached accessors to the explainers: a run's evaluation data, the variants it supports, fitted results.

Every fit is cached twice: on disk beside the store (``ResultCache``, shared with ``wif explain``)
and in ``st.cache_data`` per (store path, run, explainer, settings), so a page's second render
fits nothing. The page state (chosen variants, the ROC chart's layer and site) lives in
``st.query_params`` so a shared link opens the same view.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from wif_ui import data

from wif_core.errors import WifError, one_line
from wif_core.explainers import REGISTRY, TIER_NOTES, TIERS
from wif_core.explainers import evaluate as ev
from wif_core.explainers.data import RunData

ROLES = {"input": "headline", "output": "baseline", "gold": "diagnostic"}
INTERNALS = (
    "probe",
    "probe-paper",
    "probe-all-layers",
    "attention-probe",
    "sae",
    "mlp-probe",
    "mlp-probe-all-layers",
    "gbdt-probe",
    "knn",
)
TEXT_BASELINES = ("surface", "text")
DEFAULT_NAMES = ev.DEFAULT_COMPARISON
ALL = "all"


@dataclass(frozen=True)
class Variant:
    """One (explainer, settings) pair that applies to a run, as the pickers offer it."""

    name: str
    settings_json: str  # sorted JSON of the __init__ kwargs: hashable, and one cache key per variant

    @property
    def settings(self) -> dict[str, Any]:
        return dict(json.loads(self.settings_json))

    @property
    def tier(self) -> str:
        return REGISTRY[self.name].tier

    @property
    def id(self) -> str:
        """How the variant is named in ``?ex=``: ``probe-paper:layer=4,site=last``."""
        s = self.settings
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in sorted(s.items())) if s else "")

    @property
    def label(self) -> str:
        """Named as ``ExplainResult.label`` names its result, with the tier."""
        return f"{ev.label_of(self.name, self.settings)} · {self.tier}"


def tier_heading(tier: str) -> str:
    return f"{tier} tier · {ROLES[tier]}"


@st.cache_resource(show_spinner=False, max_entries=8)
def _run_data(path: str, run_id: str) -> RunData:
    return RunData.load(data.store(path), run_id)


def run_data(run_id: str) -> RunData:
    """A run's evaluation data; for a run that cannot be evaluated, its one-line error, and the page stops."""
    try:
        return _run_data(data.store_path(), run_id)
    except WifError as exc:
        st.error(one_line(exc))
        st.stop()


def variants(run: RunData) -> list[Variant]:
    """Every variant that applies to the run (``evaluate.variants``), input tier first."""
    found = [Variant(n, json.dumps(s, sort_keys=True)) for n, s in ev.variants(run)]
    return sorted(found, key=lambda v: TIERS.index(v.tier))  # stable: keeps the registry's order in a tier


def pick_variants(run_id: str, options: list[Variant]) -> list[Variant]:
    """One multiselect per tier, kept in ``?ex=``; a new run starts from the default selection."""
    by_id = {v.id: v for v in options}
    tiers = [t for t in TIERS if any(v.tier == t for v in options)]
    if not tiers:
        return []
    if st.session_state.get("_compare_run") != run_id or any(f"pick_{t}" not in st.session_state for t in tiers):
        same_run = st.session_state.get("_compare_run") in (None, run_id)
        chosen = [i for i in st.query_params.get_all("ex") if i in by_id] if same_run else []
        chosen = chosen or [v.id for v in options if v.name in DEFAULT_NAMES]
        for t in tiers:
            st.session_state[f"pick_{t}"] = [i for i in chosen if by_id[i].tier == t]
        st.session_state["_compare_run"] = run_id
    picked: list[str] = []
    # the input tier asks the paper's question and has the most variants: a full row of its own
    rows = [tiers[:1], tiers[1:]] if tiers[0] == "input" else [tiers]
    places = [col for row in rows if row for col in st.columns(len(row))]
    for col, t in zip(places, tiers, strict=True):
        ids = [v.id for v in options if v.tier == t]
        picked += col.multiselect(
            tier_heading(t), ids, key=f"pick_{t}", format_func=lambda i: by_id[i].label, help=f"{t}: {TIER_NOTES[t]}"
        )
    st.query_params["ex"] = picked
    return [by_id[i] for i in picked]


def choice(where: Any, label: str, options: list[Any], key: str, **kwargs: Any) -> Any:
    """A selectbox in ``where`` kept in ``?key=`` (as text); an unknown or stale value falls back to the first option."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = data.from_url(key, options, options[0], what=label.split(" (")[0].lower())
    value = where.selectbox(label, options, key=key, **kwargs)
    data.to_url(key, value)
    return value


@st.cache_data(show_spinner=False, max_entries=1024)
def _fit(path: str, run_id: str, name: str, settings_json: str) -> ev.ExplainResult:
    cache = ev.ResultCache.beside(Path(path))
    return ev.evaluate(_run_data(path, run_id), name, cache=cache, **json.loads(settings_json))


def fit_all(run_id: str, chosen: list[Variant]) -> list[ev.ExplainResult]:
    """Fit (or fetch) each chosen variant inside ``st.status``, one progress line per explainer."""
    path, results, failed = data.store_path(), [], 0
    with st.status(f"Fitting {len(chosen)} explainer(s) …", expanded=False) as status:
        for n, v in enumerate(chosen, 1):
            start = time.perf_counter()
            try:
                r = _fit(path, run_id, v.name, v.settings_json)
            except WifError as exc:
                failed += 1
                status.write(f"✗ {n}/{len(chosen)} {v.label}: {one_line(exc)}")
                continue
            results.append(r)
            status.write(f"✓ {n}/{len(chosen)} {v.label}: AUC {r.auc:.3f} ({time.perf_counter() - start:.2f} s)")
        done = f"Fitted {len(results)} of {len(chosen)} explainer(s)" + (f"; {failed} failed" if failed else "")
        status.update(label=done, state="error" if failed else "complete")
    return results


@st.cache_data(show_spinner=False, max_entries=64)
def _reproduce(path: str, run_id: str) -> dict[str, Any]:
    return ev.reproduce(_run_data(path, run_id), cache=ev.ResultCache.beside(Path(path)))


def reproduce(run_id: str, layers: list[int]) -> dict[str, Any]:
    """The paper's protocol on a run, each layer's probe fitted with a progress line first."""
    fit_all(run_id, [Variant("probe-paper", json.dumps({"layer": layer, "site": "last"})) for layer in layers])
    try:
        return _reproduce(data.store_path(), run_id)  # every fit above is now in the result cache
    except WifError as exc:
        st.error(one_line(exc))
        st.stop()


# ---- tables --------------------------------------------------------------------------


def _pairs() -> ev.ResultCache:
    """Where the paired comparisons are kept: beside the store with the results they compare."""
    return ev.ResultCache.beside(Path(data.store_path()))


def results_table(results: list[ev.ExplainResult]) -> pd.DataFrame:
    """All results, input tier first, each paired against the best of the table (AUC(row) − AUC(best), p).

    "Best" is chosen by val AUC (``ev.best_of``); ``selected`` marks the val-selected result of each tier, whose
    test AUC is the one to report. Every other row's test AUC is shown too, not selected. The comparisons are
    kept beside the store (a paired bootstrap over tens of thousands of test items takes seconds), not in
    ``st.cache_data``, whose hash of every result's test scores would cost as much."""
    best, pairs = ev.best_of(results), _pairs()
    chosen = {tier: ev.best_of(results, tier) for tier in TIERS}
    rows = []
    for r in sorted(results, key=lambda r: (TIERS.index(r.tier), -r.auc)):  # type: ignore[arg-type]
        c = ev.compare(r, best, cache=pairs) if best is not None and r is not best else {"diff": 0.0, "p_value": None}
        rows.append(
            {
                "label": r.label,
                "tier": r.tier,
                "role": ROLES[r.tier],
                "selected": r is chosen.get(r.tier),
                "val AUC": r.val_auc,
                "AUC": r.auc,
                "CI low": r.ci_low,
                "CI high": r.ci_high,
                "CI level": r.ci_level,
                "n_test": r.n_test,
                "Δ vs best": c["diff"],
                "p (paired)": c["p_value"],
                "fit s": r.fit_seconds,
            }
        )
    return pd.DataFrame(rows)


def headline(results: list[ev.ExplainResult]) -> dict[str, Any] | None:
    """Best input-tier internals explainer vs best input-tier text baseline (each chosen on val), paired on test;
    None if either is missing."""
    inner = ev.best_of(results, tier="input", names=INTERNALS)
    base = ev.best_of(results, tier="input", names=TEXT_BASELINES)
    if inner is None or base is None:
        return None
    return {"internals": inner, "baseline": base, **ev.compare(inner, base, cache=_pairs())}


def explanation_parts(explanation: dict[str, Any]) -> tuple[list[tuple[str, pd.DataFrame]], str, dict[str, Any]]:
    """An explanation split for display: lists of records as tables (top weights, top words), scalars
    (C chosen, layer, rule) as one markdown line, and the rest (per-C or per-epoch validation AUCs) as JSON."""
    tables = [
        (k, pd.DataFrame(v)) for k, v in explanation.items() if isinstance(v, list) and v and isinstance(v[0], dict)
    ]
    scalars = {k: v for k, v in explanation.items() if isinstance(v, str | int | float)}
    line = " · ".join(
        f"**{k.replace('_', ' ')}**: {f'{v:.4g}' if isinstance(v, float) else v}" for k, v in scalars.items()
    )
    rest = {k: v for k, v in explanation.items() if k not in dict(tables) and k not in scalars}
    return tables, line, rest
