"""The exactly-once check — every input came back once: none twice, none missing — read from the
outputs table's id column, without a Python set of every id.

Pass 1 hashes each chunk of ids to 64 bits (pandas' `hash_array`: SipHash with a fixed key, the same in
every process) and sorts them: 8 bytes per image, for at most `PARTITION_ROWS` images at a time (a larger
table takes a pass per share of the hash range). Equal neighbours are candidates: a true duplicate, or
two ids whose hashes collide (about n²/2⁶⁵ of a chance: 3e-8 at a million). A last pass reads the ids
again and counts exactly those whose hash is a candidate, so the verdict is exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa

from bench.results.sidefiles import hash_ids, partitions
from bench.workload.images import split_pass

EXAMPLES = 10  # duplicate ids named in the record


def check(id_chunks: Callable[[], Iterable[pa.Array]], expected: int | None, rows: int = 0) -> dict:
    """`id_chunks()` yields the ids in chunks (called once per pass); `rows`, the table's row count,
    decides the passes. Returns the counts the record keeps: ids returned, distinct ids seen, ids returned
    more than once (and the first of them), and whether the expected count came back exactly once."""
    parts, returned, found = partitions(rows), 0, [np.empty(0, dtype=np.uint64)]
    for part in range(parts):
        share = [h[h % parts == part] for h in map(hash_ids, id_chunks())]
        ordered = np.sort(np.concatenate(share)) if share else np.empty(0, dtype=np.uint64)
        returned += int(ordered.size)
        found.append(np.unique(ordered[1:][ordered[1:] == ordered[:-1]]))
    candidates = np.concatenate(found)
    exact: Counter[str] = Counter()
    if candidates.size:
        for chunk in id_chunks():
            values = chunk.to_numpy(zero_copy_only=False)
            exact.update(values[np.isin(hash_ids(values), candidates)].tolist())
    repeated = sorted(i for i, n in exact.items() if n > 1)
    seen = returned - sum(n - 1 for n in exact.values())
    return {"returned": returned, "inputs_seen": seen, "duplicates": len(repeated),
            "duplicate_examples": repeated[:EXAMPLES],
            "exactly_once": not repeated and (expected is None or seen == expected)}


def passes_agree(chunks: Iterable[pa.RecordBatch], per_pass: int | None = None, tail_images: int = 0) -> dict:
    """A cycled run's inputs (ids `<id>#<pass>`, bench.workload.images.pass_id): every image must give
    the same map on every pass that ran it at the same forward size (Ray Data regroups rows, and a
    forward of another size may round differently: bench.results.parity says so across cells). One
    digest per (image, forward size) is held: the sample set's size, not the run's.

    With `per_pass` (the source's size), every pass but the last must have come back whole: a strategy
    that reads ahead (`tail_images`: Ray Data's credit) may also leave the passes that read-ahead spans
    short, since what was read but not returned when the run stopped is dropped."""
    first: dict[tuple[str, int | None], str] = {}
    passes, mismatched, count = 0, [], 0
    rows: Counter[int] = Counter()
    for chunk in chunks:
        ids, oks = chunk.column("id").to_pylist(), chunk.column("ok").to_pylist()
        digests, sizes = chunk.column("digest").to_pylist(), chunk.column("forward_images").to_pylist()
        for image_id, ok, digest, size in zip(ids, oks, digests, sizes, strict=True):
            base, number = split_pass(image_id)
            passes = max(passes, (number or 0) + 1)
            rows[number or 0] += 1
            if not ok:
                continue
            seen = first.setdefault((base, size), digest)
            if seen != digest:
                count += 1
                if len(mismatched) < EXAMPLES:
                    mismatched.append(base)
    spanned = -(-tail_images // per_pass) + 1 if per_pass else passes  # the last passes, possibly short
    short = [p for p in range(max(0, passes - spanned)) if rows[p] != per_pass] if per_pass else []
    return {"passes": passes, "images": len({base for base, _ in first}), "pass_mismatches": count,
            "pass_mismatch_examples": mismatched, "short_passes": short[:EXAMPLES]}
