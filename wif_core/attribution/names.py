"""The attribution methods by name, light enough to import when the CLI starts (no torch).

``tests/test_attribution.py`` checks these against the registry in ``methods.py``.
"""

METHOD_NAMES = ("grad_x_input", "integrated_gradients", "occlusion", "attnlrp", "cp_lrp")
DEFAULT_METHOD = "attnlrp"  # the most faithful method within the batch time budget (docs/BENCHMARKS.md)
