"""The page-header walk: on honest files it agrees with the footer, and on any bytes at all it either
answers or says the pages cannot be walked (never another error, never a long loop)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.results.parquet_pages import BadPages, declared_bytes


def _file(**write) -> bytes:
    table = pa.table({"id": [f"img-{i}" for i in range(3000)], "n": list(range(3000)),
                      "hist": [[1, 2, 3]] * 3000, "ok": [True, False] * 1500})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=1000, data_page_size=4096, **write)
    return buffer.getvalue()


@pytest.mark.parametrize("write", [{}, {"compression": "none"}, {"use_dictionary": False},
                                   {"write_statistics": False}, {"write_page_checksum": True},
                                   {"data_page_version": "2.0"}])
def test_honest_files_declare_what_their_footer_says_less_the_headers(write):
    data = _file(**write)
    footer = pq.ParquetFile(io.BytesIO(data)).metadata
    stated = sum(footer.row_group(g).column(c).total_uncompressed_size
                 for g in range(footer.num_row_groups) for c in range(footer.num_columns))
    declared = declared_bytes(io.BytesIO(data), footer, len(data))
    assert 0.9 * stated < declared <= stated  # the footer counts the headers too


HONEST = _file()
FOOTER = pq.ParquetFile(io.BytesIO(HONEST)).metadata


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(4, len(HONEST) - 9), st.binary(min_size=1, max_size=8)), max_size=6))
def test_any_bytes_are_walked_or_refused_never_crashed_on(edits):
    data = bytearray(HONEST)
    for at, new in edits:
        data[at:at + len(new)] = new
    try:
        declared = declared_bytes(io.BytesIO(bytes(data)), FOOTER, len(data))
    except BadPages:
        return
    assert declared >= 0
