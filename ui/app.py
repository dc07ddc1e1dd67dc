"""wif's Streamlit entry: page config and navigation only; each page is a script in ``wif_ui.pages``.

``wif app`` runs this file from the installed package; ``streamlit run app.py`` in a checkout runs
the top-level ``app.py``, which calls the same ``main``.
"""

import streamlit as st

from wif_core.paths import page_dir

PAGES = (  # (script, title, icon, url path)
    ("overview.py", "Overview", ":material/dashboard:", "overview"),
    ("failures.py", "Failure browser", ":material/search:", "failures"),
    ("compare.py", "Compare explainers", ":material/compare_arrows:", "compare"),
    ("reproduce.py", "Paper reproduction", ":material/science:", "reproduce"),
    ("sae.py", "SAE features", ":material/scatter_plot:", "sae"),
    ("clusters.py", "Clusters", ":material/bubble_chart:", "clusters"),
    ("zoo.py", "Zoo", ":material/pets:", "zoo"),
    ("attribution.py", "Attribution", ":material/format_color_text:", "attribution"),
)


def main() -> None:
    st.set_page_config(page_title="wif — Why It Failed", layout="wide")
    pages = page_dir()
    st.navigation(
        [
            st.Page(pages / script, title=title, icon=icon, url_path=url, default=i == 0)
            for i, (script, title, icon, url) in enumerate(PAGES)
        ]
    ).run()


if __name__ == "__main__":
    main()
