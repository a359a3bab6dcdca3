"""Object-store use of the whole Ray cluster, as `ray memory --stats-only` reads it: one gRPC call to a
live raylet, which gathers every node's plasma store stats (bytes used, spilled). Ray Data's own
statistics give per-operator bytes at the end of a run but no peak, so the sampler reads this at its
interval and the record keeps the series and its peak.

It uses Ray's internal API (the one its CLI uses); a Ray release that moves it makes the reader say
why it is unavailable in the record instead of failing the cell.
"""

from __future__ import annotations


class ObjectStore:
    """Reads cluster-wide object-store bytes; `read()` returns None when unavailable (reason kept)."""

    def __init__(self) -> None:
        self.unavailable: str | None = None  # why there is no reader at all
        self.read_error: str | None = None  # the last failed reading (a raylet going away), readings go on
        self._stub = None
        try:
            import ray
            from ray._private.grpc_utils import init_grpc_channel
            from ray._private.state import state
            from ray.core.generated import node_manager_pb2, node_manager_pb2_grpc

            if not ray.is_initialized():
                raise RuntimeError("Ray is not initialised")
            raylet = next(n for n in state.node_table() if n["Alive"])
            channel = init_grpc_channel(f"{raylet['NodeManagerAddress']}:{raylet['NodeManagerPort']}")
            self._stub = node_manager_pb2_grpc.NodeManagerServiceStub(channel)
            self._request = node_manager_pb2.FormatGlobalMemoryInfoRequest(include_memory_info=False)
        except Exception as err:  # private API: any change in it ends here
            self.unavailable = f"{type(err).__name__}: {err}"

    def read(self) -> dict | None:
        """{"used_bytes", "spilled_bytes"} summed over the cluster's nodes, or None."""
        if self._stub is None:
            return None
        try:
            stats = self._stub.FormatGlobalMemoryInfo(self._request, timeout=5.0).store_stats
        except Exception as err:  # a raylet going away (node kill) must not stop the sampler
            self.read_error = f"{type(err).__name__}: {err}"
            return None
        return {"used_bytes": int(stats.object_store_bytes_used), "spilled_bytes": int(stats.spilled_bytes_total)}
