"""Inference strategies: one module each, registered by name here. A new strategy is one module and
one line below. Modules are imported on first use (Ray is heavy), and this file imports nothing from
`bench`, so `bench` can reach strategies through the registry without an import cycle.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strategies.base import Strategy

_REGISTRY = {
    "sequential": "strategies.sequential:SequentialStrategy",
    "tasks": "strategies.tasks:TasksStrategy",
    "actors": "strategies.actors:ActorsStrategy",
    "actor_pool": "strategies.actor_pool:ActorPoolStrategy",
    "actor_pool_map": "strategies.actor_pool_map:ActorPoolMapStrategy",
    "ray_data": "strategies.ray_data:RayDataStrategy",
}
REFERENCE = "sequential"  # the strategy others are compared with (speed-up, parity)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> type[Strategy]:
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


@functools.cache
def option_owners() -> dict[str, tuple[str, ...]]:
    """RunSpec fields that only some strategies honour → those strategies."""
    owners: dict[str, tuple[str, ...]] = {}
    for name in names():
        for option in get(name).options:
            owners[option] = (*owners.get(option, ()), name)
    return owners

