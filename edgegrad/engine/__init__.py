"""The engine: plans, the kernel seam (numpy or numba passes), losses, memory slabs and the in-process API."""
