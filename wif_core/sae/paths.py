"""Where a store's SAEs live, and what is known about one without importing sae-lens.

A store ``S.duckdb`` keeps its SAEs beside it, one directory per run and layer::

    S.duckdb.saes/<run_id>/L<layer>/
        cfg.json                  sae-lens config (architecture, d_in, d_sae, …)
        sae_weights.safetensors   sae-lens weights (never a pickle)
        metrics.json              wif: how it was made and how well it reconstructs the run's tokens
        codes.safetensors         wif: the run's items encoded (sparse), a cache the page and `sae diff` read
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wif_core.paths import beside

# sae-lens's file names (sae_lens.constants), repeated here so that reading them needs no sae-lens import
WEIGHTS_FILE = "sae_weights.safetensors"
CFG_FILE = "cfg.json"
METRICS_FILE = "metrics.json"
CODES_FILE = "codes.safetensors"


def sae_root(store_path: str | Path) -> Path:
    """The directory beside a store that holds its SAEs: ``<store>.saes``."""
    return beside(store_path, "saes")


def sae_dir(store_path: str | Path, run_id: str, layer: int) -> Path:
    """Where the SAE of ``run_id`` at ``layer`` lives (whether or not it exists yet)."""
    return sae_root(store_path) / run_id / f"L{int(layer)}"


def is_sae_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an SAE in sae-lens's saved format."""
    path = Path(path)
    return (path / CFG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def available(store_path: str | Path | None, run_id: str) -> dict[int, Path]:
    """The layers of ``run_id`` that have an SAE beside the store, and their directories, by layer."""
    if store_path is None:
        return {}
    base = sae_root(store_path) / run_id
    if not base.is_dir():
        return {}
    found = {}
    for d in base.iterdir():
        if d.name.startswith("L") and d.name[1:].isdigit() and is_sae_dir(d):
            found[int(d.name[1:])] = d
    return dict(sorted(found.items()))


def fingerprint(path: str | Path) -> str:
    """A short id of an SAE's saved weights and config: changes when it is retrained or replaced."""
    path = Path(path)
    stat = (path / WEIGHTS_FILE).stat()
    digest = hashlib.sha1(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    digest.update((path / CFG_FILE).read_bytes())
    return digest.hexdigest()[:12]


@dataclass(kw_only=True)
class SaeInfo:
    """What a saved SAE is, read from its files (no weights loaded)."""

    path: Path
    architecture: str
    d_in: int
    d_sae: int
    fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def max_norm(self) -> float | None:
        """Tokens whose activation norm exceeds this are left out (attention sinks); None: keep all."""
        value = self.metrics.get("max_norm")
        return None if value is None else float(value)


def sae_info(path: str | Path) -> SaeInfo:
    """Read an SAE directory's config and wif metrics (``metrics.json`` may be absent)."""
    path = Path(path)
    cfg = json.loads((path / CFG_FILE).read_text())
    metrics_path = path / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return SaeInfo(
        path=path,
        architecture=str(cfg.get("architecture", "?")),
        d_in=int(cfg["d_in"]),
        d_sae=int(cfg["d_sae"]),
        fingerprint=fingerprint(path),
        metrics=metrics,
    )
