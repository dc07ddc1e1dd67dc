"""A fresh server's first requests arriving together (issue 12, item 3), in real headless Chromium.

Six browsers, started before the server, open six different pages of a freshly started
``streamlit run app.py`` at the same moment. Streamlit's v1 multipage mode (a ``pages/`` folder
beside the entry) used to serve five of the six with a sidebar of file names ("app" among them)
and the narrow layout. Every page must show the app's own navigation (the titles of
``wif_ui.app.PAGES``), its own title, the wide layout, and no exception.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from store_factory import COLLECTED_RUN
from test_browser import CHROME_ARGS, CHROMEDRIVER, CHROMIUM, MAIN, _serve

from wif_core.store import Store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs /usr/bin/chromium and /usr/bin/chromedriver (`make browser-deps`)",
    ),
]

# (url path and query, the page's own title as it shows it)
TARGETS = [
    (f"failures?run={COLLECTED_RUN}", "Failure browser"),
    (f"compare?run={COLLECTED_RUN}", "Compare explainers"),
    (f"reproduce?run={COLLECTED_RUN}", "Paper reproduction"),
    (f"sae?run={COLLECTED_RUN}", "SAE features"),
    (f"clusters?run={COLLECTED_RUN}", "Clusters"),
    (f"attribution?run={COLLECTED_RUN}", "Contrastive attribution"),
]
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSkeleton"]'


def _driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in CHROME_ARGS:
        opts.add_argument(arg)
    opts.binary_location = str(CHROMIUM)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


def _open(driver: Any, url: str, title: str, start: threading.Barrier) -> dict[str, Any]:
    """Open ``url`` once every browser is ready; what it shows once its script has finished."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    start.wait()
    driver.get(url)
    WebDriverWait(driver, 240).until(lambda d: d.find_elements(By.CSS_SELECTOR, MAIN))
    WebDriverWait(driver, 240).until(
        lambda d: (
            title in [h.text for h in d.find_elements(By.CSS_SELECTOR, "h1")]
            and d.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"]')
        )
    )
    quiet_since, deadline = time.monotonic(), time.monotonic() + 240
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 2:
        if driver.find_elements(By.CSS_SELECTOR, BUSY):
            quiet_since = time.monotonic()
        time.sleep(0.25)
    main = driver.find_element(By.CSS_SELECTOR, MAIN)
    return {
        "nav": driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebarNav"]').text.split("\n"),
        "titles": [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1")],
        "width": main.size["width"],
        "exceptions": len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')),
    }


def test_six_pages_as_a_fresh_servers_first_requests_at_once(synthetic_db: Path, tmp_path: Path) -> None:
    from wif_ui.app import PAGES

    with Store.open(synthetic_db) as store:
        assert COLLECTED_RUN in store.runs()["run_id"].tolist()
    with ThreadPoolExecutor(len(TARGETS)) as pool:
        drivers = list(pool.map(lambda _: _driver(), TARGETS))
    try:
        with _serve(synthetic_db, tmp_path) as url, ThreadPoolExecutor(len(TARGETS)) as pool:
            start = threading.Barrier(len(TARGETS))
            seen = list(
                pool.map(
                    lambda job: _open(job[0], f"{url}/{job[1][0]}", job[1][1], start),
                    zip(drivers, TARGETS, strict=True),
                )
            )
    finally:
        for driver in drivers:
            driver.quit()
    titles = [title for _, title, _, _ in PAGES]
    icons = {icon.removeprefix(":material/").removesuffix(":") for _, _, icon, _ in PAGES}  # their ligatures' text
    for (path, title), page in zip(TARGETS, seen, strict=True):
        listed = [line for line in page["nav"] if line not in icons]
        assert listed == titles, f"/{path}: the sidebar lists {page['nav']} (v1 lists file names, 'app' among them)"
        assert title in page["titles"] and not page["exceptions"], f"/{path}: {page}"
        assert page["width"] > 900, f"/{path}: the main block is {page['width']} px wide (narrow layout)"
