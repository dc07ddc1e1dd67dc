"""The demo build: its plan, progress off a terminal, its status file, and resumption from any phase.

A build stopped in any step (an injected failure, or a SIGKILL in a subprocess) and run again finishes
exactly what is missing, runs no finished step twice, and ends with the same contents as a build that
was never stopped. The tiny random Llama stands in for the embedded model; two tasks keep it quick.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wif_core.demo import FAIL_ENV, DemoBuilder, InjectedFailure, plan, read_status, status_lines, token_layer
from wif_core.paths import demo_file

TASKS = ("gen-coref", "gen-physical")
LIMIT = 40
SAE_SAMPLES = 4096


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _builder(db: Path, model: Path, stream: io.StringIO | None = None) -> DemoBuilder:
    return DemoBuilder(
        db,
        limit=LIMIT,
        model=str(model),
        tasks=TASKS,
        sae_samples=SAE_SAMPLES,
        bar_mode="lines" if stream is not None else "off",
        stream=stream,
    )


def snapshot(db: Path) -> dict:
    """What a demo store holds, without timings: runs, outcomes, splits, attributions, SAEs and results."""
    from safetensors.numpy import load_file

    from wif_core.explainers.evaluate import ResultCache
    from wif_core.sae.paths import sae_root
    from wif_core.store import Store

    out: dict = {"runs": {}, "saes": {}, "results": {}}
    with Store.open(db) as store:
        for run_id in sorted(store.run_ids()):
            run = store.run(run_id)
            items = store.items(run_id, include_excluded=True).sort_values("item_id")
            atts = sorted(store.attributions(run_id), key=lambda r: (r.item_id, r.method))
            out["runs"][run_id] = {
                "status": run.status,
                "n_planned": run.n_planned,
                "items": list(items["item_id"]),
                "correct": list(items["correct"]),
                "split": list(items["split"]),
                "margin": np.asarray(items["margin"], dtype=float),
                "findings": len(store.findings(run_id)),
                "attributions": [(r.item_id, r.method) for r in atts],
                "scores": [np.asarray(r.scores, dtype=float) for r in atts],
                "faithfulness": np.asarray([r.faithfulness or 0.0 for r in atts], dtype=float),
            }
    for metrics in sorted(sae_root(db).glob("*/L*/metrics.json")):
        m = json.loads(metrics.read_text())
        weights = load_file(str(metrics.parent / "sae_weights.safetensors"))
        out["saes"][str(metrics.parent.relative_to(sae_root(db)))] = {
            "n_tokens": m["n_tokens"],
            "samples": m["samples"],
            "W_enc": weights["W_enc"],
            "codes": (metrics.parent / "codes.safetensors").is_file(),
        }
    cache = ResultCache.beside(db)
    for path in sorted(cache.directory.glob("*.json")):
        doc = json.loads(path.read_text())
        out["results"][path.stem] = (doc["run_id"], doc["explainer"], doc["auc"], doc["n_test"])
    return out


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a["runs"]) == sorted(b["runs"])
    for run_id, ra in a["runs"].items():
        rb = b["runs"][run_id]
        for key in ("status", "n_planned", "items", "correct", "split", "findings", "attributions"):
            assert ra[key] == rb[key], (run_id, key)
        np.testing.assert_allclose(ra["margin"], rb["margin"], atol=1e-4)
        np.testing.assert_allclose(ra["faithfulness"], rb["faithfulness"], atol=1e-4)
        for sa, sb in zip(ra["scores"], rb["scores"], strict=True):
            np.testing.assert_allclose(sa, sb, atol=1e-4)
    assert sorted(a["saes"]) == sorted(b["saes"])
    for key, sa in a["saes"].items():
        sb = b["saes"][key]
        assert (sa["n_tokens"], sa["samples"], sa["codes"]) == (sb["n_tokens"], sb["samples"], sb["codes"])
        np.testing.assert_allclose(sa["W_enc"], sb["W_enc"], atol=1e-3)
    assert sorted(a["results"]) == sorted(b["results"])
    for key, (run, name, auc, n) in a["results"].items():
        assert b["results"][key][:2] == (run, name) and b["results"][key][3] == n
        assert b["results"][key][2] == pytest.approx(auc, abs=1e-6)


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """An uninterrupted build: its store, its snapshot, and the steps it ran with its progress lines."""
    db = tmp_path_factory.mktemp("demo-ref") / "demo.duckdb"
    stream = io.StringIO()
    b = _builder(db, tiny_model_dir, stream)
    ran = b.build()
    return db, snapshot(db), [s.name for s in ran] + [stream.getvalue()]


def test_the_plan_opens_the_dashboard_on_the_first_task_and_attributes_every_failure_last():
    steps = plan(TASKS)
    ready = [s.name for s in steps if s.ready]
    assert ready == [
        "collect gen-coref",
        "zoo run",
        "SAE gen-coref",
        "explainers gen-coref",
        "attribute gen-coref (first 8 failures)",
    ]
    assert steps[-2].name == "attribute gen-coref (every failure)" and steps[-1].name.startswith(
        "attribute gen-physical"
    )
    assert len({s.name for s in steps}) == len(steps)
    assert token_layer(30) == 18 and token_layer(4) == 2  # the embedded model's layer 18


def test_an_uninterrupted_build_runs_every_step_once_and_says_so(reference, tiny_model_dir):
    db, snap, ran = reference
    names, log = ran[:-1], ran[-1]
    assert names == [s.name for s in plan(TASKS)]
    assert [r["n_planned"] for r in snap["runs"].values()].count(LIMIT) == 2  # the two tasks, and the zoo run
    assert len(snap["saes"]) == 2 and all(s["codes"] for s in snap["saes"].values()) and snap["results"]
    for name in names:  # one line as each phase starts, and one as it ends
        assert f"[wif] {name}: started" in log and f"[wif] {name}: done" in log
    doc = read_status(db)
    assert doc["state"] == "complete" and doc["pending"] == [] and not demo_file(db, "parts").exists()
    assert status_lines(doc) == ["state: complete"]
    again = _builder(db, tiny_model_dir)
    assert again.pending() == [] and again.build() == [] and again._lms == {}  # nothing twice, no model load


@pytest.mark.parametrize(
    "where",
    [
        "collect gen-coref:20",  # before the demo store exists
        "zoo run:1000",
        "SAE gen-coref:1024",
        "explainers gen-coref:2",
        "collect gen-physical:end",  # its run copied in, the part store not yet removed
        "attribute gen-physical (every failure):4",  # behind the dashboard (a collection there: the SIGKILL test)
    ],
)
def test_a_build_stopped_in_any_step_finishes_what_is_missing_only(where, reference, tiny_model_dir, tmp_path):
    db = tmp_path / "demo.duckdb"
    os.environ[FAIL_ENV] = where
    try:
        with pytest.raises(InjectedFailure):
            _builder(db, tiny_model_dir).build()
    finally:
        del os.environ[FAIL_ENV]
    doc = read_status(db)
    assert doc["state"] == "failed" and "stopped the build" in doc["error"]
    b = _builder(db, tiny_model_dir)
    left = [s.name for s in b.pending()]
    step = where.rpartition(":")[0]
    all_steps = [s.name for s in plan(TASKS)]
    if not where.endswith(":end"):
        assert step in left  # the interrupted step is not taken for done
    assert left == [n for n in all_steps if n in left]  # and what is left is the rest of the plan, in order
    ran = [s.name for s in b.build()]
    assert ran == left  # every missing step, none that was finished
    assert read_status(db)["state"] == "complete"
    assert_same(reference[1], snapshot(db))


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(db: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wif_core.cli.main",
        "demo",
        "--db",
        str(db),
        "--model",
        str(model),
        "--limit",
        str(LIMIT),
        "--tasks",
        ",".join(TASKS),
        "--sae-samples",
        str(SAE_SAMPLES),
        *extra,
    ]


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def test_a_killed_build_resumes_to_the_same_store(reference, tiny_model_dir, tmp_path):
    """SIGKILL in the middle of the second task's collection (behind where the dashboard would open): the
    demo store stays whole and readable, and `wif demo --no-app` finishes it, printing its progress."""
    from wif_core.store import Store

    db = tmp_path / "demo.duckdb"
    proc = subprocess.Popen(_cli(db, tiny_model_dir, "--no-app"), env=_env(), stderr=subprocess.DEVNULL)
    try:

        def collecting() -> bool:
            step = (read_status(db, alive_check=False) or {}).get("step") or {}
            return step.get("name") == "collect gen-physical" and step.get("done", 0) > 0

        _wait(collecting, 300, "the second collection to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert read_status(db)["state"] == "stopped"  # the process is gone: not "building"
    with Store.open(db) as store:  # whole: the first task's run, nothing half-copied
        assert len([r for r in store.run_ids() if "gen-physical" in r]) == 0
    done = subprocess.run(_cli(db, tiny_model_dir, "--no-app"), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "[wif] collect gen-physical: started" in done.stderr and "nothing left to compute" in done.stdout
    assert "collect gen-coref" not in done.stderr  # finished before the kill: not done twice
    assert_same(reference[1], snapshot(db))


def test_wif_demo_opens_the_dashboard_early_and_finishes_behind_it(tiny_model_dir, tmp_path):
    """`wif demo`: the ready steps, then the server while a background build finishes; the status file says
    what is left; stopping the dashboard stops the background build, and the next `wif demo` finishes it."""
    import socket

    db = tmp_path / "demo.duckdb"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "demo.log"
    with open(log, "w") as fh:
        server = subprocess.Popen(  # SIGINT ignored, as `wif demo &` in a shell script has it
            _cli(db, tiny_model_dir, "--headless", "--port", str(port)),
            env=_env(),
            stderr=fh,
            stdout=fh,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        _wait(healthy, 300, "the dashboard")
        text = log.read_text()
        assert "[wif] collect gen-coref: done" in text and "the dashboard opens now" in text
        assert "collect gen-physical" in text  # named as still to compute
        with open(log) as fh:
            assert "[wif] collect gen-physical: started" not in fh.read()  # it runs behind, not before
        doc = _wait(lambda: read_status(db), 30, "the status file")
        assert doc["state"] in ("building", "complete")
        from wif_core.store import Store

        with Store.open(db) as store:  # open for reading while the build goes on
            assert any("gen-coref" in r for r in store.run_ids())
        _wait(
            lambda: "[wif] SAE gen-physical: started" in demo_file(db, "build.log").read_text(),
            300,
            "the background build's progress in its log",
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    _wait(lambda: (read_status(db) or {}).get("state") != "building", 30, "the background build to stop")
    finish = subprocess.run(_cli(db, tiny_model_dir, "--no-app"), env=_env(), capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr
    assert read_status(db)["state"] == "complete"
    assert "collect gen-coref: started" not in finish.stderr and "collect gen-physical: started" not in finish.stderr


def test_a_bad_task_list_is_one_line(tmp_path):
    from wif_core.cli.main import main

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", err)
        code = main(["demo", "--db", str(tmp_path / "d.duckdb"), "--no-app", "--tasks", "gen-coref,piqa"])
    assert code == 2 and "'piqa' is not a demo task" in err.getvalue() and "Traceback" not in err.getvalue()
    assert not (tmp_path / "d.duckdb").exists()


# ---- the app while the build runs -------------------------------------------------------------


def _status(db: Path, **fields) -> None:
    doc = {
        "version": 1,
        "state": "building",
        "pid": os.getpid(),
        "pending": ["collect gen-physical", "attribute gen-coref (every failure)"],
        "step": {"name": "collect gen-physical", "done": 120, "total": 540, "unit": "item", "elapsed": 30.0},
        **fields,
    }
    demo_file(db, "build.json").write_text(json.dumps(doc))


def _texts(at) -> str:
    parts = [e.value for kind in ("markdown", "info", "warning", "error", "caption") for e in at.get(kind)]
    parts += [getattr(e, "label", "") or "" for kind in ("expandable", "status") for e in at.get(kind)]
    parts += [str(getattr(e, "proto", "")) for e in at.get("progress")]
    return "\n".join(str(p) for p in parts)


@pytest.mark.usefixtures("fresh_st_caches")
def test_every_page_shows_the_build_in_progress_and_what_is_pending(wif_db: Path) -> None:
    from page_runner import run_page

    app = str(Path(__file__).resolve().parents[1] / "app.py")
    _status(wif_db)
    try:
        at = run_page(app)
        assert not at.exception
        text = _texts(at)
        assert "Building the demo store: 2 steps left — now collect gen-physical" in text
        assert "collect gen-physical: 120/540 items (22%), 30 s elapsed, ~1 min 45 s left" in text
        assert "attribute gen-coref (every failure): the Attribution page" in text
        _status(wif_db, pid=2**22 + 12345)  # the builder is gone: the app says so and how to finish
        at = run_page(app)
        assert "The demo build stopped with 2 steps left" in _texts(at) and "run `wif demo`" in _texts(at)
        _status(wif_db, state="complete", pending=[], step=None)
        at = run_page(app)
        assert "demo build" not in _texts(at).lower()
    finally:
        demo_file(wif_db, "build.json").unlink(missing_ok=True)


def test_a_page_whose_data_is_pending_says_it_is_being_computed(wif_db: Path, monkeypatch) -> None:
    from wif_ui import build

    from wif_core.paths import demo_file as df

    monkeypatch.setattr(build.data, "db_path", lambda: str(wif_db))
    _status(wif_db, step={"name": "attribute gen-coref (every failure)", "done": 3, "total": 10, "unit": "failure"})
    try:
        assert "computing this now: attribute gen-coref (every failure): 3/10 failures" in build.pending_note(
            "gen-coref", "attribute"
        )
        assert "will compute this shortly (collect gen-physical)" in build.pending_note("gen-physical", "collect")
        assert build.pending_note("gen-social", "attribute") is None
    finally:
        df(wif_db, "build.json").unlink(missing_ok=True)


def test_an_older_demo_store_has_its_runs_replaced_once_their_successors_are_whole(tiny_model_dir, tmp_path):
    from wif_core.sae.paths import sae_root
    from wif_core.store import Store

    db = tmp_path / "demo.duckdb"
    old = DemoBuilder(db, limit=12, model=str(tiny_model_dir), tasks=("gen-coref",), sae_samples=SAE_SAMPLES)
    old.steps = [s for s in old.steps if s.kind in ("collect", "zoo")]  # an older demo: runs only
    old.build()
    with Store.open(db) as store:
        (old_run,) = [r for r in store.run_ids() if "gen-coref" in r]
    new = _builder(db, tiny_model_dir)
    assert "collect gen-coref" in [s.name for s in new.pending()]  # a 12-item run is not this demo's
    new.build()
    with Store.open(db) as store:
        runs = store.run_ids()
        assert old_run not in runs and len([r for r in runs if "gen-coref" in r]) == 1
        assert store.run(next(r for r in runs if "gen-coref" in r)).n_planned == LIMIT
        assert len([r for r in runs if store.run(r).kind == "zoo"]) == 1  # the zoo run is kept, not made twice
    assert not (sae_root(db) / old_run).exists()


def test_progress_lines_off_a_terminal_and_a_resumed_phase_s_estimate():
    """Off a terminal: a line as a phase starts, at most one per interval, one at its end; a resumed phase's
    estimate uses only the units it did itself."""
    from wif_core.progress import Bar

    now = [0.0]
    out = io.StringIO()
    with Bar("collect x", 100, "item", stream=out, interval=10.0, clock=lambda: now[0]) as bar:
        bar.resumed(50)  # done before: no line, and no rate
        for _ in range(25):
            now[0] += 1.0
            bar.update(1)  # 25 s for 25 items
    lines = out.getvalue().splitlines()
    assert lines[0] == "[wif] collect x: started (100 items)"
    assert lines[1] == "[wif] collect x: 60/100 items (60%), 10 s elapsed, ~40 s left"  # 10 items in 10 s
    assert lines[2].startswith("[wif] collect x: 70/100") and len(lines) == 4
    assert lines[-1] == "[wif] collect x: done, 75 items in 25 s"


def test_a_second_model_on_the_first_tasks_fills_the_compare_models_page(tiny_llama, tiny_tokenizer, tmp_path):
    """`--compare-with`: the second model's runs of the first two tasks (with results and first attributions)
    come after the first model's, and the Compare models page's default pairs the two models on one task."""
    from wif_core.compare import compare_runs, default_selection
    from wif_core.store import Store

    dirs = []
    for name in ("model-a", "model-b"):
        d = tmp_path / name
        tiny_llama.save_pretrained(d, safe_serialization=True)
        tiny_tokenizer.save_pretrained(d)
        dirs.append(str(d))
    db = tmp_path / "demo.duckdb"
    b = DemoBuilder(db, limit=LIMIT, model=dirs[0], tasks=TASKS, sae_samples=SAE_SAMPLES, others=(dirs[1],))
    names = [s.name for s in b.steps]
    assert names.index(f"collect gen-physical with {dirs[1]}") < names.index("attribute gen-coref (every failure)")
    assert names.index("attribute gen-physical (first 8 failures)") < names.index(f"collect gen-coref with {dirs[1]}")
    b.build()
    with Store.open(db) as store:
        pair = default_selection(store)
        assert {store.run(r).model for r in pair} == set(dirs) and len({store.run(r).task for r in pair}) == 1
        result = compare_runs(store, pair)
    assert result is not None
    assert b.pending() == []
