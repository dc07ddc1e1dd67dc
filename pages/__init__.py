"""The dashboard's pages, one Streamlit script each (installed as ``wif_ui.pages``); ``wif_ui.app`` navigates them."""
