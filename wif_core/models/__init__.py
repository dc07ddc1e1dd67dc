"""Model loading, continuation scoring and activation capture."""

# Padded tokens per forward batch. On 2 CPU cores ~1024 is fastest (measured in bench/collection.py:
# 1010 tokens/s at 1024 vs 784 at 4096): larger batches spill the activations out of cache. It lives
# here, not in scoring.py, so the CLI can offer it without importing torch.
DEFAULT_MAX_TOKENS = 1024
