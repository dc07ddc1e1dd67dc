"""Items longer than the model reads are cut from the left of their context, never inside an answer,
counted and reported; memory and time stay bounded for any input length (issue 12, item 5)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from wif_core.cli.main import main
from wif_core.errors import InputError
from wif_core.models.scoring import _encode, prepare, score_items, score_naive
from wif_core.store import Store
from wif_core.tasks.base import TaskItem
from wif_core.tasks.templates import listing_parts, render_context, scoring_pairs

WORDS = "how do you boil water put it in a pot and heat the cat sat on mat because was warm".split()
MAX = 512  # the tiny Llama's max_position_embeddings (tests/conftest.py)


def long_text(n_chars: int) -> str:
    out, n = [], 0
    while n < n_chars:
        word = WORDS[len(out) * 7 % len(WORDS)]
        out.append(word)
        n += len(word) + 1
    return " ".join(out)[:n_chars]


def _piqa(
    goal: str, item_id: str = "long", choices: tuple[str, str] = ("use a pot", "use a sieve"), gold: int = 0
) -> TaskItem:
    return TaskItem(
        item_id=item_id,
        task="piqa",
        context=render_context("two_choice", {"goal": goal}),
        choices=choices,
        gold=gold,
        meta={"goal": goal},
    )


@pytest.mark.parametrize("n_chars", [3_000, 100_000])  # over the context; and far over it (not tokenised whole)
def test_a_long_context_is_cut_from_the_left_and_the_answers_are_whole(tiny_tokenizer, n_chars):
    item = _piqa(long_text(n_chars))
    whole = prepare(item, tiny_tokenizer)
    assert max(len(f) for f in whole.fulls) > MAX and whole.truncated == 0  # no limit: the old behaviour
    start = time.perf_counter()
    p = prepare(item, tiny_tokenizer, MAX)
    assert time.perf_counter() - start < 5
    assert max(len(f) for f in p.fulls) <= MAX and len(p.listing) <= MAX
    for j, (_, cont) in enumerate(scoring_pairs(item)):
        answer = _encode(tiny_tokenizer, cont, False)
        assert p.fulls[j][p.starts[j] :] == answer  # the scored tokens: the whole answer
        assert p.fulls[j][: p.starts[j]] == whole.fulls[j][: whole.starts[j]][-p.starts[j] :]  # the context's end
    options = _encode(tiny_tokenizer, listing_parts(item)[1], False)
    assert p.listing[-len(options) :] == options  # the listing keeps every option
    assert p.shared >= p.starts[0]  # the context is still computed once for both choices
    over = max(len(f) for f in whole.fulls) - MAX
    assert p.truncated >= over and p.truncated == pytest.approx(len(whole.listing) - MAX, abs=len(WORDS))
    if n_chars < 10_000:
        assert p.truncated == max(over, len(whole.listing) - MAX)  # exact when tokenised whole


def test_an_item_that_fits_is_untouched(tiny_tokenizer):
    item = _piqa("how do you boil water?")
    assert prepare(item, tiny_tokenizer, MAX) == prepare(item, tiny_tokenizer)


def test_winogrande_is_cut_before_the_blank_only(tiny_tokenizer):
    sentence = long_text(3_000) + " because the _ was too big."
    item = TaskItem(item_id="w", task="winogrande", context=sentence, choices=("trophy", "suitcase"), gold=0)
    whole, p = prepare(item, tiny_tokenizer), prepare(item, tiny_tokenizer, MAX)
    assert p.truncated > 0 and max(len(f) for f in p.fulls) <= MAX
    assert p.starts[0] - p.starts[1] == whole.starts[0] - whole.starts[1]  # the same context cut from both
    for j, (_, cont) in enumerate(scoring_pairs(item)):
        assert p.fulls[j][p.starts[j] :] == _encode(tiny_tokenizer, cont, False)  # the text after the blank
        kept = p.fulls[j][: p.starts[j]]
        assert kept == whole.fulls[j][: whole.starts[j]][-len(kept) :]  # ending with the option in the blank


def test_answers_longer_than_the_context_are_refused_in_one_line(tiny_tokenizer):
    item = _piqa("open a jar", item_id="p7", choices=(long_text(5_000), "hit it"))
    with pytest.raises(InputError, match=r"item p7: its answers alone need \d+ tokens, more than the 512") as err:
        prepare(item, tiny_tokenizer, MAX)
    assert "\n" not in str(err.value)


def test_packed_scoring_of_a_cut_item_matches_the_naive_oracle(tiny_llama, tiny_tokenizer):
    items = [_piqa(long_text(100_000)), _piqa("how do you boil water?", item_id="short")]
    start = time.perf_counter()
    got = {s.item_id: s for batch in score_items(tiny_llama, tiny_tokenizer, items, [2]) for s in batch}
    assert time.perf_counter() - start < 30  # was: a forward pass over tens of thousands of tokens
    assert got["long"].truncated > 0 and got["short"].truncated == 0
    for it in items:
        ref = score_naive(tiny_llama, tiny_tokenizer, it, [2])
        np.testing.assert_allclose(got[it.item_id].ll_sum, ref.ll_sum, rtol=1e-5, atol=1e-4)
        assert got[it.item_id].tokens["choice0"].ids == ref.tokens["choice0"].ids
    assert all(len(seq.ids) <= MAX for seq in got["long"].tokens.values())
    few = next(iter(score_items(tiny_llama, tiny_tokenizer, items[1:], [2], max_length=24)))[0]
    assert few.truncated > 0 and all(len(seq.ids) <= 24 for seq in few.tokens.values())
    with pytest.raises(InputError, match="--max-length 600 is more than the 512 positions"):
        next(score_items(tiny_llama, tiny_tokenizer, items, [2], max_length=600))


def _write_items(path, goals: list[str]) -> str:
    rows = [{"goal": g, "sol1": "use a pot", "sol2": "use a sieve", "label": n % 2} for n, g in enumerate(goals)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def test_collect_reports_and_records_truncation(tmp_path, capsys, tiny_model_dir):
    goals = [f"how do you {w} {v}?" for w in WORDS[:6] for v in WORDS[6:10]]
    goals[3] = long_text(100_000)
    source = _write_items(tmp_path / "piqa.jsonl", goals)
    db = str(tmp_path / "w.duckdb")
    argv = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--source", source, "--layers", "2"]
    start = time.perf_counter()
    assert main([*argv, "--db", db, "--json"]) == 0
    assert time.perf_counter() - start < 60
    out = json.loads(capsys.readouterr().out)
    assert out["n_scored"] == 24 and out["n_truncated"] == 1
    with Store.open(db) as store:
        frame = store.items(out["run_id"])
        cut = frame[frame["truncated"] > 0]
        assert cut["item_id"].tolist() == ["piqa-piqa-00003"] and int(cut["truncated"].iloc[0]) > 10_000
        assert (frame["truncated"] >= 0).all()
        tokens = store.tokens(out["run_id"], "piqa-piqa-00003")
        assert all(len(ids) <= MAX for _, ids, _ in tokens.values())
        assert store.n_truncated(out["run_id"]) == 1
    assert main([*argv, "--db", db]) == 0  # resumed: the count is the run's, not only this call's
    line = capsys.readouterr().out.strip()
    assert "0 scored, 24 already done" in line and "1 item cut from the left of the context to 512 tokens" in line
    assert main([*argv, "--max-length", "24", "--db", db, "--json"]) == 0  # another run: its own context length
    small = json.loads(capsys.readouterr().out)
    assert small["run_id"] != out["run_id"] and small["n_truncated"] == 24
    with Store.open(db) as store:
        assert store.run(small["run_id"]).config["max_length"] == 24
    for bad, message in (("0", "--max-length 0: give a number of tokens of at least 2"), ("9999", "at most 512")):
        assert main([*argv, "--max-length", bad, "--db", db]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's loading bar, if it loaded
        assert err.startswith("wif: error:") and message in err


def test_the_api_passes_max_length(tmp_path, tiny_llama, tiny_tokenizer):
    from wif_core.api import collect
    from wif_core.models.loading import _finish

    lm = _finish(tiny_llama, tiny_tokenizer, "tiny")
    goals = [f"how do you {w} {v}?" for w in WORDS[:6] for v in WORDS[6:10]]
    items = [_piqa(g, item_id=f"i{n}", gold=n % 2) for n, g in enumerate(goals)]
    with Store.open(tmp_path / "w.duckdb", write=True) as store:
        result = collect(store, lm, "piqa", items, layers=[2], max_length=24)
    assert result.n_truncated == 24 and result.n_new == 24


def test_attributing_a_long_item_cuts_it_as_its_scoring_did(tiny_llama, tiny_tokenizer):
    from types import SimpleNamespace

    from wif_core.attribution import attribute_item, build_pair

    item = _piqa(long_text(100_000))
    pair = build_pair(item, tiny_tokenizer, 1, 0, max_length=MAX)
    scored = prepare(item, tiny_tokenizer, MAX)
    assert pair.truncated == scored.truncated > 0 and max(pair.pos) < MAX and pair.n_tokens <= 2 * MAX
    assert list(pair.ids[: pair.shared]) == scored.fulls[1][: pair.shared]  # the tokens the run scored
    start = time.perf_counter()
    lm = SimpleNamespace(model=tiny_llama, tokenizer=tiny_tokenizer)
    got = attribute_item(lm, item, 1, 0, "grad_x_input", deletion=False)  # the model's own context: 512
    assert time.perf_counter() - start < 30
    assert got.config["truncated"] == pair.truncated and len(got.tokens) == pair.n_tokens
    assert set(got.segments) <= {"context", "special", "answer", "wrong", "right"}
