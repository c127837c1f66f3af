"""A bit flipped in a Parquet page: refused when the page carries its CRC, as every page veille
writes does; silently read otherwise (the limit of the format, said in SECURITY.md).

The inputs here are uncompressed and plainly encoded, so a flipped bit changes one value and
still decodes: without the check the run would use it and say nothing."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from engine.errors import InputError
from engine.parquet_checksums import pages, verify
from engine.synth import generate_cohort

NEWS2 = Path(__file__).resolve().parents[2] / "rules" / "news2.yaml"   # one pack: quicker


def _write(frame: pl.DataFrame, path, *, checksums: bool = True):
    pq.write_table(frame.to_arrow(), path, compression="none", use_dictionary=False,
                   write_page_checksum=checksums)
    return path


def _pages(path) -> list[tuple]:
    """(column, CRC or None, where its bytes start, their size) of each page of the file."""
    with contextlib.closing(pages(path)) as walk:
        return [(col, crc, start, data.nbytes) for _, col, _, crc, start, data in walk]


def _flip(path, column: str) -> None:
    """Flip one bit in the first page of ``column``, among its last values (not its header)."""
    start, size = next((s, n) for col, _, s, n in _pages(path) if col == column)
    raw = bytearray(path.read_bytes())
    raw[start + size - 8 - 3] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def cohort():
    c = generate_cohort(6, days=4, seed=5)
    return c.telemetry, c.patients


def _score(tel, pats, out):
    return CliRunner().invoke(app, ["score", str(tel), "--patients", str(pats), "--model",
                                    "none", "--rules", str(NEWS2), "--out", str(out)])


@pytest.mark.parametrize("which,column", [("telemetry", "value"), ("telemetry", "ts"),
                                          ("patients", "age")])
def test_a_bit_flipped_in_a_checksummed_page_is_refused(cohort, tmp_path, which, column):
    tel = _write(cohort[0], tmp_path / "t.parquet")
    pats = _write(cohort[1], tmp_path / "p.parquet")
    target = tel if which == "telemetry" else pats
    before = pl.read_parquet(target)
    _flip(target, column)
    # polars alone reads the flipped file, with one value changed: the flip is silent
    after = pl.read_parquet(target)
    assert after.height == before.height and not after[column].equals(before[column])
    r = _score(tel, pats, tmp_path / "q.parquet")
    assert r.exit_code == 2, r.output
    # (a first run after install says first that it compiles the kernels)
    text = " ".join(line for line in r.output.splitlines()
                    if not line.startswith("compiling the kernels"))
    text = " ".join(text.split())
    assert "Traceback" not in text and text.startswith("error:")
    assert f"{target}: page 1 of column '{column}'" in text and "does not match its checksum" \
        in text, text
    assert not [f for f in os.listdir(tmp_path) if f.startswith("q.")]   # nothing written


def test_a_file_without_checksums_is_read_as_it_is(cohort, tmp_path):
    # the limit: a writer that does not checksum its pages gives nothing to check
    tel = _write(cohort[0], tmp_path / "t.parquet", checksums=False)
    pats = _write(cohort[1], tmp_path / "p.parquet", checksums=False)
    clean = pl.read_parquet(tel)
    _flip(tel, "value")
    assert verify(tel) == 0
    assert not pl.read_parquet(tel)["value"].equals(clean["value"])
    assert _score(tel, pats, tmp_path / "q.parquet").exit_code == 0


def test_veilles_own_parquet_outputs_carry_page_checksums(cohort, tmp_path):
    r = CliRunner().invoke(app, ["generate", "--patients", "4", "--days", "3", "--seed", "2",
                                 "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    tel, pats = tmp_path / "c" / "telemetry.parquet", tmp_path / "c" / "patients.parquet"
    r = _score(tel, pats, tmp_path / "q.parquet")
    assert r.exit_code == 0, r.output
    files = [tmp_path / "c" / f"{n}.parquet" for n in ("telemetry", "patients", "events")] \
        + [tmp_path / "q.parquet", tmp_path / "q.quarantine.parquet"]
    for f in files:
        crcs = [crc for _, crc, _, _ in _pages(f)]
        assert None not in crcs, f                           # every page carries its CRC
        assert crcs or pq.ParquetFile(f).metadata.num_rows == 0, f
        assert verify(f) == len(crcs)
    # a bit flipped in a page veille wrote is refused when veille reads the file back
    _flip(tel, "value")
    r = _score(tel, pats, tmp_path / "q2.parquet")
    assert r.exit_code == 2 and "does not match its checksum" in r.output, r.output


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                      min_size=1, max_size=3),
       cut=st.one_of(st.none(), st.floats(0.5, 1)))
def test_damaged_files_give_the_check_only_input_errors(cohort, tmp_path, flips, cut):
    # bits flipped anywhere (page headers and footer included, which no CRC covers) and
    # truncations: the footer and page walk refuse with veille's own error or let it pass
    path = tmp_path / "t.parquet"
    _write(cohort[0].head(300), path)
    raw = bytearray(path.read_bytes())
    for where, bit in flips:
        raw[int(where * len(raw))] ^= 1 << bit
    if cut is not None:
        raw = raw[:max(1, int(cut * len(raw)))]
    path.write_bytes(bytes(raw))
    try:
        verify(path)
    except InputError as exc:
        assert str(path) in str(exc) and "does not match its checksum" in str(exc)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.integers(0, 10**6), where=st.floats(0, 1, exclude_max=True),
       bit=st.integers(0, 7))
def test_any_bit_flipped_in_any_page_is_found(cohort, tmp_path, page, where, bit):
    path = _write(cohort[0].head(3000), tmp_path / "t.parquet")
    all_pages = _pages(path)
    column, _, start, size = all_pages[page % len(all_pages)]
    raw = bytearray(path.read_bytes())
    raw[start + int(where * size)] ^= 1 << bit
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=f"column '{column}'.*does not match its checksum"):
        verify(path)


def test_a_damaged_page_header_is_refused_cleanly(tmp_path):
    # found by the atheris fuzz (tests/faults/atheris_fuzz.py): one byte of a page header out
    # of range (no CRC covers a header) made polars' reader panic, a traceback
    from engine.ingest import ingest

    path = Path(__file__).with_name("parquet_corpus") / "page_header_out_of_range.parquet"
    with pytest.raises(InputError, match="cannot be read as PARQUET"):
        ingest(str(path))


def _python_pages(path) -> list[tuple]:
    """The plain-Python page walk (:func:`engine.parquet_checksums._page_header` header after
    header), the reference of the compiled walk :func:`pages` uses: (column, CRC, start,
    size) of each page."""
    import mmap

    from engine.parquet_checksums import _chunks, _page_header, _Unwalkable

    out = []
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return out
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as b:
            for _, column, i, end in _chunks(b):
                while i < end:
                    try:
                        size, crc, body = _page_header(b, i)
                    except (_Unwalkable, IndexError):
                        break
                    if body + size > len(b):
                        break
                    out.append((column, crc, body, size))
                    i = body + size
    return out


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                      max_size=4),
       cut=st.one_of(st.none(), st.floats(0.3, 1)), checksums=st.booleans(),
       rows=st.sampled_from([1, 40, 3000]))
def test_the_compiled_page_walk_finds_the_python_walks_pages(cohort, tmp_path, flips, cut,
                                                            checksums, rows):
    # intact files, bits flipped anywhere (page headers above all: their varints, field ids,
    # nested statistics) and truncations: the same pages, CRCs, starts and sizes
    path = _write(cohort[0].head(rows), tmp_path / "t.parquet", checksums=checksums)
    raw = bytearray(path.read_bytes())
    headers = [s for _, _, s, _ in _python_pages(path)]
    for where, bit in flips:
        if headers and bit % 2:             # half the flips land in the bytes before a page
            raw[max(0, headers[int(where * len(headers))] - 1 - int(where * 8))] ^= 1 << bit
        else:
            raw[int(where * len(raw))] ^= 1 << bit
    if cut is not None:
        raw = raw[:max(1, int(cut * len(raw)))]
    path.write_bytes(bytes(raw))
    assert _pages(path) == _python_pages(path)


def _varint(n: int, pad: int = 0) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
        if not n:
            break
    out += b"\x80" * pad
    out[-1] &= 0x7F
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 2**40), crc=st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)),
       pad=st.integers(0, 6), extra=st.binary(max_size=12), cut=st.integers(0, 40))
def test_the_compiled_page_header_reads_what_the_python_one_reads(size, crc, pad, extra, cut):
    """Page headers with sizes and CRCs written with padded varints (up to 11 bytes, which
    the compiled walk leaves to the Python one), an unknown binary field, truncations: where
    the compiled reader gives a header, it is the Python reader's."""
    import numpy as np

    from engine.parquet_checksums import _page_header, _Unwalkable
    from engine.parquet_walk import _nb_page_header

    zig = lambda v: (v << 1) ^ (v >> 63)            # noqa: E731
    head = b"\x15" + _varint(zig(0)) + b"\x15" + _varint(zig(size))      # fields 1, 2
    head += b"\x15" + _varint(zig(size), pad)                              # 3: the size
    if crc is not None:
        head += b"\x15" + _varint(zig(crc), pad)                           # 4: the CRC
    head += b"\x18" + _varint(len(extra)) + extra + b"\x00"              # 5: binary; stop
    raw = (head + b"page")[:len(head) + 4 - cut]
    got = _nb_page_header(np.frombuffer(raw, np.uint8), 0)
    try:
        want = _page_header(raw, 0)
    except (_Unwalkable, IndexError):
        want = None
    if got[0] < 0:
        # left to the Python walk: only a header it cannot walk, or a varint beyond 9 bytes
        assert want is None or pad + len(_varint(zig(size))) > 9 or (
            crc is not None and pad + len(_varint(zig(crc))) > 9)
    else:
        assert want == (got[0], int(got[1]) if got[2] else None, int(got[3]))
