"""Collection throughput against the matmul roofline and a naive loop; peak RSS vs items collected."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import SHARED_BENCH, machine, matmul_flops, shaped_matmul_flops, write_section
from wif_core.models.loading import EMBEDDED, default_layers, load_model
from wif_core.models.scoring import DEFAULT_MAX_TOKENS, _pack, prepare, score_naive
from wif_core.runner import collect
from wif_core.store import Store
from wif_core.tasks.generated import generate
from wif_core.tasks.sources import read_outcome_file

RSS_SCRIPT = """
import resource, sys
from wif_core.cli import main
rc = main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


def _items(n: int) -> list:
    """Real items where ../shared is present (BoolQ and PIQA halves), else the generated suite."""
    if SHARED_BENCH.exists():
        boolq = [it for it, _ in read_outcome_file("boolq", SHARED_BENCH / "boolq" / "test.json")][: n // 2]
        piqa = [it for it, _ in read_outcome_file("piqa", SHARED_BENCH / "piqa" / "test.json")][: n - n // 2]
        return boolq + piqa
    return generate("gen-passage", n // 2) + generate("gen-physical", n - n // 2)


def _collect_rate(lm, items, layers, max_tokens: int) -> tuple[float, float, int]:
    by_task: dict[str, list] = {}
    for it in items:
        by_task.setdefault(it.task, []).append(it)
    tokens = sum(len(_pack(prepare(it, lm.tokenizer)).ids) for it in items)
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "b.duckdb", write=True) as store:
        t = time.perf_counter()
        for task, group in by_task.items():
            collect(store, lm, task, group, source="bench", layers=layers, max_tokens=max_tokens)
        dt = time.perf_counter() - t
    return len(items) / dt, tokens / dt, tokens


def _peak_rss(limit: int, source: Path, tmp: str) -> tuple[float, float]:
    db = f"{tmp}/rss-{limit}.duckdb"
    t = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_SCRIPT,
            "collect",
            "--model",
            EMBEDDED,
            "--task",
            "piqa",
            "--source",
            str(source),
            "--limit",
            str(limit),
            "--db",
            db,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    kb = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB"))
    return kb / 2**20, time.perf_counter() - t


def main(
    n_items: int = 64, n_naive: int = 16, max_tokens: int = DEFAULT_MAX_TOKENS, rss_sizes: tuple[int, ...] = (200, 1000)
) -> dict:
    torch.set_num_threads(2)
    flops = matmul_flops()
    lm = load_model(EMBEDDED)
    params = sum(p.numel() for p in lm.model.parameters())
    bound = flops / (2 * params)
    cfg = lm.model.config
    shaped = shaped_matmul_flops(max_tokens, lm.d_model, cfg.intermediate_size)  # the MLP's up-projection
    layers = default_layers(lm.n_layers)
    items = _items(n_items)
    _collect_rate(lm, items[:8], layers, max_tokens)  # warm-up
    items_s, tokens_s, tokens = _collect_rate(lm, items, layers, max_tokens)
    naive = items[: n_naive // 2] + items[len(items) // 2 : len(items) // 2 + n_naive // 2]
    t = time.perf_counter()
    for it in naive:
        score_naive(lm.model, lm.tokenizer, it, layers)
    naive_items_s = len(naive) / (time.perf_counter() - t)
    rss = {}
    source = SHARED_BENCH / "piqa" / "train.json"
    if SHARED_BENCH.exists():
        with tempfile.TemporaryDirectory() as tmp:
            for size in rss_sizes:
                rss[size] = _peak_rss(size, source, tmp)
    result = {
        "flops": flops,
        "params": params,
        "bound_tokens_s": bound,
        "tokens_s": tokens_s,
        "items_s": items_s,
        "naive_items_s": naive_items_s,
        "n_items": len(items),
        "tokens": tokens,
        "rss": rss,
        "layers": layers,
        "max_tokens": max_tokens,
        "shaped_flops": shaped,
    }
    rss_lines = "\n".join(
        f"| {k} PIQA items | {gb:.2f} GiB | {sec:.0f} s (load included) |" for k, (gb, sec) in rss.items()
    )
    write_section(
        "collection",
        f"""
## Collection (issue 2)

Machine: {machine()}.
Command: `make bench` (`python -m bench.run`); embedded {EMBEDDED} ({params / 1e6:.1f}M parameters),
activation capture at layers {layers} and sites choice/last/mean, {len(items)} real items
(half BoolQ, half PIQA test items from ../shared), batches of ≤ {max_tokens} padded tokens, store writes included.

| measure | value |
| --- | --- |
| dense fp32 matmul, measured in the same run | {flops / 1e9:.1f} GFLOP/s |
| forward-pass bound = FLOP/s ÷ (2 × parameters) | {bound:.0f} tokens/s |
| collection, unique tokens processed | {tokens_s:.0f} tokens/s = **{tokens_s / bound:.0%} of the bound** (goal ≥ 70%) |
| for reference: fp32 matmul at the model's own MLP shape ({max_tokens} × {lm.d_model} @ {lm.d_model} × {cfg.intermediate_size}) | {shaped / 1e9:.1f} GFLOP/s, a bound of {shaped / (2 * params):.0f} tokens/s ({tokens_s / (shaped / (2 * params)):.0%} reached) |
| collection, items | {items_s:.2f} items/s |
| naive loop (one forward pass per choice + one for the listing prompt), {len(naive)} of the same items | {naive_items_s:.2f} items/s |
| packed collection ÷ naive | **{items_s / naive_items_s:.2f}×** (goal ≥ 1.5×) |

Peak RSS of `wif collect` (a fresh process each, embedded model):

| items | peak RSS | wall time |
| --- | --- | --- |
{rss_lines or "| (../shared/benchmarks absent: not measured) | | |"}
""",
    )
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=str))
