"""Running a page under Streamlit's AppTest with query parameters: the app tier's one verb."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest


def run_page(script: str, **query: Any) -> AppTest:
    """Run ``script`` once with ``?key=value`` query parameters and return the finished AppTest."""
    at = AppTest.from_file(script, default_timeout=120)
    at.query_params.update(query)
    return at.run()
