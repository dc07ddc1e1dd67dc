"""wif: why it failed — failure analysis for language models on multiple-choice benchmarks.

The public API, for a notebook as for a script; every name is imported on first use, so
``import wif_core`` costs no torch::

    import wif_core as wif

    store = wif.open_store("data/my.duckdb", write=True)      # a DuckDB store (created when writing)
    model = wif.load_model()                                 # the embedded SmolLM2-135M, a directory or a hub id
    run = wif.collect(store, model, "gen-physical", source="generated", limit=120)
    result = wif.evaluate(store, run.run_id, "probe", layer=18)   # AUC, 99.9% CI and n on held-out items

Verbs (``wif_core.api``): ``open_store``, ``load_model``, ``load_items``, ``collect``, ``collect_shard``,
``ingest``, ``export_run``, ``import_outcomes``, ``runs``, ``delete_run``, ``evaluate``, ``evaluate_all``, ``quality``, ``attribute``, ``cluster``,
``compare_runs``, ``report``, ``train_sae``, ``add_sae``, ``zoo_model``, ``zoo_evaluate``. Records:
``TaskItem``, ``RunInfo``, ``CollectResult``, ``Comparison``, ``DeletedRun``, ``ExplainResult``, ``QualityResult``,
``Attribution``, ``ClusterResult``, ``ReportFile``, ``TrainConfig``, ``TrainResult``, ``Accuracy``;
``Store`` and the errors ``WifError``, ``InputError``, ``StoreError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wif_core.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from wif_core.api import (
        DeletedRun,
        add_sae,
        attribute,
        cluster,
        collect,
        collect_shard,
        compare_runs,
        delete_run,
        evaluate,
        evaluate_all,
        export_run,
        import_outcomes,
        ingest,
        load_items,
        load_model,
        open_store,
        quality,
        report,
        runs,
        train_sae,
        zoo_evaluate,
        zoo_model,
    )
    from wif_core.attribution.record import Attribution
    from wif_core.clusters.run import ClusterResult
    from wif_core.compare import Comparison
    from wif_core.errors import InputError, StoreError, WifError
    from wif_core.explainers.evaluate import ExplainResult
    from wif_core.label_quality import QualityResult
    from wif_core.reports import ReportFile
    from wif_core.runner import CollectResult
    from wif_core.sae.train import TrainConfig, TrainResult
    from wif_core.store import RunInfo, Store
    from wif_core.tasks.base import TaskItem
    from wif_core.zoo.evaluate import Accuracy

_VERBS = [
    "add_sae",
    "attribute",
    "cluster",
    "collect",
    "collect_shard",
    "compare_runs",
    "delete_run",
    "evaluate",
    "evaluate_all",
    "export_run",
    "import_outcomes",
    "ingest",
    "load_items",
    "load_model",
    "open_store",
    "quality",
    "report",
    "runs",
    "train_sae",
    "zoo_evaluate",
    "zoo_model",
]
_LAZY = {
    **dict.fromkeys(_VERBS, "api"),
    "Accuracy": "zoo.evaluate",
    "Attribution": "attribution.record",
    "ClusterResult": "clusters.run",
    "CollectResult": "runner",
    "Comparison": "compare",
    "DeletedRun": "api",
    "ExplainResult": "explainers.evaluate",
    "InputError": "errors",
    "QualityResult": "label_quality",
    "ReportFile": "reports",
    "RunInfo": "store",
    "Store": "store",
    "StoreError": "errors",
    "TaskItem": "tasks.base",
    "TrainConfig": "sae.train",
    "TrainResult": "sae.train",
    "WifError": "errors",
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "Accuracy",
    "Attribution",
    "ClusterResult",
    "CollectResult",
    "Comparison",
    "DeletedRun",
    "ExplainResult",
    "InputError",
    "QualityResult",
    "ReportFile",
    "RunInfo",
    "Store",
    "StoreError",
    "TaskItem",
    "TrainConfig",
    "TrainResult",
    "WifError",
    "add_sae",
    "attribute",
    "cluster",
    "collect",
    "collect_shard",
    "compare_runs",
    "delete_run",
    "evaluate",
    "evaluate_all",
    "export_run",
    "import_outcomes",
    "ingest",
    "load_items",
    "load_model",
    "open_store",
    "quality",
    "report",
    "runs",
    "train_sae",
    "zoo_evaluate",
    "zoo_model",
]
