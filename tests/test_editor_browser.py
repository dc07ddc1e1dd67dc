"""Browser tier: the item editor in the real app (``streamlit run``, headless Chromium) on a tiny-model run:
open the attribution page, edit a choice, re-score, and see the edit beside the original."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import CHROME_ARGS, CHROMEDRIVER, CHROMIUM, _assert_not_blank, _serve, _visit

from wif_core.cli import main

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs /usr/bin/chromium and /usr/bin/chromedriver (`make browser-deps`)",
    ),
]


@pytest.fixture()
def tiny_run(tmp_path: Path, capsys: Any, tiny_model_dir: Path, items_file: Path) -> tuple[Path, str]:
    db = tmp_path / "t.duckdb"
    argv = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--source", str(items_file)]
    assert main([*argv, "--layers", "2,4", "--db", str(db), "--json"]) == 0
    return db, str(json.loads(capsys.readouterr().out)["run_id"])


@pytest.fixture()
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


def test_edit_a_choice_rescore_and_see_it_beside_the_original(
    tiny_run: tuple[Path, str], driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    db, run_id = tiny_run
    with _serve(db, tmp_path) as url:
        _visit(driver, f"{url}/attribution?run={run_id}", tmp_path / "before.png", "Layer profile")
        summary = next(
            e for e in driver.find_elements(By.CSS_SELECTOR, "summary") if "Edit this item" in e.text
        )  # the expander starts closed
        summary.click()
        box = WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.CSS_SELECTOR, 'textarea[aria-label="Choices, one per line"]')
        )
        first = box.get_attribute("value").split("\n")[0]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys(f"{first}\npour boiling water on the cat")
        button = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Re-score")
        button.click()
        WebDriverWait(driver, 120).until(lambda d: "Save as a new run" in d.find_element(By.TAG_NAME, "body").text)
        time.sleep(2)  # the attributions of the edit draw after its scores
        driver.execute_script("arguments[0].scrollIntoView();", summary)
        png = tmp_path / "edited.png"
        driver.save_screenshot(str(png))
        text = driver.find_element(By.TAG_NAME, "body").text
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert "Edit 1" in text and "(choice B)" in text and "Original" in text
    assert text.count("Margin") >= 2 and text.count("Prediction") >= 2  # the table itself is drawn on a canvas
    assert "the original beside the edit" in text and "wif collect --model" in text
    _assert_not_blank(png)
