"""Parity: did every cell compute the same segmentation maps as the reference cell on the same inputs?

Records keep a digest and a class histogram per image, not the maps. Equal digests mean equal maps.
Where digests differ, the histograms bound the difference from below: every pixel that changes class
moves one count between two classes, so at least half the L1 distance of the two histograms differs.

The likely cause is named from what the records say about how each cell ran: torch's thread count or
the device changes the order of float reductions, which can flip an argmax where two classes are
nearly tied. A difference that neither explains is an error: that cell computed something else.
"""

from __future__ import annotations

from collections import defaultdict

from bench.results.record import RunRecord


def runtime(record: RunRecord) -> str:
    """What executed the model (records from before the runtime axis ran eager)."""
    return str(record.spec.get("runtime") or "eager")


def reference_cells(records: list[RunRecord], named: str | None = None) -> dict[tuple[str, str], RunRecord]:
    """(model, runtime) → its reference record: the named cell, else sequential at that model and runtime
    (smallest cell id, lowest repeat first, so every cell of a model and runtime is compared with the same
    one). How a runtime compares with eager is each cell's own probe (bench.measure.runtime_parity)."""
    ok = sorted((r for r in records if r.ok and r.outputs), key=lambda r: (r.cell_id, r.repeat_index))
    if named:
        chosen = next((r for r in ok if r.cell_id == named), None)
        if chosen is None:
            raise ValueError(f"parity reference {named!r} is not a finished cell of these records")
        return {(str(r.spec.get("model")), runtime(r)): chosen for r in ok}
    refs: dict[tuple[str, str], RunRecord] = {}
    for r in ok:
        if r.spec.get("strategy") == "sequential":
            refs.setdefault((str(r.spec.get("model")), runtime(r)), r)
    return refs


def parity(records: list[RunRecord], named: str | None = None) -> list[dict]:
    """One row per cell (its first ok repeat) against the reference of its model and runtime; that
    reference itself, or a cell whose runtime has none, against its model's eager reference."""
    refs = reference_cells(records, named)
    firsts: dict[str, RunRecord] = {}
    for r in sorted((r for r in records if r.ok and r.outputs), key=lambda r: r.repeat_index):
        firsts.setdefault(r.cell_id, r)
    rows = []
    for cell_id, record in sorted(firsts.items()):
        model = str(record.spec.get("model"))
        ref = refs.get((model, runtime(record)))
        if ref is None or ref.cell_id == cell_id:  # a runtime's own reference is compared with eager's
            ref = refs.get((model, "eager"))
        if ref is None or ref.cell_id == cell_id:
            continue
        rows.append(compare_outputs(record, ref))
    return rows


def compare_outputs(record: RunRecord, ref: RunRecord) -> dict:
    theirs = {o["id"]: o for o in ref.outputs or []}
    common = [o for o in record.outputs or [] if o["id"] in theirs]
    differing = [(o, theirs[o["id"]]) for o in common if o["digest"] != theirs[o["id"]]["digest"]]
    worst = max((_pixel_bound(a, b) for a, b in differing), default=0.0)
    threads, ref_threads = (record.plan or {}).get("threads"), (ref.plan or {}).get("threads")
    device, ref_device = record.spec.get("device"), ref.spec.get("device")
    causes = []
    if threads != ref_threads:
        causes.append(f"torch threads {threads} vs {ref_threads}")
    if device != ref_device:
        causes.append(f"device {device} vs {ref_device}")
    if runtime(record) != runtime(ref):
        causes.append(f"runtime {runtime(record)} vs {runtime(ref)}")
    explained = not differing or bool(causes)
    return {"cell_id": record.cell_id, "reference": ref.cell_id, "images": len(common),
            "equal": len(common) - len(differing), "equal_share": (len(common) - len(differing)) / len(common)
            if common else None, "differing": len(differing), "min_pixels_differing_share": worst,
            "threads": threads, "reference_threads": ref_threads,
            "cause": ("; ".join(causes) + ": float reduction order") if differing and causes else
            (None if not differing else "unexplained: same threads and device"),
            "error": not explained}


def _pixel_bound(a: dict, b: dict) -> float:
    """Lower bound on the share of pixels whose class differs, from the two class histograms."""
    ha, hb = a.get("histogram") or {}, b.get("histogram") or {}
    l1 = sum(abs(float(ha.get(k, 0)) - float(hb.get(k, 0))) for k in set(ha) | set(hb))
    pixels = float(a.get("width") or 0) * float(a.get("height") or 0)
    return l1 / 2 / pixels if pixels else 0.0


def thread_groups(rows: list[dict]) -> dict[tuple, list[str]]:
    """(cell threads, reference threads) → cells: a line of explanation per group, not per cell."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for row in rows:
        groups[(row["threads"], row["reference_threads"])].append(row["cell_id"])
    return dict(groups)
