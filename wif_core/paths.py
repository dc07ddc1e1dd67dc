"""Every path wif uses by name: the default stores, the files that make up a store, the shipped data.

A store is one DuckDB file plus side directories that only ever cost time when missing::

    S.duckdb               runs, items, outcomes, activations, tokens, splits, attributions (the data)
    S.duckdb.wal           DuckDB's write-ahead log while a writer has it open (DuckDB's own)
    S.duckdb.saes/         SAEs trained on or added to its runs: <run_id>/L<layer>/ (wif_core.sae.paths)
    S.duckdb.results/      explainer results, JSON, keyed by run, explainer and settings
    S.duckdb.clusters/     cluster results, JSON
    S.duckdb.embeddings/   text embeddings of its items, <run_id>.npy
    S.duckdb.interventions/ causal checks (`wif intervene`, the Interventions page), JSON, keyed by run and settings
    S.duckdb.building      a demo store under construction (renamed to S.duckdb once its first run is whole)
    S.duckdb.parts/        a demo build's work in progress: one store per run being made, copied in once whole
    S.duckdb.build.json    a demo build's status (what it is computing, how far, what is left), which the app shows
    S.duckdb.build.log     the log of a demo build running behind the dashboard
    S.duckdb.build.lock    held by the one process building the demo store
    S.duckdb.shards/       `wif collect --engine ray` shard directories without --out (wif_core.engines.shards),
                           one per command; merged into the store as they finish, kept for a restarted driver

Nothing else writes beside a store, and nothing finds its files through the checkout: the
shipped zoo weights and the app's files are package data of the installed distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

DEFAULT_DB = Path("data/wif.duckdb")  # the CLI's --db and the app's store when WIF_DB is unset
DEMO_DB = Path("data/demo.duckdb")  # what `wif demo` builds and opens
DEFAULT_ZOO_DIR = Path("data/zoo")  # where `wif zoo train` saves and `--zoo-dir` looks first

SideDir = Literal["saes", "results", "clusters", "embeddings", "interventions"]
SIDE_DIRS: tuple[SideDir, ...] = ("saes", "results", "clusters", "embeddings", "interventions")


def beside(store_path: str | Path, kind: SideDir) -> Path:
    """The side directory of ``kind`` beside a store: ``<store>.<kind>``."""
    path = Path(store_path)
    return path.with_name(f"{path.name}.{kind}")


def building(store_path: str | Path) -> Path:
    """Where a store is built before it appears under its own name (``<store>.building``)."""
    path = Path(store_path)
    return path.with_name(f"{path.name}.building")


def demo_file(store_path: str | Path, kind: Literal["parts", "build.json", "build.log", "build.lock"]) -> Path:
    """A demo build's file beside its store: ``<store>.<kind>`` (see the module docstring)."""
    path = Path(store_path)
    return path.with_name(f"{path.name}.{kind}")


def shard_root(store_path: str | Path) -> Path:
    """Where ``--engine ray`` keeps its shard directories when not given ``--out``: ``<store>.shards``."""
    path = Path(store_path)
    return path.with_name(f"{path.name}.shards")


def store_files(store_path: str | Path) -> list[Path]:
    """The store file and those of its side files and directories that exist."""
    path = Path(store_path)
    candidates = [path, path.with_name(path.name + ".wal"), *(beside(path, k) for k in SIDE_DIRS)]
    return [p for p in candidates if p.exists()]


def run_files(store_path: str | Path, run_id: str) -> list[Path]:
    """The files and directories beside a store that belong to one run, those that exist: its SAEs
    (``saes/<run_id>/``), its text embeddings (``embeddings/<run_id>.npy`` and ``.json``) and the cached
    explainer, cluster and intervention results whose document names the run (``results/``, ``clusters/``,
    ``interventions/``)."""
    import json  # here, not at the top: `wif --help` does not pay for it

    path = Path(store_path)
    named: list[Path] = []
    if run_id not in ("", ".", "..") and Path(run_id).name == run_id:  # a plain file name: nothing outside
        named = [beside(path, "saes") / run_id]
        named += [beside(path, "embeddings") / f"{run_id}{ext}" for ext in (".npy", ".json")]
    found = [p for p in named if p.exists()]
    for kind in ("results", "clusters", "interventions"):
        directory = beside(path, kind)
        for doc in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            try:
                if json.loads(doc.read_text()).get("run_id") == run_id:
                    found.append(doc)
            except (OSError, ValueError, AttributeError):  # unreadable or not a result: not this run's
                continue
    return found


def shipped_zoo_dir() -> Path:
    """The zoo models shipped inside the package (read-only; ``wif zoo train`` saves elsewhere)."""
    from importlib.resources import files  # here, not at the top: `wif --help` does not pay for it

    return Path(str(files("wif_core.zoo") / "shipped"))


def app_entry() -> Path:
    """The Streamlit entry script of the installed app (``wif_ui/app.py``)."""
    from importlib.resources import files

    return Path(str(files("wif_ui") / "app.py"))


def page_dir() -> Path:
    """The installed app's page scripts (the checkout's ``pages/``, installed as ``wif_ui.pages``)."""
    from importlib.resources import files

    return Path(str(files("wif_ui.pages")))
