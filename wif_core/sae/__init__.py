"""Sparse autoencoders: loading (sae-lens releases, local directories), training on a run's
per-token activations, sparse codes of a run's items, and feature diffs between failures and
successes.

Importing this package is cheap: sae-lens (several seconds to import) is imported inside the
functions that need it, never here.
"""

from wif_core.sae.paths import CODES_FILE, METRICS_FILE, SaeInfo, available, sae_dir, sae_info, sae_root

__all__ = ["CODES_FILE", "METRICS_FILE", "SaeInfo", "available", "sae_dir", "sae_info", "sae_root"]
