"""Measuring one cell: the runner, its metrics and statistics, the utilisation samplers, fault injection,
and the CPU/GPU budget of its workers."""
