"""Measuring one cell: the runner, its metrics, the utilisation samplers, the stopping rules and the
cell's hard time limit."""
