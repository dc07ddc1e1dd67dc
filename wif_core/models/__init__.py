"""Model loading, continuation scoring and activation capture."""

# Padded tokens per forward batch. On 2 CPU cores ~1024 is fastest (measured in bench/collection.py:
# 1010 tokens/s at 1024 vs 784 at 4096): larger batches spill the activations out of cache. It lives
# here, not in scoring.py, so the CLI can offer it without importing torch.
DEFAULT_MAX_TOKENS = 1024


def check_max_length_value(max_length: object) -> None:
    """Refuse a context length that no model could score with (before anything is loaded)."""
    from wif_core.errors import InputError

    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise InputError(f"--max-length {max_length!r}: give a number of tokens of at least 2")
