"""What a Parquet file's page headers declare, read before any page is decompressed.

Arrow decompresses each page into a buffer of the size its header declares (`uncompressed_page_size`,
up to 2 GiB), and those headers are not in the footer: a file whose footer is honest about its columns
but whose pages declare gigabytes would be allocated before any count of segbench's could stop it. So
the side-table check walks every column chunk's page headers first and sums what they declare.

pyarrow exposes no page headers, so this reads the Thrift compact protocol itself: only the two sizes
are kept, and everything else in a header is skipped by type, within bounds (header bytes, nesting,
list lengths) that a hostile file cannot widen.
"""

from __future__ import annotations

from typing import BinaryIO

import pyarrow.parquet as pq

MAX_HEADER_BYTES = 1 << 20  # a page header segbench writes is under 100 bytes; Arrow's own limit is 16 MiB
# A side table at its row bound (MAX_TABLE_ROWS, 4096-row groups of ~10 columns) has ~250,000 pages; the
# walk takes microseconds a page, so this bounds it to seconds whatever a file says.
MAX_PAGES = 1_000_000
_MAX_NESTING = 16

# Thrift compact protocol element types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
_UNCOMPRESSED_SIZE, _COMPRESSED_SIZE = 2, 3  # PageHeader's field ids


class BadPages(ValueError):
    """The page headers cannot be walked: what the file is cannot be known before decoding it."""


def declared_bytes(handle: BinaryIO, footer: pq.FileMetaData, file_size: int) -> int:
    """The sum of `uncompressed_page_size` over every page of every column chunk: what decompressing the
    whole file allocates. BadPages if a header is malformed, a page runs outside its chunk or the file."""
    total, pages = 0, [0]
    for g in range(footer.num_row_groups):
        group = footer.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
                start = min(start, chunk.dictionary_page_offset)
            end = start + chunk.total_compressed_size
            if start < 0 or chunk.total_compressed_size < 0 or end > file_size:
                raise BadPages(f"column chunk {g}/{c} lies outside the file")
            total += _chunk_bytes(handle, start, end, f"{g}/{c}", pages)
    return total


def _chunk_bytes(handle: BinaryIO, position: int, end: int, where: str, pages: list[int]) -> int:
    total = 0
    while position < end:
        pages[0] += 1
        if pages[0] > MAX_PAGES:
            raise BadPages(f"more than {MAX_PAGES} pages")
        sizes, length = _header(handle, position, end, where)
        uncompressed, compressed = sizes.get(_UNCOMPRESSED_SIZE), sizes.get(_COMPRESSED_SIZE)
        if uncompressed is None or compressed is None or uncompressed < 0 or compressed < 0:
            raise BadPages(f"a page header of column chunk {where} has no valid sizes")
        total += uncompressed
        position += length + compressed
    if position != end:
        raise BadPages(f"the pages of column chunk {where} run past its end")
    return total


def _header(handle: BinaryIO, position: int, end: int, where: str) -> tuple[dict[int, int], int]:
    """The sizes in the page header at `position`, and its length: read in a small window first (headers
    are tens of bytes), widened while the header runs past it, up to the chunk's end or MAX_HEADER_BYTES."""
    window = 4096
    while True:
        handle.seek(position)
        reader = _Compact(handle.read(min(window, end - position)))
        try:
            return reader.page_sizes(), reader.position
        except IndexError:
            if window >= min(MAX_HEADER_BYTES, end - position):
                raise BadPages(f"a page header of column chunk {where} runs past its chunk or "
                               f"{MAX_HEADER_BYTES} bytes") from None
            window *= 16


class _Compact:
    """A reader of the Thrift compact protocol over bytes in memory; IndexError when they run out."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def page_sizes(self) -> dict[int, int]:
        """The PageHeader struct at the start: its top-level i32 fields by id (the rest skipped)."""
        found: dict[int, int] = {}
        for field, kind in self._fields():
            if kind == _I32 and field in (_UNCOMPRESSED_SIZE, _COMPRESSED_SIZE):
                found[field] = self._signed()
            else:
                self._skip(kind, 1)
        return found

    def _fields(self):
        field = 0
        while (head := self._byte()) != 0:
            delta, kind = head >> 4, head & 0x0F
            field = field + delta if delta else self._signed()
            yield field, kind

    def _byte(self) -> int:
        value = self.data[self.position]
        self.position += 1
        return value

    def _varint(self) -> int:
        value = shift = 0
        while True:
            byte = self._byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise BadPages("a page header holds a varint longer than 64 bits")

    def _signed(self) -> int:
        value = self._varint()
        return (value >> 1) ^ -(value & 1)  # zigzag

    def _skip(self, kind: int, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise BadPages("a page header nested deeper than any is")
        if kind in (_TRUE, _FALSE):
            return
        if kind == _BYTE:
            self.position += 1
        elif kind in (_I16, _I32, _I64):
            self._varint()
        elif kind == _DOUBLE:
            self.position += 8
        elif kind == _BINARY:
            length = self._varint()  # first: `position += _varint()` would read position before the varint
            self.position += length
        elif kind in (_LIST, _SET):
            head = self._byte()
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self._varint()
            if size > len(self.data) - self.position:  # every element takes at least a byte
                raise IndexError("a list longer than its header")
            for _ in range(size):
                self._skip(_BYTE if element in (_TRUE, _FALSE) else element, depth + 1)
        elif kind == _MAP:
            size = self._varint()
            if size:
                if 2 * size > len(self.data) - self.position:
                    raise IndexError("a map longer than its header")
                types = self._byte()
                for _ in range(size):
                    self._skip(types >> 4, depth + 1)
                    self._skip(types & 0x0F, depth + 1)
        elif kind == _STRUCT:
            for _, inner in self._fields():
                self._skip(inner, depth + 1)
        else:
            raise BadPages(f"a page header holds an unknown Thrift type ({kind})")
        if self.position > len(self.data):
            raise IndexError("past the end")
