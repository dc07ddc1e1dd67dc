"""The explainer protocol, information tiers, and what an explainer may see of a split.

An explainer is scikit-learn style: ``__init__`` stores settings; ``fit(train, val)``
learns from the train split and tunes on val; ``predict_proba(test)`` gives P(failure)
per item; ``explain()`` returns something a person can read.

Each explainer declares its **tier**, and the views it is handed hold only what that tier
allows, so the rule is kept by construction rather than by care:

- ``input``: the item as the model read it (context and options, in option order) and the
  model's internals while reading it; never the answer key, never the model's answer.
- ``output``: adds the model's own scores for the choices.
- ``gold``: adds the answer key (and other runs' outcomes on the same items).

Failure labels are given to ``fit`` only, never inside a view. One exception, kept as narrow
as it can be: an explainer that declares ``reads_other_train`` is handed a train view that
also holds other runs' outcomes on the train items (``other_train_failures``); no val or test
view ever holds them, so such an explainer reads no outcome of an item it is scored on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from wif_core.registry import Registry

Tier = Literal["input", "output", "gold"]
TIERS: tuple[Tier, ...] = ("input", "output", "gold")
TIER_NOTES = {
    "input": "sees the item and the model's internals while reading it: the paper's question",
    "output": "adds the model's own choice scores: a baseline",
    "gold": "adds the answer key: a diagnostic, failure is nearly given",
}


@dataclass(kw_only=True)
class View:
    """What an explainer of a given tier may see of one split's items.

    Fields beyond the tier are None; asking for them raises. Activations are read lazily.
    """

    tier: Tier
    item_ids: list[str]
    task: str
    contexts: list[str]
    choices: list[tuple[str, ...]]
    _acts: Callable[[int, str], np.ndarray]
    _token_acts: Callable[[int], list[np.ndarray]]
    layers: list[int] = field(default_factory=list)
    _choice_scores: np.ndarray | None = None
    _gold: np.ndarray | None = None
    _other: Callable[[str], np.ndarray] | None = None
    _other_train: Callable[[str], np.ndarray] | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.item_ids)

    def acts(self, layer: int, site: str) -> np.ndarray:
        """Residual stream after block ``layer`` at ``site``: ``[n, d]``, or ``[n, k, d]`` for ``choice``."""
        key = ("acts", layer, site)
        if key not in self.cache:
            self.cache[key] = self._acts(layer, site)
        return self.cache[key]

    def token_acts(self, layer: int) -> list[np.ndarray]:
        """Per-token residual stream of the listing prompt at ``layer``: one ``[T, d]`` per item."""
        key = ("tokens", layer)
        if key not in self.cache:
            self.cache[key] = self._token_acts(layer)
        return self.cache[key]

    @property
    def choice_scores(self) -> np.ndarray:
        """The model's log-likelihood of each choice, ``[n, k]`` (output tier and above)."""
        if self._choice_scores is None:
            raise PermissionError(f"a {self.tier}-tier explainer may not see the model's choice scores")
        return self._choice_scores

    @property
    def gold(self) -> np.ndarray:
        """The answer key, ``[n]`` (gold tier only)."""
        if self._gold is None:
            raise PermissionError(f"a {self.tier}-tier explainer may not see the answer key")
        return self._gold

    def other_run_failures(self, run_id: str) -> np.ndarray:
        """Another run's outcome (1 = failed, NaN = not in that run) on these items (gold tier only)."""
        if self._other is None:
            raise PermissionError(f"a {self.tier}-tier explainer may not see other runs' outcomes")
        return self._other(run_id)

    def other_train_failures(self, run_id: str) -> np.ndarray:
        """Another run's outcome on these train items (1 = failed; NaN where that run did not score the item,
        scored its duplicates both ways, or where the item's content is also a val or test item of this run).

        Only the train view handed to an explainer that declares ``reads_other_train`` holds it.
        """
        if self._other_train is None:
            raise PermissionError(
                "other runs' outcomes are on the train view of an explainer that declares reads_other_train only"
            )
        return self._other_train(run_id)


@dataclass(kw_only=True)
class RunFacts:
    """What a run holds, for deciding which explainers apply."""

    run_id: str
    task: str
    n_choices: int
    layers: list[int]
    sites: list[str]
    token_layers: list[int]
    has_scores: bool  # every evaluated item has a score for every choice
    other_runs: list[str]
    store_path: str | None = None  # where the store lives: explainers that read files beside it (SAEs) need it
    scores_missing: int = 0  # evaluated items with some choice unscored (an imported file's nulls)
    # per other run, how many of this run's train items it scored (matched by item key)
    shared_train: dict[str, int] = field(default_factory=dict)

    def why_no_scores(self) -> str | None:
        """None when the run's choice scores are complete, else why output-tier explainers cannot read them."""
        if self.has_scores:
            return None
        if self.scores_missing:
            return (
                f"run {self.run_id} has no score for some choice on {self.scores_missing} of its evaluated items "
                "(its outcome file left them null); scores are used only where every item has them all"
            )
        return f"run {self.run_id} has no per-choice scores (an import without them)"


class Explainer:
    """Base class. Subclasses set ``name``, ``tier``, ``summary`` and implement the protocol."""

    name: ClassVar[str] = ""
    tier: ClassVar[Tier] = "input"
    summary: ClassVar[str] = ""
    uses_layer: ClassVar[bool] = False
    sites: ClassVar[tuple[str, ...]] = ()
    # the settings a user may give (`wif explain --set KEY=VALUE`, keywords of `evaluate`); others are refused
    options: ClassVar[tuple[str, ...]] = ()
    # an input-tier explainer that learns from other runs' outcomes on the train items (never on val or test)
    reads_other_train: ClassVar[bool] = False

    def __init__(self, layer: int | None = None, site: str | None = None, seed: int = 0, **settings: Any) -> None:
        self.layer = layer
        self.site = site
        self.seed = seed
        self.settings = settings

    # -- what a run must hold --------------------------------------------------------
    @classmethod
    def applicable(cls, run: RunFacts, layer: int | None = None, site: str | None = None) -> str | None:
        """None if this explainer can run on ``run`` with these settings, else why not (one line)."""
        if cls.uses_layer:
            if layer is None:
                return f"{cls.name} needs --layer (collected layers: {run.layers or 'none'})"
            if site not in cls.sites:
                return f"{cls.name} works at sites {', '.join(cls.sites)}, not '{site}'"
            if site != "tokens" and (layer not in run.layers or site not in run.sites):
                return f"run {run.run_id} has no activations at layer {layer}, site '{site}' (layers {run.layers})"
        return None

    @classmethod
    def default_settings(cls, run: RunFacts) -> list[dict[str, Any]]:
        """The settings `--all` tries on a run (one dict of __init__ kwargs per variant)."""
        return [{}]

    @classmethod
    def resolve_settings(cls, run: RunFacts, layer: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings to fit with, filled in from the run (e.g. which SAE file and its version).

        Called by ``evaluate`` before the result-cache key is made, so what is filled in here
        is part of the key and is recorded with the result.
        """
        return settings

    # -- the protocol ------------------------------------------------------------------
    def fit(self, train: View, y_train: np.ndarray, val: View, y_val: np.ndarray) -> Explainer:
        raise NotImplementedError

    def predict_proba(self, test: View) -> np.ndarray:
        raise NotImplementedError

    def explain(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        """Settings as recorded with every result."""
        return {
            "explainer": self.name,
            "tier": self.tier,
            "layer": self.layer,
            "site": self.site,
            "seed": self.seed,
            **self.settings,
        }


# The built-in explainers, imported on first use (the registry's one table of names).
REGISTRY: Registry[type[Explainer]] = Registry(
    "an explainer",
    {
        "attention-probe": "wif_core.explainers.attention_probe:AttentionProbe",
        "cluster": "wif_core.clusters.explainer:ClusterExplainer",
        "cluster-attribution": "wif_core.clusters.explainer:AttributionClusterExplainer",
        "confidence": "wif_core.explainers.baselines:Confidence",
        "cross-model": "wif_core.explainers.baselines:CrossModel",
        "difficulty-transfer": "wif_core.explainers.transfer:DifficultyTransfer",
        "gbdt-probe": "wif_core.explainers.nonlinear:GbdtProbe",
        "knn": "wif_core.explainers.nonlinear:Knn",
        "label-prior": "wif_core.explainers.baselines:LabelPrior",
        "mlp-probe": "wif_core.explainers.nonlinear:MlpProbe",
        "mlp-probe-all-layers": "wif_core.explainers.nonlinear:MlpAllLayersProbe",
        "probe": "wif_core.explainers.probe:Probe",
        "probe-all-layers": "wif_core.explainers.probe:AllLayersProbe",
        "probe-paper": "wif_core.explainers.probe:PaperProbe",
        "sae": "wif_core.explainers.sae:SaeProbe",
        "stack": "wif_core.explainers.stack:Stack",
        "surface": "wif_core.explainers.baselines:Surface",
        "text": "wif_core.explainers.baselines:Text",
    },
    sort_names=True,
)


def register(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator for an explainer of your own: add it to the registry under its unique name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.tier not in TIERS:
        raise ValueError(f"{cls.__name__}.tier must be one of {TIERS}")
    known = REGISTRY.get(cls.name)
    return REGISTRY.add(cls.name, cls, f" ({known.__name__})" if known else "")


def get_explainer(name: str) -> type[Explainer]:
    """A registered explainer class, or a one-line error listing them."""
    return REGISTRY.lookup(name)
