"""An unreachable or switched-off hub answers at once with one line; what the local cache holds still loads
(issue 12, item 10). No test here needs the network: each turns the hub off or points it nowhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wif_core import hub
from wif_core.errors import InputError
from wif_core.models.loading import load_model
from wif_core.tasks.sources import load_items

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def offline(monkeypatch):
    """The hub libraries' offline switch on, as a user sets it (after the libraries were imported)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def nowhere(monkeypatch):
    """No offline switch, but the hub's address refuses connections (a machine without network)."""
    from huggingface_hub import constants

    for name in hub.OFFLINE_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


def _one_line_in_seconds(call, match: str) -> str:
    start = time.perf_counter()
    with pytest.raises(InputError, match=match) as err:
        call()
    assert time.perf_counter() - start < 10  # was 36–52 s of retries
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_hub_model_with_the_offline_switch_on_fails_at_once(offline):
    msg = _one_line_in_seconds(
        lambda: load_model("wif-test/absent"), r"model 'wif-test/absent' is not in the local cache"
    )
    assert "the hub is offline (HF_HUB_OFFLINE=1)" in msg and "local model directory" in msg and "smollm2-135m" in msg


def test_a_hub_model_with_the_hub_unreachable_fails_at_once(nowhere):
    assert hub.unreachable() is not None
    msg = _one_line_in_seconds(
        lambda: load_model("wif-test/absent"), r"model 'wif-test/absent' is not in the local cache"
    )
    assert "http://127.0.0.1:9 cannot be reached" in msg


def test_a_hub_dataset_with_the_hub_off_fails_at_once(offline):
    pytest.importorskip("datasets")
    msg = _one_line_in_seconds(lambda: load_items("boolq", "hf", limit=3), r"dataset google/boolq \(validation\)")
    assert "the hub is offline" in msg and "--source PATH" in msg


def test_a_hub_dataset_with_the_hub_unreachable_fails_at_once(nowhere):
    pytest.importorskip("datasets")
    msg = _one_line_in_seconds(lambda: load_items("boolq", "hf:wif-test/absent", limit=3), r"dataset wif-test/absent")
    assert "cannot be reached" in msg


def test_a_model_in_the_local_cache_loads_with_the_hub_off(offline, monkeypatch, tmp_path, tiny_model_dir):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--wif-test--tiny" / "snapshots" / "0123456789abcdef"
    shutil.copytree(tiny_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(snapshot.name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    before = constants.HF_HUB_OFFLINE
    lm = load_model("wif-test/tiny")
    assert lm.name == "wif-test/tiny" and lm.n_layers == 4
    assert constants.HF_HUB_OFFLINE == before  # the libraries' own switch is left as it was


def test_a_model_folder_without_a_model_says_what_is_missing(tmp_path, tiny_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _one_line_in_seconds(lambda: load_model(str(empty)), r"has no config\.json")
    assert msg.endswith("(config.json, the tokenizer's files and *.safetensors weights)")  # whole, not cut off
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    _one_line_in_seconds(lambda: load_model(str(pickled)), r"has no \*\.safetensors weights")


def test_whole_line_keeps_a_multi_line_message():
    exc = ValueError("Couldn't instantiate the backend tokenizer from one of: \n(1) a file, \n(2) a slow one")
    assert hub.whole_line(exc) == "Couldn't instantiate the backend tokenizer from one of: (1) a file, (2) a slow one"
    assert len(hub.whole_line(ValueError("x" * 1000), 50)) == 50


def test_the_command_answers_at_once_with_the_offline_switch_on(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    argv = ["collect", "--model", "org/name", "--task", "gen-physical", "--source", "generated"]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "wif_core.cli.main", *argv, "--db", str(tmp_path / "w.duckdb")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert time.perf_counter() - start < 60  # imports only, on a busy machine
    lines = [line for line in done.stderr.splitlines() if "RuntimeWarning" not in line]
    assert done.returncode == 2 and "Retrying" not in done.stderr
    assert lines == [
        "wif: error: model 'org/name' is not in the local cache and the hub is offline (HF_HUB_OFFLINE=1); "
        "give a local model directory or the embedded 'smollm2-135m'"
    ]
