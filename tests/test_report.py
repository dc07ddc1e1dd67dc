"""``wif report``: one self-contained HTML file per run (builder, CLI, the Overview button, a real browser)."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from page_runner import run_page
from store_factory import (
    COLLECTED_RUN,
    IMPORTED_RUN,
    LAYERS,
    SITES,
    TOKEN_LAYERS,
    _attribution_rows,
    _collected_rows,
    _physical_item,
    make_synthetic_store,
)

from wif_core.cli.main import main
from wif_core.errors import InputError, StoreError
from wif_core.paths import beside
from wif_core.reports import SECTIONS, build, default_name, write_report
from wif_core.runner import SplitOptions, write_splits
from wif_core.store import RunInfo, Store

ROOT = Path(__file__).resolve().parents[1]
OVERVIEW = str(ROOT / "pages" / "overview.py")
HOSTILE_RUN = "hostile--<script>alert('run')</script>"
HOSTILE_TEXT = "<script>alert('item')</script>"
N_HEATMAPS = 5  # failures with stored attributions in the collected run: more than the report's cap


def _external_refs(html: str) -> list[str]:
    """Tags that would load something over the network: a script, style, image or frame with a URL."""
    return re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//[^>]*>", html)


def _figure_json(html: str) -> list[list[dict]]:
    """The data of every embedded plotly figure (``Plotly.newPlot(id, data, layout, config)``)."""
    out = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\])\s*,\s*\{', html, re.S):
        out.append(json.loads(m.group(1)))
    return out


@pytest.fixture(scope="module")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic store (three runs, an SAE on the collected run) plus a run whose names and texts are HTML."""
    path = tmp_path_factory.mktemp("report") / "synthetic.duckdb"
    make_synthetic_store(path)
    items = [
        replace(it, item_id=f"x<b>{n}</b>", context=f"{it.context} {HOSTILE_TEXT}")
        for n, it in enumerate(_physical_item(n) for n in range(40))
    ]
    rows = _collected_rows(items, np.random.default_rng(1))
    with Store.open(path, write=True) as store:
        run = RunInfo(
            run_id=HOSTILE_RUN,
            model="<img src=x onerror=alert('model')>",
            task="gen-physical",
            source="generated",
            n_choices=2,
            family="two_choice",
            layers=list(LAYERS),
            sites=list(SITES),
            token_layers=list(TOKEN_LAYERS),
            n_layers=4,
            d_model=8,
        )
        store.create_run(run, items)
        store.write_outcomes(HOSTILE_RUN, rows, "float16")
        store.write_attributions(HOSTILE_RUN, _attribution_rows(items, rows))
        write_splits(store, HOSTILE_RUN, SplitOptions())
        store.set_status(HOSTILE_RUN, "complete")
    return path


@pytest.fixture(scope="module")
def collected_report(report_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out") / "collected.html"
    written = write_report(report_db, COLLECTED_RUN, out)
    return out, {"sections": written.sections, "n_figures": written.n_figures, "bytes": written.bytes}


def test_the_collected_run_fills_every_section_with_figures_embedded_once(
    collected_report: tuple[Path, dict], report_db: Path
) -> None:
    path, meta = collected_report
    html = path.read_text()
    assert meta["sections"] == dict.fromkeys(SECTIONS, "filled") and meta["bytes"] == len(html.encode())
    assert html.count('<section id="') == len(SECTIONS)
    # one inline plotly.js, no script or style fetched from anywhere
    assert html.count("* plotly.js v") == 1 and html.count('<script type="text/javascript">/**') == 1
    assert not re.search(r"<script[^>]*\bsrc=", html) and not _external_refs(html)
    figures = _figure_json(html)
    assert len(figures) == meta["n_figures"] == 2 + N_HEATMAPS  # ROC, AUC by layer, five heatmaps
    roc = [t["name"] for t in figures[0]]
    assert any(n.startswith("probe-paper L4 last · input · AUC") for n in roc) and "chance (AUC 0.5)" in roc
    assert {t["name"] for t in figures[1]} == {"probe-paper · last"}
    for section in ("summary", "leakage", "explainers", "sae", "clusters", "attribution"):
        assert f'<section id="{section}" data-filled="true">' in html
    assert "99.9% Wilson interval" in html and "repeat" in html and "Cluster 0" in html
    assert "attnlrp" in html and "gen-physical-0001" in html  # the default method, the first failure
    assert f"wif 0.1.0 · store <code>{report_db}</code>" in html
    # what was computed is cached beside the store: a second report reads it
    assert any(beside(report_db, "results").glob("*.json")) and any(beside(report_db, "clusters").glob("*.json"))
    start = time.perf_counter()
    again = build(report_db, COLLECTED_RUN, compute=False)
    assert again.sections == meta["sections"] and time.perf_counter() - start < 30


def test_an_imported_run_says_what_it_lacks(report_db: Path) -> None:
    report = build(report_db, IMPORTED_RUN)
    assert report.sections == {
        "summary": "filled",
        "leakage": "filled",
        "explainers": "filled",  # text and surface baselines need no internals
        "sae": "empty",
        "clusters": "empty",
        "attribution": "empty",
    }
    html = report.html
    assert "it kept no per-token activations" in html and "--token-layers L" in html
    assert "this imported run has no language model" in html
    assert "No clusters for this run" in html and "--space text" in html
    assert "gold_conflict" in html and "<div></div>" not in html
    assert report.n_figures == 1  # the ROC curves; no layer: "No result reads one layer"
    assert "No result reads one layer" in html


def test_store_text_is_escaped_everywhere(report_db: Path) -> None:
    report = build(report_db, HOSTILE_RUN)
    html = report.html
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>3</b>" not in html
    assert "&lt;script&gt;alert(&#x27;run&#x27;)&lt;/script&gt;" in html  # the run id, shown as typed
    assert "&lt;img src=x onerror=alert(&#x27;model&#x27;)&gt;" in html
    assert "x&lt;b&gt;1&lt;/b&gt;" in html  # an item id (leakage examples, heatmap headings)
    assert "&lt;script&gt;alert(&#x27;item&#x27;)&lt;/script&gt;" in html  # item text on the cluster cards
    # every <script> is the inlined plotly.js or a figure's; tokens inside figure JSON are \u003c-escaped
    assert html.count("<script") == 1 + report.n_figures
    tokens = [t for fig in _figure_json(html)[2:] for trace in fig for t in trace.get("text", [])]
    assert HOSTILE_TEXT in tokens  # kept as data: plotly draws it as text


def test_unknown_run_and_unwritable_out_are_one_line_and_leave_no_file(
    report_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StoreError, match=rf"no run 'nope' in .*runs there: {re.escape(COLLECTED_RUN)}"):
        write_report(report_db, "nope", tmp_path / "r.html")
    assert not list(tmp_path.iterdir())
    assert main(["report", "--db", str(report_db), "--run", "nope", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wif: error: no run 'nope'") and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="no directory"):
        write_report(report_db, COLLECTED_RUN, tmp_path / "absent" / "r.html")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["report", "--db", str(report_db), "--run", COLLECTED_RUN, "--out", str(locked / "r.html")])
        err = capsys.readouterr().err
        if os.geteuid() != 0:  # root writes anywhere
            assert code == 2 and "is not writable; pick another --out" in err and len(err.strip().splitlines()) == 1
            assert not list(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_cli_writes_the_default_name_here_and_prints_path_size_sections(
    report_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--db", str(report_db), "--run", IMPORTED_RUN]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {default_name(IMPORTED_RUN)} (") and "MB, 1 figures" in out
    assert main(["report", "--db", str(report_db), "--run", IMPORTED_RUN, "--json", "--out", "x.html"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == "x.html" and doc["bytes"] == (tmp_path / "x.html").stat().st_size
    assert doc["sections"]["sae"] == "empty" and set(doc["sections"]) == set(SECTIONS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([default_name(IMPORTED_RUN), "x.html"])


def test_default_name_is_a_plain_file_name() -> None:
    assert default_name("a--b--0001") == "report-a--b--0001.html"
    assert default_name("../../etc/passwd") == "report-_.._etc_passwd.html"
    assert "/" not in default_name(HOSTILE_RUN) and "<" not in default_name(HOSTILE_RUN)


def test_the_api_verb_writes_the_file(report_db: Path, tmp_path: Path) -> None:
    import wif_core as wif

    with wif.open_store(report_db) as store:
        written = wif.report(store, IMPORTED_RUN, tmp_path / "r.html")
    assert isinstance(written, wif.ReportFile) and Path(written.path).stat().st_size == written.bytes


def test_a_zoo_run_reports_what_it_has(tmp_path: Path) -> None:
    from wif_core.zoo.runs import store_run
    from wif_core.zoo.weights import load

    db = tmp_path / "zoo.duckdb"
    with Store.open(db, write=True) as store:
        run_id = store_run(store, load("handcrafted_2nd_argmax_n10"), 300).run_id
    report = build(db, run_id)
    # 300 samples of a near-exact model: too few failures to evaluate or cluster, and no SAE; its stored
    # attributions (the zoo's own) are drawn
    assert report.sections == {
        "summary": "filled",
        "leakage": "empty",
        "explainers": "empty",
        "sae": "empty",
        "clusters": "empty",
        "attribution": "filled",
    }
    assert "No explainer applies" in report.html and "explainers need at least" in report.html
    assert "No SAE trained for this run" in report.html and "clustering needs at least 3" in report.html


# ---- the Overview page's button ----------------------------------------------------------------


def test_overview_builds_a_report_on_demand_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_st_caches: None
) -> None:
    db = tmp_path / "fresh.duckdb"
    make_synthetic_store(db, with_sae=False)
    monkeypatch.setenv("WIF_DB", str(db))
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    start = time.perf_counter()
    at = run_page(OVERVIEW)
    first_render = time.perf_counter() - start
    assert not at.exception
    assert not at.get("download_button") or all(
        "report" not in b.proto.label.lower() for b in at.get("download_button")
    )  # nothing is built on render
    assert at.button(key="report_build").label == "Build the report"
    at.selectbox(key="report_run").set_value(COLLECTED_RUN)
    at.button(key="report_build").click().run(timeout=300)
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the report (HTML)" in labels
    button = next(b for b in at.get("download_button") if b.proto.label == "Download the report (HTML)")
    assert button.proto.url.endswith(".html")
    path, run_id, html = at.session_state["_report"]
    assert (path, run_id) == (str(db), COLLECTED_RUN) and html.count("Plotly.newPlot") == 2 + N_HEATMAPS
    assert 'data-filled="true"' in html and "<footer>" in html
    # read-only: the store and everything beside it are as they were, no cache directory appeared
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert first_render < 60


# ---- the browser --------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="needs chromium and chromedriver")
def test_the_file_opens_from_disk_and_its_figures_render(collected_report: tuple[Path, dict], tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    path, meta = collected_report
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--window-size=1200,1000"):  # fmt: skip
        opts.add_argument(arg)
    opts.binary_location = str(CHROMIUM)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        drv.get(path.resolve().as_uri())
        count = "return document.querySelectorAll('.js-plotly-plot .main-svg').length"
        WebDriverWait(drv, 60).until(lambda d: d.execute_script(count) >= meta["n_figures"])
        plots = drv.execute_script("return document.querySelectorAll('.js-plotly-plot').length")
        assert plots == meta["n_figures"]
        traces = drv.execute_script(
            "return Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => p.data.length)"
        )
        assert all(n >= 1 for n in traces)
        errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        height = drv.execute_script("return document.body.scrollHeight")
        drv.set_window_size(1200, min(height, 8000))
        shot = tmp_path / "report.png"
        drv.save_screenshot(str(shot))
        assert shot.stat().st_size > 50_000  # not a blank page
    finally:
        drv.quit()
