"""Contrastive attribution: Δ and its token sequence, the methods' sums, AttnLRP, deletion, CLI.

Tiers: unit (records, summaries), integration on the tiny random Llama / a tiny GPT-2 /
a hand-built bag-of-embeddings model whose answer is known, and the embedded model on a
few items (``@pytest.mark.model``).
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wif_core.attribution import (
    METHODS,
    Attribution,
    Method,
    attribute_failures,
    attribute_item,
    build_pair,
    contrast,
    faithfulness_summary,
    layer_profile_clusters,
    lrp,
    recommend,
    register,
    segment_summary,
)
from wif_core.attribution.methods import attnlrp, grad_x_input
from wif_core.attribution.pairs import delta_of, delta_terms, embed
from wif_core.errors import InputError
from wif_core.models.loading import load_model
from wif_core.store import Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import render_context


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One BLAS thread (the cores are shared); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


GOAL = "how do you boil water?"


def _piqa(choices: tuple[str, str] = ("use a pot", "use a sieve"), gold: int = 1, item_id: str = "p1") -> TaskItem:
    return TaskItem(
        item_id=item_id,
        task="piqa",
        context=render_context("two_choice", {"goal": GOAL}),
        choices=choices,
        gold=gold,
        meta={"goal": GOAL},
    )


def _boolq() -> TaskItem:
    fields = {"passage": "The cat sat on the mat because it was warm.", "question": "is the mat warm"}
    return TaskItem(
        item_id="b1", task="boolq", context=render_context("yes_no", fields), choices=("no", "yes"), gold=1, meta=fields
    )


def _wino() -> TaskItem:
    sentence = "The cat sat on the mat because the _ was warm."
    return TaskItem(
        item_id="w1", task="winogrande", context=sentence, choices=("cat", "mat"), gold=1, meta={"sentence": sentence}
    )


@pytest.fixture
def lm(tiny_llama, tiny_tokenizer):
    return SimpleNamespace(model=tiny_llama, tokenizer=tiny_tokenizer)


def _naive_logprobs(model, ids: list[int], start: int) -> np.ndarray:
    """log p of each scored token from a plain forward over the whole sequence (the oracle)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return np.array([float(lp[t - 1, ids[t]]) for t in range(start, len(ids))])


# ---- the contrast and Δ ------------------------------------------------------------------------


def test_contrast_picks_the_models_wrong_choice_or_the_best_wrong_one():
    item = TaskItem(item_id="s1", task="siqa", context="Q: x\nA:", choices=("a", "b", "c"), gold=0, meta={})
    assert contrast(item, {"pred": 2, "ll_sum": [-1.0, -3.0, -0.5]}) == (2, 0)
    assert contrast(item, {"pred": 0, "ll_sum": [-1.0, -3.0, -2.0]}) == (2, 0)  # correct: best wrong one
    assert contrast(item, SimpleNamespace(pred=0, ll_sum=None)) == (1, 0)


def test_delta_equals_the_runs_log_likelihood_difference(lm):
    from wif_core.models.scoring import prepare

    for item in (_piqa(), _boolq(), _wino()):
        pair = build_pair(item, lm.tokenizer, 0, 1)
        p = prepare(item, lm.tokenizer)
        ll = [_naive_logprobs(lm.model, f, s).sum() for f, s in zip(p.fulls, p.starts, strict=True)]
        counted, _ = delta_terms(lm.model, pair)
        assert counted.sum() == pytest.approx(ll[0] - ll[1], abs=1e-4)


def test_zero_attribution_where_the_answers_share_their_first_tokens(lm):
    item = _piqa(("use a pot", "use a sieve"))
    pair = build_pair(item, lm.tokenizer, 0, 1)
    # " use" and " a" are scored by both sequences from the same context: they are the shared prefix
    shared_tokens = [t for t, s in zip(pair.tokens, pair.segments, strict=True) if s == "answer"]
    assert "".join(shared_tokens) == " use a" and len(pair.shared_targets) == 2
    # oracle: their log-probabilities in the two separate sequences are the same, so their Δ terms are 0
    from wif_core.models.scoring import prepare

    p = prepare(item, lm.tokenizer)
    lp_a, lp_b = (_naive_logprobs(lm.model, f, s) for f, s in zip(p.fulls, p.starts, strict=True))
    # two float32 forward passes over the same prefix: equal up to rounding (a kernel may block the longer
    # sequence differently), a few ulps of the log-probabilities; 16 ulps bounds it, far below a real change
    ulps = 16 * float(np.finfo(np.float32).eps) * float(np.abs(lp_a[:2]).max())
    np.testing.assert_allclose(lp_a[:2], lp_b[:2], rtol=0, atol=ulps)
    _, shared_lp = delta_terms(lm.model, pair)
    np.testing.assert_allclose(shared_lp, lp_a[:2], atol=1e-5)
    # attributing only those targets: Δ is exactly 0 and so is every token's score, for each method
    only = pair.only_shared_targets()
    with torch.no_grad():
        assert float(delta_of(lm.model, only, embed(lm.model, torch.tensor([only.ids])))[0]) == 0.0
    for method in (grad_x_input, attnlrp):
        got = method(lm.model, lm.tokenizer, only)
        assert got.delta == 0.0 and np.all(got.scores == 0.0)


def test_winogrande_contrast_has_different_prefixes_and_a_shared_continuation(lm):
    item = _wino()
    pair = build_pair(item, lm.tokenizer, 0, 1)
    wrong = "".join(t for t, s in zip(pair.tokens, pair.segments, strict=True) if s == "wrong")
    right = "".join(t for t, s in zip(pair.tokens, pair.segments, strict=True) if s == "right")
    assert wrong == " cat was warm." and right == " mat was warm."
    assert set(pair.segments[: pair.shared]) == {"sentence"}
    assert len(pair.final_idx) == 2  # each side's own last prefix token predicts its continuation
    assert not pair.shared_targets


def test_the_runs_family_lays_out_the_segments(lm, tmp_path):
    from wif_core.attribution import item_attribution
    from wif_core.store import OutcomeRow, RunInfo

    item = _wino()
    default = build_pair(item, lm.tokenizer, 0, 1)  # an item of no run: its task's format (fill_blank)
    assert build_pair(item, lm.tokenizer, 0, 1, family="fill_blank") == default
    other = build_pair(item, lm.tokenizer, 0, 1, family="two_choice")
    assert other.ids == default.ids and "sentence" not in other.segments[: other.shared]
    with Store.open(tmp_path / "s.duckdb", write=True) as store:
        for run_id, family in (("as-filled", "fill_blank"), ("as-listed", "two_choice")):
            run = RunInfo(run_id=run_id, model="m", task="winogrande", source="test", n_choices=2, family=family)
            store.create_run(run, [item])
            store.write_outcomes(run_id, [OutcomeRow(item_id=item.item_id, pred=0, correct=False)])
        got = {
            r: item_attribution(store, r, item.item_id, "grad_x_input", lm, deletion=False)[0].segments
            for r in ("as-filled", "as-listed")
        }
    assert got["as-filled"] == list(default.segments)  # the run's record decides, not its task's name
    assert got["as-listed"] == list(other.segments)


def test_segment_labels_of_piqa_and_boolq_items(lm):
    pair = build_pair(_piqa(("put it in a pot", "use a sieve")), lm.tokenizer, 0, 1)
    labelled = list(zip(pair.tokens, pair.segments, strict=True))
    assert labelled[0] == ("Question", "template") and labelled[1] == (":", "template")
    assert "".join(t for t, s in labelled if s == "goal").strip() == GOAL
    assert [s for t, s in labelled if t in ("\n", "Answer")] == ["template", "template"]
    assert "".join(t for t, s in labelled if s == "wrong") == " put it in a pot"
    assert "".join(t for t, s in labelled if s == "right") == " use a sieve"
    pair = build_pair(_boolq(), lm.tokenizer, 0, 1)
    text = {
        seg: "".join(t for t, s in zip(pair.tokens, pair.segments, strict=True) if s == seg)
        for seg in set(pair.segments)
    }
    assert text["passage"] == "The cat sat on the mat because it was warm."
    assert text["question"].strip() == "is the mat warm"
    assert "Question" in text["template"] and "Answer" in text["template"]


def test_identical_choices_and_empty_context_are_refused_in_one_line(lm):
    with pytest.raises(InputError, match=r"item p9: field 'choices'.*tokenise identically"):
        build_pair(_piqa(("use a pot", "use a pot"), item_id="p9"), lm.tokenizer, 0, 1)
    empty = TaskItem(item_id="e1", task="piqa", context="  ", choices=("a", "b"), gold=0, meta={})
    with pytest.raises(InputError, match=r"item e1: field 'context' is empty"):
        attribute_item(lm, empty, 0, 1, "grad_x_input")
    with pytest.raises(InputError, match="unknown attribution method 'lime'"):
        attribute_item(lm, _piqa(), 0, 1, "lime")


# ---- the methods --------------------------------------------------------------------------------


def test_grad_x_input_sums_to_the_directional_derivative(lm):
    """Σ_i ∂Δ/∂e_i · e_i is d/dα Δ(α e) at α = 1: the linearised quantity grad × input reports.

    The reference is that directional derivative by forward-mode differentiation, which is exact for the
    same float32 computation: the two differ only in how rounding falls (forward and reverse accumulation
    order the same products differently), a few float32 ulps of the result, so 256 ulps (3e-5) bounds it
    with room on any CPU, far below any real difference. A central difference checks it without autodiff,
    within its own error: h²/6·|Δ‴| from the step and about eps32·|log p|/h from rounding, each under 1e-3
    of the slope at h = 1e-2. (The reference used to be a central difference at h = 1e-3 with a tolerance of
    1e-3: its rounding error is of that size, so it passed or failed by machine.)
    """
    from torch.autograd import forward_ad
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pair = build_pair(_boolq(), lm.tokenizer, 0, 1)
    got = grad_x_input(lm.model, lm.tokenizer, pair)
    e = embed(lm.model, torch.tensor([pair.ids]))
    # the fused CPU attention kernel has no forward-mode derivative; the plain one computes the same function
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), forward_ad.dual_level():
        dual = delta_of(lm.model, pair, forward_ad.make_dual(e, e))  # tangent e: the derivative along α e
        exact = float(forward_ad.unpack_dual(dual).tangent[0])
    ulp = float(np.finfo(np.float32).eps)
    assert got.scores.sum() == pytest.approx(exact, rel=256 * ulp)
    h = 1e-2
    with torch.no_grad():
        slope = float(((delta_of(lm.model, pair, e * (1 + h)) - delta_of(lm.model, pair, e * (1 - h))) / (2 * h))[0])
    assert slope == pytest.approx(exact, rel=1e-2)
    assert got.scores.sum() != pytest.approx(got.delta, rel=0.1)  # and it is not Δ: not complete


@pytest.mark.parametrize("rule", lrp.RULES)
def test_functional_llama_forward_equals_the_hf_forward(tiny_llama, tiny_tokenizer, rule):
    pair = build_pair(_boolq(), tiny_tokenizer, 0, 1)
    ids, pos, mask = pair.tensors()
    e = embed(tiny_llama, ids)
    with torch.no_grad():
        ours = tiny_llama.lm_head(lrp.llama_forward(tiny_llama, e, pos, mask, rule))
        theirs = tiny_llama(inputs_embeds=e, attention_mask=mask, position_ids=pos).logits
        plain = tiny_llama(input_ids=torch.tensor([list(pair.ids[: pair.shared])])).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours[:, : pair.shared], plain, atol=1e-5, rtol=1e-4)


def test_lrp_rules_one_by_one():
    """Each rule, checked on its own against its definition by input × gradient."""
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    norm = SimpleNamespace(weight=torch.rand(5, dtype=torch.float64) + 0.5, variance_epsilon=1e-6)
    y = lrp._rmsnorm(norm, x, "attnlrp")  # normaliser detached: a linear map, conserves exactly
    (g,) = torch.autograd.grad(y.sum(), x)
    assert float((x.detach() * g).sum()) == pytest.approx(float(y.detach().sum()), rel=1e-12)
    a = torch.randn(4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    prod = lrp._half(a) * lrp._half(b)  # uniform rule: half the product's relevance to each factor
    ga, gb = torch.autograd.grad(prod.sum(), [a, b])
    torch.testing.assert_close(a * ga, prod.detach() / 2)
    torch.testing.assert_close(b * gb, prod.detach() / 2)
    z = torch.randn(6, dtype=torch.float64, requires_grad=True)
    s = torch.softmax(z, -1)
    rel_out = torch.randn(6, dtype=torch.float64)  # softmax rule: R_z = z (R_s − s Σ R_s)
    (gz,) = torch.autograd.grad((s * (rel_out / s).detach()).sum(), z)
    torch.testing.assert_close(z * gz, (z * (rel_out - s * rel_out.sum())).detach())


def test_lrp_conservation_on_the_tiny_llama(lm):
    """Input relevances sum to Δ (here the logit difference) within 1%: true of CP-LRP, not of AttnLRP.

    Single-token answers after a shared context, so Δ is the logit difference at one
    position. AttnLRP's softmax rule is not conservative: on this random model (near-uniform
    attention) it loses a large share of the relevance that enters the attention weights. Its
    error is measured and recorded with every record, not hidden; `cp_lrp` conserves.
    """
    item = _piqa(("use a pot", "use a sieve"))
    pair = build_pair(item, lm.tokenizer, 0, 1)
    assert len(pair.targets) == 2 and len(set(pair.pred_idx)) == 1
    cp = attribute_item(lm, item, 0, 1, "cp_lrp", deletion=False)
    assert cp.config["logit_contrast"] == pytest.approx(cp.delta, rel=1e-4)
    assert abs(cp.sum_scores - cp.delta) <= 0.01 * abs(cp.delta)
    paper = attribute_item(lm, item, 0, 1, "attnlrp", deletion=False)
    leak = abs(paper.sum_scores - paper.delta) / abs(paper.delta)
    assert paper.config["conservation_error"] == pytest.approx(leak, rel=1e-3)
    assert METHODS["cp_lrp"].complete and not METHODS["attnlrp"].complete
    print(f"tiny llama: AttnLRP conservation error {leak:.1%}, CP-LRP {cp.config['conservation_error']:.1e}")


def test_integrated_gradients_is_complete_on_the_tiny_llama(lm):
    a = attribute_item(lm, _boolq(), 0, 1, "integrated_gradients", deletion=False)
    span = a.delta - a.config["baseline_delta"]
    assert a.sum_scores == pytest.approx(span, rel=0.01) and a.config["completeness_error"] < 0.01


def test_every_method_gives_one_score_per_token_and_a_profile(lm):
    for name in METHODS:
        a = attribute_item(lm, _boolq(), 0, 1, name)
        assert len(a.scores) == len(a.tokens) == len(a.segments) and np.all(np.isfinite(a.scores))
        assert a.deletion is not None and a.faithfulness is not None and a.seconds > 0
        assert a.deletion["top"][0] == pytest.approx(a.delta, abs=1e-5)
        if name != "occlusion":
            assert len(a.layer_profile) == 4 and max(abs(x) for x in a.layer_profile) == pytest.approx(1.0)
        assert Attribution.from_row(a.to_row()) == a


def _one_at_a_time(model, pair, scores, delta, neutral, seed=0):
    """The deletion curves as they were first computed: each deleted fraction its own forward pass."""
    from wif_core.attribution.deletion import FRACTIONS, counts, random_orders, top_order

    ks = counts(sum(pair.deletable), FRACTIONS)

    def curve(order):
        out = [delta]
        for k in ks[1:]:
            ids = list(pair.ids)
            for i in order[:k]:
                ids[i] = neutral
            with torch.no_grad():
                out.append(float(delta_of(model, pair, embed(model, torch.tensor([ids])))[0]))
        return out

    return curve(top_order(pair, scores)), curve(random_orders(pair, seed)[0])


def test_batched_deletion_equals_one_pass_per_step(lm):
    """Every deletion step of both methods and the random order in one batched pass gives the curves and the
    faithfulness that one forward pass per step gives."""
    from wif_core.attribution.batch import attribute_methods
    from wif_core.attribution.deletion import deletion_curves_many, deltas
    from wif_core.attribution.pairs import neutral_id

    item = _boolq()
    batched = attribute_methods(lm, item, (0, 1), ["attnlrp", "grad_x_input"])
    pair = build_pair(item, lm.tokenizer, 0, 1)
    neutral = neutral_id(lm.tokenizer)
    n_variants = 2 * 4 + 4  # 4 deleted fractions per method, and the random order's
    passes = []
    real = deltas

    def counting(model, p, variants, max_tokens=4096):
        passes.append(len(variants))
        return real(model, p, variants, max_tokens)

    import wif_core.attribution.deletion as deletion

    deletion.deltas, saved = counting, deletion.deltas
    try:
        deletion_curves_many(lm.model, pair, [a.scores for a in batched], [a.delta for a in batched], neutral)
    finally:
        deletion.deltas = saved
    assert passes == [n_variants]  # one forward pass for the whole item
    for a in batched:
        top, rand = _one_at_a_time(lm.model, pair, a.scores, batched[0].delta, neutral)
        assert a.deletion["top"][1:] == pytest.approx(top[1:], abs=1e-5)
        assert a.deletion["random"] == pytest.approx(rand, abs=1e-5)
        alone = attribute_item(lm, item, 0, 1, a.method)  # the method on its own, as before
        assert alone.faithfulness == pytest.approx(a.faithfulness, abs=1e-5)
        assert alone.deletion["top"] == pytest.approx(a.deletion["top"], abs=1e-5)


def test_non_llama_attnlrp_falls_back_loudly(tiny_tokenizer, caplog):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128)
    gpt2 = SimpleNamespace(model=GPT2LMHeadModel(cfg).eval(), tokenizer=tiny_tokenizer)
    assert not METHODS["attnlrp"].is_compatible(gpt2.model)[0]
    with caplog.at_level(logging.WARNING):
        a = attribute_item(gpt2, _boolq(), 0, 1, "attnlrp")
    assert a.method == "attnlrp" and a.config["fallback"] == "grad_x_input"
    assert "llama" in a.config["reason"] and "gpt2" in a.config["reason"]
    assert "falling back to grad_x_input" in caplog.text and a.fallback.startswith("attnlrp fell back")
    assert len(a.layer_profile) == 2


def test_registry_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        register(
            Method(
                name="grad_x_input",
                label="x",
                description="x",
                compute=lambda m, t, p: None,  # type: ignore[arg-type,return-value]
                complete=False,
                target="delta",
            )
        )


# ---- deletion on a model whose answer is known ------------------------------------------------


class _Bag(torch.nn.Module):
    """Each position's hidden state is the sum of the embeddings it may see (the mask's rows)."""

    def forward(self, inputs_embeds, attention_mask, position_ids=None, use_cache=False):
        return (attention_mask[:, 0].to(inputs_embeds.dtype) @ inputs_embeds,)


class BagLM(torch.nn.Module):
    """A causal 'LM' where only ``key`` moves the contrast: it adds +3 to ``wrong``'s logit, −3 to ``right``'s."""

    base_model_prefix = "body"

    def __init__(self, vocab: int, key: int, wrong: int, right: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type="bag")
        self.emb = torch.nn.Embedding(vocab, 4)
        self.head = torch.nn.Linear(4, vocab, bias=False)
        with torch.no_grad():
            self.emb.weight.normal_()
            self.emb.weight[:, 0] = 0.0  # dimension 0 is the only one the contrast reads …
            self.emb.weight[key, 0] = 3.0  # … and only the key token writes it
            self.head.weight.normal_()
            self.head.weight[:, 0] = 0.0
            self.head.weight[[wrong, right]] = 0.0
            self.head.weight[wrong, 0], self.head.weight[right, 0] = 1.0, -1.0
        self.body = _Bag()

    def get_input_embeddings(self):
        return self.emb

    def get_output_embeddings(self):
        return self.head


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients", "occlusion", "attnlrp"])
def test_deletion_on_a_toy_whose_answer_is_known(tiny_tokenizer, method):
    tok = tiny_tokenizer
    ids = {w: tok(w, add_special_tokens=False).input_ids for w in (" boil", " pot", " sieve")}
    assert all(len(v) == 1 for v in ids.values())
    toy = SimpleNamespace(model=BagLM(len(tok), ids[" boil"][0], ids[" pot"][0], ids[" sieve"][0]), tokenizer=tok)
    a = attribute_item(toy, _piqa(("use a pot", "use a sieve")), 0, 1, method)
    key = a.tokens.index(" boil")
    assert a.delta == pytest.approx(6.0, abs=1e-4)  # z_pot − z_sieve = 3 − (−3): the key token's doing
    deletable = [i for i, s in enumerate(a.segments) if s not in ("special", "answer", "wrong", "right")]
    assert max(deletable, key=lambda i: a.scores[i]) == key  # the method ranks the key first …
    assert a.scores[key] == pytest.approx(6.0, abs=1e-3)  # … with all of Δ (Δ is linear in it here)
    assert a.deletion["top"][1] == pytest.approx(0.0, abs=1e-5)  # deleting it collapses Δ
    assert a.faithfulness > 0 and all(
        t <= r + 1e-6 for t, r in zip(a.deletion["top"], a.deletion["random"], strict=True)
    )


# ---- run-level summaries ------------------------------------------------------------------------


def _record(item_id: str, method: str, faith: float, profile: list[float]) -> Attribution:
    return Attribution(
        item_id=item_id,
        method=method,
        wrong_choice=0,
        right_choice=1,
        tokens=["Q", ":", " x", " a", " b"],
        segments=["template", "template", "goal", "wrong", "right"],
        scores=[0.1, -0.1, 1.0, 0.5, -0.5],
        delta=2.0,
        sum_scores=1.0,
        layer_profile=profile,
        faithfulness=faith,
    )


def test_segment_summary_and_faithfulness_summary():
    rows = [_record(f"i{i}", m, f, [0.0, 1.0]) for i in range(6) for m, f in (("a", 1.0 + i), ("b", 0.5 + i))]
    outcomes = {f"i{i}": i % 2 == 0 for i in range(6)}
    seg = segment_summary(rows, outcomes)
    goal = seg.per_item[(seg.per_item.segment == "goal") & (seg.per_item.item_id == "i0")]
    assert goal.relevance.tolist() == [1.0, 1.0] and goal.share.iloc[0] == pytest.approx(1.0 / 2.2)
    assert set(seg.by_outcome.outcome) == {"failure", "success"} and set(seg.by_outcome.n) == {3}
    summary = faithfulness_summary(rows, outcomes)
    overall = summary[summary.outcome == "all"].set_index("method")
    assert overall.loc["a", "mean"] == pytest.approx(3.5) and overall.loc["b", "vs_best"] == pytest.approx(-0.5)
    assert overall.loc["b", "vs_best_high"] == pytest.approx(-0.5)  # the paired gap is the same on every item
    assert recommend(summary)["method"] == "a" and recommend(summary)["tied"] == []


def test_layer_profile_clusters_find_two_shapes():
    early = [_record(f"e{i}", "a", 0.0, [1.0, 0.5 + 0.01 * i, 0.0, 0.0]) for i in range(5)]
    late = [_record(f"l{i}", "a", 0.0, [0.0, 0.0, 0.5 + 0.01 * i, 1.0]) for i in range(5)]
    got = layer_profile_clusters(early + late, k=2, seed=0)
    assert len(set(got.labels[:5])) == 1 and len(set(got.labels[5:])) == 1 and got.labels[0] != got.labels[5]
    assert got.coords.shape == (10, 2) and got.centroids.shape == (2, 4)


# ---- the CLI and the store ----------------------------------------------------------------------


def _attribute(capsys, argv: list[str]) -> dict:
    """Run `wif attribute` through wif's own main and parse its JSON."""
    from wif_core.cli import main

    assert main(["attribute", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_batch_stores_resumes_and_returns_one_item(tmp_path, capsys, tiny_model_dir, items_file):
    from wif_core.cli import main

    db = str(tmp_path / "w.duckdb")
    assert (
        main(
            [
                "collect",
                "--model",
                str(tiny_model_dir),
                "--task",
                "piqa",
                "--source",
                str(items_file),
                "--layers",
                "2,4",
                "--db",
                db,
                "--json",
            ]
        )
        == 0
    )
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    argv = [
        "--run",
        run_id,
        "--method",
        "grad_x_input,attnlrp",
        "--failures-only",
        "--limit",
        "3",
        "--db",
        db,
        "--json",
    ]
    first = _attribute(capsys, argv)
    assert first["n_items"] == 3 and first["n_computed"] == 6 and first["n_skipped"] == 0
    assert set(first["per_method"]) == {"grad_x_input", "attnlrp"}
    with Store.open(db) as store:
        stored = store.attributions(run_id)
        failures = set(store.items(run_id, outcome="incorrect").item_id)
        assert len(stored) == 6 and {r.item_id for r in stored} <= failures
        assert store.attribution_counts(run_id).n.sum() == 6
    again = _attribute(capsys, [*argv[:5], "--limit", "4", *argv[7:]])
    assert again["n_skipped"] == 6 and again["n_computed"] == 2  # only the new item is computed
    item_id = stored[0].item_id
    one = _attribute(capsys, ["--run", run_id, "--item", item_id, "--method", "grad_x_input", "--db", db, "--json"])
    assert one["stored"] is True
    assert {"tokens", "scores", "delta", "sum_scores", "method", "segments", "deletion", "faithfulness"} <= set(one)
    assert len(one["tokens"]) == len(one["scores"]) and one["sum_scores"] == pytest.approx(sum(one["scores"]))
    fresh = _attribute(capsys, ["--run", run_id, "--item", item_id, "--method", "occlusion", "--db", db, "--json"])
    assert fresh["stored"] is False and fresh["method"] == "occlusion" and fresh["delta"] == pytest.approx(one["delta"])
    with Store.open(db) as store:
        assert len(store.attributions(run_id, method="occlusion")) == 1
    # the demo's way: every failure of every run this model collected
    (summary,) = attribute_failures(db, load_model(str(tiny_model_dir)), ["grad_x_input"])
    with Store.open(db) as store:
        n_failed = len(store.items(run_id, outcome="incorrect"))
        assert summary.n_items == n_failed and summary.n_skipped == 4 and summary.n_computed == n_failed - 4
        assert len(store.attributions(run_id, method="grad_x_input")) == n_failed


# ---- the embedded model (integration tier) -------------------------------------------------------


@pytest.mark.model
def test_embedded_model_forward_conservation_and_speed(embedded):
    item = _piqa(("Put the water in a pot and heat it on the stove.", "Put the water in a sieve and heat it."))
    pair = build_pair(item, embedded.tokenizer, 1, 0)
    ids, pos, mask = pair.tensors()
    e = embed(embedded.model, ids)
    with torch.no_grad():
        ours = embedded.model.lm_head(lrp.llama_forward(embedded.model, e, pos, mask, "attnlrp"))
        theirs = embedded.model(inputs_embeds=e, attention_mask=mask, position_ids=pos).logits
    torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=1e-3)
    cp = attnlrp(embedded.model, embedded.tokenizer, pair, "cp")
    assert cp.config["conservation_error"] < 0.01
    for name in ("grad_x_input", "attnlrp"):
        attribute_item(embedded, item, 1, 0, name, deletion=False)  # warm-up
        a = attribute_item(embedded, item, 1, 0, name, deletion=False)
        assert a.seconds < 15.0  # a smoke check only: bench/attribution.py measures speed
