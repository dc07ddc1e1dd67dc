"""The demo store: the embedded model on each generated task and a zoo run, then its SAEs, the comparison
page's default results and the attributions of every failure. Every phase resumes where it stopped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wif_core.errors import WifError
from wif_core.paths import building

log = logging.getLogger(__name__)

DEMO_TASKS = ("gen-physical", "gen-passage", "gen-coref", "gen-social")
DEMO_LIMIT = 120  # items per generated task
DEMO_ZOO_MODEL, DEMO_ZOO_SAMPLES = "2nd_argmax_d16_n10", 4000
DEMO_ATTRIBUTION_METHODS = ("attnlrp", "grad_x_input")  # the paper's method and the cheapest baseline
DEMO_TOKEN_LAYERS = "18"  # per-token activations of one middle layer, for attention probes and SAEs

# A progress bar per phase: (description, total, unit) -> a context manager whose value has update(n).
Bars = Callable[[str, int | None, str], Any]


@dataclass
class BuiltRun:
    """One run the demo build wrote."""

    run_id: str
    n_items: int


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


def _no_bar(desc: str, total: int | None, unit: str) -> Any:
    return nullcontext(_Silent())


def build_demo(
    db: Path, limit: int = DEMO_LIMIT, cache_dir: Path | None = None, bars: Bars = _no_bar
) -> list[BuiltRun]:
    """Build the demo store at ``db``; it appears under its own name only once its runs are whole."""
    from wif_core.api import collect
    from wif_core.models.loading import EMBEDDED, load_model
    from wif_core.store import Store

    lm = load_model(EMBEDDED, cache_dir)
    tmp = building(db)
    out = []
    with Store.open(tmp, write=True) as store:
        for task in DEMO_TASKS:
            with bars(task, limit, "item") as bar:
                result = collect(
                    store,
                    lm,
                    task,
                    source="generated",
                    limit=limit,
                    token_layers=DEMO_TOKEN_LAYERS,
                    progress=bar.update,
                )
            out.append(BuiltRun(run_id=result.run.run_id, n_items=result.run.n_planned))
        out.append(build_demo_zoo(store))
    tmp.rename(db)
    build_demo_saes(db, bars)
    prefit_demo(db)
    build_demo_attributions(db, lm, bars)
    return out


def build_demo_zoo(store: Any) -> BuiltRun:
    """The demo's zoo run: the shipped M16,10 on fresh inputs, with its known cause in every item's factors."""
    from wif_core.zoo.runs import store_run
    from wif_core.zoo.weights import load

    r = store_run(store, load(DEMO_ZOO_MODEL), DEMO_ZOO_SAMPLES)
    return BuiltRun(run_id=r.run_id, n_items=r.n_items)


def build_demo_attributions(db: Path, lm: Any, bars: Bars = _no_bar) -> int:
    """Attribute every failure of the demo's language-model runs with the demo's methods (resumes)."""
    from wif_core.attribution import attributable_runs, attribute_failures
    from wif_core.store import Store

    with Store.open(db) as store:
        runs = store.runs()
    total = int(attributable_runs(runs, lm.name)["n_incorrect"].sum())
    with bars("attributing failures", total, "item") as bar:
        summaries = attribute_failures(db, lm, DEMO_ATTRIBUTION_METHODS, progress=bar.update)
    return sum(s.n_computed for s in summaries)


def prefit_demo(db: Path) -> int:
    """Fit the comparison page's default explainers on every demo run into the result cache,
    so a workshop audience's first visit is instant. Returns how many results were fitted."""
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import DEFAULT_COMPARISON, ResultCache, evaluate_all
    from wif_core.store import Store

    n = 0
    with Store.open(db) as store:
        for run_id in store.run_ids():
            try:
                data = RunData.load(store, run_id)
            except WifError as exc:  # a run too small to evaluate: the page says why
                log.warning("not pre-fitting %s: %s", run_id, exc)
                continue
            n += len(evaluate_all(data, list(DEFAULT_COMPARISON), cache=ResultCache.beside(db)))
    return n


def build_demo_saes(db: Path, bars: Bars = _no_bar) -> list[dict[str, Any]]:
    """Train the demo's SAEs: one per run at DEMO_TOKEN_LAYERS, where none is saved yet (a small budget)."""
    from wif_core.sae import available
    from wif_core.sae.train import DEMO_SAMPLES, TrainConfig, train_run_sae
    from wif_core.store import Store

    layer, out = int(DEMO_TOKEN_LAYERS), []
    with Store.open(db) as store:
        todo = [r for r in store.run_ids() if layer in store.run(r).token_layers and layer not in available(db, r)]
        for run_id in todo:
            with bars(f"SAE {run_id.split('--')[1]}", DEMO_SAMPLES, "tok") as bar:
                result = train_run_sae(store, run_id, layer, TrainConfig(samples=DEMO_SAMPLES), bar.update)
            out.append({"run_id": run_id, "layer": layer, "explained_variance": result.explained_variance})
    return out


def upgrade_demo(db: Path, cache_dir: Path | None = None, bars: Bars = _no_bar) -> None:
    """Add what a demo store from an older wif lacks: SAEs, the zoo run, attributions."""
    from wif_core.models.loading import EMBEDDED, load_model
    from wif_core.store import Store

    with Store.open(db, write=True) as store:  # upgrades a demo store of an older schema in place
        if not any(store.run(r).kind == "zoo" for r in store.run_ids()):
            build_demo_zoo(store)
        counts = store.attribution_counts()
        lm_runs = {r for r in store.run_ids() if store.run(r).has_lm}
        has_attributions = bool(lm_runs & set(counts["run_id"]))
    build_demo_saes(db, bars)
    if not has_attributions:
        build_demo_attributions(db, load_model(EMBEDDED, cache_dir), bars)
