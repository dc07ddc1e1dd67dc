"""Checkpoints side by side, the data side (issue 14, item 3): the zoo keeps a checkpoint at each power of two of
samples seen and stores a run per checkpoint; `wif collect --model` takes a hub revision or several checkpoint
directories, one run each. Every such run carries the shared contract's ``checkpoint`` entry in its config."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from safetensors import safe_open

from wif_core.cli import main
from wif_core.errors import InputError
from wif_core.models.loading import load_model, split_revision
from wif_core.runner import checkpoint_entry, checkpoint_specs, make_run_id
from wif_core.store import Store
from wif_core.zoo.models import handcrafted_2nd_argmax
from wif_core.zoo.runs import store_checkpoints, store_run
from wif_core.zoo.train import TrainConfig, checkpoint_label, checkpoint_steps, train, train_best
from wif_core.zoo.weights import available, checkpoints, load, save, save_checkpoints

torch.set_num_threads(1)
CONTRACT = {"label", "step", "samples", "revision", "path"}


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wif: error: ") and "\n" not in err and "Traceback" not in err
    return err


# ---- zoo: when checkpoints are taken ------------------------------------------------------------------------


def test_checkpoints_fall_at_each_power_of_two_of_samples_and_at_the_end() -> None:
    assert checkpoint_steps(300, 1024, 8192) == {
        8: 8192,
        16: 16384,
        32: 32768,
        64: 65536,
        128: 131072,
        256: 262144,
        300: 307200,
    }
    assert checkpoint_steps(150_000, 1024) == {**{2**k // 1024: 2**k for k in range(20, 28)}, 150_000: 153_600_000}
    # a batch that does not divide the power: the first step past it (2048 → step 3 of 1000 samples)
    assert checkpoint_steps(10, 1000, 2048) == {3: 3000, 5: 5000, 9: 9000, 10: 10_000}
    assert checkpoint_steps(4, 1024) == {4: 4096}  # a run shorter than the first checkpoint: only the final one
    with pytest.raises(InputError, match="must be a power of two"):
        checkpoint_steps(10, 1024, 3000)
    assert checkpoint_label(2**20) == "2^20 samples" and checkpoint_label(307_200, True) == "307,200 samples (final)"


def test_training_hands_over_frozen_copies_that_save_and_load_with_their_metadata(tmp_path: Path) -> None:
    cfg = TrainConfig("2nd_argmax", 4, 3, steps=40, batch=256, seed=3, name="ck_d4_n3")
    snaps: list = []
    model = train(cfg, on_checkpoint=snaps.append, first_checkpoint=1024)
    assert [s.spec.meta["checkpoint"]["samples"] for s in snaps] == [1024, 2048, 4096, 8192, 10240]
    assert [s.spec.meta["steps"] for s in snaps] == [4, 8, 16, 32, 40]
    assert [s.spec.meta["checkpoint"]["final"] for s in snaps] == [False] * 4 + [True]
    final, first = snaps[-1].weights(), snaps[0].weights()
    assert all(torch.equal(final[k], v) for k, v in model.weights().items())  # the last one is the trained model
    assert not torch.equal(first["W_hh"], final["W_hh"])  # an early copy was not moved on by later steps

    files = save_checkpoints(snaps, tmp_path / "ck_d4_n3.ckpt")
    save(model, tmp_path / "ck_d4_n3.safetensors")
    (tmp_path / "ck_d4_n3.ckpt" / "notes.safetensors").write_bytes(b"")  # not a checkpoint name: ignored
    assert (
        checkpoints("ck_d4_n3", tmp_path)
        == files
        == [tmp_path / "ck_d4_n3.ckpt" / f"{n}.safetensors" for n in (1024, 2048, 4096, 8192, 10240)]
    )
    with safe_open(str(files[1]), framework="pt") as f:
        header = f.metadata()
    assert (header["samples"], header["step"], header["seed"]) == ("2048", "8", "3")
    back = load("ck_d4_n3.ckpt/2048", tmp_path)  # a checkpoint resolves by name like any model
    assert back.spec.name == "ck_d4_n3" and back.spec.meta["checkpoint"]["step"] == 8
    assert all(torch.equal(back.weights()[k], v) for k, v in snaps[1].weights().items())
    names = available(tmp_path, with_checkpoints=True)
    start = names.index("ck_d4_n3")
    assert names[start : start + 6] == ["ck_d4_n3"] + [f"ck_d4_n3.ckpt/{n}" for n in (1024, 2048, 4096, 8192, 10240)]
    assert not any(".ckpt/" in n for n in available(tmp_path))  # `wif zoo list` lists models, not checkpoints


def test_the_best_of_several_seeds_hands_over_its_own_checkpoints_only() -> None:
    cfg = TrainConfig("2nd_argmax", 4, 3, steps=12, batch=256, seed=0)
    snaps: list = []
    best = train_best(cfg, seeds=2, eval_samples=4000, on_checkpoint=snaps.append, first_checkpoint=1024)
    assert [s.spec.meta["checkpoint"]["samples"] for s in snaps] == [1024, 2048, 3072]
    assert {s.spec.meta["checkpoint"]["seed"] for s in snaps} == {best.spec.meta["seed"]}
    assert all(torch.equal(snaps[-1].weights()[k], v) for k, v in best.weights().items())


def test_zoo_train_saves_checkpoints_beside_the_model_and_replaces_stale_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["zoo", "train", "2nd_argmax", "--hidden", "4", "--seq", "3", "--zoo-dir", str(tmp_path)]
    argv += ["--first-checkpoint", "8192", "--eval-samples", "3000"]
    out = _run_json(capsys, [*argv, "--steps", "20"])
    ckpt = tmp_path / "2nd_argmax_d4_n3.ckpt"
    assert [c["samples"] for c in out["checkpoints"]] == [8192, 16384, 20480]
    assert [c["label"] for c in out["checkpoints"]] == ["2^13 samples", "2^14 samples", "20,480 samples (final)"]
    assert all(0 <= c["accuracy"] <= 1 for c in out["checkpoints"])
    assert sorted(p.name for p in ckpt.iterdir()) == ["16384.safetensors", "20480.safetensors", "8192.safetensors"]
    assert load(str(ckpt / "8192.safetensors")).spec.meta["accuracy"] == out["checkpoints"][0]["accuracy"]

    out = _run_json(capsys, [*argv, "--steps", "9"])  # retrained shorter: the old run's checkpoints are gone
    assert sorted(p.name for p in ckpt.iterdir()) == ["8192.safetensors", "9216.safetensors"]
    # a checkpoint path and a checkpoint name both evaluate
    evaluate = ["--samples", "3000", "--seed", "1"]  # the fresh samples `wif zoo train` measured on
    by_path = _run_json(capsys, ["zoo", "eval", str(ckpt / "8192.safetensors"), *evaluate])
    by_name = _run_json(capsys, ["zoo", "eval", "2nd_argmax_d4_n3.ckpt/8192", "--zoo-dir", str(tmp_path), *evaluate])
    assert by_path["accuracy"] == by_name["accuracy"] == out["checkpoints"][0]["accuracy"]

    err = _one_line_error(capsys, [*argv, "--steps", "9", "--first-checkpoint", "5000"])
    assert "first checkpoint 5000 must be a power of two" in err
    _run_json(capsys, [*argv[:-4], "--steps", "9", "--no-checkpoints", "--name", "plain", "--eval-samples", "3000"])
    assert not (tmp_path / "plain.ckpt").exists()


# ---- zoo: a run per checkpoint ----------------------------------------------------------------------------


def test_a_run_per_checkpoint_is_stored_in_order_with_the_contracts_entry_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zoo, db = tmp_path / "zoo", tmp_path / "s.duckdb"
    _run_json(
        capsys,
        ["zoo", "train", "2nd_argmax", "--hidden", "4", "--seq", "3", "--steps", "20"]
        + ["--zoo-dir", str(zoo), "--first-checkpoint", "8192", "--eval-samples", "3000"],
    )
    store_argv = ["zoo", "store", "2nd_argmax_d4_n3", "--checkpoints", "--samples", "200", "--zoo-dir", str(zoo)]
    first = _run_json(capsys, [*store_argv, "--db", str(db)])
    runs = first["runs"]
    assert [r["checkpoint"]["samples"] for r in runs] == [8192, 16384, 20480] and not first["skipped"]
    assert len({r["run_id"] for r in runs}) == 3 and not any(r["resumed"] for r in runs)
    with Store.open(db) as store:
        stored = [store.run(r["run_id"]) for r in runs]
        created = [rid for rid in store.run_ids()]
        item_ids = [list(store.items(r["run_id"])["item_id"]) for r in runs]
    for run, r in zip(stored, runs, strict=True):
        entry = run.config["checkpoint"]
        assert set(entry) == CONTRACT and entry == r["checkpoint"]
        assert entry["revision"] is None and Path(entry["path"]).name == f"{entry['samples']}.safetensors"
        assert run.model == "zoo:2nd_argmax_d4_n3" and run.status == "complete"
    assert [e.config["checkpoint"]["step"] for e in stored] == [8, 16, 20]
    assert stored[-1].config["checkpoint"]["label"] == "20,480 samples (final)"
    assert sorted(created) == sorted(r["run_id"] for r in runs)
    assert all(ids == item_ids[0] for ids in item_ids)  # the same inputs for every checkpoint: items pair up

    again = _run_json(capsys, [*store_argv, "--db", str(db), "--cause"])
    assert [r["run_id"] for r in again["runs"]] == [r["run_id"] for r in runs] and all(
        r["resumed"] for r in again["runs"]
    )
    assert all(r["cause_recovery"][0]["label"] == "known cause: −gap12" for r in again["runs"])
    one = _run_json(
        capsys,
        ["zoo", "store", "2nd_argmax_d4_n3.ckpt/16384", "--samples", "200"] + ["--zoo-dir", str(zoo), "--db", str(db)],
    )  # one checkpoint on its own: the same run as in the series
    assert one["run_id"] == runs[1]["run_id"] and one["resumed"] and one["checkpoint"] == runs[1]["checkpoint"]
    err = _one_line_error(
        capsys, ["zoo", "store", "nothing_here", "--checkpoints", "--zoo-dir", str(zoo)] + ["--db", str(db)]
    )
    assert "model 'nothing_here' has no checkpoints" in err and "wif zoo train" in err


def test_a_checkpoint_without_failures_is_skipped_with_its_reason_and_a_plain_run_keeps_its_id(
    tmp_path: Path,
) -> None:
    perfect = handcrafted_2nd_argmax(2)  # 100% accurate: no failures, no balanced splits
    perfect.spec.meta = {"checkpoint": {"label": "2^10 samples", "step": 1, "samples": 1024, "seed": 0}}
    save(perfect, tmp_path / "perfect.ckpt" / "1024.safetensors")
    with Store.open(tmp_path / "s.duckdb", write=True) as store:
        runs, skipped = store_checkpoints(store, str(tmp_path / "perfect.ckpt"), 100)
        assert runs == [] and [s.label for s in skipped] == ["2^10 samples"]
        assert "200 of 200" not in skipped[0].reason and "samples right" in skipped[0].reason
        plain = store_run(store, handcrafted_2nd_argmax(10), 300)
        config = store.run(plain.run_id).config
    assert "checkpoint" not in config and plain.checkpoint is None
    assert plain.run_id == make_run_id("zoo:handcrafted_2nd_argmax_n10", config["task"], config)


def test_the_zoo_page_shows_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from page_runner import run_page

    snaps: list = []
    model = train(TrainConfig("2nd_argmax", 4, 3, steps=8, batch=256, name="pg_d4_n3"), None, snaps.append, 1024)
    save(model, tmp_path / "pg_d4_n3.safetensors")
    save_checkpoints(snaps, tmp_path / "pg_d4_n3.ckpt")
    monkeypatch.setenv("WIF_ZOO_DIR", str(tmp_path))
    monkeypatch.setenv("WIF_DB", str(tmp_path / "absent.duckdb"))
    at = run_page(str(Path(__file__).resolve().parents[1] / "pages" / "zoo.py"), model="pg_d4_n3.ckpt/1024")
    assert not at.exception and not at.error
    assert at.selectbox(key="zoo_model").value == "pg_d4_n3.ckpt/1024"
    assert "pg_d4_n3.ckpt/2048" in at.selectbox(key="zoo_model").options
    assert any("trained 4 steps" in c.value for c in at.caption)


# ---- language models: several checkpoint directories ---------------------------------------------------------


@pytest.fixture
def two_checkpoints(tmp_path: Path, tiny_llama, tiny_tokenizer) -> tuple[Path, Path]:
    """The tiny Llama saved twice, the second with perturbed weights, as a trainer's checkpoint directories."""
    first, second = tmp_path / "run" / "checkpoint-100", tmp_path / "run" / "checkpoint-200"
    moved = copy.deepcopy(tiny_llama)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for path, model in ((first, tiny_llama), (second, moved)):
        model.save_pretrained(path, safe_serialization=True)
        tiny_tokenizer.save_pretrained(path)
    return first, second


def _collect_argv(models: list[str], source: Path, db: Path) -> list[str]:
    argv = ["collect", "--task", "piqa", "--source", str(source), "--layers", "2", "--db", str(db)]
    return argv + [a for m in models for a in ("--model", m)]


def test_collect_with_two_checkpoint_directories_gives_two_marked_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_checkpoints: tuple[Path, Path], items_file: Path
) -> None:
    first, second = two_checkpoints
    db = tmp_path / "c.duckdb"
    out = _run_json(capsys, _collect_argv([f"{first},{second}"], items_file, db))
    runs = out["runs"]
    assert len(runs) == 2 and runs[0]["run_id"] != runs[1]["run_id"]
    assert [r["n_scored"] for r in runs] == [40, 40]
    with Store.open(db) as store:
        entries = [store.run(r["run_id"]).config["checkpoint"] for r in runs]
        margins = [store.items(r["run_id"]).sort_values("item_id")["margin"].to_numpy() for r in runs]
    assert entries == [
        {"label": "checkpoint-100", "step": 100, "samples": None, "revision": None, "path": str(first.resolve())},
        {"label": "checkpoint-200", "step": 200, "samples": None, "revision": None, "path": str(second.resolve())},
    ]
    assert [r["checkpoint"] for r in runs] == entries
    assert not (margins[0] == margins[1]).all()  # two models' outcomes, not one model's twice

    again = _run_json(capsys, _collect_argv([str(first), str(second)], items_file, db))  # repeated --model
    assert [r["run_id"] for r in again["runs"]] == [r["run_id"] for r in runs]
    assert [r["n_resumed"] for r in again["runs"]] == [40, 40]

    alone = _run_json(capsys, _collect_argv([str(first)], items_file, db))  # one directory: no checkpoint
    assert alone["checkpoint"] is None and alone["run_id"] not in {r["run_id"] for r in runs}
    with Store.open(db) as store:
        assert "checkpoint" not in store.run(alone["run_id"]).config


def test_bad_checkpoint_lists_get_one_line_each_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_checkpoints: tuple[Path, Path], items_file: Path
) -> None:
    first, second = two_checkpoints
    pickled = tmp_path / "run" / "checkpoint-300"
    shutil.copytree(second, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.rename(pickled / "pytorch_model.bin")
    db = tmp_path / "bad.duckdb"
    capsys.readouterr()  # what saving the fixtures printed
    cases = {
        f"{first},{pickled}": "has no *.safetensors weights; it holds pytorch_model.bin: pickled weights, which wif",
        f"{first},wif-test/tiny@step1": "mixes local directories",
        f"{first},{first}": "names",
        f"smollm2-135m,{first}": "the embedded 'smollm2-135m' has no checkpoints",
        "wif-test/a@v1,wif-test/b@v1": "wif-test/a and wif-test/b: several hub models are taken as checkpoints",
        "wif-test/a@v1,wif-test/a": "wif-test/a: several hub models",
        "wif-test/a@": "a hub id with a revision is written org/name@revision",
    }
    for spec, message in cases.items():
        err = _one_line_error(capsys, _collect_argv([spec], items_file, db))
        assert message in err, (spec, err)
    assert not db.exists()  # refused before the store was opened


def test_checkpoint_entries_of_specs() -> None:
    assert split_revision("org/name@main") == ("org/name", "main")
    assert split_revision("org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    assert split_revision("org/name") == ("org/name", None)
    with pytest.raises(InputError, match="org/name@revision"):
        split_revision("name@main")
    assert checkpoint_entry("EleutherAI/pythia-70m@step1000") == {
        "label": "step1000",
        "step": 1000,
        "samples": None,
        "revision": "step1000",
        "path": None,
    }
    assert checkpoint_entry("org/name@a1b2c3d4")["step"] is None  # a commit hash names no step
    assert checkpoint_entry("org/name@main")["step"] is None
    assert checkpoint_entry("org/name@global_step_1200")["step"] == 1200
    assert [e for _, e in checkpoint_specs(["org/name"])] == [None]  # a bare hub id is no checkpoint
    assert [e["revision"] for _, e in checkpoint_specs(["org/n@step1", "org/n@step2"])] == ["step1", "step2"]


# ---- language models: a hub revision, offline ---------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Path:
    """A local hub cache holding wif-test/tiny at two commits, `main` and the tag `step100` pointing at them,
    and the hub switched off."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--wif-test--tiny"
    for commit in ("0123456789abcdef0123456789abcdef01234567", "89abcdef0123456789abcdef0123456789abcdef"):
        shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    (repo / "refs" / "step100").write_text("89abcdef0123456789abcdef0123456789abcdef")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return repo


def test_a_revision_in_the_local_cache_loads_offline_and_one_not_there_fails_in_one_line(
    hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], items_file: Path
) -> None:
    lm = load_model("wif-test/tiny@step100")
    assert lm.name == "wif-test/tiny@step100" and lm.n_layers == 4
    assert load_model("wif-test/tiny@89abcdef0123456789abcdef0123456789abcdef").n_layers == 4
    with pytest.raises(InputError) as err:
        load_model("wif-test/tiny@step999")
    msg = str(err.value)
    assert msg.startswith("model 'wif-test/tiny' at revision 'step999' is not in the local cache and the hub is")
    assert "\n" not in msg

    db = tmp_path / "h.duckdb"
    out = _run_json(capsys, _collect_argv(["wif-test/tiny@step100"], items_file, db))
    assert out["checkpoint"] == {"label": "step100", "step": 100, "samples": None, "revision": "step100", "path": None}
    plain = _run_json(capsys, _collect_argv(["wif-test/tiny"], items_file, db))  # no revision: no checkpoint
    assert plain["checkpoint"] is None and plain["run_id"] != out["run_id"]
    err_line = _one_line_error(capsys, _collect_argv(["wif-test/tiny@step999"], items_file, db))
    assert "at revision 'step999' is not in the local cache" in err_line


def test_a_revision_the_hub_does_not_have_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub answers, but not the revision: transformers' own error, as the hub raises it, becomes one line."""
    import transformers.utils.hub as tf_hub
    from huggingface_hub.errors import RevisionNotFoundError

    from wif_core import hub

    def no_such_revision(repo_id: str, *args: object, **kwargs: object) -> str:
        request = httpx.Request("GET", f"https://huggingface.co/{repo_id}/resolve/{kwargs.get('revision')}")
        raise RevisionNotFoundError(
            "404 Client Error: Revision Not Found", response=httpx.Response(404, request=request)
        )

    monkeypatch.setattr(hub, "unreachable", lambda timeout=0: None)
    monkeypatch.setattr(tf_hub, "hf_hub_download", no_such_revision)
    monkeypatch.setattr(tf_hub, "snapshot_download", no_such_revision)
    with pytest.raises(InputError) as err:
        load_model("wif-test/tiny@nope")
    assert str(err.value) == (
        "model 'wif-test/tiny' has no revision 'nope' (no branch, tag or commit of that name); see "
        "https://huggingface.co/wif-test/tiny for its revisions"
    )
