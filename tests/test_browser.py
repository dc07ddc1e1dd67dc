"""Browser tier: the real app under ``streamlit run``, screenshotted in headless Chromium.

Each test loads a page, waits until Streamlit has finished running its script, saves a
PNG under the test's tmp_path and checks what a user would see: no exception boxes,
the store's runs named on the page, and an image that is not blank.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from wif_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
MAIN = '[data-testid="stMainBlockContainer"], [data-testid="stAppViewBlockContainer"]'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs /usr/bin/chromium and /usr/bin/chromedriver (`make browser-deps`)",
    ),
]


@pytest.fixture(scope="module")
def browser_db(demo_db: Path) -> Path:
    """The demo store, built with the embedded model as ``wif demo`` builds it (conftest's ``demo_db``)."""
    return Path(demo_db)


@pytest.fixture(scope="module")
def runs(browser_db: Path) -> list[dict[str, Any]]:
    with Store.open(browser_db) as store:
        frame = store.runs()
        out = frame[["run_id", "task", "model"]].to_dict("records")
        for run in out:  # the failure browser opens a run's first failure; links can name any item
            for outcome, name in (("incorrect", "first_failure"), ("correct", "first_success")):
                first = store.items(run["run_id"], outcome=outcome, limit=1)
                run[name] = first["item_id"].iloc[0] if len(first) else None
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(db: Path, log_dir: Path) -> Iterator[str]:
    """``streamlit run app.py`` on a free port with ``WIF_DB`` set, stopped on exit."""
    port = _free_port()
    log = (log_dir / f"streamlit-{port}.log").open("w")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless=true",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "WIF_DB": str(db)}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on port {port} within 90 s; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def app_url(browser_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serve(browser_db, tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in CHROME_ARGS:
        opts.add_argument(arg)
    opts.binary_location = str(CHROMIUM)
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _visit(driver: Any, url: str, png: Path, last_text: str) -> str:
    """Open ``url``, wait until the page script has finished, save a screenshot; the page's visible text.

    Finished means ``last_text`` (a heading near the page's end) is shown and Streamlit's
    status widget ("Running…") has stayed away for two seconds: it can show up late.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, MAIN))
    WebDriverWait(driver, 120).until(lambda d: last_text in d.find_element(By.TAG_NAME, "body").text)
    idle_since, deadline = time.monotonic(), time.monotonic() + 120
    while time.monotonic() < deadline and time.monotonic() - idle_since < 2:
        if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'):
            idle_since = time.monotonic()
        time.sleep(0.25)
    time.sleep(1)  # let charts and tables draw
    driver.save_screenshot(str(png))
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), f"exception shown at {url}"
    return str(driver.find_element(By.TAG_NAME, "body").text)


def _assert_not_blank(png: Path) -> None:
    assert png.stat().st_size > 20_000, f"{png} is suspiciously small"
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(png) as img:
        colours = set(img.convert("RGB").resize((48, 48)).getdata())
    assert len(colours) > 8, f"{png} is nearly one colour"


def test_overview_page_shows_every_run(app_url: str, driver: Any, runs: list[dict[str, Any]], tmp_path: Path) -> None:
    png = tmp_path / "overview.png"
    text = _visit(driver, f"{app_url}/", png, "What the kinds mean")
    assert "Overview" in text and "Split balance" in text and "Leakage" in text
    for run in runs:
        assert run["run_id"] in text and run["task"] in text
    _assert_not_blank(png)


def test_failure_browser_opens_a_run_and_a_linked_item(
    app_url: str, driver: Any, runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    run = next(r for r in runs if r["first_failure"])
    png = tmp_path / "failures.png"
    text = _visit(driver, f"{app_url}/failures?run={run['run_id']}", png, "Item metadata")
    assert "Failure browser" in text and run["run_id"] in text and run["task"] in text
    assert run["first_failure"] in text and "Context" in text and "Choices" in text
    _assert_not_blank(png)

    # a shared link to a correctly answered item of another run opens that run and that item
    other = runs[-1]
    png = tmp_path / "failures_link.png"
    url = f"{app_url}/failures?run={other['run_id']}&item={other['first_success']}"
    text = _visit(driver, url, png, "Item metadata")
    assert other["run_id"] in text and other["first_success"] in text and "correct" in text
    _assert_not_blank(png)


def test_deep_link_as_a_fresh_servers_first_request(
    browser_db: Path, driver: Any, runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """A shared link opened before anyone loaded the entry page still gets app.py's navigation."""
    from selenium.webdriver.common.by import By

    run = next(r for r in runs if r["first_failure"])
    with _serve(browser_db, tmp_path) as url:
        png = tmp_path / "deep_link.png"
        text = _visit(driver, f"{url}/failures?run={run['run_id']}", png, "Item metadata")
        nav = driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebarNav"]').text
    assert run["run_id"] in text and "Failure browser" in text
    for title in ("Overview", "Failure browser", "Compare explainers", "Paper reproduction"):
        assert title in nav
    assert "app" not in nav.split("\n") and "failures" not in nav.split("\n")  # not the v1 file-name list
    _assert_not_blank(png)


def test_compare_page_fits_and_draws(app_url: str, driver: Any, runs: list[dict[str, Any]], tmp_path: Path) -> None:
    run = runs[0]
    png = tmp_path / "compare.png"
    text = _visit(driver, f"{app_url}/compare?run={run['run_id']}", png, "Compare explainers")
    assert run["run_id"] in text
    assert "AUC" in text or "need at least" in text  # fitted results, or the one-line reason they cannot be
    _assert_not_blank(png)


def _count_plots(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))


def test_attribution_page_shows_a_stored_failure_by_two_methods(
    app_url: str, driver: Any, runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    run = next(r for r in runs if r["task"].startswith("gen-") and r["first_failure"])
    png = tmp_path / "attribution.png"
    url = f"{app_url}/attribution?run={run['run_id']}&item={run['first_failure']}"
    text = _visit(driver, url, png, "Layer profile")
    assert "Verdict" in text and "attnlrp" in text and "grad_x_input" in text
    assert text.count("Δ (nats)") == 2 and "No stored" not in text  # the demo ships both methods for failures
    assert _count_plots(driver) >= 6  # segments, profile clusters, two heatmaps, deletion, item segments, profile
    _assert_not_blank(png)


def test_clusters_page_draws_a_map_and_cards(
    app_url: str, driver: Any, runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    run = next(r for r in runs if r["task"].startswith("gen-"))
    png = tmp_path / "clusters.png"
    text = _visit(driver, f"{app_url}/clusters?run={run['run_id']}", png, "Do the clusters recover known causes?")
    assert "failure rate" in text and "Cluster 0" in text
    assert _count_plots(driver) >= 1
    _assert_not_blank(png)


def test_zoo_page_and_the_demo_zoo_run(app_url: str, driver: Any, runs: list[dict[str, Any]], tmp_path: Path) -> None:
    png = tmp_path / "zoo.png"
    text = _visit(driver, f"{app_url}/zoo", png, "Estimating accuracy")
    assert "2nd_argmax_d16_n10" in text and "94.8–95.3%" in text and "Why this pick" in text
    assert _count_plots(driver) >= 4  # weights, failure input, its relevance, MSE against compute
    _assert_not_blank(png)
    zoo_run = next(r for r in runs if r["task"].startswith("zoo-"))
    text = _visit(driver, f"{app_url}/attribution?run={zoo_run['run_id']}", tmp_path / "zoo_attr.png", "Layer profile")
    assert "Verdict" in text and "Δ (nats)" in text  # exact position attributions, stored with the zoo run


def test_interventions_page_draws_a_stored_steering_check(
    browser_db: Path, app_url: str, driver: Any, runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """A small real check of a demo run with the embedded model (10 items per split, α 0 and 2), then the page."""
    from wif_core.interventions.run import InterventionCache, check_key, steering_check
    from wif_core.models.loading import load_model

    run = next(r for r in runs if r["task"].startswith("gen-") and r["model"] == "smollm2-135m")
    with Store.open(browser_db) as store:
        info = store.run(run["run_id"])
        layer = info.layers[-2]
        score = steering_check(store, load_model(info.model), info.run_id, layer=layer, alphas=[0.0, 2.0], limit=10)
    key = check_key(info.run_id, info.model, explainer="probe", layer=layer, site="last", alphas=[0.0, 2.0])
    InterventionCache.beside(browser_db).put(key, score)
    png = tmp_path / "interventions.png"
    text = _visit(driver, f"{app_url}/interventions?run={info.run_id}", png, "Items at the chosen strength")
    assert "Causal scores" in text and "Chosen α" in text and "Probe val AUC" in text  # the table's cells are canvas
    assert "Items at the chosen strength" in text
    assert _count_plots(driver) >= 1  # the flip and broken curves against the control
    _assert_not_blank(png)
