"""The DuckDB store: schema, writes, reads. The only place in wif with SQL."""

from wif_core.store.schema import SCHEMA_VERSION
from wif_core.store.store import AttributionRow, OutcomeRow, RunInfo, Store

__all__ = ["SCHEMA_VERSION", "AttributionRow", "OutcomeRow", "RunInfo", "Store"]
