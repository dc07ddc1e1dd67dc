"""The choices the ``wif cluster`` command offers, in a module light enough to import at CLI start."""

SPACES = ("activations", "sae", "attribution", "text")
MODES = ("failures", "all")
ALGORITHMS = ("kmeans", "hdbscan")
MAPS = ("pca", "umap")
