"""Clusters: planted groups recovered, c-TF-IDF words, failure-rate intervals, slice ranking, the
cluster explainers and their tiers, bad input, the CLI, and text embeddings with the real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, silhouette_score
from store_factory import COLLECTED_RUN, IMPORTED_RUN, SIGNAL_LAYER, make_synthetic_store
from threadpoolctl import threadpool_limits

from wif_core.clusters import ClusterCache, ClusterResult, build_space, cluster_run, spaces
from wif_core.clusters import algorithms as algo
from wif_core.clusters import run as cluster_module
from wif_core.clusters.cards import factor_ami, wilson
from wif_core.clusters.ctfidf import class_tfidf, words
from wif_core.errors import InputError
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import evaluate
from wif_core.runner import SplitOptions, write_splits
from wif_core.store import AttributionRow, OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context

torch.set_num_threads(1)

PLANTED_RUN = "planted-lm--gen-physical--0000dddd"
GROUPS = {"A": ("kettle", 11), "B": ("hammer", 6), "C": ("ladder", 1)}  # group: (its word, failures per 12 items)
N_PER_GROUP, WIDTH = 72, 24


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """The cores are shared: one BLAS/OpenMP thread keeps timings sane and results repeatable."""
    with threadpool_limits(1):
        yield


def make_planted_store(path: Path, failures_only: bool = False) -> None:
    """A gen-physical run of 216 items in three groups, each with its own word, activation centre and
    failure rate (11/12, 6/12, 1/12); activations at layer 1 (site last: the groups; site mean: noise), and
    attributions (of every item, or of the failures only) whose 'wrong' share and layer profile mark the failures."""
    rng = np.random.default_rng(0)
    centres = {g: rng.normal(size=WIDTH) * 3 for g in GROUPS}
    items, rows, attributions = [], [], []
    for g, (word, per12) in GROUPS.items():
        for j in range(N_PER_GROUP):
            n = len(items)
            failed = j % 12 < per12
            goal = f"How do you use the {word} in case {n}?"
            meta = {
                "goal": goal,
                "group": g,
                "negation": g == "A",
                "gold_position": n % 2,
                "factors": ["group", "negation", "gold_position"],
                "generator": "gen-physical",
            }
            item = TaskItem(
                item_id=f"planted-{n:04d}",
                task="gen-physical",
                context=render_context("two_choice", {"goal": goal}),
                choices=(f"Hold the {word} firmly {n}.", f"Drop the {word} twice {n}."),
                gold=n % 2,
                meta=meta,
            )
            items.append(item)
            pred = 1 - item.gold if failed else item.gold
            ll = [-10.0, -10.0]
            ll[pred] += 1.0
            acts = {
                (1, "last"): (centres[g] + rng.normal(size=WIDTH)).astype(np.float16),
                (1, "mean"): rng.normal(size=WIDTH).astype(np.float16),
            }
            rows.append(
                OutcomeRow(
                    item_id=item.item_id,
                    pred=pred,
                    correct=not failed,
                    margin=ll[item.gold] - ll[1 - item.gold],
                    ll_sum=ll,
                    ll_norm=ll,
                    n_tokens=[3, 3],
                    acts=acts,
                )
            )
            wrong = 0.8 if failed else 0.1
            scores = [0.05, 0.1, wrong + rng.normal() * 0.05, 1 - wrong]
            profile = np.linspace(1, 0, 4) if failed else np.linspace(0, 1, 4)
            attributions.append(
                AttributionRow(
                    item_id=item.item_id,
                    method="test-ig",
                    wrong_choice=1 - item.gold,
                    right_choice=item.gold,
                    tokens=["<s>", "Q", "wrong", "right"],
                    segments=["special", "goal", "wrong", "right"],
                    scores=scores,
                    delta=1.0,
                    sum_scores=float(sum(scores)),
                    layer_profile=profile.tolist(),
                )
            )
    with Store.open(path, write=True) as store:
        run = RunInfo(
            run_id=PLANTED_RUN,
            model="planted-lm",
            task="gen-physical",
            source="generated",
            kind="collected",
            n_choices=2,
            family="two_choice",
            template="lm-eval-v1",
            scoring="sum",
            layers=[1],
            sites=["last", "mean"],
            n_layers=2,
            d_model=WIDTH,
            seed=0,
        )
        store.create_run(run, items)
        store.write_outcomes(PLANTED_RUN, rows, "float16")
        write_splits(store, PLANTED_RUN, SplitOptions())
        failed = {r.item_id for r in rows if not r.correct}
        store.write_attributions(PLANTED_RUN, [a for a in attributions if a.item_id in failed or not failures_only])
        store.set_status(PLANTED_RUN, "complete")


@pytest.fixture(scope="module")
def planted_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("planted") / "planted.duckdb"
    make_planted_store(path)
    return path


def _group_of(item_ids: list[str]) -> list[str]:
    order = list(GROUPS)
    return [order[int(i.split("-")[1]) // N_PER_GROUP] for i in item_ids]


# ---- algorithms ---------------------------------------------------------------------------


def test_two_planted_groups_are_recovered_with_k_chosen_by_silhouette() -> None:
    rng = np.random.default_rng(1)
    truth = np.repeat([0, 1], [70, 50])
    shift = np.zeros(600)
    shift[:40] = 2.0  # the groups differ in 40 of 600 dimensions: PCA must find them
    X = rng.normal(size=(120, 600)) + truth[:, None] * shift
    Z = algo.reduce(X, "standard", seed=0)
    assert Z.shape == (120, algo.REDUCED_DIMS)
    choice = algo.kmeans_auto(Z, seed=0)
    assert choice.k == 2 and choice.chosen_by == "silhouette"
    assert adjusted_rand_score(truth, choice.labels) == pytest.approx(1.0)
    assert set(choice.silhouettes) == set(range(2, algo.K_MAX + 1))
    assert max(choice.silhouettes, key=lambda k: choice.silhouettes[k]) == 2
    # the slow, obvious oracle: sklearn's silhouette of the labels k-means gave for k
    assert choice.silhouettes[2] == pytest.approx(silhouette_score(Z, choice.labels))
    labels = algo.hdbscan(Z, min_cluster_size=10)
    clustered = labels >= 0
    assert len(set(labels[clustered])) == 2 and clustered.mean() > 0.8
    assert adjusted_rand_score(truth[clustered], labels[clustered]) == pytest.approx(1.0)
    again = algo.kmeans_auto(Z, seed=0)
    assert np.array_equal(again.labels, choice.labels)  # seeded


def test_maps_are_two_dimensional_and_seeded() -> None:
    rng = np.random.default_rng(0)
    Z = np.vstack([rng.normal(size=(30, 8)), rng.normal(size=(30, 8)) + 6])
    pca = algo.map_2d(Z, "pca")
    assert pca.shape == (60, 2) and abs(pca[:30, 0].mean() - pca[30:, 0].mean()) > 5
    um = algo.map_2d(Z, "umap", seed=3)
    assert um.shape == (60, 2) and np.allclose(um, algo.map_2d(Z, "umap", seed=3))
    centre_gap = np.linalg.norm(um[:30].mean(0) - um[30:].mean(0))
    assert centre_gap > 3 * max(um[:30].std(0).max(), um[30:].std(0).max())  # the two groups stay apart
    with pytest.raises(InputError, match="--map must be one of pca, umap"):
        algo.map_2d(Z, "tsne")


# ---- c-TF-IDF and rates -------------------------------------------------------------------


def test_class_tfidf_words_on_a_tiny_corpus() -> None:
    texts = [
        "The cat chased the mouse.",
        "A cat sat on the mat.",
        "My cat likes fish.",
        "The dog chased the ball.",
        "A dog barked at 3 cars.",
        "My dog likes bones.",
    ]
    out = class_tfidf(texts, [0, 0, 0, 1, 1, 1], top=10)
    assert out[0].words[0] == "cat" and out[1].words[0] == "dog"
    assert set(out[0].words) == {"cat", "mouse", "sat", "mat", "fish"}
    assert set(out[1].words) == {"dog", "ball", "barked", "cars", "bones"}  # no "3": numbers are not words
    assert not {"chased", "likes", "the", "my"} & set(out[0].words + out[1].words)  # shared, or stop words
    assert out[0].scores == sorted(out[0].scores, reverse=True)
    # the formula by hand: tf = 3/9 of cluster 0's words; f(cat) = 3; A = 18 words / 2 clusters
    assert out[0].scores[0] == pytest.approx(3 / 9 * np.log(1 + 9 / 3))
    assert words("Question: Isn't it the kettle's lid?") == ["question", "isn't", "kettle's", "lid"]


def test_template_words_in_nearly_every_text_are_left_out() -> None:
    texts = [f"Question: how to use the {w}? Answer:" for w in ["kettle"] * 6 + ["hammer"] * 6]
    out = class_tfidf(texts, [0] * 6 + [1] * 6)
    assert out[0].words == ["kettle"] and out[1].words == ["hammer"]


def test_wilson_interval_against_known_values() -> None:
    r = wilson(5, 10, level=0.95)
    assert (r.rate, r.ci_low, r.ci_high) == pytest.approx((0.5, 0.2366, 0.7634), abs=1e-4)
    r = wilson(0, 10, level=0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.0, 0.2775), abs=1e-4)
    wide = wilson(5, 10)  # 99.9% by default, as every interval in wif
    assert wide.ci_level == 0.999 and wide.ci_low < 0.2366 and wide.ci_high > 0.7634
    assert np.isnan(wilson(0, 0).rate)
    assert factor_ami(np.array([0, 0, 1, 1]), {"f": ["x", "x", "y", "y"], "g": ["1"] * 4}) == {"f": 1.0, "g": 0.0}


# ---- cluster_run on a planted store ---------------------------------------------------------


def test_mode_all_ranks_slices_by_failure_rate(planted_db: Path) -> None:
    with Store.open(planted_db) as store:
        r = cluster_run(store, PLANTED_RUN, space="activations", mode="all")
    assert r.k == 3 and r.k_chosen_by == "silhouette" and r.n_clustered == r.n_items == 3 * N_PER_GROUP
    assert [c.id for c in r.clusters] == [0, 1, 2]
    rates = [c.failure_rate for c in r.clusters]
    assert rates == sorted(rates, reverse=True)
    assert rates == pytest.approx([11 / 12, 6 / 12, 1 / 12])
    for c in r.clusters:
        assert c.ci_low < c.failure_rate < c.ci_high and c.ci_level == 0.999 and c.size == c.n_region
    assert adjusted_rand_score(_group_of(r.item_ids), r.labels) == pytest.approx(1.0)
    top = r.clusters[0]
    assert top.top_words[0] == "kettle" and r.clusters[2].top_words[0] == "ladder"
    assert ("negation", "True") in {(f.factor, f.value) for f in top.factors}
    assert all(r.labels[r.item_ids.index(i)] == 0 for i in top.representatives)
    assert len(top.representatives) == len(top.examples) == 5 and "kettle" in top.examples[0]
    assert r.factor_ami["group"] == pytest.approx(1.0) and abs(r.factor_ami["gold_position"]) < 0.05
    assert len(r.x) == len(r.y) == r.n_items and r.tier == "input"


def test_mode_failures_clusters_the_failures_and_places_the_rest(planted_db: Path) -> None:
    with Store.open(planted_db) as store:
        r = cluster_run(store, PLANTED_RUN, space="activations", mode="failures", k=3)
    n_failed = sum(per12 for _, per12 in GROUPS.values()) * N_PER_GROUP // 12
    assert r.n_clustered == r.n_failed == n_failed and r.k_chosen_by == "user"
    assert [c.size for c in r.clusters] == sorted((c.size for c in r.clusters), reverse=True)  # largest first
    assert sum(c.size for c in r.clusters) == n_failed and sum(c.n_region for c in r.clusters) == r.n_items
    assert [c.failure_rate for c in r.clusters] == pytest.approx([11 / 12, 6 / 12, 1 / 12])
    assert r.factor_ami["group"] == pytest.approx(1.0)  # the failure clusters recover the known cause
    assert sum(r.clustered) == n_failed and all(f for f, c in zip(r.failed, r.clustered, strict=True) if c)


def test_attribution_space_is_gold_and_results_are_cached(
    planted_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ClusterCache(tmp_path / "clusters")
    with Store.open(planted_db) as store:
        r = cluster_run(store, PLANTED_RUN, space="attribution", mode="all", k=2, cache=cache)
        assert r.tier == "gold" and r.settings["method"] == "test-ig"
        assert sorted(c.failure_rate for c in r.clusters) == pytest.approx([0.0, 1.0])

        def no_features(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a cached result was computed again")

        monkeypatch.setattr(cluster_module, "build_space", no_features)
        again = cluster_run(store, PLANTED_RUN, space="attribution", mode="all", k=2, cache=cache)
    assert again == r and len(list((tmp_path / "clusters").glob("*.json"))) == 1
    assert ClusterResult.from_json(json.loads(json.dumps(r.to_json()))) == r


def test_hdbscan_finds_the_groups_and_marks_noise(planted_db: Path, tmp_path: Path) -> None:
    with Store.open(planted_db) as store:
        r = cluster_run(store, PLANTED_RUN, space="activations", mode="all", algorithm="hdbscan")
        one = cluster_run(
            store,
            PLANTED_RUN,
            space="activations",
            mode="all",
            algorithm="hdbscan",
            min_cluster_size=3 * N_PER_GROUP,
            cache=ClusterCache(tmp_path),
        )
        cached = cluster_run(
            store,
            PLANTED_RUN,
            space="activations",
            mode="all",
            algorithm="hdbscan",
            min_cluster_size=3 * N_PER_GROUP,
            cache=ClusterCache(tmp_path),
        )
    assert one.k <= 1 and np.isnan(cached.silhouette) == np.isnan(one.silhouette)  # NaN survives the JSON cache
    assert r.k == 3 and r.k_chosen_by == "hdbscan"
    kept = np.asarray(r.labels) >= 0
    groups = np.asarray(_group_of(r.item_ids))
    assert adjusted_rand_score(groups[kept], np.asarray(r.labels)[kept]) == pytest.approx(1.0)
    assert all(c.id == -1 for c in r.clusters[3:])  # noise, if any, comes last


# ---- the explainers -----------------------------------------------------------------------


def test_cluster_explainer_scores_the_planted_signal_on_test_items(planted_db: Path) -> None:
    with Store.open(planted_db) as store:
        data = RunData.load(store, PLANTED_RUN)
        result = evaluate(data, "cluster", layer=1, site="last", space="activations")
        noise = evaluate(data, "cluster", layer=1, site="mean", space="activations")
    assert result.tier == "input" and result.auc > 0.8 and result.ci_low > 0.5
    assert result.n_test == len(data.frame[data.frame["split"] == "test"])
    expl = result.explanation
    assert expl["space"] == "activations" and str(expl["k"]) in expl["val_auc_by_k"]  # k tuned on val
    rates = [c["failure_rate"] for c in expl["clusters"]]
    assert rates == sorted(rates, reverse=True) and rates[0] > 0.8
    assert noise.auc < result.auc  # site mean carries no groups


def test_cluster_explainers_keep_to_their_tier(planted_db: Path) -> None:
    from wif_core.clusters.explainer import ClusterExplainer

    with Store.open(planted_db) as store:
        data = RunData.load(store, PLANTED_RUN)
        gold = evaluate(data, "cluster-attribution", space="attribution")
        assert gold.tier == "gold" and gold.auc > 0.9 and gold.settings["method"] == "test-ig"
        with pytest.raises(InputError, match="use --explainer cluster-attribution --set space=attribution"):
            evaluate(data, "cluster", space="attribution")
        with pytest.raises(InputError, match="use --explainer cluster --set space=text"):
            evaluate(data, "cluster-attribution", space="text")
        with pytest.raises(InputError, match="needs --layer"):
            evaluate(data, "cluster", space="activations")
        view, y = data.split("train", "gold")  # handed a view of the wrong tier, it refuses rather than reads
        with pytest.raises(InputError, match="input-tier view|gold-tier view"):
            ClusterExplainer(layer=1, site="last", space="activations").fit(view, y, view, y)
    with Store.open(planted_db, write=True) as store:  # a writer in this process: the explainer joins its database
        again = evaluate(RunData.load(store, PLANTED_RUN), "cluster-attribution", space="attribution")
    assert again.auc == gold.auc and again.scores == gold.scores


def test_cluster_attribution_refuses_attributions_of_the_failures_only(tmp_path: Path) -> None:
    db = tmp_path / "failures_only.duckdb"
    make_planted_store(db, failures_only=True)
    with Store.open(db) as store:
        data = RunData.load(store, PLANTED_RUN)
        with pytest.raises(InputError) as err:
            evaluate(data, "cluster-attribution", space="attribution")
        r = cluster_run(store, PLANTED_RUN, space="attribution", mode="failures", k=2)  # describing them is fine
    assert "needs attributions of every evaluated item" in str(err.value) and "without --failures-only" in str(
        err.value
    )
    assert r.n_items == r.n_failed and "attributed" in r.description


def test_cluster_explainer_on_sae_codes_and_the_registry(synthetic_db: Path) -> None:
    from wif_core.explainers import REGISTRY
    from wif_core.explainers.evaluate import variants

    assert REGISTRY["cluster"].tier == "input" and REGISTRY["cluster-attribution"].tier == "gold"
    with Store.open(synthetic_db) as store:
        data = RunData.load(store, COLLECTED_RUN)
        offered = [s for name, s in variants(data) if name == "cluster"]
        assert {s["space"] for s in offered} == {"activations", "sae", "text"}
        assert [s for name, s in variants(data) if name == "cluster-attribution"] == [{"space": "attribution"}]
        r = evaluate(data, "cluster", layer=SIGNAL_LAYER, space="sae", k=2)
        gold = evaluate(data, "cluster-attribution", space="attribution", method="grad_x_input")
    assert r.tier == "input" and 0 <= r.auc <= 1 and r.explanation["k"] == 2 and r.settings["sae_version"]
    assert gold.tier == "gold" and gold.settings["method"] == "grad_x_input" and gold.auc > 0.8  # failures' profiles


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 1}, "--k 1 is out of range: use 2..50"),
        ({"k": 60}, "--k 60 is out of range"),
        ({"k": 30}, "--k 30 asks for as many clusters as there are failed items (19): use 2..18"),
        ({"k": 3, "algorithm": "hdbscan"}, "--k applies to kmeans"),
        ({"space": "activations", "layer": 3}, "use --layer one of [2, 4]"),
        ({"space": "pixels"}, "--space must be one of activations, sae, attribution, text"),
        ({"mode": "some"}, "--mode must be one of failures, all"),
    ],
)
def test_bad_input_gets_one_line_naming_the_fix(synthetic_db: Path, options: dict[str, Any], message: str) -> None:
    with Store.open(synthetic_db) as store, pytest.raises(InputError) as err:
        cluster_run(store, COLLECTED_RUN, **options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_runs_without_a_space_say_how_to_get_it(tmp_path: Path) -> None:
    bare = tmp_path / "bare.duckdb"
    make_synthetic_store(bare, with_sae=False)
    with Store.open(bare) as store:
        with pytest.raises(InputError, match=f"wif sae train --db {bare} --run {COLLECTED_RUN} --layer 4"):
            cluster_run(store, COLLECTED_RUN, space="sae")
        with pytest.raises(InputError, match="has no activations .outcomes only.: use --space text"):
            cluster_run(store, IMPORTED_RUN, space="activations")
        with pytest.raises(
            InputError, match=f"no stored attributions: compute them with `wif attribute --run {IMPORTED_RUN}`"
        ):
            cluster_run(store, IMPORTED_RUN, space="attribution")
        reasons = {s: spaces.why_not(store, IMPORTED_RUN, s) for s in spaces.SPACES}
    assert reasons["text"] is None and all(reasons[s] for s in ("activations", "sae", "attribution"))


# ---- CLI ----------------------------------------------------------------------------------


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`wif ARGV` through wif's own main."""
    from wif_core.cli import main

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # main sets threads; the cores are shared
    return main(argv)


def test_cli_json_and_text(planted_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    base = ["cluster", "--db", str(planted_db), "--run", PLANTED_RUN, "--no-cache"]
    assert _main([*base, "--space", "activations", "--mode", "all", "--json"], monkeypatch) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"clusters", "run_id", "space", "mode", "tier", "factor_ami"} <= set(out) and "labels" not in out
    assert all({"id", "size", "failure_rate", "top_words"} <= set(c) for c in out["clusters"])
    assert [c["id"] for c in out["clusters"]] == [0, 1, 2] and out["clusters"][0]["top_words"][0] == "kettle"
    assert _main([*base, "--json", "--items", "--k", "2"], monkeypatch) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["labels"]) == len(out["item_ids"]) == out["n_items"] and out["k"] == 2
    assert _main([*base, "--mode", "all"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{PLANTED_RUN}: 216 items clustered") and "kettle" in text and "AMI" in text
    assert _main([*base, "--k", "1"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("wif: error: --k 1 is out of range") and err.count("\n") == 1


# ---- text embeddings ------------------------------------------------------------------------


def test_text_embeddings_with_the_bundled_minilm_and_their_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["A cat sat on the mat.", "A kitten rested on the rug.", "Stock markets fell sharply today."]
    X = spaces.embed_texts(texts, ["a", "b", "c"], tmp_path, "run")
    assert X.shape == (3, 384) and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert X[0] @ X[1] > X[0] @ X[2] + 0.2  # meaning, not spelling
    assert (tmp_path / "run.npy").is_file() and json.loads((tmp_path / "run.json").read_text())["ids"] == list("abc")
    encoded: list[int] = []
    model = spaces._text_model()

    class Counting:
        def encode(self, batch: list[str], **kwargs: Any) -> Any:
            encoded.append(len(batch))
            return model.encode(batch, **kwargs)

    monkeypatch.setattr(spaces, "_text_model", lambda: Counting())
    assert np.allclose(spaces.embed_texts(texts, ["a", "b", "c"], tmp_path, "run"), X) and encoded == []
    changed = spaces.embed_texts([texts[0], "A dog barked.", texts[2]], ["a", "b", "c"], tmp_path, "run")
    assert encoded == [1] and np.allclose(changed[[0, 2]], X[[0, 2]]) and not np.allclose(changed[1], X[1])


def test_text_space_of_a_run_is_cached_beside_the_store(synthetic_db: Path) -> None:
    with Store.open(synthetic_db) as store:
        sp = build_space(store, IMPORTED_RUN, "text")
        r = cluster_run(store, IMPORTED_RUN, space="text", mode="all", k=2)
    assert sp.X.shape == (40, 384) and sp.tier == "input" and sp.scale == "l2"
    assert (spaces.embeddings_dir(synthetic_db) / f"{IMPORTED_RUN}.npy").is_file()
    assert r.k == 2 and sum(c.size for c in r.clusters) == r.n_items == 38  # items left out for leakage: not here
    assert all(c.top_words == [] for c in r.clusters)  # the items differ only in numbers: no word tells them apart
