"""The zoo: ARC's AlgZoo family of tiny algorithmic models, with known ground truth.

Tasks and their input distributions (``tasks``), the bias-free ReLU RNN and the attention-only
transformer with ARC's handcrafted 2nd-argmax models (``models``), safetensors I/O (``weights``),
ARC's training recipe (``train``), fast evaluation with exact CIs (``evaluate``), the exact
deductive accuracy of two-input models (``deductive``), pluggable accuracy estimators and their
MSE against compute (``estimators``), zoo runs in the store (``runs``) and the ``wif zoo`` CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wif_core.lazy import lazy_exports
from wif_core.registry import Registry

if TYPE_CHECKING:
    from wif_core.zoo.deductive import Deduction, deduce
    from wif_core.zoo.estimators import Curve, Estimate, Estimator, get_estimator, mse_curve
    from wif_core.zoo.evaluate import Accuracy, evaluate
    from wif_core.zoo.models import ZooRNN, ZooSpec, ZooTransformer, build, handcrafted_2nd_argmax
    from wif_core.zoo.tasks import ZooTask, get_task
    from wif_core.zoo.train import TrainConfig, train, train_best
    from wif_core.zoo.weights import ZOO_DIR, available, load, save

# The registries' tables, imported on first use: `wif zoo --help` lists the names without torch.
TASKS: Registry[ZooTask] = Registry(
    "a zoo task",
    {
        "2nd_argmax": "wif_core.zoo.tasks:SECOND_ARGMAX",
        "argmedian": "wif_core.zoo.tasks:ARGMEDIAN",
        "median": "wif_core.zoo.tasks:MEDIAN",
        "longest_cycle": "wif_core.zoo.tasks:LONGEST_CYCLE",
    },
)
ESTIMATORS: Registry[type[Estimator]] = Registry(
    "an estimator",
    {
        "sampling": "wif_core.zoo.estimators:Sampling",
        "deductive": "wif_core.zoo.estimators:Deductive",
        "importance": "wif_core.zoo.estimators:NearTieImportance",
        "regions": "wif_core.zoo.estimators:Regions",
        "stratified": "wif_core.zoo.estimators:StratifiedRegions",
    },
)
DEFAULT_STEPS = 150_000  # training steps of `wif zoo train`: about 4 minutes for M16,10 on one CPU thread
FIRST_CHECKPOINT = 2**20  # samples seen at a training run's first checkpoint (AlgZoo's); then every power of two

_LAZY = {
    **dict.fromkeys(["Deduction", "deduce"], "deductive"),
    **dict.fromkeys(["Curve", "Estimate", "Estimator", "get_estimator", "mse_curve"], "estimators"),
    **dict.fromkeys(["Accuracy", "evaluate"], "evaluate"),
    **dict.fromkeys(["ZooRNN", "ZooSpec", "ZooTransformer", "build", "handcrafted_2nd_argmax"], "models"),
    **dict.fromkeys(["ZooTask", "get_task"], "tasks"),
    **dict.fromkeys(["TrainConfig", "train", "train_best"], "train"),
    **dict.fromkeys(["ZOO_DIR", "available", "load", "save"], "weights"),
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_STEPS",
    "ESTIMATORS",
    "FIRST_CHECKPOINT",
    "TASKS",
    "ZOO_DIR",
    "Accuracy",
    "Curve",
    "Deduction",
    "Estimate",
    "Estimator",
    "TrainConfig",
    "ZooRNN",
    "ZooSpec",
    "ZooTask",
    "ZooTransformer",
    "available",
    "build",
    "deduce",
    "evaluate",
    "get_estimator",
    "get_task",
    "handcrafted_2nd_argmax",
    "load",
    "mse_curve",
    "save",
    "train",
    "train_best",
]
