"""Shard directories: a run collected in pieces anywhere (a Ray actor, a SLURM array job, another machine) and
merged into the store exactly once.

A shard directory (``wif collect --shard i/N --out DIR``, the Ray engine, ``wif export``) holds::

    DIR/run.json                      what the run is: format, wif's store schema, the run record, shard count,
                                      split options (written once, atomically, by the first shard to finish)
    DIR/items.parquet                 every planned item of the run (the store's ``items`` columns)
    DIR/shard-00003-of-00008/         one finished shard, renamed into place when whole:
        outcomes.parquet              the store's ``outcomes`` rows of the shard's items
        activations.parquet           ``activations`` rows: (layer, site, vec), vec little-endian float16
        token_activations.parquet     ``token_activations`` rows (per-token activations, [n_tokens, d])
        tokens.parquet                ``tokens`` rows (the scored sequences' tokens and ids)
        done.json                     the shard's index, count, run id, item ids and rows per file
    DIR/splits.parquet                (exports only) the run's splits, kept on ingest

Shard ``i`` of ``N`` scores the ``i``-th of ``N`` contiguous blocks of the run's items, so every writer that
reads the same items and options agrees on its part without talking to the others. A shard is written into
``shard-….partial-<host>-<pid>`` and renamed when complete: a directory without ``done.json`` is never read.
``ingest`` merges each finished shard in one transaction with a ``shards`` row in the store, so a shard is
merged once however often ingest runs (and a second driver waiting on the store's lock merges nothing twice);
when every shard is in, the run's splits are drawn and it is marked complete, as in-process collection does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from wif_core.errors import InputError, StoreError
from wif_core.runner import SplitOptions, check_collection, plan_run, score_rows, write_splits
from wif_core.store import RunInfo, Store
from wif_core.store.schema import SCHEMA_VERSION
from wif_core.store.store import SHARD_TABLES, items_frame, outcome_frames, read_parquet_frame, write_parquet_frames
from wif_core.tasks.base import TaskItem

log = logging.getLogger(__name__)

FORMAT = "wif-shards"
FORMAT_VERSION = 1
MANIFEST = "run.json"
ITEMS = "items.parquet"
SPLITS = "splits.parquet"
DONE = "done.json"
# set by tests only: the path of a flag file; a shard writer that finds no such file creates it and dies after
# its first batch (os._exit), as a worker killed mid-shard would
CRASH_ONCE_ENV = "WIF_TEST_SHARD_CRASH_ONCE"


@dataclass(kw_only=True)
class ShardResult:
    """One shard written (or found already written) by ``collect_shard``."""

    run_id: str
    shard: int
    n_shards: int
    path: str
    n_items: int
    seconds: float
    reused: bool = False  # it was finished before: nothing was scored


@dataclass(kw_only=True)
class IngestResult:
    """What ``ingest`` did with one shard directory."""

    run_id: str
    directory: str
    n_shards: int
    merged: list[int] = field(default_factory=list)  # shards merged now
    before: list[int] = field(default_factory=list)  # shards the store had already
    unfinished: list[int] = field(default_factory=list)  # shards not (yet) written whole
    n_items: int = 0  # outcomes merged now
    complete: bool = False  # every shard is in: splits drawn, run marked complete
    note: str = ""


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard i/N`` (0-based ``i`` of ``N`` shards) as ``(i, N)``."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise InputError(f"--shard '{text}' must be i/N, the 0-based index i of N shards (e.g. 3/8)") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text}: i must be in 0..N-1 and N at least 1 (e.g. 0/8 … 7/8)")
    return i, n


def shard_name(i: int, n: int) -> str:
    return f"shard-{i:05d}-of-{n:05d}"


def shard_block(items: Sequence[TaskItem], i: int, n: int) -> list[TaskItem]:
    """The ``i``-th of ``n`` contiguous, near-equal blocks of ``items`` (every item in exactly one block)."""
    size = len(items)
    return list(items[i * size // n : (i + 1) * size // n])


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} is missing: {what}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc}); {what}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds no JSON object; {what}")
    return data


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _manifest(run: RunInfo, n_shards: int, options: SplitOptions, given_splits: bool = False) -> dict[str, Any]:
    record = asdict(run) | {"status": "collecting"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "run": record,
        "n_shards": n_shards,
        "split_options": {"k": options.k, "fractions": list(options.fractions), "seed": options.seed},
        "given_splits": given_splits,
    }


def read_manifest(directory: Path) -> dict[str, Any]:
    """``directory``'s ``run.json``, checked: a wif shard directory of a format and schema this wif reads."""
    what = f"{directory} is not a wif shard directory (write one with `wif collect --shard i/N --out DIR`)"
    if not directory.is_dir():
        raise InputError(
            f"{directory} is not a directory; give a wif shard directory (`wif collect --shard i/N --out DIR`)"
        )
    data = _read_json(directory / MANIFEST, what)
    if data.get("format") != FORMAT:
        raise InputError(f"{directory / MANIFEST}: field 'format' is {data.get('format')!r}, not '{FORMAT}'; {what}")
    if data.get("format_version") != FORMAT_VERSION or data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"{directory / MANIFEST}: shard format {data.get('format_version')} of store schema "
            f"{data.get('schema_version')}; this wif reads format {FORMAT_VERSION} of schema {SCHEMA_VERSION}: "
            "collect the shards again with this wif, or ingest them with the wif that wrote them"
        )
    for key in ("run", "n_shards", "split_options"):
        if key not in data:
            raise InputError(f"{directory / MANIFEST}: field '{key}' is missing; {what}")
    return data


def _run_of_manifest(data: dict[str, Any], where: Path) -> RunInfo:
    try:
        return RunInfo(**data["run"])
    except TypeError as exc:
        raise InputError(f"{where / MANIFEST}: field 'run' is not a wif run record ({exc})") from None


def ensure_manifest(
    directory: Path, run: RunInfo, items: Sequence[TaskItem], n_shards: int, options: SplitOptions
) -> None:
    """Write ``run.json`` and ``items.parquet`` unless ``directory`` has them; refuse a directory that holds
    another run's shards, or this run's split into another number of shards."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / MANIFEST).exists():
        data = read_manifest(directory)
        other = data["run"].get("run_id")
        if other != run.run_id:
            raise InputError(
                f"{directory} holds shards of run {other}, not of {run.run_id} (another model, task, item set or "
                "option); give each run its own --out directory"
            )
        if data["n_shards"] != n_shards:
            raise InputError(
                f"{directory} holds run {run.run_id} split into {data['n_shards']} shards, not {n_shards}; give "
                f"--shard i/{data['n_shards']}, or another --out directory"
            )
        if (directory / ITEMS).exists():
            return
    run = replace(run, n_planned=len(items))
    frame = items_frame(run.run_id, items)
    tmp = directory / f".{ITEMS}.{socket.gethostname()}-{os.getpid()}.tmp"
    write_parquet_frames({tmp.stem: frame}, directory)
    os.replace(directory / f"{tmp.stem}.parquet", directory / ITEMS)
    _write_json_atomic(directory / MANIFEST, _manifest(run, n_shards, options))


def read_items(directory: Path, task: str) -> list[TaskItem]:
    """The planned items of a shard directory, in their planned order."""
    frame = read_parquet_frame(directory / ITEMS).sort_values("position")
    try:
        return [
            TaskItem(
                item_id=str(r.item_id),
                task=task,
                context=str(r.context),
                choices=tuple(str(c) for c in r.choices),
                gold=int(r.gold),
                meta=json.loads(r.meta or "{}"),
            )
            for r in frame.itertuples()
        ]
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"{directory / ITEMS}: not wif's items layout ({exc}); write the directory again") from None


def finished_shards(directory: Path, n_shards: int) -> dict[int, dict[str, Any]]:
    """Shard index → its ``done.json``, for the shards of ``directory`` written whole."""
    out = {}
    for i in range(n_shards):
        done = directory / shard_name(i, n_shards) / DONE
        if done.exists():
            out[i] = _read_json(done, "the shard is damaged: delete its directory and collect it again")
    return out


def _clean_partials(directory: Path, name: str) -> None:
    """Remove what a dead writer on this host left of shard ``name`` (a live writer's directory is kept)."""
    host = socket.gethostname()
    for stale in directory.glob(f"{name}.partial-*"):
        owner = stale.name.rsplit(".partial-", 1)[1]
        o_host, _, pid = owner.rpartition("-")
        if o_host == host and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect_shard(
    lm: Any,
    task: str,
    items: Sequence[TaskItem],
    *,
    shard: tuple[int, int],
    out: Path,
    source: str,
    layers: Sequence[int],
    scoring: Any = "sum",
    limit: int | None = None,
    seed: int = 0,
    split_options: SplitOptions | None = None,
    max_tokens: int | None = None,
    token_layers: Sequence[int] = (),
    sample: int | None = None,
    max_length: int | None = None,
    checkpoint: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShardResult:
    """Score shard ``i`` of ``N`` (``shard``) of the run that ``runner.collect`` would make of the same arguments,
    into ``out`` (a shard directory; no store is opened). A shard already finished there is reused as it is."""
    from wif_core.models.scoring import check_max_length

    i, n = shard
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
    out = Path(out)
    ensure_manifest(out, run, items, n, split_options)
    name = shard_name(i, n)
    final = out / name
    block = shard_block(items, i, n)
    if (final / DONE).exists():
        log.info("shard %s of run %s is finished already: reused", name, run.run_id)
        return ShardResult(
            run_id=run.run_id, shard=i, n_shards=n, path=str(final), n_items=len(block), seconds=0.0, reused=True
        )
    _clean_partials(out, name)
    tmp = out / f"{name}.partial-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.perf_counter()
    context_length = check_max_length(lm.model, max_length)
    rows = []
    crash_flag = os.environ.get(CRASH_ONCE_ENV)
    for batch in score_rows(lm, run, block, max_tokens=max_tokens, max_length=context_length):
        rows += batch
        if progress:
            progress(len(batch))
        if crash_flag and not Path(crash_flag).exists():
            Path(crash_flag).write_text(f"{name} {os.getpid()}\n")
            os._exit(17)  # a worker killed mid-shard (tests only)
    written = write_parquet_frames(outcome_frames(run.run_id, rows, run.act_dtype), tmp)
    seconds = time.perf_counter() - start
    done = {
        "format": FORMAT,
        "run_id": run.run_id,
        "shard": i,
        "n_shards": n,
        "item_ids": [r.item_id for r in rows],
        "rows": written,
        "seconds": seconds,
        "host": socket.gethostname(),
    }
    _write_json_atomic(tmp / DONE, done)
    try:
        tmp.rename(final)
    except OSError:  # another writer finished the same shard first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / DONE).exists():
            raise
    return ShardResult(run_id=run.run_id, shard=i, n_shards=n, path=str(final), n_items=len(rows), seconds=seconds)


def shard_scorer(lm: Any) -> Callable[..., ShardResult]:
    """``score(items, (i, N), out, options, progress=None)``: ``collect_shard`` with a loaded model, where
    ``options`` are ``collect_shard``'s keywords plus ``task``, with ``layers``/``token_layers`` as the command
    line gives them (None, "5,10" or a list), resolved against this model (the CLI's shard and the Ray actors)."""

    def score(
        items: Sequence[TaskItem],
        shard: tuple[int, int],
        out: Path,
        options: dict[str, Any],
        progress: Callable[[int], None] | None = None,
    ) -> ShardResult:
        from wif_core.models.loading import layer_lists

        opts = dict(options)
        task = opts.pop("task")
        opts["layers"], opts["token_layers"] = layer_lists(lm, opts.get("layers"), opts.get("token_layers"))
        return collect_shard(lm, task, items, shard=shard, out=Path(out), progress=progress, **opts)

    return score


def ingest(
    store: Store, directory: Path, *, shards: Sequence[int] | None = None, progress: Callable[[int], None] | None = None
) -> IngestResult:
    """Merge the finished shards of ``directory`` (all, or those in ``shards``) that ``store`` lacks; complete
    the run (splits, status) once every shard is in. Each shard is one transaction; see the module doc."""
    directory = Path(directory).resolve()
    data = read_manifest(directory)
    run = _run_of_manifest(data, directory)
    n = int(data["n_shards"])
    result = IngestResult(run_id=run.run_id, directory=str(directory), n_shards=n)
    if run.run_id in store.run_ids():
        have = store.run(run.run_id)
        if have.config != run.config:
            raise InputError(
                f"{directory}: run {run.run_id} in {store.path} was collected with another configuration than these "
                "shards; ingest them into another store, or delete the run there first (`wif runs --delete`)"
            )
        merged_before = store.merged_shards(run.run_id)
        if have.status == "complete" and not merged_before:
            result.complete = True
            result.note = f"run {run.run_id} is already complete in {store.path}; nothing merged"
            return result
    else:
        items = read_items(directory, run.task)
        if len(items) != run.n_planned:
            raise InputError(
                f"{directory / ITEMS}: {len(items)} items, but {MANIFEST} plans {run.n_planned}; the directory is "
                "damaged: write it again"
            )
        store.create_run(run, items)
        merged_before = {}
    finished = finished_shards(directory, n)
    wanted = range(n) if shards is None else shards
    for i in wanted:
        if i in merged_before:
            result.before.append(i)
            continue
        if i not in finished:
            result.unfinished.append(i)
            continue
        done = finished[i]
        where = directory / shard_name(i, n)
        if done.get("run_id") != run.run_id or done.get("shard") != i or done.get("n_shards") != n:
            raise InputError(
                f"{where / DONE}: shard {done.get('shard')}/{done.get('n_shards')} of run {done.get('run_id')}, not "
                f"{i}/{n} of {run.run_id}; it was copied from another run's directory: remove it"
            )
        files = {t: where / f"{t}.parquet" for t in SHARD_TABLES if t in done.get("rows", {})}
        missing = [str(f) for f in files.values() if not f.exists()]
        if missing:
            raise InputError(f"{missing[0]} is missing (listed in {where / DONE}); delete {where} and collect it again")
        try:
            got = store.merge_shard(
                run.run_id, shard=i, n_shards=n, source=str(where), files=files, item_ids=list(done["item_ids"])
            )
        except StoreError:
            raise
        except Exception as exc:  # a damaged Parquet file: DuckDB's own error, one line
            from wif_core.errors import one_line

            raise InputError(f"{where}: cannot merge ({one_line(exc)}); delete it and collect it again") from None
        result.merged.append(i)
        result.n_items += got
        if progress:
            progress(got)
    all_in = set(store.merged_shards(run.run_id)) == set(range(n))
    if all_in:
        _complete(store, run, data, directory)
        result.complete = True
    return result


def _complete(store: Store, run: RunInfo, data: dict[str, Any], directory: Path) -> None:
    """Every shard is in: draw the splits (or keep an export's) and mark the run complete, as ``write_run`` does."""
    done = store.done_item_ids(run.run_id)
    planned = [it.item_id for it in store.task_items(run.run_id)]
    lacking = [i for i in planned if i not in done]
    if lacking:
        raise StoreError(
            f"run {run.run_id}: every shard is merged but item '{lacking[0]}' has no outcome ({len(lacking)} such); "
            "the shards do not cover the run's items"
        )
    opts = data["split_options"]
    options = SplitOptions(k=opts.get("k"), fractions=tuple(opts.get("fractions")), seed=int(opts.get("seed", 0)))
    given = None
    if (directory / SPLITS).exists():
        frame = read_parquet_frame(directory / SPLITS)
        given = dict(zip(frame["item_id"].astype(str), frame["split"].astype(str), strict=True))
    write_splits(store, run.run_id, options, given)
    store.set_status(run.run_id, "complete")


def export_run(store: Store, run_id: str, out: Path) -> dict[str, Any]:
    """Write run ``run_id`` as a shard directory of one shard (items, outcomes, activations by layer and site,
    tokens, splits), readable with any Parquet reader and mergeable into another store by ``ingest``."""
    run = store.run(run_id)
    if run.status != "complete":
        raise InputError(f"run {run_id} is {run.status}, not complete; finish it (run its collect again) first")
    out = Path(out)
    if (out / MANIFEST).exists() or (out.exists() and any(out.iterdir())):
        raise InputError(f"{out} is not empty; give a new directory to export into")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{shard_name(0, 1)}.partial-{socket.gethostname()}-{os.getpid()}"
    tmp.mkdir()
    rows = {"items": store.write_parquet("items", run_id, out / ITEMS)}
    rows["splits"] = store.write_parquet("splits", run_id, out / SPLITS)
    written = {t: store.write_parquet(t, run_id, tmp / f"{t}.parquet") for t in SHARD_TABLES}
    for t, k in list(written.items()):
        if k == 0:
            (tmp / f"{t}.parquet").unlink()
            del written[t]
    # the activations again, one file per layer and site, for readers who want one of them
    by_site = out / "activations"
    for layer, site in store.activation_keys(run_id):
        part = by_site / f"layer={layer}" / f"site={site}"
        part.mkdir(parents=True, exist_ok=True)
        store.write_parquet("activations", run_id, part / "part-0.parquet", "layer = ? AND site = ?", [layer, site])
    item_ids = [it.item_id for it in store.task_items(run_id)]
    _write_json_atomic(
        tmp / DONE,
        {"format": FORMAT, "run_id": run_id, "shard": 0, "n_shards": 1, "item_ids": item_ids, "rows": written},
    )
    tmp.rename(out / shard_name(0, 1))
    split_cfg = run.split_config or {}
    options = SplitOptions(
        k=split_cfg.get("k"),
        fractions=tuple(split_cfg.get("fractions", (0.5, 0.25, 0.25))),
        seed=split_cfg.get("seed", 0),
    )
    _write_json_atomic(out / MANIFEST, _manifest(run, 1, options, given_splits=True))
    return {"run_id": run_id, "out": str(out), "rows": rows | written}
