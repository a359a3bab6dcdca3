"""The inputs a cell feeds its strategy (strategies.feed): the source once, or cycled by pass until
stopped, each pass cut into the same batches; and the check that a repeated image keeps its map."""

from __future__ import annotations

import itertools

import pyarrow as pa

from bench.measure.exactly_once import passes_agree
from bench.workload.images import SyntheticSource, split_pass
from strategies.feed import Feed


def _ids(batch) -> list[str]:
    return [image.image_id for image in batch]


def test_a_fixed_job_feeds_the_source_once_whatever_the_prefetch_budget():
    source = SyntheticSource(7, scale=0.05)
    for budget in (1, 10**9):  # the first batch only, or everything, read before the clock
        feed = Feed(source, 3, cycle=False, cluster=False, budget=budget)
        assert [len(b) for _, b in feed] == [3, 3, 1]
        assert feed.images_fed == 7


def test_a_cycled_source_repeats_the_same_batches_named_by_pass_until_stopped():
    source = SyntheticSource(5, scale=0.05)
    for budget in (1, 10**9):  # re-read each pass, or replayed from memory
        feed = Feed(source, 2, cycle=True, cluster=False, budget=budget)
        batches = [b for _, b in itertools.islice(feed, 7)]
        assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1, 2]  # every pass cut the same way
        assert _ids(batches[3]) == ["synthetic-0-000000#1", "synthetic-0-000001#1"]
        assert batches[3][0].data == batches[0][0].data
        feed.stop()
        assert list(feed) == [] and feed.images_fed == 12


def test_cluster_input_cycles_keys_and_the_worker_names_the_pass():
    feed = Feed(SyntheticSource(3, scale=0.05), 2, cycle=True, cluster=True, budget=0)
    keys = [b for _, b in itertools.islice(feed, 3)]
    assert [k.keys for k in keys] == [(0, 1), (2,), (0, 1)]
    assert _ids(keys[2].load()) == ["synthetic-0-000000#1", "synthetic-0-000001#1"]


def test_pass_ids_split_back_even_when_a_name_holds_the_mark():
    assert split_pass("a/b#c.jpg#12") == ("a/b#c.jpg", 12) and split_pass("plain") == ("plain", None)


def _outputs(rows: list[tuple]) -> list[pa.RecordBatch]:
    names = ["id", "ok", "digest", "forward_images"]
    return [pa.RecordBatch.from_pylist([dict(zip(names, row, strict=True)) for row in rows])]


def test_a_repeated_image_must_keep_its_map_at_the_same_forward_size():
    same = passes_agree(_outputs([("x#0", True, "d1", 2), ("x#1", True, "d1", 2), ("y#0", False, None, None),
                                  ("x#2", True, "d9", 3)]))  # another forward size may round otherwise
    assert same["passes"] == 3 and same["images"] == 1 and same["pass_mismatches"] == 0
    changed = passes_agree(_outputs([("x#0", True, "d1", 2), ("x#1", True, "d2", 2)]))
    assert changed["pass_mismatches"] == 1 and changed["pass_mismatch_examples"] == ["x"]


def test_every_pass_but_the_last_must_come_back_whole():
    rows = [("a#0", True, "d", 1), ("b#0", True, "e", 1), ("a#1", True, "d", 1), ("a#2", True, "d", 1)]
    lost = passes_agree(_outputs(rows), per_pass=2)
    assert lost["short_passes"] == [1]
    assert passes_agree(_outputs(rows), per_pass=2, tail_images=2)["short_passes"] == []  # read-ahead spans it
