"""wif's Streamlit entry: page config and navigation only; each page is a script in ``wif_ui.pages``.

``wif app`` runs this file from the installed package; ``streamlit run app.py`` in a checkout runs
the top-level ``app.py``, which calls the same ``main``.
"""

import ast
import functools
from pathlib import Path

import streamlit as st
from wif_ui import build, data

from wif_core.errors import StoreBusy, StoreError, one_line
from wif_core.heavy import heavy_imports
from wif_core.paths import page_dir

PAGES = (  # (script, title, icon, url path)
    ("overview.py", "Overview", ":material/dashboard:", "overview"),
    ("failures.py", "Failure browser", ":material/search:", "failures"),
    ("compare.py", "Compare explainers", ":material/compare_arrows:", "compare"),
    ("models.py", "Compare models", ":material/difference:", "models"),
    ("reproduce.py", "Paper reproduction", ":material/science:", "reproduce"),
    ("sae.py", "SAE features", ":material/scatter_plot:", "sae"),
    ("clusters.py", "Clusters", ":material/bubble_chart:", "clusters"),
    ("zoo.py", "Zoo", ":material/pets:", "zoo"),
    ("attribution.py", "Attribution", ":material/format_color_text:", "attribution"),
    ("interventions.py", "Interventions", ":material/tune:", "interventions"),
)

_IMPORTED: set[Path] = set()  # page scripts whose imports this process has done


@functools.cache
def _page_imports(script: Path) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The modules a page script imports at its top level, each with the names it takes from it."""
    out = []
    for node in ast.parse(script.read_text(), str(script)).body:
        if isinstance(node, ast.Import):
            out += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.module, tuple(alias.name for alias in node.names)))
    return tuple(out)


def _import_page(script: Path) -> None:
    """Do a page's top-level imports under ``wif_core.heavy``'s lock, once per process, before it runs.

    A page's imports pull torch, scikit-learn and the rest on a fresh server, and several sessions
    doing that on several threads at once can break them (``wif_core.heavy``); the page script's
    own import statements then find every module imported.
    """
    if script in _IMPORTED:
        return
    with heavy_imports():
        for module, names in _page_imports(script):
            __import__(module, fromlist=names)  # what `import module` or `from module import names` does
        _IMPORTED.add(script)


def main() -> None:
    data.ensure_entry()
    st.set_page_config(page_title="wif — Why It Failed", layout="wide")
    folder = page_dir()
    pages = [
        st.Page(folder / script, title=title, icon=icon, url_path=url, default=i == 0)
        for i, (script, title, icon, url) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    chosen = next((i for i, p in enumerate(pages) if p is page), None)
    if chosen is not None:
        _import_page(folder / PAGES[chosen][0])
    try:
        build.banner()  # the demo build's progress, while it computes behind the dashboard
        page.run()
    except StoreError as exc:  # a read failed mid-page (a writer took the store): one line, not a traceback
        st.error(one_line(exc))
        st.info(data.BUSY_HINT if isinstance(exc, StoreBusy) else "Reload the page once the store is back.")


if __name__ == "__main__":
    main()
