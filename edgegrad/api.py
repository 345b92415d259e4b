"""``edgegrad.gradients``: the in-process entry point (placeholder until the engine lands)."""
from __future__ import annotations
def gradients(*args, **kwargs):
    raise NotImplementedError
