"""The DuckDB store: schema, writes, reads. The only place in wif with SQL."""

from wif_core.store.schema import SCHEMA_VERSION
from wif_core.store.store import LM_KIND, AttributionRow, OutcomeRow, RunInfo, RunKind, Store, SuspectRow

__all__ = ["LM_KIND", "SCHEMA_VERSION", "AttributionRow", "OutcomeRow", "RunInfo", "RunKind", "Store", "SuspectRow"]
