"""wif's Streamlit entry in a checkout (``streamlit run app.py``): the installed app's ``main``."""

from wif_ui.app import main

main()
