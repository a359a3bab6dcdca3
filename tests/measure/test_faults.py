"""Fault analysis: when a killed worker counts as recovered, and the throughput dip meanwhile."""

from __future__ import annotations

from bench.faults import recovery


def test_recovery_counts_only_batches_from_the_restarted_process():
    """A result the killed process had already sent arrives after the fault: it is not the recovery.
    The first batch from a new process (another pid or node) is."""
    def event(worker, node, pid, started, completed):
        return {"worker": worker, "node": node, "pid": pid, "started": started, "completed": completed, "images": 2}

    events = [event("actor-0", "n1", 10, 0.0, 1.0), event("actor-1", "n2", 20, 0.0, 1.0),
              event("actor-0", "n1", 10, 1.0, 2.0), event("actor-1", "n2", 20, 1.0, 2.0),
              event("actor-0", "n1", 10, 2.0, 6.0),  # sent before the kill at 2.5, received late
              event("actor-1", "n2", 20, 2.0, 3.0),
              event("actor-0", "n3", 11, 9.0, 10.5)]  # the restarted actor, on another node
    result = recovery(events, 2.5, "actor-0")
    assert result["recovered"] and result["recovery_s"] == 8.0
    assert result["throughput_before"] == 6.0  # 3 more batches of 2 in the second between the first and last
    assert result["throughput_during_recovery"] == 6 / 8.0
    assert recovery(events[:-1], 2.5, "actor-0")["recovered"] is False
