"""Every page with hostile query parameters (issue 12, item 9): no exception, no live link, short echoes.

``?run=[click here](https://example.com/steal)`` showed a live link inside the app's own warning,
a 20,000-character value was echoed whole, and an unknown ``?item=`` silently showed the first
item. Each page here runs under AppTest with every query key the app reads set to one hostile
value; what the page writes as Markdown is rendered with a CommonMark renderer and checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from page_runner import run_page
from store_factory import COLLECTED_RUN
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["overview", "failures", "compare", "models", "reproduce", "sae", "clusters", "zoo", "attribution"]
KEYS = [  # every ?key= a page reads (grep query_params / from_url / explain.choice in ui/ and pages/)
    *("run", "item", "feature", "model", "ex", "layer", "site", "by", "top", "hist_split", "space", "mode"),
    *("algorithm", "k", "map", "agg_method", "profile_k", "method_a", "method_b", "runs", "method"),
]
LINK = "[click here](https://example.com/steal)"
LONG = "W" * 20_000
HOSTILE = {
    "link": LINK,
    "html": '<img src=x onerror="alert(1)"><script>alert(1)</script><a href="https://example.com/steal">x</a>',
    "long": LONG,
    "long-link": LINK * 500,
    "sql": "' OR 1=1 --",
    "percent": "%",
    "underscore": "_",
    "markup": "`x` **bold** $x^2$ :red[red] :material/home: ![i](https://example.com/i.png) https://example.com/steal",
    "unicode-digit": "²",
    "unknown": "no-such-id",
}
MARKDOWN = ("markdown", "caption", "warning", "error", "info", "success", "title", "header", "subheader", "toast")
RENDER = MarkdownIt("commonmark")

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


def _texts(at: AppTest) -> list[str]:
    """The Markdown source of every element that Streamlit renders as Markdown."""
    return [str(el.value) for kind in MARKDOWN for el in at.get(kind)]


def _links(markdown: str) -> list[str]:
    """The targets of the links and images that a CommonMark renderer makes of ``markdown``."""
    html = RENDER.render(markdown)
    return re.findall(r'<a href="([^"]*)"', html) + re.findall(r'<img src="([^"]*)"', html)


def _check(at: AppTest, page: str, value: str) -> None:
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    for text in _texts(at):
        assert "example.com" not in " ".join(_links(text)), f"{page}: a live link in {text[:200]!r}"
        html = RENDER.render(text)
        assert "<script" not in html and "<img" not in html, f"{page}: markup in {text[:200]!r}"
        assert "W" * 100 not in text, f"{page}: a long value echoed whole ({len(text)} characters)"
    for echoed in (w.value for w in at.warning):
        assert len(echoed) < 400, f"{page}: a {len(echoed)}-character warning"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_takes_hostile_query_parameters(wif_db: Path, page: str) -> None:
    script = str(ROOT / "pages" / f"{page}.py")
    for name, value in HOSTILE.items():
        at = run_page(script, **dict.fromkeys(KEYS, value))
        _check(at, f"{page}?*={name}", value)


def test_an_unknown_run_is_named_escaped_and_shortened(wif_db: Path) -> None:
    at = run_page(str(ROOT / "pages" / "failures.py"), run=LINK + LONG)
    warning = at.warning[0].value
    assert warning.startswith("No run ` [click here](https://example.com/steal)WWW")
    assert warning.endswith(f"… ` in this store; showing ` {COLLECTED_RUN} ` instead.")
    assert len(warning) < 80 + 100 and not _links(warning)
    assert RENDER.render(warning).count("<code>") == 2  # the value and the run shown, each as typed


def test_an_unknown_item_says_so_and_which_item_is_shown(wif_db: Path) -> None:
    at = run_page(str(ROOT / "pages" / "failures.py"), run=COLLECTED_RUN, item="no-such-item")
    assert not at.exception
    shown = at.selectbox(key="item_pick").value
    assert [w.value for w in at.warning] == [
        f"No item ` no-such-item ` among these items; showing ` {shown} ` instead."
    ]
    assert at.query_params["item"] == shown


def test_a_known_item_and_the_sessions_own_stale_value_give_no_warning(wif_db: Path) -> None:
    at = run_page(str(ROOT / "pages" / "failures.py"), run=COLLECTED_RUN, item="gen-physical-0003")
    assert not at.warning and at.selectbox(key="item_pick").value == "gen-physical-0003"
    at.selectbox(key="outcome").set_value("correct").run()  # item 3 failed: filtered out, the URL still names it
    assert not at.exception and not at.warning  # the session put it there itself: no surprise to warn about
    assert at.selectbox(key="item_pick").value != "gen-physical-0003"


def test_an_unknown_attribution_item_says_so(wif_db: Path) -> None:
    at = run_page(str(ROOT / "pages" / "attribution.py"), run=COLLECTED_RUN, item=LINK)
    assert not at.exception
    warnings = [w.value for w in at.warning if w.value.startswith("No item")]
    assert warnings and "` [click here](https://example.com/steal) `" in warnings[0] and not _links(warnings[0])


def test_shown_keeps_backticks_and_blank_values_as_typed() -> None:
    from wif_ui.data import shown

    assert shown("a`b") == "`` a`b ``" and RENDER.renderInline(shown("a`b")) == "<code>a`b</code>"
    assert RENDER.renderInline(shown("`x`")) == "<code>`x`</code>"
    assert shown("  \n ") == "(empty)" and shown("x" * 81) == f"` {'x' * 80}… `"
    assert RENDER.renderInline(shown("a\nb  c")) == "<code>a b c</code>"
