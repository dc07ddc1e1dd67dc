"""Train an SAE with sae-lens's own trainer on the per-token activations stored for a run.

For models with no pretrained SAE (the embedded SmolLM2): a TopK SAE (``k`` features active per
token) or a JumpReLU SAE (a learned threshold per feature, trained towards an L0 of ``k``
with Gemma Scope 2's quadratic penalty; its thresholds move slowly, so on a small budget it
stays well above that L0: give it more ``samples``), ``width`` features (default 8 × d_model). The data
are the listing prompts' token activations of the run's **train** split only, so no feature is
fitted on the items an explainer is tested on; attention-sink tokens are left out (see
``codes``). Reconstruction is reported on the val split's tokens, which training never saw.

The SAE is saved in sae-lens's format (``cfg.json`` + ``sae_weights.safetensors``) beside the
store, with ``metrics.json`` recording how it was made and how well it reconstructs.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.sae.codes import SINK_FACTOR, kept_tokens, reconstruction, run_codes, sink_threshold
from wif_core.sae.paths import CODES_FILE, METRICS_FILE, sae_dir

log = logging.getLogger(__name__)
ARCHS = ("topk", "jumprelu")
WIDTH_FACTOR = 8
DEMO_SAMPLES = 20_000


@dataclass(kw_only=True)
class TrainConfig:
    """How to train: architecture, size, sparsity, and the optimiser's budget."""

    arch: str = "topk"
    width: int | None = None  # features; default WIDTH_FACTOR × d_in
    k: int = 32  # topk: active features per token; jumprelu: the target L0
    samples: int | None = None  # token vectors drawn (with repeats); default from the number of tokens
    batch: int = 256
    lr: float = 3e-3
    seed: int = 0
    splits: tuple[str, ...] = ("train",)

    def check(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"unknown SAE architecture '{self.arch}'; use one of {', '.join(ARCHS)}")
        if self.width is not None and self.width < 1:
            raise InputError(f"--width must be positive, not {self.width}")
        if self.k < 1 or (self.width is not None and self.k > self.width):
            raise InputError(f"--k must be between 1 and the width, not {self.k}")
        if self.samples is not None and self.samples < self.batch:
            raise InputError(f"--samples must be at least one batch ({self.batch}), not {self.samples}")


def default_samples(n_tokens: int) -> int:
    """Twenty passes over the training tokens, kept within [20k, 300k] token vectors."""
    return int(min(max(20 * n_tokens, DEMO_SAMPLES), 300_000))


def new_sae(d_in: int, cfg: TrainConfig) -> Any:
    """An untrained sae-lens training SAE (seeded)."""
    with heavy_imports():
        import torch

    cfg.check()
    torch.manual_seed(cfg.seed)
    width = cfg.width or WIDTH_FACTOR * d_in
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cfg.arch == "topk":
            with heavy_imports():
                from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

            return TopKTrainingSAE(
                TopKTrainingSAEConfig(d_in=d_in, d_sae=width, k=cfg.k, normalize_activations="expected_average_only_in")
            )
        with heavy_imports():
            from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig

        return JumpReLUTrainingSAE(
            JumpReLUTrainingSAEConfig(
                d_in=d_in,
                d_sae=width,
                jumprelu_sparsity_loss_mode="quadratic",
                target_l0=float(cfg.k),
                l0_coefficient=1.0,
                jumprelu_init_threshold=0.3,
                normalize_activations="expected_average_only_in",
            )
        )


def _batches(X: np.ndarray, size: int, seed: int, progress: Callable[[int], None] | None) -> Iterator[Any]:
    """Endless shuffled ``[size, d]`` float32 tensors drawn from the rows of ``X``: sae-lens's data provider."""
    with heavy_imports():
        import torch

    rng = np.random.default_rng(seed)
    data = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    while True:
        order = rng.permutation(len(X)) if len(X) >= size else rng.integers(0, len(X), size)
        for start in range(0, len(order) - size + 1, size):
            if progress:
                progress(size)
            yield data[torch.from_numpy(order[start : start + size])]


def fit_sae(sae: Any, X: np.ndarray, cfg: TrainConfig, progress: Callable[[int], None] | None = None) -> Any:
    """Train ``sae`` on the rows of ``X`` with sae-lens's ``SAETrainer``; returns the trained SAE."""
    with heavy_imports():
        import torch
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

    if len(X) < 2:
        raise InputError(f"an SAE needs training tokens; got {len(X)}")
    samples = cfg.samples or default_samples(len(X))
    steps = max(1, samples // cfg.batch)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=samples,
        train_batch_size_samples=cfg.batch,
        lr=cfg.lr,
        lr_end=cfg.lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=min(10, steps // 10),
        device="cpu",
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=min(50, max(1, len(X) // cfg.batch)),
        dead_feature_window=max(10, steps // 8),
    )
    torch.manual_seed(cfg.seed)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_batches(X, cfg.batch, cfg.seed, progress))
    # sae-lens draws its own progress bar on stderr; wif reports progress through ``progress``
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer.fit().eval()


@dataclass(kw_only=True)
class TrainResult:
    """A trained SAE: where it is, how it was made, how well it reconstructs held-out tokens."""

    run_id: str
    layer: int
    path: str
    arch: str
    width: int
    k: int
    d_in: int
    n_items: int
    n_tokens: int
    n_sink_tokens: int
    max_norm: float
    samples: int
    seconds: float
    seed: int
    lr: float
    splits: list[str]
    eval_split: str
    n_eval_tokens: int
    explained_variance: float
    mse: float
    mean_l0: float
    dead_fraction: float
    untrained: dict[str, float] = field(default_factory=dict)
    train: dict[str, float] = field(default_factory=dict)
    source: str = "trained"


def _tokens(store: Any, run_id: str, layer: int, split: str | tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    splits = (split,) if isinstance(split, str) else split
    frame = store.items(run_id, include_excluded=False)
    ids = frame.loc[frame["split"].isin(splits), "item_id"].tolist()
    got, arrays = store.token_activations(run_id, layer, ids)
    X = np.concatenate([a.astype(np.float32) for a in arrays]) if arrays else np.zeros((0, 0), np.float32)
    return got, X


def train_run_sae(
    store: Any,
    run_id: str,
    layer: int,
    cfg: TrainConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train an SAE on ``run_id``'s train-split token activations at ``layer``, save it beside the
    store in sae-lens format with ``metrics.json``, and encode the run's items (the codes cache)."""
    with heavy_imports():
        from sae_lens import SAE

    cfg = cfg or TrainConfig()
    cfg.check()
    run = store.run(run_id)
    if layer not in run.token_layers:
        raise InputError(
            f"run {run_id} has no per-token activations at layer {layer} (it has "
            f"{run.token_layers or 'none'}); collect with --token-layers {layer}"
        )
    ids, X_all = _tokens(store, run_id, layer, tuple(cfg.splits))
    if not len(X_all):
        raise InputError(f"run {run_id} has no {'/'.join(cfg.splits)} items with token activations at layer {layer}")
    max_norm = sink_threshold(X_all, SINK_FACTOR)
    X = X_all[kept_tokens(X_all, max_norm)]
    eval_split = next((s for s in ("val", "test") if s not in cfg.splits), "train")
    _, X_eval = _tokens(store, run_id, layer, eval_split) if eval_split != "train" else (ids, X_all)
    X_eval = X_eval[kept_tokens(X_eval, max_norm)] if len(X_eval) else X
    samples = cfg.samples or default_samples(len(X))
    trained_cfg = TrainConfig(**{**asdict(cfg), "samples": samples})

    sae = new_sae(X.shape[1], trained_cfg)
    before = reconstruction(sae, X_eval)
    start = time.perf_counter()
    fit_sae(sae, X, trained_cfg, progress)
    seconds = time.perf_counter() - start

    out = sae_dir(store.path, run_id, layer)
    out.mkdir(parents=True, exist_ok=True)
    (out / CODES_FILE).unlink(missing_ok=True)  # the old SAE's codes
    sae.save_inference_model(str(out))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = SAE.load_from_disk(str(out), device="cpu", dtype="float32").eval()  # measure what was saved
    held_out, on_train = reconstruction(saved, X_eval), reconstruction(saved, X)
    result = TrainResult(
        run_id=run_id,
        layer=layer,
        path=str(out),
        arch=cfg.arch,
        width=int(saved.cfg.d_sae),
        k=cfg.k,
        d_in=X.shape[1],
        n_items=len(ids),
        n_tokens=len(X),
        n_sink_tokens=len(X_all) - len(X),
        max_norm=max_norm,
        samples=samples,
        seconds=seconds,
        seed=cfg.seed,
        lr=cfg.lr,
        splits=list(cfg.splits),
        eval_split=eval_split,
        n_eval_tokens=int(held_out["n_tokens"]),
        explained_variance=held_out["explained_variance"],
        mse=held_out["mse"],
        mean_l0=held_out["mean_l0"],
        dead_fraction=held_out["dead_fraction"],
        untrained=before,
        train=on_train,
    )
    (out / METRICS_FILE).write_text(json.dumps(asdict(result), indent=1, default=float))
    run_codes(store, run_id, layer)  # encode every item once, for `sae diff` and the app
    return result
