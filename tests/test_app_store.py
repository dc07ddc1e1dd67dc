"""The app and a writer on one store (issue 12, item 11): what DuckDB allows, and what the app does.

DuckDB lets one process write a file or several read it, never both. The app used to hold a
read-only connection for as long as it ran, so every later write failed with "in use". Now it
holds the file only while a call reads it (``Store.reader``): a writer can take the store
between reads, the app reads it afresh once it has changed, and while a writer holds it the
pages keep what they have read and say why the rest is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from page_runner import run_page
from store_factory import COLLECTED_RUN, IMPORTED_RUN, OTHER_RUN

from wif_core.errors import StoreBusy
from wif_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def store_copy(synthetic_db: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic store that a test may write to."""
    path = tmp_path / "copy.duckdb"
    shutil.copy(synthetic_db, path)
    return path


def _write(path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in another process with ``store`` open for writing (as a collection would)."""
    script = f"from wif_core.store import Store\nwith Store.open({str(path)!r}, write=True) as store:\n    {code}\n"
    return subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=120)


@contextmanager
def _held(path: Path, *, write: bool, seconds: float = 60) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``path`` open until the block ends: for writing (and writing, as a collection
    does: the file changes), or read-only."""
    script = (
        "import sys, time, duckdb\n"
        f"con = duckdb.connect({str(path)!r}, read_only={not write})\n"
        + ("con.execute('CREATE TABLE scratch AS SELECT 1 AS x')\n" if write else "")
        + "print('open', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield proc
    finally:
        proc.kill()
        proc.wait()


# ---- what DuckDB does, measured ----------------------------------------------------------


def test_duckdb_one_writer_or_many_readers_across_processes(store_copy: Path) -> None:
    with _held(store_copy, write=False):
        assert duckdb.connect(str(store_copy), read_only=True).execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(store_copy))  # a reader elsewhere: no writer here
    with _held(store_copy, write=True), pytest.raises(duckdb.IOException, match="lock"):
        duckdb.connect(str(store_copy), read_only=True)  # a writer elsewhere: not even a reader here


# ---- Store.reader and the writer's wait ------------------------------------------------------


def test_a_reader_lets_a_writer_in_between_reads_and_sees_what_it_wrote(store_copy: Path) -> None:
    reader = Store.reader(store_copy)
    assert OTHER_RUN in reader.runs()["run_id"].tolist()
    done = _write(store_copy, f"store.delete_run({OTHER_RUN!r})")  # the old app made this fail with "in use"
    assert done.returncode == 0, done.stderr
    assert reader.runs()["run_id"].tolist() == [COLLECTED_RUN, IMPORTED_RUN]
    reader.close()


def test_a_reader_says_busy_in_one_line_while_a_writer_holds_the_store(store_copy: Path) -> None:
    reader = Store.reader(store_copy)
    with _held(store_copy, write=True), pytest.raises(StoreBusy, match="in use by another wif process") as info:
        reader.runs()
    assert "\n" not in str(info.value)
    assert len(reader.runs()) == 3  # and reads again once it is gone


def test_a_writer_waits_for_a_reader_to_let_go(store_copy: Path) -> None:
    with _held(store_copy, write=False, seconds=1.5):
        start = time.monotonic()
        with Store.open(store_copy, write=True) as store:  # waits for the reader, then writes
            store.delete_run(OTHER_RUN)
    assert time.monotonic() - start > 0.5
    with _held(store_copy, write=False), pytest.raises(StoreBusy, match="in use by another wif process"):
        Store.open(store_copy, write=True, wait=0.3)


# ---- the app -------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_st_caches")
def test_the_app_lets_a_collection_write_and_shows_what_it_wrote(store_copy: Path, monkeypatch) -> None:
    monkeypatch.setenv("WIF_DB", str(store_copy))
    overview = str(ROOT / "pages" / "overview.py")
    at = run_page(overview)
    assert at.metric[0].value == "3" and not at.exception
    done = _write(store_copy, f"store.delete_run({OTHER_RUN!r})")  # while the app is up, its reads cached
    assert done.returncode == 0, done.stderr
    at = run_page(overview)
    assert at.metric[0].value == "2" and not at.exception  # read afresh: the store changed


@pytest.mark.usefixtures("fresh_st_caches")
def test_while_a_writer_holds_the_store_pages_keep_what_they_read(store_copy: Path, monkeypatch) -> None:
    monkeypatch.setenv("WIF_DB", str(store_copy))
    overview, failures = (str(ROOT / "pages" / f"{p}.py") for p in ("overview", "failures"))
    assert run_page(overview).metric[0].value == "3"
    with _held(store_copy, write=True):
        at = run_page(overview)
        assert not at.exception and at.metric[0].value == "3"  # what was read stays
        assert any("Another wif process is writing to this store" in i.value for i in at.info)
        at = run_page(failures, run=COLLECTED_RUN)  # not read before: one line, no traceback
        assert not at.exception
        assert any("in use by another wif process" in e.value for e in at.error)


@pytest.mark.usefixtures("fresh_st_caches")
def test_a_store_held_by_a_writer_before_the_app_read_it_gets_one_line(store_copy: Path, monkeypatch) -> None:
    monkeypatch.setenv("WIF_DB", str(store_copy))
    with _held(store_copy, write=True):
        at = run_page(str(ROOT / "pages" / "overview.py"))
    assert not at.exception
    assert [e.value for e in at.error][0].endswith("close it and retry")
    assert "never both" in at.info[0].value
