"""Page render times on the demo store (the page script's server-side run, via AppTest).

"First render with cached results": the explainer results are already in the store's
result cache on disk (a warm-up render fits them), and Streamlit's in-process caches are
cleared before each timed render, as for a new server process.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.common import machine, page_render_seconds, write_section

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo.duckdb"
PAGES = ("overview", "failures", "compare", "models", "reproduce", "sae", "clusters", "attribution", "zoo")


def main(reps: int = 3) -> dict:
    if not DEMO.exists():
        from wif_core.demo import build_demo

        build_demo(DEMO, limit=120)
    os.environ["WIF_DB"] = str(DEMO)
    from wif_core.store import Store

    with Store.open(DEMO) as store:
        run_ids = store.run_ids()
    out: dict[str, float] = {}
    for page in PAGES:
        for run_id in run_ids[1:]:  # warm-up: fills the result cache on disk for every run
            page_render_seconds(page, run_id, DEMO, reps=0)
        out[page] = page_render_seconds(page, run_ids[0], DEMO, reps)
    rows = "\n".join(f"| {p} | {s:.2f} s |" for p, s in out.items())
    write_section(
        "app",
        f"""
## Page render times (issues 2 to 7)

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
