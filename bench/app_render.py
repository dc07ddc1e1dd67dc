"""Page render times on the demo store (the page script's server-side run, via AppTest).

"First render with cached results": the explainer results are already in the store's
result cache on disk (a warm-up render fits them), and Streamlit's in-process caches are
cleared before each timed render, as for a new server process.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from bench.common import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo.duckdb"
PAGES = ("overview", "failures", "compare", "reproduce")


def _render(page: str, run_id: str) -> float:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=600)
    at.query_params["run"] = run_id
    t = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - t
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].message}")
    return elapsed


def main(reps: int = 3) -> dict:
    if not DEMO.exists():
        from wif_core.cli import build_demo

        build_demo(DEMO, limit=120, cache_dir=None, quiet=True)
    os.environ["WIF_DB"] = str(DEMO)
    from wif_core.store import Store

    with Store.open(DEMO) as store:
        run_ids = store.run_ids()
    out: dict[str, float] = {}
    for page in PAGES:
        for run_id in run_ids:  # warm-up: fills the result cache on disk for every run
            _render(page, run_id)
        out[page] = statistics.median(_render(page, run_ids[0]) for _ in range(reps))
    rows = "\n".join(f"| {p} | {s:.2f} s |" for p, s in out.items())
    write_section(
        "app",
        f"""
## Page render times (issues 2 and 3)

Machine: {machine()}. Command: `make bench` (`python -m bench.run app`): median of {reps} server-side
renders of each page (Streamlit AppTest) on the demo store's first run, with explainer results already
in the store's result cache and Streamlit's own caches cleared before each render. Goal: < 2 s
for the comparison page with cached results.

| page | render |
| --- | --- |
{rows}
""",
    )
    return out


if __name__ == "__main__":
    print(main())
