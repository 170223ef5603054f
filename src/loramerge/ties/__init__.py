"""TIES and its parts: the streamed exact trim threshold, the numba kernels, elect-and-merge, and DARE."""
