"""Inference strategies: one module each, registered by name here (imported lazily: Ray is heavy)."""

from __future__ import annotations

import importlib

from strategies.base import Strategy

_REGISTRY = {
    "sequential": "strategies.sequential:SequentialStrategy",
    "tasks": "strategies.tasks:TasksStrategy",
    "actors": "strategies.actors:ActorsStrategy",
    "actor_pool": "strategies.actor_pool:ActorPoolStrategy",
    "ray_data": "strategies.ray_data:RayDataStrategy",
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> type[Strategy]:
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)
