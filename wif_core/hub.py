"""The Hugging Face hub: whether it can be reached, asked once and quickly, before anything downloads.

Unreachable, the hub libraries retry each file for most of a minute and end with a message of
their own. Instead wif asks once (the libraries' offline switch, else one request with a short
timeout); when the hub cannot be reached, models and datasets are read from the local cache only,
and what is not there fails at once with one line that says what to use instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from wif_core.errors import InputError

PROBE_SECONDS = 3.0  # one request; a DNS failure or a refused connection answers well before this
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}


def offline_switch() -> str | None:
    """The hub libraries' offline switch that is on (its variable's name), or None.

    The libraries read these variables once, when first imported; they are read again here so that a
    switch turned on later in the same process (a notebook, a test) is honoured too.
    """
    for name in OFFLINE_SWITCHES:
        if os.environ.get(name, "").strip().upper() in _TRUE:
            return name
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else None


def unreachable(timeout: float = PROBE_SECONDS) -> str | None:
    """None when the hub answers now, else why not, as a phrase (``the hub is offline (…)``)."""
    switch = offline_switch()
    if switch:
        return f"the hub is offline ({switch}=1)"
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:  # any HTTP answer, even an error status, means the hub is there
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # the HTTP client raises many types; all mean "not reachable now"
        return f"{constants.ENDPOINT} cannot be reached ({whole_line(exc, 120)})"
    return None


def in_cache(repo_id: str, filename: str = "config.json", revision: str | None = None) -> bool:
    """Whether the local hub cache holds ``filename`` of the model ``repo_id`` (at ``revision``: a branch or tag
    the cache has a ref of, or a commit it has a snapshot of), so loading it offline may work."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)


@contextmanager
def cache_only() -> Iterator[None]:
    """Within the block, the hub libraries read their local caches and make no request (their offline mode)."""
    from huggingface_hub import constants

    patched: list[tuple[object, str, object]] = [(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)]
    # datasets copies the switch when imported: set its copy too if it is loaded (import it before the block,
    # or its copy would keep the value patched here for the rest of the process)
    ds_config = sys.modules.get("datasets.config")
    if ds_config is not None:
        patched += [(ds_config, name, getattr(ds_config, name)) for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")]
    try:
        for module, name, _ in patched:
            setattr(module, name, True)
        yield
    finally:
        for module, name, value in patched:
            setattr(module, name, value)


def whole_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's whole message as one line (a library's message can span several), at most ``limit`` chars."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def not_available(what: str, reason: str, fix: str) -> InputError:
    """The one line for something on the hub that cannot be had now."""
    return InputError(f"{what} is not in the local cache and {reason}; {fix}")
