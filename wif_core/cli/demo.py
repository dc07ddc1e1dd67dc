"""``wif demo`` (build the demo store if absent, then open the dashboard) and ``wif app`` (open it on a store)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wif_core.cli.common import AddCommon, add_common, cache_dir, emit, positive_int
from wif_core.paths import DEFAULT_ZOO_DIR, DEMO_DB

LOCALHOST = "127.0.0.1"
ADDRESS_HELP = (
    f"the address the dashboard listens on (default {LOCALHOST}: this machine only; 0.0.0.0: every interface)"
)


def launch_app(db: str, port: int | None, headless: bool, address: str = LOCALHOST) -> int:
    """Serve the installed app (``wif_ui/app.py``, package data) on ``db`` until stopped.

    This process becomes the Streamlit server (``os.execve``: the same PID), so stopping ``wif app``
    by its PID, with SIGTERM, SIGINT or SIGHUP, stops the server and frees the store and the port.
    It listens on ``address`` only: this machine alone by default.
    """
    from wif_core.paths import app_entry
    from wif_core.store import Store

    Store.open(db).close()  # fail here, in one line, rather than inside the browser
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_entry()),
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--server.address",
        address,
    ]
    if port:
        cmd += ["--server.port", str(port)]
    if headless:
        cmd += ["--server.headless=true"]
    env = {**os.environ, "WIF_DB": str(Path(db).resolve()), "WIF_ZOO_DIR": str(DEFAULT_ZOO_DIR.resolve())}
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, cmd, env)  # does not return
    return subprocess.call(cmd, env=env)  # no exec on this system: a child, which Ctrl-C stops with this one


def _build_ready(builder: Any) -> None:
    """Build what the dashboard needs before it opens, or wait while another process builds it."""
    from wif_core.demo import read_status
    from wif_core.progress import step

    told = False
    while True:
        with builder.lock(wait=False) as got:
            if got:
                builder.build(ready_only=True)
                return
        if not builder.pending(ready_only=True):
            return
        if not told:
            doc = read_status(builder.db) or {}
            step(f"process {doc.get('pid', '?')} is building {builder.db}; waiting for the first run", builder.stream)
            told = True
        time.sleep(1.0)


def _build_all(builder: Any) -> None:
    from wif_core.demo import read_status
    from wif_core.paths import demo_file
    from wif_core.progress import step

    with builder.lock(wait=False) as got:
        if got:
            builder.build()
            return
    doc = read_status(builder.db) or {}
    step(
        f"process {doc.get('pid', '?')} is building {builder.db}; waiting for it to finish "
        f"(progress: {demo_file(builder.db, 'build.log')})",
        builder.stream,
    )
    with builder.lock(wait=True):
        builder.build()


def _spawn_background(args: argparse.Namespace, builder: Any) -> Path | None:
    """Start ``wif demo --no-app`` behind the dashboard to finish the build; returns its log (None: one runs)."""
    from wif_core.paths import demo_file

    with builder.lock(wait=False) as got:
        if not got:  # a build is already running behind an earlier dashboard
            return None
    log_path = demo_file(builder.db, "build.log")
    cmd = [sys.executable, "-m", "wif_core.cli.main", "demo", "--no-app", "--db", str(builder.db)]
    cmd += ["--limit", str(args.limit), "--tasks", args.tasks, "--background-of", str(os.getpid())]
    if args.sae_samples:
        cmd += ["--sae-samples", str(args.sae_samples)]
    cmd += ["--compare-with", ",".join(_others(args)) or "none"]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    if args.model:
        cmd += ["--model", args.model]
    cmd += ["--device", builder.device]
    with open(log_path, "a") as fh:
        subprocess.Popen(  # noqa: S603 - wif's own command
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return log_path


def _watch_parent(pid: int) -> None:
    """Stop this background build (as Ctrl-C would: its work so far is kept) once the dashboard it serves is gone.

    SIGTERM becomes KeyboardInterrupt, and a watcher thread sends this process SIGTERM when its parent changes
    (not ``_thread.interrupt_main``: a process started in the background of a shell ignores SIGINT).
    """
    import signal
    import threading

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="wif-demo-parent").start()


def _others(args: argparse.Namespace) -> tuple[str, ...]:
    """The models the demo also runs for the Compare models page: ``--compare-with``, by default the second
    embedded model when the demo's model is the first and that model is installed (`make install` installs it)."""
    from wif_core.demo import DEMO_SECOND_MODEL, second_model_installed

    if args.compare_with is None:
        return (DEMO_SECOND_MODEL,) if args.model is None and second_model_installed() else ()
    return tuple(m.strip() for m in args.compare_with.split(",") if m.strip() and m.strip() != "none")


def cmd_demo(args: argparse.Namespace) -> int:
    from wif_core.cli.runs import runs_payload
    from wif_core.demo import DEMO_TASKS, DemoBuilder, read_status, status_lines
    from wif_core.errors import InputError
    from wif_core.models.devices import resolve_device
    from wif_core.progress import step

    db = Path(args.db)
    if args.status:
        doc = read_status(db)
        emit(args, doc, "\n".join(status_lines(doc)))
        return 0
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    unknown = [t for t in tasks if t not in DEMO_TASKS]
    if unknown or not tasks:
        raise InputError(f"--tasks: '{(unknown or [''])[0]}' is not a demo task; give some of {', '.join(DEMO_TASKS)}")
    builder = DemoBuilder(
        db,
        limit=args.limit,
        model=args.model,
        cache_dir=cache_dir(args),
        stream=sys.stderr,
        tasks=tasks,
        sae_samples=args.sae_samples,
        others=_others(args),
        device=str(resolve_device(args.device)),
    )
    if args.background_of:
        _watch_parent(args.background_of)
    if args.no_app:
        _build_all(builder)
        from wif_core.store import Store

        with Store.open(db) as store:
            emit(args, runs_payload(store), f"demo store complete at {db}: nothing left to compute")
        return 0
    _build_ready(builder)
    left = builder.pending()
    if left:
        log_path = _spawn_background(args, builder)
        where = f"progress on every page and in {log_path}" if log_path else "an earlier `wif demo` is computing it"
        step(
            f"the dashboard opens now; {len(left)} steps are still computed behind it ({where}): "
            + ", ".join(s.name for s in left),
            sys.stderr,
        )
    return launch_app(str(db), args.port, args.headless, args.address)


def cmd_app(args: argparse.Namespace) -> int:
    return launch_app(args.db, args.port, args.headless, args.address)


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif demo`` and ``wif app``."""
    from wif_core.demo import DEMO_LIMIT, DEMO_TASKS

    p = add_common(
        sub.add_parser(
            "demo",
            help=f"build {DEMO_DB} (or finish it) and open the dashboard as soon as its first run is ready",
        ),
        db=DEMO_DB,
    )
    p.add_argument("--limit", type=positive_int, default=DEMO_LIMIT, help="items per generated task")
    p.add_argument("--no-app", action="store_true", help="build the whole store now, in this process, and exit")
    p.add_argument(
        "--tasks",
        default=",".join(DEMO_TASKS),
        help="the generated tasks to build, comma-separated, the first before the dashboard opens "
        f"(default {','.join(DEMO_TASKS)})",
    )
    p.add_argument(
        "--sae-samples", type=positive_int, default=None, help="token samples each demo SAE trains on (default 20000)"
    )
    p.add_argument(
        "--compare-with",
        default=None,
        help="models also run on the first two tasks for the Compare models page, comma-separated, or 'none' "
        "(default: gemma3-270m with the default model, when installed)",
    )
    p.add_argument("--status", action="store_true", help="print what the demo build is doing and what is left")
    p.add_argument("--model", default=None, help="the model to build it with (default: the embedded model)")
    p.add_argument(
        "--device", default="auto", help="auto (a GPU when torch sees one, else the CPU), cpu, cuda, cuda:N or mps"
    )
    p.add_argument("--background-of", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--headless", action="store_true")
    p.add_argument("--address", default=LOCALHOST, help=ADDRESS_HELP)
    p.add_argument("--cache-dir", default=None)
    p.set_defaults(func=cmd_demo)

    p = common(sub.add_parser("app", help="open the dashboard on a store"))
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--headless", action="store_true")
    p.add_argument("--address", default=LOCALHOST, help=ADDRESS_HELP)
    p.set_defaults(func=cmd_app)
