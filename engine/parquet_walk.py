"""The page headers of a Parquet column chunk, walked in numba for
:func:`engine.parquet_checksums.pages`.

The walk of :func:`engine.parquet_checksums._page_header`, compiled: in Python it cost about
70 µs a page, 0.25 s for a 10-million-row file, before anything else could start. Every read
is bounded by the file. Where the compiled walk cannot go on (-1: past the end, a count larger
than the file, a varint of more than 9 bytes, nesting too deep), the Python walk takes that
header and says whether it can be walked at all, so the pages found are always the Python
walk's (a hypothesis test holds them equal on damaged files).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .config import JIT
from .parquet_checksums import _MAX_DEPTH


@njit(**JIT)
def _nb_varint(b, i):
    """(value, position after it) of the varint at ``i``; (-1, -1) past the end or when it
    has more than 9 bytes (63 bits; the Python walk decides those)."""
    value = np.int64(0)
    for k in range(9):
        if i >= b.size:
            return np.int64(-1), np.int64(-1)
        x = np.int64(b[i])
        i += 1
        value |= (x & 0x7F) << (7 * k)
        if not x & 0x80:
            return value, i
    return np.int64(-1), np.int64(-1)


_LIST, _MAP, _STRUCT = 0, 1, 2


@njit(**JIT)
def _nb_skip(b, i, kind, depth, in_list):
    """The position after the Thrift compact value of type ``kind`` at ``i`` (-1: unwalkable),
    as :func:`engine.parquet_checksums._skip` (without recursion, which numba cannot cache:
    the containers still open are a stack)."""
    what = np.empty(_MAX_DEPTH + 2, np.int64)       # each open container: its type,
    left = np.empty(_MAX_DEPTH + 2, np.int64)       # the values still to skip in it,
    elem = np.empty(_MAX_DEPTH + 2, np.int64)       # their kind (a map's key and value kinds),
    level = np.empty(_MAX_DEPTH + 2, np.int64)      # and its depth
    sp = 0
    while True:
        # -- skip one value of type ``kind`` at ``i`` (open it, for a container) --
        if depth > _MAX_DEPTH or i < 0:
            return np.int64(-1)
        if kind == 1 or kind == 2:
            i = i + 1 if in_list else i
        elif kind == 3:
            i += 1
        elif kind == 4 or kind == 5 or kind == 6:
            i = _nb_varint(b, i)[1]
            if i < 0:
                return np.int64(-1)
        elif kind == 7:
            i += 8
        elif kind == 8:
            n, i = _nb_varint(b, i)
            if i < 0:
                return np.int64(-1)
            i += n
            if i < 0:
                return np.int64(-1)
        elif kind == 9 or kind == 10:
            if i >= b.size:
                return np.int64(-1)
            head = np.int64(b[i])
            i += 1
            n = head >> 4
            if n == 15:
                n, i = _nb_varint(b, i)
                if i < 0:
                    return np.int64(-1)
            if n > b.size - i:
                return np.int64(-1)
            what[sp], left[sp], elem[sp], level[sp] = _LIST, n, head & 0x0F, depth
            sp += 1
        elif kind == 11:
            n, i = _nb_varint(b, i)
            if i < 0:
                return np.int64(-1)
            if n:
                if n > b.size - i or i >= b.size:
                    return np.int64(-1)
                what[sp], left[sp], elem[sp], level[sp] = _MAP, 2 * n, np.int64(b[i]), depth
                sp += 1
                i += 1
        elif kind == 12:
            what[sp], left[sp], elem[sp], level[sp] = _STRUCT, 0, 0, depth
            sp += 1
        else:
            return np.int64(-1)
        # -- the next value to skip: in the innermost open container, or done --
        while True:
            if sp == 0:
                return i
            top = sp - 1
            if what[top] == _STRUCT:
                if i >= b.size:
                    return np.int64(-1)
                head = np.int64(b[i])
                i += 1
                if head == 0:
                    sp -= 1
                    continue
                if head >> 4 == 0:
                    i = _nb_varint(b, i)[1]     # a field id written in full
                    if i < 0:
                        return np.int64(-1)
                kind, depth, in_list = head & 0x0F, level[top] + 1, False
                break
            if left[top] == 0:
                sp -= 1
                continue
            left[top] -= 1
            if what[top] == _LIST:
                kind = elem[top]
            else:                               # a map: key (kv >> 4), then value (kv & 15)
                kind = elem[top] >> 4 if left[top] % 2 == 1 else elem[top] & 0x0F
            depth, in_list = level[top] + 1, True
            break


@njit(**JIT)
def _nb_page_header(b, i):
    """(stored size, CRC, has a CRC, position after the header) of the page header at ``i``;
    size -1 when it cannot be walked (as :func:`engine.parquet_checksums._page_header`)."""
    field = np.int64(0)
    size, crc, has_size, has_crc = np.int64(-1), np.int64(0), False, False
    while True:
        if i >= b.size:
            return np.int64(-1), crc, False, i
        head = np.int64(b[i])
        i += 1
        if head == 0:
            break
        if head >> 4:
            field += head >> 4
        else:
            n, i = _nb_varint(b, i)
            if i < 0:
                return np.int64(-1), crc, False, i
            field = (n >> 1) ^ -(n & 1)
        kind = head & 0x0F
        if field == 3 or field == 4:
            if kind != 4 and kind != 5 and kind != 6:
                return np.int64(-1), crc, False, i
            n, i = _nb_varint(b, i)
            if i < 0:
                return np.int64(-1), crc, False, i
            if field == 3:
                size, has_size = (n >> 1) ^ -(n & 1), True
            else:
                crc, has_crc = ((n >> 1) ^ -(n & 1)) & 0xFFFFFFFF, True
        else:
            i = _nb_skip(b, i, kind, 1, False)
            if i < 0:
                return np.int64(-1), crc, False, i
    if not has_size or size < 0:
        return np.int64(-1), crc, False, i
    return size, crc, has_crc, i


#: why :func:`walk` stopped: its arrays are full, the chunk's end, a header it cannot walk
FULL, END, STUCK = 0, 1, 2


@njit(**JIT)
def walk(b, i, end, body, size, crc, has_crc):
    """Walk the page headers of a column chunk from ``i`` to ``end``, filling the arrays (as
    many pages as they hold); returns (pages walked, where the walk stopped, why)."""
    k = 0
    while i < end:
        if k == body.size:
            return k, i, FULL
        s, c, h, at = _nb_page_header(b, i)
        if s < 0 or at < 0 or at + s > b.size:
            return k, i, STUCK
        body[k], size[k], crc[k], has_crc[k] = at, s, c, h
        k += 1
        i = at + s
    return k, i, END


def warmup() -> None:
    """Compile (or load) the walk with the argument types :func:`engine.parquet_checksums.pages`
    gives it."""
    b = np.frombuffer(bytes([0x15, 0x00, 0x15, 0x02, 0x00]), np.uint8)
    walk(b, np.int64(0), np.int64(b.size), *buffers(1))


def buffers(n: int):
    """The arrays :func:`walk` fills: where each page's bytes start, their size, its CRC and
    whether it has one."""
    return (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
            np.empty(n, np.bool_))


