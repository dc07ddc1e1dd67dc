"""Training as ARC describes it: fresh samples every step, batch 1024, AdamW with learning rate
0.04/√d and weight decay 0.001, linear warm-up then exponential decay to 1% of the rate.

ARC trains on 2³⁰ sequences on a GPU; on a CPU a user waits minutes, so the schedule length
(``steps``) is the knob, recorded with the model so its accuracy is read next to it.

Checkpoints, as AlgZoo keeps them: a copy of the model each time the samples seen reach a power of two
(2²⁰, 2²¹, … by default), and one at the final step, so a run per checkpoint shows how failures evolve.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from wif_core.errors import InputError
from wif_core.zoo import DEFAULT_STEPS, FIRST_CHECKPOINT
from wif_core.zoo.models import ZooModel, ZooSpec, build, default_name
from wif_core.zoo.tasks import get_task

log = logging.getLogger(__name__)
Checkpointer = Callable[[ZooModel], None]


@dataclass
class TrainConfig:
    """One training run; ``lr`` None means ARC's 0.04/√hidden."""

    task: str
    hidden: int
    seq: int
    steps: int = DEFAULT_STEPS
    batch: int = 1024
    lr: float | None = None
    weight_decay: float = 0.001
    warmup: float = 0.05  # fraction of the steps
    final_lr_fraction: float = 0.01
    seed: int = 0
    arch: str = "rnn"
    layers: int = 1
    norm: str = "layernorm"
    name: str | None = None

    def check(self) -> None:
        get_task(self.task).check(self.seq)
        for key in ("steps", "batch", "hidden"):
            if getattr(self, key) < 1:
                raise InputError(f"training field '{key}'={getattr(self, key)} must be at least 1")
        if not 0 <= self.warmup < 1:
            raise InputError(f"training field 'warmup'={self.warmup} must be a fraction in [0, 1)")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 0.04 / math.sqrt(self.hidden)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak rate at ``step``: linear warm-up, then exponential decay to ``final_lr_fraction``."""
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return cfg.final_lr_fraction**progress


def loss_fn(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out[:, 0], y) if get_task(task).output == "scalar" else F.cross_entropy(out, y)


def checkpoint_steps(steps: int, batch: int, first: int = FIRST_CHECKPOINT) -> dict[int, int]:
    """Step (1-based) → samples seen, of the checkpoints of a ``steps``-step run of ``batch`` samples a step.

    A checkpoint is taken after the first step at which the samples seen reach each power of two from ``first``
    (exactly the power when ``batch`` divides it), and one after the final step. ``first`` must be a power of two.
    """
    if first < 1 or first & (first - 1):
        raise InputError(f"first checkpoint {first} must be a power of two of samples (e.g. {FIRST_CHECKPOINT})")
    out: dict[int, int] = {}
    target = first
    while (step := -(-target // batch)) <= steps:
        out[step] = step * batch
        target *= 2
    out[steps] = steps * batch
    return out


def checkpoint_label(samples: int, final: bool = False) -> str:
    """What a page shows of a checkpoint: ``2^20 samples`` at a power of two, else the count (``(final)`` last)."""
    power = samples.bit_length() - 1
    text = f"2^{power} samples" if samples == 1 << power else f"{samples:,} samples"
    return text + (" (final)" if final else "")


def _snapshot(model: ZooModel, cfg: TrainConfig, step: int, samples: int, loss: float) -> ZooModel:
    """A frozen copy of ``model`` after ``step`` steps, its spec's meta saying which checkpoint it is."""
    snap = copy.deepcopy(model).eval()
    for p in snap.parameters():
        p.requires_grad_(False)
    final = step == cfg.steps
    snap.spec = copy.deepcopy(model.spec)
    snap.spec.meta = {
        "steps": step,
        "batch": cfg.batch,
        "seed": cfg.seed,
        "lr": cfg.peak_lr,
        "train_samples": samples,
        "loss": loss,
        "checkpoint": {
            "label": checkpoint_label(samples, final),
            "step": step,
            "samples": samples,
            "seed": cfg.seed,
            "final": final,
        },
        "config": asdict(cfg),
    }
    return snap


def train(
    cfg: TrainConfig,
    progress: Callable[[int, float], None] | None = None,
    on_checkpoint: Checkpointer | None = None,
    first_checkpoint: int = FIRST_CHECKPOINT,
) -> ZooModel:
    """Train a fresh model on ``cfg`` and return it with its provenance in ``spec.meta``.

    With ``on_checkpoint``, it is called during training with a copy of the model at each of
    ``checkpoint_steps(cfg.steps, cfg.batch, first_checkpoint)`` (its ``spec.meta["checkpoint"]`` says which).
    """
    cfg.check()
    marks = checkpoint_steps(cfg.steps, cfg.batch, first_checkpoint) if on_checkpoint else {}
    torch.manual_seed(cfg.seed)
    name = cfg.name or default_name(cfg.task, cfg.hidden, cfg.seq)
    spec = ZooSpec(
        name=name,
        task=cfg.task,
        n=cfg.seq,
        hidden=cfg.hidden,
        arch=cfg.arch,  # type: ignore[arg-type]
        layers=cfg.layers,
        norm=cfg.norm,
    )
    model = build(spec)
    task = get_task(cfg.task)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    start, recent = time.perf_counter(), 0.0
    for step in range(cfg.steps):
        x = task.sample(cfg.batch, cfg.seq, gen)
        loss = loss_fn(cfg.task, model(x), task.target(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        recent = 0.98 * recent + 0.02 * value if step else value
        if progress and (step % 100 == 0 or step == cfg.steps - 1):
            progress(step + 1, recent)
        if on_checkpoint and step + 1 in marks:
            on_checkpoint(_snapshot(model, cfg, step + 1, marks[step + 1], recent))
    seconds = time.perf_counter() - start
    model.spec.meta = {
        "steps": cfg.steps,
        "batch": cfg.batch,
        "seed": cfg.seed,
        "lr": cfg.peak_lr,
        "weight_decay": cfg.weight_decay,
        "warmup": cfg.warmup,
        "final_lr_fraction": cfg.final_lr_fraction,
        "train_seconds": round(seconds, 1),
        "train_samples": cfg.steps * cfg.batch,
        "final_loss": recent,
        "torch_threads": torch.get_num_threads(),
        "config": asdict(cfg),
    }
    log.info("trained %s: %d steps in %.1f s, loss %.4f", name, cfg.steps, seconds, recent)
    return model.eval()


def train_best(
    cfg: TrainConfig,
    seeds: int = 1,
    eval_samples: int = 200_000,
    progress: Callable[[int, float], None] | None = None,
    on_checkpoint: Checkpointer | None = None,
    first_checkpoint: int = FIRST_CHECKPOINT,
) -> ZooModel:
    """Train ``seeds`` runs (seeds cfg.seed, cfg.seed+1, …) and keep the most accurate, as ARC keeps the best of 5.

    Tiny models often settle in local minima; the check uses its own sample stream, not the training one.
    ``on_checkpoint`` is called with the kept run's checkpoints only, in order, once every seed is trained.
    """
    from dataclasses import replace

    from wif_core.zoo.evaluate import evaluate

    best: ZooModel | None = None
    best_score, tried = -math.inf, []
    best_checkpoints: list[ZooModel] = []
    for k in range(max(1, seeds)):
        checkpoints: list[ZooModel] = []
        model = train(
            replace(cfg, seed=cfg.seed + k), progress, checkpoints.append if on_checkpoint else None, first_checkpoint
        )
        result = evaluate(model, eval_samples, seed=10_000 + k)
        score = -(result.rmse or 0.0) if result.accuracy is None else float(result.accuracy)
        tried.append({"seed": cfg.seed + k, "check_score": score, "train_seconds": model.spec.meta["train_seconds"]})
        if score > best_score:
            best, best_score, best_checkpoints = model, score, checkpoints
    assert best is not None
    if on_checkpoint:
        for snap in best_checkpoints:
            on_checkpoint(snap)
    best.spec.meta["seeds_tried"] = tried
    best.spec.meta["train_seconds_all_seeds"] = round(sum(t["train_seconds"] for t in tried), 1)
    return best
