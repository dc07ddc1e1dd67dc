"""Errors a user can act on: one line naming the file or field and the fix."""


class WifError(Exception):
    """A user-facing error; the CLI prints its message as one line and exits 2."""


class StoreError(WifError):
    """The store is missing, of another schema version, not DuckDB, or lacks what was asked for."""


class StoreBusy(StoreError):
    """Another process holds the store: DuckDB lets one process write a file or several read it, never both."""


class InputError(WifError):
    """A malformed input file, an unknown task or model, a bad option value."""


def one_line(exc: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
