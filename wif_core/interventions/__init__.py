"""Causal checks: does an explanation change what the model does? (``steering``: directions added to the
residual stream; ``causal``: flip and broken rates against matched random controls, the causal score.)"""
