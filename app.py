"""wif's Streamlit entry: page config and navigation only; each page lives in pages/."""

import streamlit as st

st.set_page_config(page_title="wif — Why It Failed", layout="wide")
st.navigation(
    [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", url_path="overview", default=True),
        st.Page("pages/failures.py", title="Failure browser", icon=":material/search:", url_path="failures"),
        st.Page("pages/compare.py", title="Compare explainers", icon=":material/compare_arrows:", url_path="compare"),
        st.Page("pages/reproduce.py", title="Paper reproduction", icon=":material/science:", url_path="reproduce"),
        st.Page("pages/sae.py", title="SAE features", icon=":material/scatter_plot:", url_path="sae"),
        st.Page("pages/clusters.py", title="Clusters", icon=":material/bubble_chart:", url_path="clusters"),
        st.Page("pages/zoo.py", title="Zoo", icon=":material/pets:", url_path="zoo"),
        st.Page(
            "pages/attribution.py", title="Attribution", icon=":material/format_color_text:", url_path="attribution"
        ),
    ]
).run()
