"""The machine and the cluster under a cell: the host probe, Ray sessions, network isolation."""
