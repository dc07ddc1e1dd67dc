"""The full-size real runs both real-item benchmarks read: every item of PIQA, BoolQ and WinoGrande in ../shared
(4000 each), scored by each embedded model, into one resumable store ``data/real.duckdb``.

``python -m bench.real_runs [--models A,B] [--tasks T1,T2] [--n N]`` collects what is missing (an interrupted
collection resumes where it stopped) and imports Gemma-2 2B's outcomes beside them. Each run keeps the
activations of 5 layers spread over depth (sites choice/last/mean) and the per-token activations of one middle
layer (60% of the depth, as the demo), for the attention probe and SAEs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import SHARED_BENCH
from wif_core.cli import main as wif
from wif_core.demo import token_layer
from wif_core.models.loading import EMBEDDED
from wif_core.store import Store

DB = Path(__file__).resolve().parents[1] / "data" / "real.duckdb"
MODELS = (EMBEDDED, "gemma3-270m")
# the short tasks first, so an interrupted session has the most (model, task) pairs
TASKS = ("piqa", "winogrande", "boolq")
FULL = 4000
IMPORTED = "gemma-2-2b"


# blocks of each embedded model (SmolLM2-135M: 30, Gemma-3-270M: 18), for the per-token layer
N_LAYERS = {EMBEDDED: 30, "gemma3-270m": 18}


def _n_layers(model: str) -> int:
    return N_LAYERS[model]


def find_run(store: Store, task: str, model: str, n: int) -> str | None:
    """The newest complete run of ``model`` on ``n`` items of ``task`` (None if there is none)."""
    runs = store.runs()
    done = runs[(runs.task == task) & (runs.model == model) & (runs.status == "complete") & (runs.n_items == n)]
    return None if done.empty else str(done.run_id.iloc[-1])


def part_path(model: str, task: str, n: int, db: Path = DB) -> Path:
    """Where the collection of ``model`` on ``n`` items of ``task`` runs before it is copied into ``db``: a store
    of its own, so that ``db`` stays readable (DuckDB admits no reader beside a writer) while hours of collection
    go on, and an interrupted collection resumes there."""
    return db.parent / f"{db.stem}.parts" / f"{model}--{task}--{n}.duckdb"


def _copy_when_free(db: Path, src: Store, run_id: str, patience_s: float = 3600) -> None:
    """Copy ``run_id`` into ``db``, waiting while a reader (a benchmark fitting explainers) holds it."""
    from wif_core.errors import StoreBusy

    start = time.monotonic()
    while True:
        try:
            with Store.open(db, write=True) as store:
                store.copy_runs(src, [run_id])
            return
        except StoreBusy:
            if time.monotonic() - start > patience_s:
                raise
            print(f"[real-runs] {db} is in use; copying {run_id} when it is free", flush=True)
            time.sleep(30)


def ensure(model: str, task: str, n: int = FULL, db: Path = DB) -> str:
    """The run id of ``model`` on ``n`` items of ``task`` (all of them when ``n`` is the file's size), collecting it
    if the store lacks it (into its part store, copied in whole when complete)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    if db.exists():
        with Store.open(db) as store:
            rid = find_run(store, task, model, n)
        if rid is not None:
            return rid
    part = part_path(model, task, n, db)
    part.parent.mkdir(parents=True, exist_ok=True)
    args = ["collect", "--model", model, "--task", task, "--source", str(SHARED_BENCH / task)]
    if n < FULL:
        args += ["--sample", str(n), "--seed", "0"]
    args += ["--token-layers", str(token_layer(_n_layers(model))), "--db", str(part), "--json"]
    if wif(args) != 0:
        raise RuntimeError(f"collect failed for {model} on {task}")
    with Store.open(part) as src:
        rid = find_run(src, task, model, n)
        if rid is None:
            raise RuntimeError(f"no complete run of {model} on {n} {task} items after collection")
        _copy_when_free(db, src, rid)
    for f in (part, part.with_name(part.name + ".wal")):
        f.unlink(missing_ok=True)
    return rid


def ensure_imported(task: str, db: Path = DB) -> str:
    """The run id of Gemma-2 2B's imported outcomes on ``task``, importing them if the store lacks them."""
    if db.exists():
        with Store.open(db) as store:
            rid = find_run(store, task, IMPORTED, FULL)
        if rid is not None:
            return rid
    args = ["import", str(SHARED_BENCH / task), "--task", task, "--model-name", IMPORTED, "--db", str(db), "--json"]
    if wif(args) != 0:
        raise RuntimeError(f"import failed for {task}")
    with Store.open(db) as store:
        rid = find_run(store, task, IMPORTED, FULL)
    assert rid is not None
    return rid


def ensure_all(models=MODELS, tasks=TASKS, n: int = FULL, db: Path = DB) -> dict[str, dict[str, str]]:
    """``{task: {model: run_id}}`` for every pair, task by task (both models of a task before the next task)."""
    out: dict[str, dict[str, str]] = {}
    for task in tasks:
        out[task] = {IMPORTED: ensure_imported(task, db)}
        for model in models:
            t = time.perf_counter()
            out[task][model] = ensure(model, task, n, db)
            print(f"[real-runs] {model} on {task}: {out[task][model]} ({time.perf_counter() - t:.0f} s)", flush=True)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--n", type=int, default=FULL)
    a = p.parse_args()
    print(json.dumps(ensure_all(a.models.split(","), a.tasks.split(","), a.n), indent=1))
