"""wif: why it failed — failure analysis for language models on multiple-choice benchmarks."""

__version__ = "0.1.0"
