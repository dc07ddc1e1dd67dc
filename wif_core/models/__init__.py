"""Model loading, continuation scoring and activation capture."""
