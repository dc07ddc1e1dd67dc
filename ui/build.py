"""The demo build's progress on every page while it computes behind the dashboard (``wif_core.demo``).

The build writes its status beside the store (``<store>.build.json``); this module shows it at the top of
each page, refreshed every few seconds, and reruns the page when a step lands so its data appears.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from wif_ui import data

from wif_core.demo import read_status
from wif_core.progress import Tick, duration

REFRESH_S = 3.0
_SEEN = "_wif_build_pending"  # the pending steps this session's page was drawn with

WHAT = {  # what each kind of step brings to the pages
    "collect": "its run then appears on every page",
    "zoo": "the Zoo page's stored run",
    "SAE": "the SAE features page for the run",
    "explainers": "the comparison page's default results (otherwise fitted on first visit)",
    "attribute": "the Attribution page's stored heatmaps and run summaries",
}


def status() -> dict[str, Any] | None:
    """The demo build's status for the app's store (None: no build has written one)."""
    return read_status(data.db_path())


def _tick(step: dict[str, Any]) -> Tick:
    return Tick.from_json(step)


def _what(name: str) -> str:
    return next((text for key, text in WHAT.items() if name.startswith(key)), "")


def pending_note(task: str, kind: str) -> str | None:
    """When the demo build has ``kind`` work (collect, SAE, explainers, attribute) left for ``task``: one line
    saying so and how far it is; otherwise None."""
    doc = status()
    if not doc or doc.get("state") == "complete":
        return None
    names = [n for n in doc.get("pending") or [] if n.startswith(kind) and f" {task}" in f" {n}"]
    if not names:
        return None
    step = doc.get("step") or {}
    if step.get("name") in names:
        return f"The demo build is computing this now: {_tick(step).line()}."
    if doc.get("state") == "building":
        return f"The demo build will compute this shortly ({names[0]}); this page updates when it lands."
    return f"The demo build stopped before computing this ({names[0]}); run `wif demo` to finish it."


def _draw(doc: dict[str, Any]) -> None:
    state = doc.get("state")
    pending = list(doc.get("pending") or [])
    if state == "building":
        step = doc.get("step")
        head = f"Building the demo store: {len(pending)} step{'' if len(pending) == 1 else 's'} left"
        if step:
            t = _tick(step)
            eta = t.eta
            head += f" — now {t.desc}" + ("" if eta is None else f", ~{duration(eta)} left in this step")
        box = st.status(head, state="running", expanded=False)  # not a `with`: that would mark it complete
        if step:
            t = _tick(step)
            frac = min(1.0, t.done / t.total) if t.total else 0.0
            box.progress(frac, text=t.line())
        box.markdown(
            "What is shown now is complete for what it covers; these steps add to it, and the page "
            "updates as each lands:\n" + "\n".join(f"- {n}: {_what(n)}" for n in pending)
        )
    elif state == "stopped" and pending:
        st.warning(
            f"The demo build stopped with {len(pending)} step{'' if len(pending) == 1 else 's'} left "
            f"({', '.join(pending[:3])}"
            f"{'…' if len(pending) > 3 else ''}); run `wif demo` to finish it. Pages show what is there."
        )
    elif state == "failed":
        st.error(f"The demo build failed: {doc.get('error') or 'see its log'}. Run `wif demo` again to resume it.")


def banner() -> None:
    """Show the build's progress at the top of the page while it runs; rerun the page when a step lands."""
    doc = status()
    if not doc or doc.get("state") == "complete":
        return
    st.session_state[_SEEN] = list(doc.get("pending") or [])
    _live()


@st.fragment(run_every=REFRESH_S)
def _live() -> None:
    doc = status()
    if not doc:
        return
    pending = list(doc.get("pending") or [])
    if pending != st.session_state.get(_SEEN, pending) or doc.get("state") == "complete":
        st.session_state[_SEEN] = pending
        st.rerun(scope="app")  # a step landed: redraw the page on the new data
    _draw(doc)
