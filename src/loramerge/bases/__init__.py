"""The per-module bases of an adapter set: SVD, CUR and Core decompositions, their coefficient spaces, the
decomposition cache and the geometry analyses (overlap, energy)."""
