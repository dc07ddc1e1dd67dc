"""``wif demo`` (build the demo store if absent, then open the dashboard) and ``wif app`` (open it on a store)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from wif_core.cli.common import AddCommon, add_common, cache_dir, emit, positive_int, progress_bar
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


def cmd_demo(args: argparse.Namespace) -> int:
    from wif_core.cli.runs import runs_payload
    from wif_core.demo import build_demo, upgrade_demo

    db = Path(args.db)

    def bars(desc: str, total: int | None, unit: str) -> Any:
        return progress_bar(args, desc=desc, total=total, unit=unit)

    if not db.exists():
        built = build_demo(db, args.limit, cache_dir(args), bars)
        if not args.json:
            for b in built:
                print(f"built {b.run_id}: {b.n_items} items")
    else:
        upgrade_demo(db, cache_dir(args), bars)
    if args.no_app:
        from wif_core.store import Store

        with Store.open(db) as store:
            emit(args, runs_payload(store), f"demo store ready at {db}")
        return 0
    return launch_app(str(db), args.port, args.headless, args.address)


def cmd_app(args: argparse.Namespace) -> int:
    return launch_app(args.db, args.port, args.headless, args.address)


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif demo`` and ``wif app``."""
    from wif_core.demo import DEMO_LIMIT

    p = add_common(sub.add_parser("demo", help=f"build {DEMO_DB} if absent, then open the dashboard"), db=DEMO_DB)
    p.add_argument("--limit", type=positive_int, default=DEMO_LIMIT, help="items per generated task")
    p.add_argument("--no-app", action="store_true", help="build the store only")
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
