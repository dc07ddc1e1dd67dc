"""The stronger input-tier explainers (mlp-probe, gbdt-probe, knn, difficulty-transfer, stack): each finds a
planted signal in the activations, none finds one that only the answer key or the outcomes carry, and the
train-only access to other runs' outcomes is refused everywhere else."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wif_core.cli import main
from wif_core.errors import InputError
from wif_core.explainers import REGISTRY, TIER_NOTES
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import ResultCache, evaluate, variants
from wif_core.runner import SplitOptions, write_splits
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

D = 8
WORDS = "apple river stone cloud paper glass metal wood light sound".split()
NEW = ("mlp-probe", "mlp-probe-all-layers", "gbdt-probe", "knn", "difficulty-transfer", "stack")
NONLINEAR = ("mlp-probe", "gbdt-probe", "knn")


def _items(n: int, rng: np.random.Generator) -> list[TaskItem]:
    items = []
    for i in range(n):
        goal = " ".join(rng.choice(WORDS, 5))
        gold = int(rng.integers(0, 2))
        items.append(
            TaskItem(
                item_id=f"i{i:04d}",
                task="gen-physical",
                context=render_context("two_choice", {"goal": goal}),
                choices=(" ".join(rng.choice(WORDS, 3)), " ".join(rng.choice(WORDS, 3))),
                gold=gold,
                meta={"goal": goal, "gold_position": gold},
            )
        )
    return items


def _row(item: TaskItem, failed: bool, acts: dict | None = None) -> OutcomeRow:
    pred = item.gold if not failed else 1 - item.gold
    ll = [-1.0, -2.0] if pred == 0 else [-2.0, -1.0]
    return OutcomeRow(
        item_id=item.item_id,
        pred=pred,
        correct=not failed,
        margin=1.0,
        ll_sum=ll,
        ll_norm=ll,
        n_tokens=[1, 1],
        acts=acts or {},
        tokens={},
    )


def _run(run_id: str, collected: bool) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        model=run_id,
        task="gen-physical",
        source="planted",
        n_choices=2,
        family="two_choice",
        layers=[1, 2] if collected else [],
        sites=["choice", "last", "mean"] if collected else [],
        n_layers=2,
        d_model=D if collected else None,
    )


def planted_store(path, n: int, signal: str, seed: int = 0) -> None:
    """Run ``a`` (activations at layers 1–2, sites choice/last/mean) and run ``b`` (outcomes only, like an
    imported file) on the same items. ``signal`` says what carries ``a``'s failures:

    - ``gold``: the answer key only (both models always answer 0), so ``b``'s outcome on every item is
      ``a``'s own and the activations are noise;
    - ``xor``: whether two cluster coordinates of layer 1 ``last`` share a sign (no linear direction does);
    - ``shared``: a difficulty in layer 1 ``last`` dimension 0 that both models fail on (with their own noise).
    """
    rng = np.random.default_rng(seed)
    items = _items(n, rng)
    rows_a, rows_b = [], []
    for it in items:
        acts = {
            (layer, site): rng.normal(size=(2, D) if site == "choice" else D).astype(np.float32)
            for layer in (1, 2)
            for site in ("choice", "last", "mean")
        }
        last = acts[(1, "last")]
        if signal == "gold":
            failed_a = failed_b = it.gold == 1
        elif signal == "xor":
            c0, c1 = rng.choice([-1.0, 1.0], 2)
            last[0] += 2.5 * c0
            last[1] += 2.5 * c1
            failed_a = bool((c0 * c1 > 0) != (rng.random() < 0.05))
            failed_b = bool(rng.random() < 0.5)
        else:
            failed_a = bool(last[0] + 0.4 * rng.normal() > 0)
            failed_b = bool(last[0] + 0.4 * rng.normal() > 0)
        rows_a.append(_row(it, failed_a, acts))
        rows_b.append(_row(it, failed_b))
    with Store.open(path, write=True) as store:
        for run_id, rows in (("a", rows_a), ("b", rows_b)):
            store.create_run(_run(run_id, run_id == "a"), items)
            store.write_outcomes(run_id, rows)
            write_splits(store, run_id, SplitOptions(seed=seed))


def _data(tmp_path_factory, name: str, n: int, signal: str):
    path = tmp_path_factory.mktemp(name) / "s.duckdb"
    planted_store(path, n, signal)
    store = Store.open(path)
    return store, RunData.load(store, "a")


@pytest.fixture(scope="module")
def gold_only(tmp_path_factory):
    store, data = _data(tmp_path_factory, "gold", 600, "gold")
    yield data
    store.close()


@pytest.fixture(scope="module")
def xor(tmp_path_factory):
    store, data = _data(tmp_path_factory, "xor", 800, "xor")
    yield data
    store.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    store, data = _data(tmp_path_factory, "shared", 600, "shared")
    yield data
    store.close()


def test_new_explainers_are_registered_input_tier_and_offered(gold_only):
    assert all(REGISTRY[name].tier == "input" for name in NEW)
    offered = {name for name, _ in variants(gold_only, list(NEW))}
    assert offered == set(NEW)
    transfer = [s for name, s in variants(gold_only, ["difficulty-transfer"])]
    assert transfer == [{"other_run": "b"}, {"other_run": "b", "layer": 2, "site": "last"}]
    summary = REGISTRY["difficulty-transfer"].summary
    assert "train items only" in summary and "never an outcome of a val or test item" in summary
    assert TIER_NOTES["input"]


@pytest.mark.parametrize("name", NONLINEAR)
def test_nonlinear_explainers_find_a_conjunction_no_linear_probe_sees(xor, name):
    found = evaluate(xor, name, layer=1, site="last", n_resamples=300)
    elsewhere = evaluate(xor, name, layer=2, site="last", n_resamples=300)
    assert found.auc > 0.8 and found.ci_low > 0.6, f"{name}: {found.auc:.3f}"
    assert elsewhere.ci_low < 0.5 < elsewhere.ci_high
    linear = evaluate(xor, "probe", layer=1, site="last", n_resamples=300)
    assert linear.ci_low < 0.5 < linear.ci_high  # the signal is not linear: the point of these explainers
    assert 0.5 < found.explanation["val_auc"] <= 1.0


def test_mlp_records_the_setting_chosen_on_val(xor):
    r = evaluate(xor, "mlp-probe", layer=1, site="last", n_resamples=200)
    e = r.explanation
    chosen = f"hidden={e['chosen']['hidden']} alpha={e['chosen']['alpha']:g}"
    assert len(e["val_auc_by_setting"]) == 6 and e["val_auc"] == max(e["val_auc_by_setting"].values())
    assert e["val_auc_by_setting"][chosen] == e["val_auc"] and e["steps_by_setting"][chosen] == e["chosen"]["steps"]
    assert e["pca_dims"] == D and e["layers"] == [1]  # fewer dimensions than the PCA cap: all kept


def test_mlp_over_several_layers_and_gbdt_early_stopping(xor):
    both = evaluate(xor, "mlp-probe-all-layers", site="last", n_resamples=300)
    assert both.auc > 0.75 and both.explanation["layers"] == [1, 2] and both.explanation["pca_dims"] == 2 * D
    only2 = evaluate(xor, "mlp-probe-all-layers", site="last", layers="2,1", n_resamples=300)
    assert only2.settings["layers"] == [1, 2] and only2.auc == both.auc  # normalised: one setting, one result
    with pytest.raises(InputError, match="two or more of the run's collected layers"):
        evaluate(xor, "mlp-probe-all-layers", site="last", layers="1,7")
    gbdt = evaluate(xor, "gbdt-probe", layer=1, site="last", n_resamples=200).explanation
    trees = {int(n): auc for n, auc in gbdt["val_auc_by_trees"].items()}  # JSON keys are strings
    assert gbdt["val_auc"] == max(trees.values()) == trees[gbdt["n_trees"]]
    assert max(trees) == min(gbdt["n_trees"] + 60, 500)  # stopped at the patience after the best, or the cap
    with pytest.raises(InputError, match="dims must be a positive whole number"):
        evaluate(xor, "gbdt-probe", layer=1, site="last", dims="0")


def test_knn_k_is_chosen_on_val(xor):
    e = evaluate(xor, "knn", layer=1, site="last", n_resamples=200).explanation
    assert e["val_auc"] == max(e["val_auc_by_k"].values()) == e["val_auc_by_k"][str(e["k"])]  # JSON keys
    assert e["memory"] == len(xor.split("train", "input")[0])


def test_stack_finds_the_signal_its_bases_carry_and_cross_fits(xor):
    r = evaluate(xor, "stack", site="last", n_resamples=300)
    e = r.explanation
    assert r.auc > 0.8 and r.ci_low > 0.6
    assert e["bases"][:2] == ["probe L1", "knn L1"] and e["bases"][2:] == ["text", "surface"]
    assert max(e["meta_weights"], key=lambda b: abs(e["meta_weights"][b])) == "knn L1"
    assert 0.7 < e["val_auc_out_of_fold"] <= 1.0 and e["folds"] == 5
    two = evaluate(xor, "stack", site="last", bases="text,surface", n_resamples=300)
    assert two.ci_low < 0.5 < two.ci_high and two.explanation["bases"] == ["text", "surface"]
    with pytest.raises(InputError, match="bases must be two or more of"):
        evaluate(xor, "stack", site="last", bases="probe,confidence")


def test_stack_scores_val_out_of_fold(xor):
    from wif_core.explainers.stack import Stack

    train, y_train = xor.split("train", "input")
    val, y_val = xor.split("val", "input")
    stack = Stack(site="last", bases=["knn", "surface"]).fit(train, y_train, val, y_val)
    assert np.array_equal(stack.predict_proba(val), stack.oof_)
    # the meta-model fitted on all of val scores val differently from the out-of-fold scores
    features = np.column_stack([np.log(np.clip(b.predict_proba(val), 1e-4, 1 - 1e-4)) for _, b in stack.bases_])
    assert features.shape == (len(val), 2)
    assert not np.allclose(stack.meta_.predict_proba(np.column_stack(stack.val_features_))[:, 1], stack.oof_)


def test_difficulty_transfer_learns_the_other_models_difficulty(shared):
    r = evaluate(shared, "difficulty-transfer", layer=1, site="last", n_resamples=300)
    assert r.settings["other_run"] == "b"  # the default: the only other run
    assert r.auc > 0.8 and r.ci_low > 0.6
    e = r.explanation
    assert e["n_train_matched"] == r.n_train and e["top_weights"][0]["feature"] == "dim 0"
    assert e["train_agreement"] > 0.7  # both models find the same items hard
    noise = evaluate(shared, "difficulty-transfer", layer=2, site="last", n_resamples=300)
    assert noise.ci_low < 0.5 < noise.ci_high


def test_difficulty_transfer_reads_no_outcome_of_this_run_but_for_diagnostics(shared):
    from wif_core.explainers.transfer import DifficultyTransfer

    train, y_train = shared.split("train", "input", other_train=True)
    val, y_val = shared.split("val", "input")
    test, _ = shared.split("test", "input")
    rng = np.random.default_rng(1)
    first = DifficultyTransfer(layer=1, site="last", other_run="b").fit(train, y_train, val, y_val)
    scrambled = DifficultyTransfer(layer=1, site="last", other_run="b").fit(
        train, rng.permutation(y_train), val, rng.permutation(y_val)
    )
    assert np.array_equal(first.predict_proba(test), scrambled.predict_proba(test))


def test_other_runs_outcomes_are_on_a_declaring_train_view_only(shared):
    train, _ = shared.split("train", "input", other_train=True)
    b = shared.store.items("b")
    failed = dict(zip(b["key"], (~b["correct"].astype(bool)).astype(float), strict=True))
    keys = shared.frame.loc[shared.frame["split"] == "train", "key"]
    assert np.array_equal(train.other_train_failures("b"), np.array([failed[k] for k in keys]))
    for split in ("val", "test"):
        view, _ = shared.split(split, "input", other_train=True)
        with pytest.raises(PermissionError, match="declares reads_other_train"):
            view.other_train_failures("b")
        with pytest.raises(PermissionError):
            view.other_run_failures("b")
    plain, _ = shared.split("train", "input")
    with pytest.raises(PermissionError, match="declares reads_other_train"):
        plain.other_train_failures("b")
    with pytest.raises(InputError, match="'zz' is not another run"):
        train.other_train_failures("zz")


def test_a_train_item_whose_content_is_a_test_item_is_unseen(shared):
    frame = shared.frame.copy()
    train_rows = frame.index[frame["split"] == "train"]
    test_row = frame.index[frame["split"] == "test"][0]
    frame.loc[train_rows[3], "key"] = frame.loc[test_row, "key"]  # a copy of a test item in train
    data = RunData(shared.store, shared.facts, frame)
    other = data.split("train", "input", other_train=True)[0].other_train_failures("b")
    assert np.isnan(other[3]) and np.isfinite(np.delete(other, 3)).all()


def test_difficulty_transfer_needs_another_run(tmp_path):
    planted_store(tmp_path / "s.duckdb", 200, "shared")
    with Store.open(tmp_path / "s.duckdb", write=True) as store:
        store.delete_run("b")
    with Store.open(tmp_path / "s.duckdb") as store:
        data = RunData.load(store, "a")
        assert [s for name, s in variants(data) if name == "difficulty-transfer"] == []
        with pytest.raises(InputError, match="no other run of task gen-physical scored"):
            evaluate(data, "difficulty-transfer")


def test_bad_other_run_is_one_line(shared):
    with pytest.raises(InputError, match="'nope' is not another run of task gen-physical"):
        evaluate(shared, "difficulty-transfer", other_run="nope")


def test_input_tier_stays_at_chance_when_only_the_answer_key_and_outcomes_carry_failure(gold_only):
    """Both runs fail exactly where the answer key is 1: the other run's outcome on a test item gives failure
    away (cross-model scores 1.0), yet no new explainer sees it."""
    assert evaluate(gold_only, "cross-model", other_run="b", n_resamples=200).auc == 1.0
    seen = set()
    for name, s in variants(gold_only, list(NEW)):
        r = evaluate(gold_only, name, n_resamples=500, **s)
        seen.add(name)
        assert r.tier == "input" and r.ci_low < 0.5 < r.ci_high, f"{r.label} found a signal: {r.auc:.3f}"
    assert seen == set(NEW)


def test_explain_all_includes_them_and_reads_them_back(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    planted_store(db, 240, "shared")
    argv = ["explain", "--run", "a", "--all", "--explainer", ",".join(NEW), "--resamples", "100"]
    argv += ["--db", str(db), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert {r["explainer"] for r in first} == set(NEW) and all(r["tier"] == "input" for r in first)
    assert any(r["label"] == "difficulty-transfer L2 last vs b" for r in first)
    cached = sorted((tmp_path / "s.duckdb.results").glob("*.json"))
    assert len(cached) == len(first)
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(r["label"], r["auc"], r["fit_seconds"]) for r in again] == [
        (r["label"], r["auc"], r["fit_seconds"]) for r in first
    ]
    assert sorted((tmp_path / "s.duckdb.results").glob("*.json")) == cached
    with Store.open(db) as store:
        cache = ResultCache.beside(db)
        data = RunData.load(store, "a")
        hit = evaluate(data, "stack", site="last", cache=cache, n_resamples=100)
    assert hit.fit_seconds == next(r["fit_seconds"] for r in first if r["explainer"] == "stack")


def test_difficulty_transfer_refuses_too_few_shared_outcomes(shared):
    from dataclasses import replace

    from wif_core.explainers.transfer import DifficultyTransfer

    train, y_train = shared.split("train", "input", other_train=True)
    val, y_val = shared.split("val", "input")
    few = np.zeros(len(train))
    few[:2] = 1.0  # the other run failed 2 of the shared train items
    starved = replace(train, _other_train=lambda run_id: few)
    with pytest.raises(InputError, match="has .* correct and 2 failed of the .* at least 3 of each"):
        DifficultyTransfer(layer=1, site="last", other_run="b").fit(starved, y_train, val, y_val)
    few[:3] = 1.0  # three: a 3-fold cross-validation of C
    fitted = DifficultyTransfer(layer=1, site="last", other_run="b").fit(starved, y_train, val, y_val)
    assert set(fitted.cv_auc_) == {1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0}
