"""Collection (score items, capture activations, write batches) and outcome import.

A run id is derived from everything that defines the run (model, task, source, limit,
layers, scoring, template, seed) and from a digest of the items as read (ids, contexts,
choices, answer keys, meta), so asking for the same collection of the same items again
resumes it: items that already have outcomes are skipped, the rest are scored batch by
batch, each batch written in one transaction. An edited or repaired source makes a new run
beside the old one (``CollectResult.older_runs`` names those), never a resume of stale
items. ``write_run`` is that write path; collection, import and zoo runs
(``wif_core.zoo.runs``) all go through it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wif_core import splits as splitting
from wif_core.errors import InputError
from wif_core.models.devices import DEFAULT_DTYPE, dtype_name, model_device, model_dtype
from wif_core.models.loading import EMBEDDED_MODELS, check_model_spec, split_revision
from wif_core.models.scoring import SITES, Scoring, check_max_length, score_items
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem, choices_problem, get_task, items_digest
from wif_core.tasks.sources import (
    RecordOutcome,
    _Rec,
    complete_or_none,
    outcome_files,
    parse_item,
    read_json_records,
    read_outcome_file,
    score_value,
)
from wif_core.tasks.templates import TEMPLATE_VERSION

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass
class SplitOptions:
    """How a run's evaluation splits are drawn."""

    k: int | None = None
    fractions: tuple[float, float, float] = splitting.DEFAULT_FRACTIONS
    seed: int = 0


@dataclass
class CollectResult:
    """What a collection or an import wrote: the run, items scored now and before, leakage found, items cut."""

    run: RunInfo
    n_new: int
    n_skipped: int
    findings: list[splitting.Finding] = field(default_factory=list)
    # runs of the same command on other items (the source was edited since): kept until deleted
    older_runs: list[str] = field(default_factory=list)
    n_truncated: int = 0  # the run's items cut from the left of their context to fit the model (collected runs)

    @property
    def run_id(self) -> str:
        return self.run.run_id


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[-40:] or "model"


PROVENANCE = "provenance"
"""The run config's key for facts about how a run was computed that do not change what it is (the device it
was started on): left out of the run id, and out of the comparison that finds a run's older siblings."""


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != PROVENANCE}


def make_run_id(model: str, task: str, config: dict[str, Any]) -> str:
    """``<model slug>--<task>--<digest of the config>``; the config's ``provenance`` entry is not part of it."""
    digest = hashlib.sha1(json.dumps(_identity(config), sort_keys=True).encode()).hexdigest()[:8]
    return f"{_slug(model)}--{task}--{digest}"


# ---- checkpoints: one run per checkpoint of a model -------------------------------------------------------------


def _step_of(label: str) -> int | None:
    """The training step a checkpoint's name ends in (``checkpoint-1200``, ``step_1200``, ``step1000``), or None;
    a commit hash (hex digits with a letter) names no step."""
    found = re.search(r"(\d+)$", label)
    if found is None or (re.fullmatch(r"[0-9a-f]+", label) and re.search(r"[a-f]", label)):
        return None
    return int(found.group(1))


def checkpoint_entry(spec: str) -> dict[str, Any]:
    """The run config's ``checkpoint`` entry of a model spec: a local checkpoint directory (its name is the label),
    or a hub id at a revision (the revision is); ``step`` from a trailing number of the label when it has one."""
    _, revision = split_revision(spec)
    if revision is not None:
        return {"label": revision, "step": _step_of(revision), "samples": None, "revision": revision, "path": None}
    path = Path(spec).resolve()
    return {"label": path.name, "step": _step_of(path.name), "samples": None, "revision": None, "path": str(path)}


def checkpoint_specs(specs: Sequence[str]) -> list[tuple[str, dict[str, Any] | None]]:
    """Each model spec with the ``checkpoint`` entry its runs carry, all checked before any model loads.

    One spec is a checkpoint only when it names a hub revision (a lone directory keeps the run id it always had).
    Several specs are checkpoints of one model: all local directories, or all revisions of one hub id.
    """
    if not specs:
        raise InputError("--model is empty; give a model, or several checkpoints as --model DIR1,DIR2")
    for spec in specs:
        check_model_spec(spec)
    if len(specs) == 1:
        return [(specs[0], checkpoint_entry(specs[0]) if split_revision(specs[0])[1] is not None else None)]
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise InputError(f"--model names {repeated[0]} twice; give each checkpoint once")
    dirs = [s for s in specs if Path(s).is_dir()]
    hubs = [s for s in specs if s not in dirs]
    kinds = "several local checkpoint directories, or several revisions of one hub id (org/name@rev1,org/name@rev2)"
    embedded = [s for s in specs if s in EMBEDDED_MODELS]
    if embedded:
        raise InputError(f"--model: the embedded '{embedded[0]}' has no checkpoints; several models must be {kinds}")
    if dirs and hubs:
        raise InputError(
            f"--model mixes local directories ({dirs[0]}) and hub ids ({hubs[0]}); several models are taken as "
            f"checkpoints of one model: give {kinds}"
        )
    if hubs:
        split = [split_revision(s) for s in hubs]
        bare = [s for s, (_, rev) in zip(hubs, split, strict=True) if rev is None]
        repos = sorted({repo for repo, _ in split})
        if bare or len(repos) > 1:
            raise InputError(
                f"--model: {bare[0] if bare else ' and '.join(repos)}: several hub models are taken as checkpoints "
                f"of one model; give {kinds}, or collect each model with its own `wif collect`"
            )
    return [(s, checkpoint_entry(s)) for s in specs]


def check_items(items: Sequence[TaskItem], task: str, n: int) -> None:
    """Refuse an empty item list, items of another choice count than the run's ``n``, empty or repeated
    options, repeated item ids: before anything is written or scored."""
    if not items:
        raise InputError(f"no items for task '{task}'; check --source and --limit")
    seen: set[str] = set()
    for it in items:
        if len(it.choices) != n:
            raise InputError(f"item {it.item_id}: {len(it.choices)} choices, but task '{task}' has {n}")
        problem = choices_problem(it.choices)
        if problem:
            raise InputError(f"item {it.item_id}: {problem}; every option needs its own answer text")
        if it.item_id in seen:
            raise InputError(f"item id '{it.item_id}' appears twice; item ids must be unique within a run")
        seen.add(it.item_id)


def check_collection(items: Sequence[TaskItem], task: str, split_options: SplitOptions) -> None:
    """Refuse now what would fail a collection later: its items (see ``check_items``) and split options that
    cannot work (``--fractions``, a ``--k`` above what the items can give); needs no model."""
    check_items(items, task, get_task(task).n_choices)
    splitting.check_options(split_options.k, split_options.fractions, len(items))


def write_splits(
    store: Store, run_id: str, options: SplitOptions, given: dict[str, str] | None = None
) -> list[splitting.Finding]:
    """Draw a run's splits from its outcomes (or keep ``given`` item → split), check leakage, store both."""
    frame = store.items(run_id)
    if given is not None:
        frame["split"] = frame["item_id"].map(given).fillna("unused")
    assigned, findings = splitting.assign(frame, given is not None, options.k, options.fractions, options.seed)
    config = {"k": options.k, "fractions": list(options.fractions), "seed": options.seed, "given": given is not None}
    store.write_splits(run_id, assigned, [f.as_row() for f in findings], config)
    return findings


def write_run(
    store: Store,
    run: RunInfo,
    items: Sequence[TaskItem],
    score: Callable[[list[TaskItem]], Iterable[Sequence[OutcomeRow]]],
    *,
    split_options: SplitOptions,
    given_splits: dict[str, str] | None = None,
    fresh: bool = False,
    after_outcomes: Callable[[], None] | None = None,
    progress: Progress | None = None,
    resumed: Progress | None = None,
) -> CollectResult:
    """The one write path of every kind of run (collected, imported, zoo): items, outcomes, splits, status.

    Creates ``run`` with its planned ``items`` unless the store has its run id (with ``fresh``, one it has is
    deleted first and the run written whole). ``score`` gets the planned items that have no outcome yet, in
    their planned order, and yields outcome batches; each batch is written in one transaction, so a killed
    process loses at most the batch it was writing and the same call again resumes after the last one.
    ``after_outcomes`` writes what needs every outcome (the zoo's exact attributions) before the splits are
    drawn (or ``given_splits``, item → split, kept) and the run is marked complete. ``resumed`` is told how many
    planned items were already scored (a resumed run's progress starts there), ``progress`` of each batch after.
    """
    if given_splits is None:  # refused now, not after every item is scored
        splitting.check_options(split_options.k, split_options.fractions, len(items))
    if fresh and run.run_id in store.run_ids():
        store.delete_run(run.run_id)
    if run.run_id not in store.run_ids():
        store.create_run(run, items)
    stored = store.run(run.run_id)
    planned = store.task_items(run.run_id)
    done = store.done_item_ids(run.run_id)
    todo = [it for it in planned if it.item_id not in done]
    log.info("run %s: %d items, %d done, %d to score", run.run_id, len(planned), len(done), len(todo))
    if resumed is not None and len(planned) > len(todo):
        resumed(len(planned) - len(todo))
    for rows in score(todo):
        store.write_outcomes(run.run_id, rows, stored.act_dtype)
        if progress:
            progress(len(rows))
    if after_outcomes is not None:
        after_outcomes()
    try:
        findings = write_splits(store, run.run_id, split_options, given_splits)
    except InputError as exc:
        raise InputError(
            f"{exc}; run {run.run_id} keeps its outcomes but no splits (remove it with "
            f"`wif runs --delete {run.run_id}`)"
        ) from None
    store.set_status(run.run_id, "complete")
    n_new, n_skipped = len(todo), len(planned) - len(todo)
    return CollectResult(run=store.run(run.run_id), n_new=n_new, n_skipped=n_skipped, findings=findings)


def plan_run(
    lm: Any,
    task: str,
    items: Sequence[TaskItem],
    *,
    source: str,
    layers: Sequence[int],
    scoring: Scoring = "sum",
    limit: int | None = None,
    seed: int = 0,
    token_layers: Sequence[int] = (),
    sample: int | None = None,
    max_length: int | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> RunInfo:
    """The run that collecting ``items`` with ``lm`` (a LoadedModel) makes, before anything is scored: its record,
    with the run id derived from everything that defines it. One definition for every engine (in this process,
    shards, Ray), so that the same command gives the same run id wherever it runs. Checks the items and layers.

    A model in another precision than float32 scores other numbers, so its run is another run: the config holds
    its ``dtype``. The device does not define the run (the same numbers up to float rounding; a run started on a
    GPU may be resumed on the CPU): a run started off the CPU records it under ``provenance``, outside the run id."""
    spec = get_task(task)  # a named language-model task: what its runs are comes from its spec, once
    check_items(items, task, spec.n_choices)
    bad = [layer for layer in [*layers, *token_layers] if not 1 <= layer <= lm.n_layers]
    if bad:
        raise InputError(f"layers {bad} are beyond the model's depth; {lm.name} has blocks 1..{lm.n_layers}")
    # a local source is identified by its absolute path, so a run resumes from any working directory
    source_id = str(Path(source).resolve()) if Path(source).exists() else source
    config: dict[str, Any] = {
        "model": lm.name,
        "task": task,
        "source": source_id,
        "limit": limit,
        "layers": list(layers),
        "scoring": scoring,
        "template": TEMPLATE_VERSION,
        "seed": seed,
    }
    if token_layers:
        config["token_layers"] = sorted(token_layers)
    if sample is not None:
        config["sample"] = sample
    if max_length is not None:  # only when asked: a run of the model's own context keeps its id
        config["max_length"] = max_length
    if checkpoint is not None:  # likewise: only a checkpoint's run carries the entry
        config["checkpoint"] = dict(checkpoint)
    precision = dtype_name(model_dtype(lm.model))
    if precision != DEFAULT_DTYPE:  # likewise: a float32 run keeps its id
        config["dtype"] = precision
    device = model_device(lm.model)
    if device.type != "cpu":
        config[PROVENANCE] = {"device": str(device)}
    config["items"] = items_digest(items)  # what is scored: an edited source is another run
    return RunInfo(
        run_id=make_run_id(lm.name, task, config),
        model=lm.name,
        task=task,
        source=source,
        kind="collected",
        n_choices=spec.n_choices,
        family=spec.format,
        template=TEMPLATE_VERSION,
        scoring=scoring,
        layers=list(layers),
        sites=list(SITES),
        token_layers=sorted(token_layers),
        n_layers=lm.n_layers,
        d_model=lm.d_model,
        act_dtype="float16",
        seed=seed,
        config=config,
    )


def outcome_rows(batch: Iterable[Any]) -> list[OutcomeRow]:
    """Scored items (``models.scoring.ScoredItem``) as the rows the store writes."""
    return [
        OutcomeRow(
            item_id=s.item_id,
            pred=s.pred,
            correct=s.correct,
            margin=s.margin,
            ll_sum=s.ll_sum,
            ll_norm=[ll / b for ll, b in zip(s.ll_sum, s.n_bytes, strict=True)],
            n_tokens=s.n_tokens,
            acts=s.acts,
            tokens={k: (v.tokens, v.ids, v.cont_start) for k, v in s.tokens.items()},
            truncated=s.truncated,
        )
        for s in batch
    ]


def score_rows(
    lm: Any, run: RunInfo, todo: list[TaskItem], *, max_tokens: int | None = None, max_length: int | None = None
) -> Iterator[list[OutcomeRow]]:
    """Score ``todo`` as ``run`` says (layers, per-token layers, scoring), batch by batch, as store rows;
    ``max_tokens`` None picks the batch size from the device's free memory (``devices.auto_max_tokens``)."""
    batches = score_items(
        lm.model,
        lm.tokenizer,
        todo,
        run.layers,
        scoring="norm" if run.scoring == "norm" else "sum",
        max_tokens=max_tokens,
        token_layers=run.token_layers,
        max_length=max_length,
    )
    for batch in batches:
        yield outcome_rows(batch)


def collect(
    store: Store,
    lm: Any,
    task: str,
    items: Sequence[TaskItem],
    *,
    source: str,
    layers: Sequence[int],
    scoring: Scoring = "sum",
    limit: int | None = None,
    seed: int = 0,
    split_options: SplitOptions | None = None,
    max_tokens: int | None = None,
    progress: Progress | None = None,
    token_layers: Sequence[int] = (),
    sample: int | None = None,
    max_length: int | None = None,
    checkpoint: dict[str, Any] | None = None,
    resumed: Progress | None = None,
) -> CollectResult:
    """Score ``items`` with ``lm`` (a LoadedModel), storing outcomes and activations; resumable.

    ``max_length`` caps the tokens of any one scored sequence (default: the model's ``max_position_embeddings``);
    longer items are cut from the left of their context, and the result counts them (``n_truncated``).
    ``checkpoint`` (``label``, ``step``, ``samples``, ``revision``, ``path``; see ``checkpoint_entry``) marks the
    run as one of a model's checkpoints, in its config; a run without it keeps the id it always had.
    ``max_tokens`` None picks the batch size from the device's free memory (``devices.auto_max_tokens``); the
    run's precision and device are recorded as ``plan_run`` says.
    """
    split_options = split_options or SplitOptions(seed=seed)
    check_collection(items, task, split_options)
    run = plan_run(
        lm,
        task,
        items,
        source=source,
        layers=layers,
        scoring=scoring,
        limit=limit,
        seed=seed,
        token_layers=token_layers,
        sample=sample,
        max_length=max_length,
        checkpoint=checkpoint,
    )
    context_length = check_max_length(lm.model, max_length)
    run.run_id, older = _run_of(store, lm.name, task, run.config)

    def score(todo: list[TaskItem]) -> Iterator[list[OutcomeRow]]:
        return score_rows(lm, run, todo, max_tokens=max_tokens, max_length=context_length)

    result = write_run(
        store,
        run,
        items,
        score,
        split_options=split_options,
        progress=progress,
        resumed=resumed,
    )
    result.older_runs = older
    result.n_truncated = store.n_truncated(run.run_id)
    if result.n_truncated:
        log.info("run %s: %d items cut from the left to %s tokens", run.run_id, result.n_truncated, context_length)
    return result


def _run_of(store: Store, model: str, task: str, config: dict[str, Any]) -> tuple[str, list[str]]:
    """The id of the run ``config`` defines, and the store's runs of the same command on other items.

    Those are runs whose config differs only in its items digest: the same source before it was edited or
    repaired. A run written before runs carried a digest is this run when its stored items have the digest.
    """
    run_id = make_run_id(model, task, config)
    ids = store.run_ids()
    same = {k: v for k, v in _identity(config).items() if k != "items"}
    siblings = [
        rid
        for rid in ids
        if rid != run_id and {k: v for k, v in _identity(store.run(rid).config).items() if k != "items"} == same
    ]
    if run_id not in ids:
        for rid in siblings:
            if "items" not in store.run(rid).config and items_digest(store.task_items(rid)) == config["items"]:
                run_id = rid  # the same items, collected by a wif that recorded no digest: resume that run
                break
    return run_id, [rid for rid in siblings if rid != run_id]


# ---- import ----------------------------------------------------------------------


def _lm_eval_records(task: str, path: Path) -> list[tuple[TaskItem, RecordOutcome]]:
    """lm-evaluation-harness ``--log_samples`` JSONL: ``doc`` holds the item, ``filtered_resps`` the scores."""
    out = []
    for n, raw in enumerate(read_json_records(path)):
        where = f"{path}:{n + 1}"
        rec = _Rec(raw, where)
        if not isinstance(raw.get("doc"), dict):
            raise InputError(f"{where}: missing field 'doc'; is this an lm-evaluation-harness --log_samples file?")
        item, _ = parse_item(task, _Rec(raw["doc"], f"{where} doc"), f"{task}-doc{raw.get('doc_id', n)}")
        resps = raw.get("filtered_resps") or raw.get("resps")
        if not isinstance(resps, list) or len(resps) != len(item.choices):
            raise InputError(f"{where}: field 'filtered_resps' must hold one [loglikelihood, greedy] per choice")
        if any(isinstance(r, list) and not r for r in resps):
            raise InputError(f"{where}: field 'filtered_resps' holds no log-likelihoods")
        ll = tuple(
            score_value(r[0] if isinstance(r, list) else r, where, f"'filtered_resps'[{j}]")
            for j, r in enumerate(resps)
        )
        missing = [j for j, x in enumerate(ll) if x is None]
        if missing and not rec.has("acc"):
            raise InputError(
                f"{where}: field 'filtered_resps'[{missing[0]}] has no score and there is no field 'acc', "
                "so the outcome is unknown; give every choice a score or add 'acc'"
            )
        # with a choice unscored the argmax is not the model's answer: no prediction rather than a guess
        known = [x for x in ll if x is not None]
        pred = None if missing else max(range(len(known)), key=known.__getitem__)
        correct = rec.flag("acc") if rec.has("acc") else pred == item.gold
        out.append((item, RecordOutcome(correct, pred, complete_or_none(ll))))
    return out


def import_outcomes(
    store: Store, path: Path, task: str, model_name: str, split_options: SplitOptions | None = None
) -> CollectResult:
    """Import another tool's outcomes (no activations) as a run, all in one transaction.

    Accepts the balanced outcome layout (a file, or a directory of train/val/test files
    whose splits are kept) and lm-evaluation-harness ``--log_samples`` JSONL (splits drawn).
    """
    spec = get_task(task)
    path = Path(path)
    if path.suffix == ".jsonl":
        pairs, given = _lm_eval_records(task, path), False
    else:
        files = outcome_files(path)
        pairs = [p for f in files for p in read_outcome_file(task, f)]
        given = all(o.split is not None for _, o in pairs)
    items = [it for it, _ in pairs]
    check_items(items, task, spec.n_choices)
    config = {"model": model_name, "task": task, "source": str(path.resolve()), "kind": "imported"}
    run = RunInfo(
        run_id=make_run_id(model_name, task, config),
        model=model_name,
        task=task,
        source=str(path),
        kind="imported",
        n_choices=spec.n_choices,
        family=spec.format,
        template=None,
        scoring=None,
        config=config,
    )
    rows = [
        OutcomeRow(
            item_id=it.item_id, pred=o.pred, correct=o.correct, ll_sum=list(o.ll) if o.ll else None
        )  # None: unscored
        for it, o in pairs
    ]
    partial = sum(1 for _, o in pairs if o.ll is not None and None in o.ll)
    if partial:
        log.warning(
            "%s: %d of %d records leave some choice without a score (null); their outcomes are kept, "
            "but explainers that read the model's scores will not use this run's",
            path,
            partial,
            len(pairs),
        )
    given_splits = {it.item_id: str(o.split) for it, o in pairs} if given else None
    return write_run(
        store,
        run,
        items,
        lambda todo: [rows],  # one batch: re-importing replaces the run as a whole (fresh)
        split_options=split_options or SplitOptions(),
        given_splits=given_splits,
        fresh=True,
    )
