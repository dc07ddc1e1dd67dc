"""Label-noise flags (issue 15, item 3): the item-quality pass, its storage, `wif quality`, `--exclude suspect`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from quality_factory import make_planted_store

import wif_core as wif
from wif_core import label_quality as q
from wif_core.cli.main import main
from wif_core.errors import InputError
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import ResultCache, evaluate
from wif_core.runner import SplitOptions, write_splits
from wif_core.store import Store

# ---- confident learning on hand-made cases --------------------------------------------------------------------


def _two_class(p1: list[float]) -> np.ndarray:
    p = np.array(p1)
    return np.column_stack([1 - p, p])


LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])


def test_confident_learning_flags_the_confidently_mislabelled_items() -> None:
    # items 3 (keyed 0) and 7 (keyed 1) are confidently the other class
    probs = _two_class([0.1, 0.2, 0.15, 0.9, 0.05, 0.8, 0.85, 0.1, 0.9, 0.95])
    issues, thresholds = q.find_label_issues(LABELS, probs)
    assert np.flatnonzero(issues).tolist() == [3, 7]
    assert thresholds == pytest.approx([0.72, 0.72])  # the mean probability of each class among its own keys
    assert q.confident_joint(LABELS, probs, thresholds).tolist() == [[4, 1], [1, 4]]


def test_a_doubtful_key_below_the_threshold_is_not_flagged() -> None:
    # item 2's key is doubtful (p = 0.6 for the other class) but below that class's threshold 0.72: the confident
    # joint counts one error among the items keyed 0, and the one pruned is the most confident (item 3)
    probs = _two_class([0.1, 0.2, 0.6, 0.9, 0.05, 0.8, 0.85, 0.1, 0.9, 0.95])
    issues, _ = q.find_label_issues(LABELS, probs)
    assert np.flatnonzero(issues).tolist() == [3, 7]


def test_no_issue_where_the_key_is_the_most_probable_choice() -> None:
    probs = _two_class([0.1, 0.2, 0.15, 0.3, 0.05, 0.8, 0.85, 0.7, 0.9, 0.95])
    issues, _ = q.find_label_issues(LABELS, probs)
    assert not issues.any()


def test_a_pruned_item_whose_key_is_still_the_most_probable_is_kept() -> None:
    # few items keyed 0 are confident, so calibrating the confident joint raises its error count to 2; the second
    # largest margin is item 1's, whose key (p = 0.52) is still its most probable choice: kept, as in cleanlab
    probs = _two_class([0.9, 0.48, 0.48, 0.01, 0.01, 0.8, 0.85, 0.9, 0.95, 0.9])
    thresholds = q.confident_thresholds(LABELS, probs)
    assert q.confident_joint(LABELS, probs, thresholds)[0].tolist() == [3, 2]
    issues, _ = q.find_label_issues(LABELS, probs)
    assert np.flatnonzero(issues).tolist() == [0]


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_at() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 4, size=(4000, 2))
    p = np.exp(scores / 3.0)
    p /= p.sum(axis=1, keepdims=True)
    labels = (rng.random(4000) < p[:, 1]).astype(int)
    assert q.fit_temperature(scores, labels) == pytest.approx(3.0, rel=0.15)


def test_text_classifier_is_out_of_fold_and_learns_a_planted_word() -> None:
    """The key is the choice with "sturdy" in it; an item's own key never reaches its own probabilities."""
    rng = np.random.default_rng(0)
    n = 100
    labels = rng.integers(0, 2, size=n)
    contexts = [f"How do you carry thing number {i}?" for i in range(n)]
    choices = [
        tuple(f"with a {'sturdy' if j == labels[i] else 'flimsy'} {w} bag" for j, w in enumerate(("paper", "cloth")))
        for i in range(n)
    ]
    folds = q.fold_of([str(i) for i in range(n)], 5, 0)
    everyone = np.ones(n, dtype=bool)
    probs = q.text_oof_probs(contexts, choices, labels, folds, everyone)
    assert (probs.argmax(axis=1) == labels).mean() == 1.0
    flipped = labels.copy()
    flipped[0] = 1 - flipped[0]
    again = q.text_oof_probs(contexts, choices, flipped, folds, everyone)
    assert np.array_equal(again[folds == folds[0]], probs[folds == folds[0]])  # fitted without item 0's fold
    assert not np.array_equal(again, probs)  # the other folds' fits did see the flip


# ---- the planted test -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("planted") / "planted.duckdb"
    return path, make_planted_store(path)


def test_flags_recover_most_flipped_keys(planted) -> None:
    """5% of a generated task's keys flipped (20 of 400), five models 75–85% right under the true keys."""
    path, truth = planted
    with Store.open(path, write=True) as store:
        result = wif.quality(store, truth.runs[0])
        stored = store.quality_flags(truth.runs[0])
        passes = store.quality_passes(truth.runs[0])
    got = {f.item_id for f in result.flags}
    hits = got & truth.flipped
    precision, recall = len(hits) / len(got), len(hits) / len(truth.flipped)
    by_reason = {
        reason: (len(mine & truth.flipped) / max(1, len(mine)), len(mine & truth.flipped) / len(truth.flipped))
        for reason in ("consensus", "confident_learning")
        for mine in [{f.item_id for f in result.flags if reason in f.reasons}]
    }
    print(
        f"\nplanted label noise: {len(got)} flagged, {len(hits)} of {len(truth.flipped)} flipped keys found: "
        f"precision {precision:.2f}, recall {recall:.2f}; "
        + "; ".join(f"{r} precision {p:.2f} recall {c:.2f}" for r, (p, c) in by_reason.items())
    )
    assert recall >= 0.75 and precision >= 0.7  # seeds 0–5 measured: recall 0.85–1.0, precision 0.72–1.0
    assert result.signals == ["duplicates", "consensus", "text", "scores"] and not result.skipped
    assert result.combine == "stacked" and len(result.thresholds) == 2
    assert stored["item_id"].tolist() == [f.item_id for f in result.flags]  # stored as returned, in item order
    assert passes["n_flagged"].tolist() == [len(got)] and passes["n_items"].tolist() == [400]
    # the evidence names the true key, and every run that answered
    found = [f for f in result.flags if f.item_id in truth.flipped]
    assert np.mean([f.suggested == truth.true_gold[f.item_id] for f in found]) >= 0.9
    flag = found[0]
    assert len(flag.evidence["runs"]) == 5 and sum(r["self"] for r in flag.evidence["runs"]) == 1
    assert flag.evidence["probability"][flag.evidence["given"]] == pytest.approx(1 - flag.score, abs=1e-4)
    # the flipped keys score as more suspect than the flagged others
    scores = {f.item_id: f.score for f in result.flags}
    assert np.mean([scores[i] for i in hits]) > np.mean([scores[i] for i in got - hits] or [0.0])


def test_flags_survive_a_split_rewrite_and_go_with_their_run(planted) -> None:
    path, truth = planted
    with Store.open(path, write=True) as store:
        run_quality = q.run_quality(store, truth.runs[1])
        write_splits(store, truth.runs[1], SplitOptions(seed=3))  # findings and splits are replaced ...
        assert len(store.quality_flags(truth.runs[1])) == run_quality.n_flagged > 0  # ... the flags are not
        store.delete_run(truth.runs[1])
        assert store.quality_flags(truth.runs[1]).empty and store.quality_passes(truth.runs[1]).empty


def test_exclude_suspect_evaluates_without_the_flagged_items(planted, tmp_path: Path) -> None:
    path, truth = planted
    run_id = truth.runs[0]
    with Store.open(path, write=True) as store:
        q.run_quality(store, run_id)
        flagged = set(store.quality_flags(run_id)["item_id"])
        full, kept = RunData.load(store, run_id), RunData.load(store, run_id, exclude="suspect")
        assert set(kept.frame["item_id"]) == set(full.frame["item_id"]) - flagged
        left_out = full.frame[full.frame["item_id"].isin(flagged)]["split"].value_counts()
        assert kept.excluded["n_suspect"] == {s: int(left_out.get(s, 0)) for s in ("train", "val", "test")}
        cache = ResultCache(tmp_path / "results")
        a, b = evaluate(full, "confidence", cache=cache), evaluate(kept, "confidence", cache=cache)
        assert a.n_test - b.n_test == kept.excluded["n_suspect"]["test"] > 0
        assert len(list((tmp_path / "results").glob("*.json"))) == 2  # two cache keys, two results
        assert evaluate(kept, "confidence", cache=cache).auc == b.auc  # the second is found again
    with Store.open(path) as store:
        api = wif.evaluate(store, run_id, "confidence", exclude="suspect", cache=False)
    assert api.n_test == b.n_test and api.auc == pytest.approx(b.auc)


def test_explain_cli_reports_both_results(planted, capsys: pytest.CaptureFixture[str]) -> None:
    path, truth = planted
    run_id = truth.runs[0]
    common = ["--run", run_id, "--db", str(path), "--explainer", "confidence", "--resamples", "200", "--json"]
    assert main(["quality", "--run", run_id, "--db", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_flagged"] == len(summary["flags"]) > 0 and summary["signals"][0] == "duplicates"
    assert main(["explain", *common, "--exclude", "suspect"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["exclude"] == "suspect" and set(doc) == {"exclude", "n_left_out", "all_items", "without_suspect"}
    assert doc["all_items"]["n_test"] - doc["without_suspect"]["n_test"] == doc["n_left_out"]["test"]
    assert main(["explain", *common[:-1], "--exclude", "suspect"]) == 0
    text = capsys.readouterr().out
    assert "all items" in text and "without the suspect items" in text and text.count("confidence") == 2


# ---- what cannot be done, in one line each ---------------------------------------------------------------------


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wif: error: ") and "\n" not in err
    return err


def test_unknown_run_and_missing_store(planted, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, truth = planted
    err = _one_line_error(["quality", "--run", "nope", "--db", str(path)], capsys)
    assert "no run 'nope'" in err and truth.runs[0] in err
    absent = tmp_path / "absent.duckdb"
    assert "no store at" in _one_line_error(["quality", "--run", "r", "--db", str(absent)], capsys)
    assert not absent.exists()  # nothing created
    assert "at least 2 folds" in _one_line_error(
        ["quality", "--run", truth.runs[0], "--db", str(path), "--folds", "1"], capsys
    )


def test_exclude_suspect_without_a_pass_says_how_to_make_one(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.duckdb"
    truth = make_planted_store(path, n=100, accuracies=(0.7,))
    err = _one_line_error(
        ["explain", "--run", truth.runs[0], "--db", str(path), "--explainer", "confidence", "--exclude", "suspect"],
        capsys,
    )
    assert "no item-quality pass" in err and f"wif quality --run {truth.runs[0]}" in err
    with Store.open(path) as store, pytest.raises(InputError, match="can leave out suspect"):
        RunData.load(store, truth.runs[0], exclude="duplicates")


def test_a_lone_run_says_consensus_was_impossible(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.duckdb"
    truth = make_planted_store(path, n=100, accuracies=(0.8,))
    assert main(["quality", "--run", truth.runs[0], "--db", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    used = next(line for line in lines if line.startswith("signals used: "))
    assert used.startswith("signals used: duplicates") and "scores" in used and "consensus" not in used
    assert "  not used: no other run of task gen-physical in the store, so no consensus to compare keys with" in lines


def test_a_run_too_small_for_k_fold_uses_the_other_signals(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    truth = make_planted_store(path, n=30, accuracies=(0.8, 0.8, 0.8))
    with Store.open(path) as store:
        result = wif.quality(store, truth.runs[0])  # read-only: computed, not stored
        assert store.quality_passes().empty
    assert result.skipped == {
        "text": f"run {truth.runs[0]} has 30 items; 5-fold cross-fitting of the text classifier needs at least 50 "
        "(10 per fold): score more items or lower --folds"
    }
    assert result.signals == ["duplicates", "consensus", "scores"] and result.combine == "mean"
    with Store.open(path) as store:
        assert "text" not in wif.quality(store, truth.runs[0], folds=2).skipped  # 2 folds need only 20


def test_duplicates_are_the_leakage_findings(tmp_path: Path) -> None:
    """A copy keyed to another answer: both copies are flagged, each naming the other and its key."""
    path = tmp_path / "s.duckdb"
    truth = make_planted_store(path, n=100, accuracies=(0.8,), flip=0.0, copies=1)
    with Store.open(path) as store:
        result = wif.quality(store, truth.runs[0])
        conflict = store.findings(truth.runs[0]).query("kind == 'gold_conflict'")
    pair = {"gen-physical-0000", "gen-physical-0000-copy"}
    assert [set(ids) for ids in conflict["item_ids"]] == [pair]
    dup = {f.item_id: f for f in result.flags if "gold_conflict" in f.reasons}
    assert set(dup) == pair
    copy = dup["gen-physical-0000-copy"]
    assert copy.evidence["copies"] == [
        {"item_id": "gen-physical-0000", "answer": dup["gen-physical-0000"].evidence["given_answer"]}
    ]
    assert copy.evidence["given_answer"] != dup["gen-physical-0000"].evidence["given_answer"]
