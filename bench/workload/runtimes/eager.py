"""`eager`: transformers' module in torch, as it is (the base class's forward); every other runtime's maps
are checked against its."""

from __future__ import annotations

from bench.workload.runtimes.base import Runtime


class Eager(Runtime):
    name = "eager"
