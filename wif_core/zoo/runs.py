"""Zoo runs in the store: inputs as items, correctness as outcomes, every time step's hidden state as activations.

Written through the runner's one write path (``wif_core.runner.write_run``), as collected and
imported runs are, so wif's explainers, clusters and attribution run on a zoo run unchanged. Each
item carries its ground-truth factors (the gaps between the top three inputs, where the maximum
sits), which is what makes the zoo a test bench: does an explainer's failure score track the cause
we know?

A model's checkpoints (``wif zoo train`` keeps them) become one run each (``store_checkpoints``), their
config's ``checkpoint`` entry (label, step, samples, path) ordering them for the compare view.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from wif_core.errors import InputError, WifError
from wif_core.metrics import auc_ci
from wif_core.runner import SplitOptions, make_run_id, write_run
from wif_core.store import OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem
from wif_core.zoo.attribution import attribution_rows
from wif_core.zoo.models import ZooModel, ZooRNN
from wif_core.zoo.tasks import get_task, order_factors, store_task

log = logging.getLogger(__name__)
WRITE_BATCH = 2000
FACTORS = ("gap12", "gap23", "max_pos", "second_pos")


class OneOutcomeError(InputError):
    """A model got (almost) every sample right, or wrong: its run would have no balanced splits."""


@dataclass(kw_only=True)
class ZooRunResult:
    run_id: str
    model: str
    task: str
    n_items: int
    accuracy: float
    n_in_splits: int
    resumed: bool = False
    findings: dict[str, int] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None  # the run config's checkpoint entry, for a run of a checkpoint


def _context(x: np.ndarray, inputs: str) -> str:
    if inputs == "function":
        return "f = [" + ", ".join(str(int(v)) for v in x) + "]"
    return " ".join(f"{v:+.3f}" for v in x)


def _choices(task: str, n: int) -> tuple[str, ...]:
    if get_task(task).inputs == "function":
        return tuple(f"cycle length {k + 1}" for k in range(n))
    return tuple(f"position {p}" for p in range(n))


def store_run(
    store: Store,
    model: ZooModel,
    samples: int,
    seed: int = 0,
    split_seed: int = 0,
    k: int | None = None,
    progress: Callable[[int], None] | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> ZooRunResult:
    """Run ``model`` on ``samples`` fresh inputs and write them as a run (same arguments: the same run, kept).

    ``checkpoint`` (``label``, ``step``, ``samples``, ``revision``, ``path``) goes into the run's config as its
    ``checkpoint`` entry; a run without it is no checkpoint and keeps the id it always had.
    """
    spec = model.spec
    task = get_task(spec.task)
    if task.output == "scalar":
        raise InputError(f"model {spec.name} outputs a scalar ({spec.task}); only position and class tasks become runs")
    if samples < 40:
        raise InputError(f"--samples {samples} is too few for a run; use at least 40 (explainers need both outcomes)")
    task_name = store_task(spec.task, spec.n)
    model_name = f"zoo:{spec.name}"
    config = {
        "model": model_name,
        "task": task_name,
        "samples": samples,
        "seed": seed,
        "kind": "zoo",
        "weights": _fingerprint(model),
    }
    if checkpoint is not None:
        config["checkpoint"] = checkpoint
    run_id = make_run_id(model_name, task_name, config)
    if run_id in store.run_ids() and store.run(run_id).status == "complete":
        frame = store.items(run_id)
        in_splits = int(frame["split"].isin(["train", "val", "test"]).sum())
        return ZooRunResult(
            run_id=run_id,
            model=spec.name,
            task=task_name,
            n_items=len(frame),
            accuracy=float(frame["correct"].mean()),
            n_in_splits=in_splits,
            resumed=True,
            checkpoint=checkpoint,
        )

    gen = torch.Generator().manual_seed(seed)
    x = task.sample(samples, spec.n, gen)
    with torch.inference_mode():
        states = model.hidden_states(x)  # [N, steps or layers, d]
        logits = model(x)
    y = task.target(x)
    pred = logits.argmax(dim=1)
    n_wrong = int((pred != y).sum())
    if min(n_wrong, samples - n_wrong) < 2:
        raise OneOutcomeError(
            f"model {spec.name} got {samples - n_wrong} of {samples} samples right: a run needs both outcomes for "
            "its balanced splits; raise --samples"
        )
    ll = torch.log_softmax(logits.double(), dim=1)
    gold_logit = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    margin = (gold_logit - others).numpy()
    xs = x.numpy()
    factors = order_factors(xs.astype(np.float64)) if task.inputs == "gaussian" else {}
    layers = list(range(1, states.shape[1] + 1))
    is_rnn = isinstance(model, ZooRNN)
    width = len(str(samples - 1))
    choices = _choices(spec.task, spec.n)
    items = []
    for i in range(samples):
        meta: dict[str, Any] = {"factors": list(factors), "x": xs[i].tolist(), "seed": seed, "index": i}
        meta.update({f: (int(v[i]) if f.endswith("_pos") else float(v[i])) for f, v in factors.items()})
        items.append(
            TaskItem(
                item_id=f"{spec.name}-{i:0{width}d}",
                task=task_name,
                context=_context(xs[i], task.inputs),
                choices=choices,
                gold=int(y[i]),
                meta=meta,
            )
        )
    run = RunInfo(
        run_id=run_id,
        model=model_name,
        task=task_name,
        source=f"zoo:seed={seed}",
        kind="zoo",
        n_choices=len(choices),
        family=f"zoo-{task.output}",  # 'zoo-position' or 'zoo-class' (scalar tasks were refused above)
        template=None,
        scoring="logits",
        layers=layers,
        sites=["last"],
        token_layers=[1] if is_rnn else [],
        n_layers=len(layers),
        d_model=spec.hidden,
        act_dtype="float32",
        seed=seed,
        config=config,
    )
    states_np, ll_np, pred_np, y_np = states.numpy(), ll.numpy(), pred.numpy(), y.numpy()
    index = {it.item_id: i for i, it in enumerate(items)}

    def score(todo: list[TaskItem]) -> Iterator[list[OutcomeRow]]:
        for start in range(0, len(todo), WRITE_BATCH):
            rows = []
            for it in todo[start : start + WRITE_BATCH]:
                i = index[it.item_id]
                acts: dict[tuple[int, str], np.ndarray] = {(t, "last"): states_np[i, t - 1] for t in layers}
                if is_rnn:
                    acts[(1, "tokens")] = states_np[i]  # the hidden state over time, for attention probes
                rows.append(
                    OutcomeRow(
                        item_id=it.item_id,
                        pred=int(pred_np[i]),
                        correct=bool(pred_np[i] == y_np[i]),
                        margin=float(margin[i]),
                        ll_sum=ll_np[i].tolist(),
                        acts=acts,
                    )
                )
            yield rows

    def attributions() -> None:  # exact position attributions (see wif_core.zoo.attribution)
        for start in range(0, samples, WRITE_BATCH):
            end = min(samples, start + WRITE_BATCH)
            ids = [it.item_id for it in items[start:end]]
            store.write_attributions(run_id, attribution_rows(model, ids, x[start:end], y[start:end], seed))

    result = write_run(
        store,
        run,
        items,
        score,
        split_options=SplitOptions(k=k, seed=split_seed),
        fresh=True,  # an interrupted write is started again whole
        after_outcomes=attributions if is_rnn and task.inputs == "gaussian" else None,
        progress=progress,
    )
    frame = store.items(run_id)
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    in_splits = int(frame["split"].isin(["train", "val", "test"]).sum())
    return ZooRunResult(
        run_id=run_id,
        model=spec.name,
        task=task_name,
        n_items=samples,
        accuracy=float((pred_np == y_np).mean()),
        n_in_splits=in_splits,
        findings=counts,
        checkpoint=checkpoint,
    )


@dataclass(kw_only=True)
class SkippedCheckpoint:
    """A checkpoint that could not become a run (e.g. every sample right: no failures to explain), and why."""

    label: str
    path: str
    reason: str


def checkpoint_entry(model: ZooModel, path: Path) -> dict[str, Any]:
    """The shared contract's ``checkpoint`` entry of a checkpoint file (``spec.meta["checkpoint"]`` as saved)."""
    meta = model.spec.meta.get("checkpoint")
    if not isinstance(meta, dict) or not isinstance(meta.get("samples"), int):
        raise InputError(
            f"{path}: metadata field 'checkpoint' is missing; it is not a checkpoint saved by `wif zoo train`"
        )
    return {
        "label": str(meta.get("label") or f"{meta['samples']:,} samples"),
        "step": meta.get("step"),
        "samples": meta["samples"],
        "revision": None,
        "path": str(path.resolve()),
    }


def store_checkpoints(
    store: Store,
    name: str,
    samples: int,
    *,
    zoo_dir: Path | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[ZooRunResult], list[SkippedCheckpoint]]:
    """Store one run per checkpoint of the model ``name``, in order of samples seen, on the same ``samples`` inputs.

    Resumable: a checkpoint whose run is already complete is kept as it is (``resumed``). ``progress`` counts
    inputs, ``samples`` per checkpoint. A checkpoint that cannot make a run (all or all-but-one inputs right or
    wrong) is skipped and returned with its reason, so one saturated checkpoint does not stop the rest.
    """
    from wif_core.zoo.weights import checkpoints, load

    files = checkpoints(name, zoo_dir)
    done: list[ZooRunResult] = []
    skipped: list[SkippedCheckpoint] = []
    for path in files:
        model = load(str(path))
        entry = checkpoint_entry(model, path)
        try:
            r = store_run(store, model, samples, seed=seed, split_seed=seed, progress=progress, checkpoint=entry)
        except OneOutcomeError as exc:
            skipped.append(SkippedCheckpoint(label=entry["label"], path=str(path), reason=str(exc)))
            if progress:
                progress(samples)
            continue
        if r.resumed and progress:
            progress(samples)
        done.append(r)
    return done, skipped


def _fingerprint(model: ZooModel) -> str:
    import hashlib

    h = hashlib.sha1()
    for key, value in sorted(model.weights().items()):
        h.update(key.encode())
        h.update(value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


# ---- which explainer recovers the known cause ----------------------------------------------------

DEFAULT_EXPLAINERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("probe", {"site": "last"}),  # at the last step (layer n); filled in below
    ("probe-all-layers", {"site": "last"}),
    ("attention-probe", {"layer": 1, "site": "tokens"}),
    # non-linear readers of the hidden state: at the last step, and over the whole trajectory (every step's state)
    ("mlp-probe", {"site": "last"}),
    ("mlp-probe-all-layers", {"site": "last"}),
    ("gbdt-probe", {"site": "last"}),
    ("knn", {"site": "last"}),
    ("stack", {"site": "last"}),
    ("surface", {}),
    ("text", {}),
    ("confidence", {}),
)


@dataclass
class CauseRecovery:
    """One explainer on a zoo run: its held-out AUC, and how its failure score tracks the true top-2 gap."""

    explainer: str
    label: str
    tier: str
    auc: float
    ci_low: float
    ci_high: float
    n_test: int
    spearman_gap12: float  # rank correlation of the failure score with the gap (negative: small gap → high score)
    spearman_gap12_ci: tuple[float, float]


def cause_recovery(
    store: Store,
    run_id: str,
    explainers: Sequence[tuple[str, dict[str, Any]]] = DEFAULT_EXPLAINERS,
    seed: int = 0,
    cache: Any = None,
) -> list[CauseRecovery]:
    """Fit each explainer on the run's train split and score its test split. The first rows score failure by the
    known causes themselves (−gap12; −the nearer of the two gaps around the 2nd largest), what an explainer that
    found the cause would approach."""
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import evaluate

    data = RunData.load(store, run_id)
    meta = {r.item_id: json.loads(r.meta) for r in store.items(run_id).itertuples()}
    if "gap12" not in next(iter(meta.values())):
        raise InputError(
            f"run {run_id} has no ground-truth gaps (a longest-cycle run?); cause recovery needs 2nd argmax"
        )
    test, y_test = data.split("test", "input")
    gaps = np.array([meta[i]["gap12"] for i in test.item_ids])
    nearest = np.minimum(gaps, np.array([meta[i]["gap23"] for i in test.item_ids]))
    rows = []
    for label, cause in (("known cause: −gap12", gaps), ("known cause: −min(gap12, gap23)", nearest)):
        ci = auc_ci(y_test, -cause, seed=seed)
        rho = -1.0 if cause is gaps else float(spearmanr(-cause, gaps).statistic)
        rows.append(
            CauseRecovery(
                explainer=label,
                label=label,
                tier="gold",
                auc=ci.auc,
                ci_low=ci.ci_low,
                ci_high=ci.ci_high,
                n_test=ci.n,
                spearman_gap12=rho,
                spearman_gap12_ci=(rho, rho),
            )
        )
    n_layers = max(data.facts.layers)
    for name, settings in explainers:
        s = dict(settings)
        if name in ("probe", "mlp-probe", "gbdt-probe", "knn") and "layer" not in s:
            s["layer"] = n_layers
        try:
            r = evaluate(data, name, s.pop("layer", None), s.pop("site", None), seed=seed, cache=cache, **s)
        except WifError as exc:
            log.warning("skipping %s: %s", name, exc)
            continue
        gap_of = dict(zip(test.item_ids, gaps, strict=True))
        g = np.array([gap_of[i] for i in r.item_ids])
        scores = np.asarray(r.scores)
        if np.ptp(scores) == 0:  # a constant score (e.g. surface features of numbers) ranks nothing
            rho, ci_rho = math.nan, (math.nan, math.nan)
        else:
            rho, ci_rho = float(spearmanr(scores, g).statistic), _spearman_ci(scores, g, seed)
        rows.append(
            CauseRecovery(
                explainer=name,
                label=r.label,
                tier=r.tier,
                auc=r.auc,
                ci_low=r.ci_low,
                ci_high=r.ci_high,
                n_test=r.n_test,
                spearman_gap12=rho,
                spearman_gap12_ci=ci_rho,
            )
        )
    return rows


def _spearman_ci(a: np.ndarray, b: np.ndarray, seed: int, level: float = 0.999, n: int = 400) -> tuple[float, float]:
    """Bootstrap percentile interval of Spearman's ρ."""
    rng = np.random.default_rng(seed)
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    stats = []
    for _ in range(n):
        idx = rng.integers(0, len(a), len(a))
        x, y = ra[idx] - ra[idx].mean(), rb[idx] - rb[idx].mean()
        denom = np.sqrt((x * x).sum() * (y * y).sum())
        stats.append(float((x * y).sum() / denom) if denom else 0.0)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
