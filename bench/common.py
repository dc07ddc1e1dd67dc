"""Shared benchmark helpers: machine description, matmul roofline, and the results file."""

from __future__ import annotations

import platform
import re
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "BENCHMARKS.md"
SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "wif-gemma-2-2b"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads{mem}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def matmul_flops(n: int = 1024, reps: int = 30) -> float:
    """Dense fp32 matmul FLOP/s on this machine now (square ``n``; best of three timed blocks)."""
    return shaped_matmul_flops(n, n, n, reps)


def shaped_matmul_flops(m: int, k: int, n: int, reps: int = 30) -> float:
    """FLOP/s of an ``[m, k] @ [k, n]`` fp32 matmul (best of three timed blocks)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t))
    return best


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between the markers for ``name`` in docs/BENCHMARKS.md."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n\nWritten by `make bench`.\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def page_render_seconds(page: str, run_id: str, db: Path, reps: int = 3) -> float:
    """Median server-side render of ``pages/<page>.py`` for a run (Streamlit AppTest) with Streamlit's caches
    cleared each time, as for a new server process; one untimed render first fills the caches on disk
    (``reps=0``: only that one, and its time)."""
    import os

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["WIF_DB"] = str(db)

    def render() -> float:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=600)
        at.query_params["run"] = run_id
        t = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - t
        if at.exception or at.error:
            raise RuntimeError(f"{page} page: {(at.exception or at.error)[0].value}")
        return elapsed

    warm = render()
    return statistics.median(render() for _ in range(reps)) if reps > 0 else warm
