"""The numpy engine: plans, forward and backward passes, losses, memory slabs and the in-process API."""
