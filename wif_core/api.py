"""The verbs a notebook user needs, each a thin, typed call into the library.

Every verb returns the same dataclasses the ``wif`` command prints, and imports the heavy
parts (torch, scikit-learn, sae-lens) only when called. ``wif_core`` re-exports them::

    import wif_core as wif

    store = wif.open_store("data/my.duckdb", write=True)
    run = wif.collect(store, wif.load_model(), "gen-physical", source="generated", limit=120)
    result = wif.evaluate(store, run.run_id, "probe", layer=18)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wif_core.paths import DEFAULT_DB

if TYPE_CHECKING:
    from wif_core.attribution.record import Attribution
    from wif_core.clusters.run import ClusterResult
    from wif_core.compare import Comparison
    from wif_core.engines.shards import IngestResult, ShardResult
    from wif_core.explainers.evaluate import ExplainResult
    from wif_core.label_quality import QualityResult
    from wif_core.models.loading import LoadedModel
    from wif_core.reports import ReportFile
    from wif_core.runner import CollectResult
    from wif_core.sae.train import TrainConfig, TrainResult
    from wif_core.store import RunInfo, Store
    from wif_core.tasks.base import TaskItem
    from wif_core.zoo.evaluate import Accuracy
    from wif_core.zoo.models import ZooModel

Progress = Callable[[int], None]


def open_store(path: str | Path = DEFAULT_DB, *, write: bool = False) -> Store:
    """A store (created when opened for writing and absent); use it as a context manager or call ``close()``."""
    from wif_core.store import Store

    return Store.open(path, write=write)


def load_model(
    spec: str | None = None, *, cache_dir: str | Path | None = None, device: str = "cpu", dtype: str = "float32"
) -> LoadedModel:
    """A causal LM: the embedded SmolLM2-135M (default) or ``"gemma3-270m"``, a local directory, or a Hugging Face id.

    ``device`` is ``"cpu"``, ``"auto"`` (a GPU when torch sees one), ``"cuda"``, ``"cuda:N"`` or ``"mps"``;
    ``dtype`` is ``"float32"``, ``"bfloat16"`` or ``"float16"`` (a run in another precision than float32 is
    another run). Log-likelihoods are computed in float32 whatever the model's precision.
    """
    from wif_core.models.loading import EMBEDDED
    from wif_core.models.loading import load_model as _load

    return _load(spec or EMBEDDED, Path(cache_dir) if cache_dir else None, device=device, dtype=dtype)


def load_items(
    task: str, source: str = "hf", *, limit: int | None = None, seed: int = 0, sample: int | None = None
) -> list[TaskItem]:
    """Items of ``task`` from ``source``: 'hf', 'hf:ORG/NAME[:CONFIG]', 'generated', or a file or directory."""
    from wif_core.tasks.sources import load_items as _load

    return _load(task, source, limit, seed, sample)


def _items_source(items: Sequence[TaskItem]) -> str:
    """A source name for items given in Python: a digest of their content, so other items make another run."""
    doc = [[it.item_id, it.context, list(it.choices), it.gold] for it in items]
    return "items:" + hashlib.sha1(json.dumps(doc).encode()).hexdigest()[:12]


def collect(
    store: Store,
    model: LoadedModel,
    task: str,
    items: Sequence[TaskItem] | None = None,
    *,
    source: str | None = None,
    limit: int | None = None,
    sample: int | None = None,
    layers: Sequence[int] | str | None = None,
    token_layers: Sequence[int] | str | None = None,
    scoring: str = "sum",
    k: int | None = None,
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25),
    seed: int = 0,
    max_tokens: int | None = None,
    progress: Progress | None = None,
    max_length: int | None = None,
    checkpoint: dict[str, Any] | None = None,
    resumed: Progress | None = None,
) -> CollectResult:
    """Score ``task`` with ``model``, capturing activations, into ``store`` (opened for writing); resumable.

    Items come from ``items`` or are loaded from ``source`` (default 'hf'). ``layers`` are 1-based
    blocks (default: five spread over depth); ``"5,10"`` strings are accepted as on the command line.
    Asking for the same collection of the same items again resumes it and returns the same run; items that
    differ (an edited source) make a new run beside the old one (``CollectResult.older_runs``). An item longer
    than ``max_length`` tokens (default: the model's ``max_position_embeddings``) is cut from the left of its
    context, never inside an answer; ``CollectResult.n_truncated`` counts them. ``checkpoint`` marks the run as
    one of a model's checkpoints (``wif_core.runner.checkpoint_entry``), in its config. ``progress`` gets the
    number of items of each scored batch; ``resumed``, once, the number already scored by an interrupted call.
    ``max_tokens`` (padded tokens per forward batch) defaults to what fits the device's free memory; on the CPU,
    ``DEFAULT_MAX_TOKENS``.
    """
    from wif_core.models.loading import layer_lists
    from wif_core.runner import SplitOptions
    from wif_core.runner import collect as _collect

    items, source = _items_and_source(task, items, source, limit=limit, seed=seed, sample=sample)
    layer_list, token_list = layer_lists(model, layers, token_layers)
    return _collect(
        store,
        model,
        task,
        items,
        source=source,
        layers=list(layer_list),
        scoring=scoring,  # type: ignore[arg-type]
        limit=limit,
        seed=seed,
        split_options=SplitOptions(k=k, fractions=fractions, seed=seed),
        max_tokens=max_tokens,
        progress=progress,
        token_layers=list(token_list),
        sample=sample,
        max_length=max_length,
        checkpoint=checkpoint,
        resumed=resumed,
    )


def _items_and_source(
    task: str, items: Sequence[TaskItem] | None, source: str | None, *, limit: int | None, seed: int, sample: int | None
) -> tuple[Sequence[TaskItem], str]:
    if items is None:
        source = source or "hf"
        return load_items(task, source, limit=limit, seed=seed, sample=sample), source
    return items, source or _items_source(items)


def collect_shard(
    model: LoadedModel,
    task: str,
    items: Sequence[TaskItem] | None = None,
    *,
    shard: tuple[int, int] | str,
    out: str | Path,
    source: str | None = None,
    limit: int | None = None,
    sample: int | None = None,
    layers: Sequence[int] | str | None = None,
    token_layers: Sequence[int] | str | None = None,
    scoring: str = "sum",
    k: int | None = None,
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25),
    seed: int = 0,
    max_tokens: int | None = None,
    max_length: int | None = None,
    progress: Progress | None = None,
) -> ShardResult:
    """Score shard ``i`` of ``N`` (``shard``: ``(i, N)`` or ``"i/N"``) of the run ``collect`` would make with the
    same arguments, into the shard directory ``out`` as Parquet, without a store (a cluster job's part; merge
    the directory with ``ingest``). The run id is ``collect``'s; a shard finished before is reused."""
    from wif_core.engines.shards import collect_shard as _shard
    from wif_core.engines.shards import parse_shard
    from wif_core.models.loading import layer_lists
    from wif_core.runner import SplitOptions

    items, source = _items_and_source(task, items, source, limit=limit, seed=seed, sample=sample)
    layer_list, token_list = layer_lists(model, layers, token_layers)
    return _shard(
        model,
        task,
        items,
        shard=parse_shard(shard) if isinstance(shard, str) else shard,
        out=Path(out),
        source=source,
        layers=layer_list,
        scoring=scoring,
        limit=limit,
        seed=seed,
        split_options=SplitOptions(k=k, fractions=fractions, seed=seed),
        max_tokens=max_tokens,
        token_layers=token_list,
        sample=sample,
        max_length=max_length,
        progress=progress,
    )


def ingest(store: Store, directory: str | Path, *, progress: Progress | None = None) -> IngestResult:
    """Merge a shard directory's finished shards (``collect_shard``, the Ray engine, ``export_run``, or a job of
    your own writing the same layout) into ``store``, each exactly once; the run completes when all are in."""
    from wif_core.engines.shards import ingest as _ingest

    return _ingest(store, Path(directory), progress=progress)


def export_run(store: Store, run_id: str, out: str | Path) -> dict[str, Any]:
    """Write a complete run as a shard directory of Parquet files (items, outcomes, activations by layer and
    site, tokens, splits); ``ingest`` merges it into another store."""
    from wif_core.engines.shards import export_run as _export

    return _export(store, run_id, Path(out))


def import_outcomes(store: Store, path: str | Path, task: str, model_name: str, *, seed: int = 0) -> CollectResult:
    """Another tool's outcomes (the paper's balanced files, lm-eval ``--log_samples`` JSONL) as a run, no activations."""
    from wif_core.runner import SplitOptions
    from wif_core.runner import import_outcomes as _import

    return _import(store, Path(path), task, model_name, SplitOptions(seed=seed))


def runs(store: Store) -> list[RunInfo]:
    """Every run in the store, as run records."""
    return [store.run(run_id) for run_id in store.run_ids()]


@dataclass
class DeletedRun:
    """What ``delete_run`` removed: the run's rows per table, and its files beside the store."""

    run_id: str
    rows: dict[str, int]
    files: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # files it could not remove (stale, and harmless: keyed by run)


def delete_run(store: Store, run_id: str) -> DeletedRun:
    """Remove a run from ``store`` (opened for writing): its rows in every table, in one transaction, so the
    run goes whole or not at all; then its files beside the store (SAEs, text embeddings, the cached explainer
    and cluster results that name it)."""
    import shutil

    from wif_core.paths import run_files

    store.run(run_id)  # an unknown run is one line listing the store's runs
    files = run_files(store.path, run_id)
    rows = store.delete_run(run_id)
    removed, kept = [], []
    for path in files:
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(str(path))
        except OSError:
            kept.append(str(path))
    return DeletedRun(run_id=run_id, rows=rows, files=removed, kept=kept)


def _result_cache(store: Store, cache: bool) -> Any:
    from wif_core.explainers.evaluate import ResultCache

    return ResultCache.beside(store.path) if cache else ResultCache(None)


def evaluate(
    store: Store,
    run_id: str,
    explainer: str,
    *,
    layer: int | None = None,
    site: str | None = None,
    seed: int = 0,
    level: float = 0.999,
    n_resamples: int = 2000,
    cache: bool = True,
    exclude: str | None = None,
    **settings: Any,
) -> ExplainResult:
    """Fit ``explainer`` on the run's train split (tuned on val) and score its test split: AUC with its CI and n.

    ``exclude="suspect"`` leaves out of every split the items the run's stored item-quality pass flags
    (``quality``)."""
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import evaluate as _evaluate

    data = RunData.load(store, run_id, exclude=exclude)
    return _evaluate(
        data,
        explainer,
        layer,
        site,
        seed=seed,
        level=level,
        n_resamples=n_resamples,
        cache=_result_cache(store, cache),
        **settings,
    )


def evaluate_all(
    store: Store,
    run_id: str,
    explainers: Sequence[str] | None = None,
    *,
    seed: int = 0,
    level: float = 0.999,
    n_resamples: int = 2000,
    cache: bool = True,
    progress: Callable[[str], None] | None = None,
    exclude: str | None = None,
) -> list[ExplainResult]:
    """Every explainer (or those named) in every setting that applies to the run, scored on its test split.

    ``progress`` is called with each explainer's label and settings before it is fitted; ``exclude`` as for
    ``evaluate``."""
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import evaluate_all as _evaluate_all

    return _evaluate_all(
        RunData.load(store, run_id, exclude=exclude),
        list(explainers) if explainers else None,
        seed=seed,
        level=level,
        n_resamples=n_resamples,
        cache=_result_cache(store, cache),
        progress=progress,
    )


def quality(
    store: Store,
    run_id: str,
    *,
    folds: int = 5,
    seed: int = 0,
    min_probability: float = 0.8,
) -> QualityResult:
    """Flag the run's suspect labels: copies with contradictory keys, other runs' confident consensus on another
    answer, and confident learning on out-of-fold probabilities (a text classifier, the runs' own scores).

    Each flag (``QualityResult.flags``) carries its reasons, a score and the evidence. The flags are stored,
    replacing the run's earlier ones, when ``store`` is open for writing; ``evaluate(..., exclude="suspect")``
    then leaves them out. ``QualityResult.signals`` and ``.skipped`` say what was used and what could not be.
    """
    from wif_core.label_quality import QualityConfig, quality_pass, run_quality

    config = QualityConfig(folds=folds, seed=seed, min_probability=min_probability)
    return quality_pass(store, run_id, config) if store.read_only else run_quality(store, run_id, config)


def attribute(
    store: Store,
    run_id: str,
    item_id: str,
    method: str | None = None,
    *,
    model: LoadedModel | str | None = None,
    recompute: bool = False,
    deletion: bool = True,
    seed: int = 0,
) -> Attribution:
    """One item's contrastive attribution of Δ = log p(wrong) − log p(right): the stored one, else computed now.

    ``model`` defaults to the run's own model (loaded only if something must be computed). A
    computed record is written when ``store`` is open for writing.
    """
    from wif_core.attribution import DEFAULT_METHOD
    from wif_core.attribution.batch import item_attribution

    name = method or DEFAULT_METHOD
    spec = model if isinstance(model, str) else store.run(run_id).model

    def lm() -> Any:
        return load_model(spec) if model is None or isinstance(model, str) else model

    record, stored = item_attribution(
        store, run_id, item_id, name, lm, recompute=recompute, deletion=deletion, seed=seed
    )
    if not stored and not store.read_only:
        store.write_attributions(run_id, [record.to_row()])
    return record


def cluster(
    store: Store,
    run_id: str,
    *,
    space: str = "activations",
    mode: str = "failures",
    algorithm: str = "kmeans",
    k: int | None = None,
    layer: int | None = None,
    site: str | None = None,
    method: str | None = None,
    map_method: str = "pca",
    seed: int = 0,
    cache: bool = True,
) -> ClusterResult:
    """Cluster the run's failures (or all items, ranked by failure rate) in one space, with a card per cluster."""
    from wif_core.clusters.run import ClusterCache, cluster_run

    return cluster_run(
        store,
        run_id,
        space=space,
        mode=mode,
        algorithm=algorithm,
        k=k,
        seed=seed,
        layer=layer,
        site=site,
        method=method,
        map_method=map_method,
        cache=ClusterCache.beside(store.path) if cache else ClusterCache(None),
    )


def compare_runs(
    store: Store,
    run_ids: Sequence[str],
    *,
    method: str | None = None,
    transfer: bool = False,
    explainers: bool = False,
    seed: int = 0,
    level: float = 0.999,
    cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Two or more runs of one task side by side on the items they share (matched by normalised content):
    accuracy with Wilson CIs, the 2×2 table with the exact McNemar test, κ of errors, margin correlations,
    the items failed by one run only, segment shares of stored attributions (``method``), and optionally
    the explainer transfer between runs (``transfer``) and, for checkpoint runs, the best input-tier
    explainer per checkpoint (``explainers``); see ``wif_core.compare``."""
    from wif_core.compare import compare_runs as _compare

    return _compare(
        store,
        run_ids,
        method=method,
        transfer=transfer,
        explainers=explainers,
        seed=seed,
        level=level,
        cache=cache,
        progress=progress,
    )


def report(
    store: Store | str | Path,
    run_id: str,
    out: str | Path | None = None,
    *,
    failures: int = 5,
    method: str | None = None,
    compute: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ReportFile:
    """Write the run's report: one self-contained HTML file (``out``, default ``report-<run>.html``) that opens
    offline, with the summary, leakage, explainer table and figures, SAE features, cluster cards and the
    attribution heatmaps of up to ``failures`` failures.

    Results cached beside the store are used; the default explainer comparison and clustering are computed
    (and cached) where missing, unless ``compute`` is False. The file appears whole or not at all.
    """
    from wif_core.reports import write_report

    return write_report(store, run_id, out, failures=failures, method=method, compute=compute, progress=progress)


def train_sae(
    store: Store, run_id: str, layer: int, config: TrainConfig | None = None, *, progress: Progress | None = None
) -> TrainResult:
    """Train an SAE (sae-lens) on the run's train-split token activations at ``layer``; saved beside the store."""
    from wif_core.sae.train import train_run_sae

    return train_run_sae(store, run_id, layer, config, progress)


def add_sae(store: Store, run_id: str, layer: int, sae: str) -> dict[str, Any]:
    """Use a pretrained SAE (sae-lens ``RELEASE:SAE_ID``) or an SAE directory as the run's SAE at ``layer``."""
    from wif_core.sae.add import add_sae as _add

    return _add(store, run_id, layer, sae)


def zoo_model(name: str, zoo_dir: str | Path | None = None) -> ZooModel:
    """A zoo model: a shipped or trained name (``wif zoo list``), a handcrafted one, or a safetensors path."""
    from wif_core.zoo.weights import load

    return load(name, Path(zoo_dir) if zoo_dir else None)


def zoo_evaluate(model: ZooModel | str, samples: int = 1_000_000, *, seed: int = 0, level: float = 0.999) -> Accuracy:
    """A zoo model's accuracy on ``samples`` fresh inputs, with a Clopper–Pearson interval."""
    from wif_core.zoo.evaluate import evaluate as _evaluate

    return _evaluate(zoo_model(model) if isinstance(model, str) else model, samples, seed=seed, level=level)
