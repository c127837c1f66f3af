"""Parquet page checksums: every page of an input that carries a CRC is checked before it is read.

A Parquet page header may hold the CRC-32 of the page's bytes as stored (optional in the
format: pyarrow writes it with ``write_page_checksum=True``, and veille's own Parquet outputs
carry it, :func:`write_options`). polars' reader ignores it; pyarrow checks it while it decodes
(``page_checksum_verification=True``) but reads a telemetry file several times slower than
polars (1.3 to 2.4 s against 0.44 s for 10 million rows), and its metadata accessors abort the
whole process on some damaged footers (an uncaught C++ exception). So :func:`verify` reads the
footer and walks the page headers itself — the Thrift compact protocol, every length, count
and depth bounded by the file, only the few fields it needs kept; compiled in
:mod:`engine.parquet_walk` — and checks each CRC with zlib before polars reads the file: about
0.05 s for a 10-million-row file of 3,132 pages (0.29 s with the walk in Python).

What it cannot see: a page without a CRC (most writers do not write them, so a bit flipped in
an uncompressed page of their files changes a value silently), and a page header or the
footer, which no CRC covers (one that cannot be walked ends the check; the reader then refuses
the file or reads it as before).
"""
from __future__ import annotations

import contextlib
import mmap
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError


def write_options() -> dict:
    """What veille's Parquet writers pass to ``polars.DataFrame.write_parquet``: pyarrow's
    writer, with a CRC in every page header (a new dict each time: polars fills it in)."""
    return {"use_pyarrow": True, "pyarrow_options": {"write_page_checksum": True}}


_MAX_DEPTH = 32          # nesting of Thrift structs and lists in a header or the footer


class _Unwalkable(Exception):
    """A header or footer that cannot be walked (truncated, an unexpected type, too deep)."""


def _varint(b, i: int) -> tuple[int, int]:
    shift = value = 0
    for _ in range(10):
        x = b[i]
        i += 1
        value |= (x & 0x7F) << shift
        if not x & 0x80:
            return value, i
        shift += 7
    raise _Unwalkable("a varint longer than 10 bytes")


def _list_header(b, i: int) -> tuple[int, int, int]:
    """A list's (or set's) length, its elements' kind, and where its first element starts;
    a length no file of this size can hold is unwalkable."""
    head = b[i]
    i += 1
    n, elem = head >> 4, head & 0x0F
    if n == 15:
        n, i = _varint(b, i)
    if n > len(b) - i:
        raise _Unwalkable("a list longer than the file")
    return n, elem, i


def _skip(b, i: int, kind: int, depth: int, *, in_list: bool = False) -> int:
    """The position after a Thrift compact value of type ``kind`` starting at ``i``."""
    if depth > _MAX_DEPTH:
        raise _Unwalkable("nested too deep")
    if kind in (1, 2):                      # a bool: in the field header, or a byte in a list
        return i + 1 if in_list else i
    if kind == 3:
        return i + 1
    if kind in (4, 5, 6):
        return _varint(b, i)[1]
    if kind == 7:
        return i + 8
    if kind == 8:
        n, i = _varint(b, i)
        return i + n
    if kind in (9, 10):                     # list, set: every element takes a byte or more
        n, elem, i = _list_header(b, i)
        for _ in range(n):
            i = _skip(b, i, elem, depth + 1, in_list=True)
        return i
    if kind == 11:                          # map
        n, i = _varint(b, i)
        if n:
            if n > len(b) - i:
                raise _Unwalkable("a map longer than the file")
            kv = b[i]
            i += 1
            for _ in range(n):
                i = _skip(b, i, kv >> 4, depth + 1, in_list=True)
                i = _skip(b, i, kv & 0x0F, depth + 1, in_list=True)
        return i
    if kind == 12:                          # struct: fields until a stop byte
        while True:
            head = b[i]
            i += 1
            if head == 0:
                return i
            if head >> 4 == 0:
                i = _varint(b, i)[1]        # a field id written in full
            i = _skip(b, i, head & 0x0F, depth + 1)
    raise _Unwalkable(f"unknown Thrift type {kind}")


def _field_id(b, i: int, head: int, last: int) -> tuple[int, int]:
    """The id of the field whose header byte is ``head`` (a delta from ``last``, or in full)."""
    if head >> 4:
        return last + (head >> 4), i
    n, i = _varint(b, i)
    return (n >> 1) ^ -(n & 1), i


def _struct(wanted: dict):
    """A reader of a struct keeping the fields of ``wanted`` (id -> reader) and skipping the
    others: ``{id: value}``."""
    def read(b, i: int, kind: int, depth: int):
        if kind != 12 or depth > _MAX_DEPTH:
            raise _Unwalkable("not a struct where one is expected, or nested too deep")
        out, field = {}, 0
        while True:
            head = b[i]
            i += 1
            if head == 0:
                return out, i
            field, i = _field_id(b, i, head, field)
            reader = wanted.get(field)
            if reader is None:
                i = _skip(b, i, head & 0x0F, depth + 1)
            else:
                out[field], i = reader(b, i, head & 0x0F, depth + 1)
    return read


def _list(element):
    """A reader of a list whose elements ``element`` reads."""
    def read(b, i: int, kind: int, depth: int):
        if kind != 9:
            raise _Unwalkable("not a list where one is expected")
        n, elem, i = _list_header(b, i)
        out = []
        for _ in range(n):
            value, i = element(b, i, elem, depth + 1)
            out.append(value)
        return out, i
    return read


def _int(b, i: int, kind: int, depth: int):
    if kind not in (4, 5, 6):
        raise _Unwalkable("not an integer where one is expected")
    n, i = _varint(b, i)
    return (n >> 1) ^ -(n & 1), i


def _text(b, i: int, kind: int, depth: int):
    if kind != 8:
        raise _Unwalkable("not a string where one is expected")
    n, i = _varint(b, i)
    if n > len(b) - i:
        raise _Unwalkable("a string longer than the file")
    return bytes(b[i:i + n]).decode("utf-8", "replace"), i + n


#: a page header: compressed_page_size (3) and crc (4)
_PAGE_HEADER = _struct({3: _int, 4: _int})
#: the footer (FileMetaData): row_groups (4) -> columns (1) -> file_path (1), meta_data (3)
#: -> path_in_schema (3), total_compressed_size (7), data_page_offset (9),
#: dictionary_page_offset (11)
_FOOTER = _struct({4: _list(_struct({1: _list(_struct({
    1: _text, 3: _struct({3: _list(_text), 7: _int, 9: _int, 11: _int})}))}))})


def _page_header(b, i: int) -> tuple[int, int | None, int]:
    """(the page's stored size, its CRC or None, the position after the header)."""
    fields, i = _PAGE_HEADER(b, i, 12, 0)
    size = fields.get(3)
    if size is None or size < 0:
        raise _Unwalkable("a page header without a size")
    crc = fields.get(4)
    return size, None if crc is None else crc & 0xFFFFFFFF, i


def _chunks(b) -> list[tuple]:
    """(row group, column name, first byte, end) of each column chunk of the file ``b`` (a
    mapped Parquet file), read from its footer; none when the footer cannot be walked or is
    encrypted (the reader then says why)."""
    n = len(b)
    if n < 12 or b[n - 4:n] != b"PAR1":
        return []
    size = int.from_bytes(b[n - 8:n - 4], "little")
    if size > n - 8:
        return []
    try:
        footer, _ = _FOOTER(b, n - 8 - size, 12, 0)
    except (_Unwalkable, IndexError):
        return []
    out = []
    for g, group in enumerate(footer.get(4, [])):
        for chunk in group.get(1, []):
            meta = chunk.get(3)
            if meta is None or 1 in chunk:  # its pages in another file: not read by veille
                continue
            offsets = [o for o in (meta.get(11), meta.get(9)) if o and o > 0]
            total = meta.get(7)
            if offsets and total and total > 0:
                start = min(offsets)
                out.append((g, ".".join(meta.get(3, [])), start, min(start + total, n)))
    return out


#: page headers walked per call of the compiled walk
_WALK_PAGES = 4096


def warmup_walk() -> None:
    """Compile (or load) the page walk with the argument types :func:`pages` gives it."""
    from .parquet_walk import warmup

    warmup()


def pages(path: str | Path):
    """Each page of the Parquet file at ``path`` whose header can be walked: (row group,
    column, page number in its column chunk, its CRC or None, where its bytes start in the
    file, its bytes as stored: a memoryview, valid until the next page)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return
        # numba is imported here, not with the module: the command line imports this one
        # before it can word an error of the kernel cache's folder check
        from .parquet_walk import STUCK, buffers, walk

        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as b, memoryview(b) as view:
            arr = np.frombuffer(view, np.uint8)
            bodies, sizes, crcs, has = buf = buffers(_WALK_PAGES)
            try:
                for group, column, i, end in _chunks(b):
                    page = 0
                    while i < end:
                        k, stop, why = walk(arr, np.int64(i), np.int64(end), *buf)
                        found = [(int(bodies[j]), int(sizes[j]),
                                  int(crcs[j]) if has[j] else None) for j in range(k)]
                        i = int(stop)
                        if why == STUCK:
                            try:
                                size, crc, body = _page_header(b, i)
                            except (_Unwalkable, IndexError):
                                size = None     # a header no CRC covers: the reader judges it
                            if size is None or body + size > len(b):
                                i = end
                            else:
                                found.append((body, size, crc))
                                i = body + size
                        for body, size, crc in found:
                            page += 1
                            data = view[body:body + size]
                            try:
                                yield group, column, page, crc, body, data
                            finally:
                                data.release()
            finally:
                del arr


def verify(path: str | Path) -> int:
    """Check the CRC of every page of the Parquet file at ``path`` that has one; the number of
    pages checked. A page whose bytes differ from its CRC raises :class:`InputError` naming
    the file, the column, the row group and the page."""
    checked = 0
    with contextlib.closing(pages(path)) as walk:     # the file closed at once, even on error
        for group, column, page, crc, _, data in walk:
            if crc is None:
                continue
            checked += 1
            if zlib.crc32(data) != crc:
                raise InputError(
                    f"page {page} of column '{column}' (row group {group}) does not match its "
                    "checksum: the file changed after it was written (a bit flipped on a "
                    "disk, in memory or in a transfer); nothing was read from it. Ask for the "
                    "file again.", path=str(path))
    return checked
