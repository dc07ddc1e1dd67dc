"""A store at scale: a synthetic run of many items with Gemma-2 2B-wide activations, each page's first render on it,
`wif explain` on one layer, and the peak RSS of each (issue 16).

`python -m bench.big_store [--n 100000] [--width 2304] [--layers 6] [--db PATH]` builds the store through the store's
own write path (``wif_core.runner.write_run``: the run and its items, outcome batches with their activations, the
splits, status 'complete'), resuming an interrupted build and skipping a complete one, then measures each page and
the explainer in a fresh process of its own. The run is a two-choice task (piqa) whose failures follow a direction
planted in the activations (strongest in the middle layers) plus noise, so the probes find real but imperfect signal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from bench.common import ROOT, machine, write_section

log = logging.getLogger("bench.big_store")

PAGES = ("overview", "failures", "compare", "models", "reproduce", "sae", "clusters", "attribution", "zoo")
SITES = ["choice", "last", "mean"]
N_BLOCKS = 26  # Gemma-2 2B's
BATCH = 500
PROGRESS_S = 10.0
GOALS = ("open", "clean", "fold", "cool", "store", "fix", "carry", "warm", "cut", "dry")
THINGS = ("a jar", "the kettle", "a shirt", "soup", "bread", "a bike tyre", "paint", "a rope", "wet shoes", "a plank")
HOW = ("with a towel", "in the oven", "by hand", "with a spoon", "under water", "with tape", "on a rack", "slowly")

PAGE_SCRIPT = """
import resource, sys
from pathlib import Path
from bench.common import page_render_seconds
page, run_id, db, reps = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
seconds = page_render_seconds(page, run_id, db, reps=reps)
print("RESULT", seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""

CLI_SCRIPT = """
import resource, sys
from wif_core.cli import main
rc = main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


def run_id_of(n: int, width: int, layers: int) -> str:
    return f"synthetic-gemma-2-2b--piqa--big-n{n}-d{width}-l{layers}"


def layer_list(n_layers: int) -> list[int]:
    """``n_layers`` blocks spread evenly over Gemma-2 2B's 26 (1-based): 6 gives 4, 7, 11, 15, 19, 22."""
    return [round(N_BLOCKS * (k + 1) / (n_layers + 1)) for k in range(n_layers)]


def _items(n: int) -> list:
    from wif_core.tasks.base import TaskItem
    from wif_core.tasks.templates import render_context

    out = []
    for i in range(n):
        goal = f"To {GOALS[i % 10]} {THINGS[(i // 10) % 10]} (case {i}),"
        a, b = HOW[i % 8], HOW[(i * 3 + 1) % 8]
        if a == b:
            b = HOW[(i + 1) % 8]
        out.append(
            TaskItem(
                item_id=f"piqa-big-{i:06d}",
                task="piqa",
                context=render_context("two_choice", {"goal": goal}),
                choices=(f"do it {a}.", f"do it {b}."),
                gold=i % 2,
                meta={"goal": goal, "source_id": f"synthetic/{i}"},
            )
        )
    return out


def _latent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the planted score ``z`` and whether the model fails (``z`` plus noise above 0, about 40%)."""
    rng = np.random.default_rng([seed, 0])
    z = rng.standard_normal(n)
    failed = z + rng.standard_normal(n) * 0.9 > 0.25
    return z, failed


def _scorer(
    n: int, width: int, layers: list[int], seed: int
) -> tuple[Callable[[Sequence], Iterator[list]], np.ndarray]:
    z, failed = _latent(n, seed)
    direction = np.random.default_rng([seed, 1]).standard_normal(width).astype(np.float32)
    direction /= np.linalg.norm(direction)
    # the signal is strongest in the middle layers, weak at the ends (AUC by layer rises then falls)
    strength = {layer: 1.5 * np.sin(np.pi * (k + 1) / (len(layers) + 1)) for k, layer in enumerate(layers)}

    def score(todo: Sequence) -> Iterator[list]:
        from wif_core.store import OutcomeRow

        by_chunk: dict[int, list] = {}
        for it in todo:
            by_chunk.setdefault(int(it.item_id.rsplit("-", 1)[1]) // BATCH, []).append(it)
        for chunk, group in sorted(by_chunk.items()):
            rng = np.random.default_rng([seed, 2, chunk])  # a resumed build draws the same noise per chunk
            pos = np.array([int(it.item_id.rsplit("-", 1)[1]) for it in group])
            m = len(group)
            noise = {
                (layer, site): rng.standard_normal((m, 2, width) if site == "choice" else (m, width), dtype=np.float32)
                for layer in layers
                for site in SITES
            }
            rows = []
            for r, (it, p) in enumerate(zip(group, pos, strict=True)):
                bad = bool(failed[p])
                margin = float(-abs(rng.normal(1.0, 0.5)) if bad else abs(rng.normal(1.0, 0.5)))
                ll = [-20.0, -20.0]
                ll[it.gold] += margin / 2
                ll[1 - it.gold] -= margin / 2
                acts = {}
                for (layer, site), arr in noise.items():
                    v = arr[r] + strength[layer] * z[p] * (direction if site != "choice" else direction[None, :])
                    acts[(layer, site)] = v.astype(np.float16)
                rows.append(
                    OutcomeRow(
                        item_id=it.item_id,
                        pred=it.gold if not bad else 1 - it.gold,
                        correct=not bad,
                        margin=margin,
                        ll_sum=ll,
                        ll_norm=[v / (len(c) + 1) for v, c in zip(ll, it.choices, strict=True)],
                        n_tokens=[len(c.split()) + 1 for c in it.choices],
                        acts=acts,
                        truncated=0,
                    )
                )
            yield rows

    return score, failed


def build(db: Path, n: int, width: int, n_layers: int, seed: int = 0) -> dict:
    """Build (or resume, or keep) the synthetic run; returns what it did, the time it took and the store's size."""
    from wif_core.runner import SplitOptions, write_run
    from wif_core.store import RunInfo, Store

    run_id = run_id_of(n, width, n_layers)
    if db.exists():
        with Store.open(db) as store:
            if run_id in store.run_ids() and store.run(run_id).status == "complete":
                earlier = json.loads(_record(db).read_text()) if _record(db).exists() else {}
                return {"run_id": run_id, "built": False, "build_s": earlier.get("build_s"), "store_bytes": _size(db)}
    layers = layer_list(n_layers)
    run = RunInfo(
        run_id=run_id,
        model="synthetic-gemma-2-2b",
        task="piqa",
        source="synthetic (bench.big_store)",
        kind="collected",  # as a real Gemma-2 2B collection would be
        n_choices=2,
        family="two_choice",
        template="lm-eval-v1",
        scoring="sum",
        layers=layers,
        sites=SITES,
        n_layers=N_BLOCKS,
        d_model=width,
        act_dtype="float16",
        seed=seed,
        config={"bench": "big_store", "n": n, "width": width, "layers": layers},
    )
    score, _ = _scorer(n, width, layers, seed)
    items = _items(n)
    state = {"done": 0, "last": time.monotonic(), "t0": time.monotonic()}

    def progress(k: int) -> None:
        state["done"] += k
        now = time.monotonic()
        if now - state["last"] >= PROGRESS_S or state["done"] >= n:
            rate = state["done"] / max(now - state["t0"], 1e-9)
            log.info("%d/%d items (%.0f items/s), store %.2f GB", state["done"], n, rate, _size(db) / 1e9)
            state["last"] = now

    t = time.perf_counter()
    with Store.open(db, write=True) as store:
        # DuckDB's buffer may take 80% of RAM by default; the build needs little, and the machine is shared
        store._con.execute("SET memory_limit = '4GB'")
        write_run(
            store,
            run,
            items,
            score,
            split_options=SplitOptions(seed=seed),
            progress=progress,
            resumed=lambda k: state.__setitem__("done", k),
        )
    out = {"run_id": run_id, "built": True, "build_s": time.perf_counter() - t, "store_bytes": _size(db)}
    _record(db).write_text(json.dumps(out))  # what a later run that keeps the store reports as its build
    return out


def _record(db: Path) -> Path:
    return db.with_name(db.name + ".build.json")


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + ".wal")) if p.exists())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _page_process(page: str, run_id: str, db: Path, reps: int) -> tuple[float, float] | str:
    proc = subprocess.run(
        [sys.executable, "-c", PAGE_SCRIPT, page, run_id, str(db), str(reps)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    if proc.returncode != 0 or line is None:
        return (proc.stderr.strip().splitlines() or ["?"])[-1]
    _, seconds, kb = line.split()
    return float(seconds), int(kb) / 2**20


def measure_page(page: str, run_id: str, db: Path) -> dict:
    """One page in two fresh processes: the *cold* render, which fits what the page shows and fills the result
    caches on disk, and then a new process (as a new server) whose first render with those results cached is
    timed after an untimed one with Streamlit's caches cleared between them; the peak RSS of each process."""
    t = time.perf_counter()
    cold = _page_process(page, run_id, db, 0)
    first = _page_process(page, run_id, db, 1) if not isinstance(cold, str) else cold
    out: dict = {"page": page, "wall_s": time.perf_counter() - t}
    if isinstance(first, str) or isinstance(cold, str):
        return out | {"error": first if isinstance(first, str) else str(cold)}
    return out | {"cold_s": cold[0], "cold_rss_gib": cold[1], "first_s": first[0], "rss_gib": first[1]}


def measure_explain(run_id: str, db: Path, layer: int, site: str = "last") -> dict:
    """`wif explain --explainer probe` on one layer and site, a fresh process, no cached result."""
    args = ["explain", "--db", str(db), "--run", run_id, "--explainer", "probe", "--layer", str(layer)]
    args += ["--site", site, "--json", "--no-cache"]
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, *args], capture_output=True, text=True, env=_env(), cwd=ROOT
    )
    wall = time.perf_counter() - t
    kb = next((int(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("MAXRSS_KB")), 0)
    out: dict = {"layer": layer, "site": site, "wall_s": wall, "rss_gib": kb / 2**20, "rc": proc.returncode}
    try:
        doc = json.loads(proc.stdout)
        first = doc[0] if isinstance(doc, list) else doc
        out["auc"] = first.get("auc")
    except (json.JSONDecodeError, AttributeError, IndexError):
        out["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return out


def main(
    n: int = 100_000, width: int = 2304, n_layers: int = 6, db: Path | None = None, pages: Sequence[str] = PAGES
) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    db = db or ROOT / "data" / f"big-n{n}-d{width}.duckdb"
    load_before = os.getloadavg()
    built = build(db, n, width, n_layers)
    run_id = built["run_id"]
    log.info("store %s: %.2f GB (built now: %s)", db, built["store_bytes"] / 1e9, built["built"])
    results = []
    for page in pages:
        results.append(measure_page(page, run_id, db))
        log.info("page %s", results[-1])
    layer = layer_list(n_layers)[len(layer_list(n_layers)) // 2]
    explain = measure_explain(run_id, db, layer)
    log.info("explain %s", explain)
    load_after = os.getloadavg()
    out = {"n": n, "width": width, "layers": layer_list(n_layers), **built, "pages": results, "explain": explain}
    out["load"] = [load_before, load_after]
    _write(out, db)
    return out


def _write(out: dict, db: Path) -> None:
    def cell(r: dict, key: str, fmt: str) -> str:
        return "error: " + r["error"][:80] if "error" in r else format(r[key], fmt)

    rows = "\n".join(
        f"| {r['page']} | {cell(r, 'first_s', '.2f')} s | {cell(r, 'rss_gib', '.2f')} GiB | "
        f"{cell(r, 'cold_s', '.1f')} s | {cell(r, 'cold_rss_gib', '.2f')} GiB |"
        for r in out["pages"]
    )
    e = out["explain"]
    build_s = "not recorded" if out["build_s"] is None else f"{out['build_s']:.0f} s"
    build_s += "" if out["built"] else " (an earlier run's build, kept)"
    (b1, b5, _), (a1, a5, _) = out["load"]
    write_section(
        "big-store",
        f"""
## A store of {out["n"]:,} items (issue 16)

Machine: {machine()}; load average {b1:.1f} / {b5:.1f} (1 / 5 min) before, {a1:.1f} / {a5:.1f} after.
Command: `python -m bench.big_store --n {out["n"]} --width {out["width"]} --layers {len(out["layers"])}`
(`python -m bench.run big-store` for the default 100,000). One synthetic piqa run built through the store's write path:
{out["n"]:,} items, activations float16 at layers {out["layers"]} × sites choice ([2, d]), last and mean, width
{out["width"]}; failures follow a planted direction plus noise. Store {out["store_bytes"] / 1e9:.2f} GB; build
{build_s}.

Each page in fresh processes: the *cold* render (its own process) fits what the page shows and fills the result
caches on disk; then a new process, as a new server, renders the page once untimed and once timed with Streamlit's
caches cleared between them: the *first render* with cached results (goal < 2 s). Peak RSS is each process's
(Python, Streamlit and the page's imports included).

| page | first render | its peak RSS | cold render | its peak RSS |
| --- | --- | --- | --- | --- |
{rows}

`wif explain --run R --explainer probe --layer {e["layer"]} --site {e["site"]} --json --no-cache`, a fresh process:
{e["wall_s"]:.1f} s wall (goal < 60 s), peak RSS {e["rss_gib"]:.2f} GiB, test AUC
{"n/a" if e.get("auc") is None else f"{e['auc']:.3f}"}{"; error: " + e["error"] if "error" in e else ""}.

What the pages read at this size: the failure browser counts matches in SQL and lists the first 1,000; the clusters
map draws a seeded sample of 5,000 points and reads only their texts; the attribution page reads outcomes only; the
compare and reproduction pages read the items without their texts and keep paired comparisons beside the store;
ROC curves are drawn with at most 1,000 vertices; figure CSVs are built when downloaded. An explainer reads one layer
and site, streamed into one float32 array, from blocks written grouped by (layer, site). The cold renders and
`wif explain` hold the activations they fit on (0.9 GB per layer and site here, in float32) and sklearn's copies.
""",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=2304)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--pages", default=",".join(PAGES), help="comma list of pages to measure")
    parser.add_argument("--build-only", action="store_true")
    a = parser.parse_args()
    if a.build_only:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        print(json.dumps(build(a.db or ROOT / "data" / f"big-n{a.n}-d{a.width}.duckdb", a.n, a.width, a.layers)))
    else:
        print(json.dumps(main(a.n, a.width, a.layers, a.db, a.pages.split(",")), indent=1, default=str))
