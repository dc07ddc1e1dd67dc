"""``wif app``'s process (issue 12, item 11): stopping it by its PID stops the server; it listens on localhost.

``wif app`` used to run Streamlit as a child: a SIGTERM to the PID the user saw killed only the
parent, and the orphaned server went on serving and holding the store, so every later write
failed with "in use". It also listened on every interface. Now the ``wif app`` process *is* the
server (exec), bound to 127.0.0.1 unless ``--address`` says otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from wif_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    """Whether anything accepts a TCP connection at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def _wif_app(db: Path, tmp_path: Path, *args: str, host: str = "127.0.0.1") -> Iterator[tuple[subprocess.Popen, int]]:
    """``wif app --headless --port P --db DB ARGS`` until its health check answers at ``host``."""
    port = _free_port()
    log = (tmp_path / f"wif-app-{port}.log").open("w")
    cmd = [sys.executable, "-m", "wif_core.cli.main", "app", "--headless", "--port", str(port), "--db", str(db)]
    proc = subprocess.Popen([*cmd, *args], cwd=tmp_path, env=ENV, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"wif app exited with {proc.returncode}; see {log.name}"
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"wif app did not answer on port {port} within 90 s; see {log.name}"
            time.sleep(0.5)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_stopping_wif_app_by_its_pid_stops_the_server_and_frees_the_store(
    synthetic_db: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    with _wif_app(synthetic_db, tmp_path) as (proc, port):
        assert _answers("127.0.0.1", port)
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _answers("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _answers("127.0.0.1", port), f"something still serves on port {port} after {sig.name}"
    with Store.open(synthetic_db, write=True, wait=0):  # nothing holds the store any more
        pass


def test_wif_app_listens_on_localhost_only_unless_told_otherwise(synthetic_db: Path, tmp_path: Path) -> None:
    """127.0.0.2 is this machine too, but not the address 127.0.0.1 names: a server bound to every
    interface answers there, one bound to 127.0.0.1 does not."""
    with _wif_app(synthetic_db, tmp_path) as (_, port):
        assert _answers("127.0.0.1", port) and not _answers("127.0.0.2", port)
    with _wif_app(synthetic_db, tmp_path, "--address", "127.0.0.2", host="127.0.0.2") as (_, port):
        assert _answers("127.0.0.2", port) and not _answers("127.0.0.1", port)
