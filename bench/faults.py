"""Fault injection: kill a worker mid-cell, then measure whether and how fast the cell recovered.

Syntax: `KIND@batch=N[,target=I]`, fired once N batches have completed. Kinds:
- `kill-actor`: `ray.kill` actor I (the actor strategies); Ray restarts it and retries its unanswered calls.
- `kill-node`: SIGKILL the raylet of the node that hosts actor I — the node is gone, with every worker
  on it, as when a machine crashes. Needs a multi-node cluster (`--ray-address`) and the actor on
  another node than the driver; Ray restarts the actor on a live node and retries its calls.
- `kill-driver`: SIGKILL the cell's own process, as the kernel's OOM killer would; a sweep must record
  the cell as crashed and go on.
Pure parsing and analysis here; the strategy (or the runner, for the driver) performs the kill.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("kill-actor", "kill-node", "kill-driver")
ACTOR_KINDS = ("kill-actor", "kill-node")  # aimed at actor I; need an actor strategy


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str
    at_batch: int
    target: int = 0

    @classmethod
    def parse(cls, text: str) -> Fault:
        kind, _, rest = text.partition("@")
        if kind not in KINDS:
            raise FaultSpecError(f"unknown fault {kind!r}; choose from {', '.join(KINDS)}")
        fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
        unknown = set(fields) - {"batch", "target"}
        if unknown or "batch" not in fields:
            raise FaultSpecError(f"fault {text!r}: expected {kind}@batch=N[,target=I]")
        try:
            fault = cls(kind, int(fields["batch"]), int(fields.get("target", 0)))
        except ValueError:
            raise FaultSpecError(f"fault {text!r}: batch and target must be integers") from None
        if fault.at_batch < 1 or fault.target < 0:
            raise FaultSpecError(f"fault {text!r}: batch must be ≥ 1 and target ≥ 0")
        return fault


def recovery(events: list[dict], injected_at: float, target_worker: str) -> dict:
    """From batch events (dicts with worker/node/pid/started/completed/images, times since run start):
    seconds until the killed worker completed a batch again *as a new process* (another pid or node
    than the one that started batches before the fault, so results already on their way from the old
    process do not count), and throughput in that gap relative to before the fault."""
    old = [e for e in events if e["worker"] == target_worker and e["started"] <= injected_at]
    identity = (old[-1]["node"], old[-1]["pid"]) if old else None
    after = sorted((e for e in events if e["completed"] > injected_at), key=lambda e: e["completed"])
    back = next((e["completed"] for e in after
                 if e["worker"] == target_worker and (e["node"], e["pid"]) != identity), None)
    before = sorted((e for e in events if e["completed"] <= injected_at), key=lambda e: e["completed"])
    rate_before = None
    if len(before) > 1:
        span = before[-1]["completed"] - before[0]["completed"]
        rate_before = sum(e["images"] for e in before[1:]) / span if span > 0 else None
    rate_during = None
    if back is not None and back > injected_at:
        rate_during = sum(e["images"] for e in after if e["completed"] <= back) / (back - injected_at)
    return {"recovered": back is not None, "recovery_s": None if back is None else back - injected_at,
            "throughput_before": rate_before, "throughput_during_recovery": rate_during,
            "dip": None if not (rate_before and rate_during is not None) else 1 - rate_during / rate_before}
