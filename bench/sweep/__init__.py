"""Sweeps: the grid spec and its expansion, the parent that runs cells in isolation, the forked child,
and A/B rounds of a baseline commit against this tree (interleave)."""
