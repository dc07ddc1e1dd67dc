"""Collection on Ray: shards scored by actors that each load the model once, merged into the store by the driver.

``collect_on_ray`` splits a run's items into shards (``shards.shard_block``), reuses the shards already finished
in the shard directory (a driver killed and started again scores only what is missing), and hands the rest to
``workers`` actors. Each actor loads the model once and runs ``shards.collect_shard``, the same packed scorer as
in-process collection, writing the shard as Parquet. As each shard comes back the driver merges it into the
store in one transaction (``shards.ingest``), so a shard is merged exactly once. An actor whose process dies is
restarted by Ray and its shard retried (``max_restarts``, ``max_task_retries``); the dead attempt's half-written
directory is never read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wif_core.errors import InputError, WifError, one_line
from wif_core.tasks.base import TaskItem

RETRIES = 3  # restarts of a dead actor, and retries of the shard it was scoring


@dataclass(kw_only=True)
class RayCollectResult:
    """What ``collect_on_ray`` did."""

    run_id: str
    out: str
    n_shards: int
    workers: int
    scored: list[int] = field(default_factory=list)  # shards scored now
    reused: list[int] = field(default_factory=list)  # shards finished before, merged now or earlier
    n_items: int = 0
    complete: bool = False
    seconds: float = 0.0
    merge_seconds: float = 0.0  # of it, merging shards into the store
    worker_seconds: dict[int, float] = field(default_factory=dict)  # shard → seconds its worker scored it


def _ray() -> Any:
    from wif_core.heavy import heavy_imports

    try:
        with heavy_imports():
            import ray
    except ImportError:
        raise InputError(
            "--engine ray needs Ray: pip install 'ray==2.60.0' (or `make install`, which installs it)"
        ) from None
    return ray


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Ray, connected: to ``address`` (``auto``: the cluster this machine belongs to; ``HOST:PORT``), or to a
    local cluster started here with ``num_cpus``; a Ray already initialised in this process is used as it is.
    An address that does not answer is one line."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address and address != "auto":
        _probe(address)  # Ray itself retries an address that does not answer for minutes
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise InputError(
            f"cannot connect to {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; start one "
            "with `ray start --head` (then --address auto), or leave out --address to start a local one"
        ) from None
    return ray


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Refuse at once a ``HOST:PORT`` (Ray's GCS address, ``ray start --head`` prints it) that no server answers."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address}: give 'auto' or the head node's HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(
            f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc} within {timeout_s:.0f} s; start "
            "one with `ray start --head` (then --address auto or its HOST:PORT), or leave out --address to start a "
            "local one"
        ) from None


class ShardWorker:
    """A Ray actor's state: the model, loaded once, and the options of the run it scores."""

    def __init__(self, spec: str, cache_dir: str | None, threads: int, load: dict[str, Any]) -> None:
        from wif_core.heavy import heavy_imports

        with heavy_imports():
            import torch
        from wif_core.engines.shards import shard_scorer
        from wif_core.models.loading import load_model

        torch.set_num_threads(max(1, threads))
        self._score = shard_scorer(load_model(spec, Path(cache_dir) if cache_dir else None, **load))

    def score(self, items: Sequence[TaskItem], shard: tuple[int, int], out: str, options: dict[str, Any]) -> Any:
        return self._score(items, shard, Path(out), options)


def collect_on_ray(
    store_path: Path,
    spec: str,
    task: str,
    items: Sequence[TaskItem],
    *,
    out: Path,
    n_shards: int,
    workers: int = 2,
    threads_per_worker: int = 1,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    cache_dir: Path | None = None,
    load: dict[str, Any] | None = None,
    options: dict[str, Any],
    progress: Callable[[int], None] | None = None,
) -> RayCollectResult:
    """Collect ``items`` with model ``spec`` on Ray into ``out`` (a shard directory) and merge them into the store
    at ``store_path``. ``options`` are ``shards.collect_shard``'s keyword arguments (source, layers, scoring, …);
    ``load`` those of ``load_model`` (device, dtype). ``options`` are ``shards.shard_scorer``'s: ``collect_shard``'s
    keyword arguments (source, layers, scoring, split_options, …), layers as the command line gives them."""
    from wif_core.engines import shards as sh
    from wif_core.store import Store

    if workers < 1 or n_shards < 1:
        raise InputError("--workers and --shards must be at least 1")
    n_shards = min(n_shards, len(items))
    start = time.perf_counter()
    ray = connect(address, num_cpus=None if address else workers * threads_per_worker)
    out = Path(out).resolve()
    merge_s = 0.0

    def merge(only: list[int]) -> Any:
        nonlocal merge_s
        t = time.perf_counter()
        with Store.open(store_path, write=True) as store:
            got = sh.ingest(store, out, shards=only, progress=progress)
        merge_s += time.perf_counter() - t
        return got

    finished: set[int] = set()
    if (out / sh.MANIFEST).exists():
        data = sh.read_manifest(out)
        if data["n_shards"] != n_shards:
            raise InputError(
                f"{out} holds run {data['run'].get('run_id')} split into {data['n_shards']} shards, not {n_shards}; "
                f"give --shards {data['n_shards']} to go on with it, or another --out directory"
            )
        finished = set(sh.finished_shards(out, n_shards))
    actor = ray.remote(num_cpus=threads_per_worker, num_gpus=gpus_per_worker or 0)(ShardWorker).options(
        max_restarts=RETRIES, max_task_retries=RETRIES
    )
    todo = [i for i in range(n_shards) if i not in finished]
    result = RayCollectResult(run_id="", out=str(out), n_shards=n_shards, workers=workers)
    if finished and (out / sh.MANIFEST).exists():  # shards a killed driver left: merged before anything is scored
        got = merge(sorted(finished))
        result.run_id, result.reused = got.run_id, sorted(finished)
        result.complete = got.complete
    if todo:
        pool = [
            actor.remote(spec, str(cache_dir) if cache_dir else None, threads_per_worker, load or {})
            for _ in range(min(workers, len(todo)))
        ]
        queue = list(todo)
        running: dict[Any, tuple[int, Any]] = {}
        items_ref = ray.put(list(items))  # sent to the cluster once, not with every shard

        def submit(a: Any) -> None:
            i = queue.pop(0)
            running[a.score.remote(items_ref, (i, n_shards), str(out), dict(options, task=task))] = (i, a)

        for a in pool:
            if queue:
                submit(a)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            i, a = running.pop(ref)
            try:
                shard = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, WifError):  # the worker refused something: its own line
                    raise exc.cause from None
                raise InputError(f"shard {i} of {n_shards} failed on its worker: {one_line(exc.cause)}") from None
            except ray.exceptions.RayError as exc:
                raise InputError(
                    f"shard {i} of {n_shards} failed after {RETRIES} retries: {str(exc).splitlines()[0]}; its "
                    f"finished shards stay in {out}: run the same command again to go on"
                ) from None
            result.run_id = shard.run_id
            result.scored.append(i)
            result.worker_seconds[i] = shard.seconds
            got = merge([i])
            result.complete = got.complete
            if queue:
                submit(a)
    result.scored.sort()
    with Store.open(store_path) as store:
        if result.run_id:
            result.n_items = len(store.done_item_ids(result.run_id))
            result.complete = store.run(result.run_id).status == "complete"
    result.seconds = time.perf_counter() - start
    result.merge_seconds = merge_s
    return result
