"""The Overview page's report download: pick a run, build its report on demand, then download it.

Building reads the store (read-only) and the caches beside it and writes nothing: results that
are not cached are computed in memory (``write_cache=False``). The built HTML is kept in the
session, so the download button survives the rerun its own click causes.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from wif_ui import data

from wif_core.errors import WifError, one_line
from wif_core.reports import build, default_name


def report_download(runs: pd.DataFrame) -> None:
    """A run picker and a button that builds the run's report inside ``st.status``; then its download button."""
    labels = {r.run_id: data.run_label(r) for r in runs.itertuples()}
    cols = st.columns([4, 1], vertical_alignment="bottom")
    run_id = cols[0].selectbox("Run", list(labels), format_func=labels.__getitem__, key="report_run")
    path = data.store_path()
    if cols[1].button("Build the report", key="report_build", help="Takes a few seconds; nothing is written."):
        with st.status(f"Building the report of {run_id} …", expanded=False) as status:
            try:
                report = build(data.store(path), run_id, write_cache=False, progress=status.write)
            except WifError as exc:
                status.update(label=f"No report: {one_line(exc)}", state="error")
                return
            empty = [k for k, v in report.sections.items() if v == "empty"]
            done = f"Report of {run_id} built: {len(report.html) / 1e6:.1f} MB, {report.n_figures} figures"
            status.update(label=done + (f"; nothing to show for {', '.join(empty)}" if empty else ""), state="complete")
        st.session_state["_report"] = (path, run_id, report.html)
    built = st.session_state.get("_report")
    if built and built[:2] == (path, run_id):
        st.download_button(
            "Download the report (HTML)",
            built[2].encode("utf-8"),
            file_name=default_name(run_id),
            mime="text/html",
            key="report_download",
            on_click="ignore",
            help="One file that opens offline in any browser: figures included.",
        )
