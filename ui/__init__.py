"""The app layer: cached store accessors and the widgets the pages share (Streamlit lives here and in pages/)."""
