"""Where each (patient, metric) series lies in clean telemetry: the index every later stage reads.

Clean telemetry is sorted by (patient_id, metric, ts), so the rows of one series are contiguous
and the series of one patient follow each other. :class:`SeriesIndex` records the series' row
offsets with integer codes for their patient and metric, once, at ingest; the detectors and the
timeline read arrays through it instead of comparing strings again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit

from ..config import JIT
from ..schema import METRIC_NAMES
from . import kernels as K
from .encode import CHANGED, SAME, UNDECIDED, change_flags, pair_flag, string_views


@dataclass(frozen=True)
class SeriesIndex:
    """The series of a clean telemetry frame.

    Attributes
    ----------
    offsets : np.ndarray
        int64[s+1]: series ``k`` is rows ``offsets[k]:offsets[k+1]``.
    patient : np.ndarray
        int32[s]: the patient code of each series (index into ``patient_ids``), non-decreasing.
    metric : np.ndarray
        int16[s]: the metric code of each series (index into
        :data:`engine.schema.METRIC_NAMES`), increasing within a patient.
    patient_ids : pl.Series
        The distinct patient ids, sorted: patient code ``p`` is ``patient_ids[p]``.
    """

    offsets: np.ndarray
    patient: np.ndarray
    metric: np.ndarray
    patient_ids: pl.Series

    @property
    def n_series(self) -> int:
        return int(self.patient.size)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1]) if self.offsets.size else 0

    @property
    def n_patients(self) -> int:
        return int(self.patient_ids.len())

    def patient_series(self) -> np.ndarray:
        """int64[P+1]: the series of patient ``p`` are ``out[p]:out[p+1]``."""
        return np.searchsorted(self.patient, np.arange(self.n_patients + 1)).astype(np.int64)

    def patient_rows(self) -> np.ndarray:
        """int64[P+1]: the rows of patient ``p`` are ``out[p]:out[p+1]``."""
        return self.offsets[self.patient_series()]

    def row_metric(self) -> np.ndarray:
        """int16[n]: the metric code of every row."""
        return np.repeat(self.metric, np.diff(self.offsets))

    def patients(self, a: int, b: int) -> "SeriesIndex":
        """The index of patients ``a..b`` (codes and rows rebased to start at 0)."""
        ps = np.searchsorted(self.patient, [a, b])
        s0, s1 = int(ps[0]), int(ps[1])
        offsets = self.offsets[s0:s1 + 1] - self.offsets[s0]
        return SeriesIndex(offsets.astype(np.int64), (self.patient[s0:s1] - a).astype(np.int32),
                           self.metric[s0:s1].copy(), self.patient_ids.slice(a, b - a))

    def recode(self, ids: pl.Series) -> "SeriesIndex":
        """The same series with patient codes into ``ids``, a sorted superset of the index's
        own ids (the run's cohort, which adds patients enrolled without telemetry)."""
        if ids.len() == self.patient_ids.len():
            return SeriesIndex(self.offsets, self.patient, self.metric, ids)
        codes = np.searchsorted(ids.to_numpy(), self.patient_ids.to_numpy()).astype(np.int32)
        return SeriesIndex(self.offsets, codes[self.patient], self.metric, ids)

    @classmethod
    def from_codes(cls, pcode: np.ndarray, mcode: np.ndarray, ids: pl.Series) -> "SeriesIndex":
        """The index of sorted rows given their patient codes (into ``ids``) and metric codes;
        ids without a row are dropped and the codes renumbered."""
        offsets = K.series_bounds(pcode, mcode)
        heads = offsets[:-1]
        patient, metric = pcode[heads], mcode[heads].astype(np.int16)
        used = np.unique(patient)
        if used.size != ids.len():
            renumber = np.full(max(ids.len(), 1), -1, np.int32)
            renumber[used] = np.arange(used.size, dtype=np.int32)
            patient, ids = renumber[patient], ids.gather(used)
        return cls(offsets, patient.astype(np.int32), metric, ids)

    @classmethod
    def of(cls, clean: pl.DataFrame) -> "SeriesIndex":
        """The index of a clean frame sorted by (patient_id, metric, ts) (trusted, not checked)."""
        n = clean.height
        if n == 0:
            return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int16),
                       pl.Series("patient_id", [], dtype=pl.String))
        heads, first = (_probed_heads(clean["patient_id"], clean["metric"])
                        or flagged_heads(clean["patient_id"], clean["metric"]))
        offsets = np.append(heads, n).astype(np.int64)
        ids = clean["patient_id"].cast(pl.String).gather(heads[first])
        patient = (np.cumsum(first, dtype=np.int32) - 1).astype(np.int32)
        names = clean["metric"].cast(pl.String).gather(heads)
        code = {m: i for i, m in enumerate(METRIC_NAMES)}
        distinct = names.unique().to_list()
        metric = names.replace_strict(distinct, [code.get(x, -1) for x in distinct],
                                      return_dtype=pl.Int16).to_numpy()
        return cls(offsets, patient, metric.astype(np.int16), ids)


def flagged_heads(patient: pl.Series, metric: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each series, whether it starts a patient) of sorted rows, every row read
    (each row's patient and metric against the previous row's); :func:`_probed_heads` reads
    fewer where it can."""
    pnew = _changes(patient)
    heads = K.series_starts(pnew, _changes(metric))[:-1]
    first = pnew[heads].astype(bool)
    first[0] = True
    return heads, first


def _changes(col: pl.Series) -> np.ndarray:
    """uint8 per row: 1 where the value differs from the previous row's (row 0: 0)."""
    flags = change_flags(col)
    if flags is None:
        run = col.rle_id().to_numpy()
        flags = np.empty(run.size, np.uint8)
        flags[:1] = 0
        np.not_equal(run[1:], run[:-1], out=flags[1:].view(np.bool_))
    return flags


# -- series heads of a sorted frame, found by probing -----------------------------------------
#: :func:`_probed_heads` compares rows this far apart, and searches between them only when the
#: two differ
PROBE_STRIDE = 128
#: with more than one series head per this many rows, every row is read instead (the
#: bisections then cost more than the plain flags)
DENSE = 16


def _pieces(col: pl.Series):
    """How :func:`_probed_heads` reads a column: a list of ``(first row, key, bytes, views)``,
    one per chunk. For text held as string views, ``key`` is the views as int64[m, 2] and
    ``bytes`` as uint8[m, 16] (read in place), ``views`` True; for an Enum, Categorical or
    integer column ``key`` is its codes as an [n, 1] array. None when the column holds nulls or
    another type (the caller reads every row then)."""
    if col.null_count():
        return None
    if isinstance(col.dtype, (pl.Enum, pl.Categorical)) or col.dtype.is_integer():
        codes = col.to_physical().to_numpy()
        return [(0, codes.reshape(-1, 1), np.zeros((1, 16), np.uint8), False)]
    if col.dtype != pl.String:
        return None
    out, at = [], 0
    for chunk in col.get_chunks():
        v = string_views(chunk)
        if v is None:
            return None
        out.append((at, v.view(np.int64), v, True))
        at += chunk.len()
    return out


def _slice(pieces, a: int, b: int):
    """Rows ``a..b`` (within one chunk) of a column read by :func:`_pieces`."""
    for at, key, vb, views in reversed(pieces):
        if at <= a:
            return key[a - at:b - at], (vb[a - at:b - at] if views else vb), views
    raise AssertionError("row before the first chunk")


@njit(**JIT)
def _pair(key, vb, views, j, i):
    """Row ``i`` against row ``j`` of one column: SAME, CHANGED or UNDECIDED (text only)."""
    if views:
        return pair_flag(key, vb, j, i)
    return SAME if key[i, 0] == key[j, 0] else CHANGED


@njit(**JIT)
def _piece_heads(pk, pb, pv, mk, mb, mv, stride):
    """The series heads of sorted rows (``p*`` the patient column, ``m*`` the metric one).

    Returns ``(heads, first, undecided, ok)``: the rows (after row 0) that start a series,
    whether each also starts a patient, and the rows whose texts the views could not compare
    (long texts alike in length and first bytes), left to the caller. Rows ``stride`` apart
    are compared; where they differ, the first row that differs from the stretch's start is
    found by bisection (sorted rows: the first differing row is a head), and the next stretch
    starts there. A comparison left undecided sends the stretch to a row-by-row scan. ``ok``
    is False (and the rest empty) when the series are so short (more than one head in
    :data:`DENSE` rows) that reading every row is cheaper: the search stops there.
    """
    n = pk.shape[0]
    most = n // DENSE + 16
    heads = np.empty(max(n - 1, 0), np.int64)
    first = np.empty(max(n - 1, 0), np.bool_)
    undecided = np.empty(max(n - 1, 0), np.int64)
    h, u, a = 0, 0, 0
    while a < n - 1:
        b = min(a + stride, n - 1)
        fp, fm = _pair(pk, pb, pv, a, b), _pair(mk, mb, mv, a, b)
        if fp == SAME and fm == SAME:
            a = b
            continue
        lo, hi = a, b          # the row lo is like row a, the row hi is not
        same_patient = fp == SAME          # then only the metric changes in the stretch
        while fp != UNDECIDED and fm != UNDECIDED and hi - lo > 1:
            mid = (lo + hi) >> 1
            fp = SAME if same_patient else _pair(pk, pb, pv, a, mid)
            fm = _pair(mk, mb, mv, a, mid)
            if fp == SAME and fm == SAME:
                lo = mid
            elif fp != UNDECIDED and fm != UNDECIDED:
                hi = mid
        if fp != UNDECIDED and fm != UNDECIDED:
            fp = SAME if same_patient else _pair(pk, pb, pv, hi - 1, hi)
        if fp == UNDECIDED or fm == UNDECIDED:
            for i in range(a + 1, b + 1):
                gp, gm = _pair(pk, pb, pv, i - 1, i), _pair(mk, mb, mv, i - 1, i)
                if gp == UNDECIDED or gm == UNDECIDED:
                    undecided[u] = i
                    u += 1
                elif gp != SAME or gm != SAME:
                    heads[h] = i
                    first[h] = gp != SAME
                    h += 1
            a = b
            continue
        heads[h] = hi
        first[h] = fp != SAME
        h += 1
        a = hi
        if h > most:
            return heads[:0].copy(), first[:0].copy(), undecided[:0].copy(), False
    return heads[:h].copy(), first[:h].copy(), undecided[:u].copy(), True


def _probed_heads(patient: pl.Series, metric: pl.Series):
    """(first row of each series, whether it starts a patient) of a frame sorted by (patient,
    metric), reading only the rows near the series' heads; None where it cannot (the caller
    reads every row then).

    Sorted rows make a stretch whose two ends hold the same (patient, metric) one series
    throughout, so only rows ``PROBE_STRIDE`` apart are compared, plus a bisection where a
    series starts: on 600-row series that reads about one row in forty. This trusts the sort,
    as every stage after ingest does: on an unsorted frame a stretch that leaves its series
    and comes back is not seen.
    """
    n = patient.len()
    pp, mp = _pieces(patient), _pieces(metric)
    if pp is None or mp is None:
        return None
    cuts = sorted({at for at, *_ in pp} | {at for at, *_ in mp} | {n})
    heads, first = [np.zeros(1, np.int64)], [np.ones(1, bool)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        if a > 0:                        # the piece's first row against the previous piece's
            p_new = bool(patient[a] != patient[a - 1])
            if p_new or metric[a] != metric[a - 1]:
                heads.append(np.full(1, a, np.int64))
                first.append(np.full(1, p_new))
        h, f, und, ok = _piece_heads(*_slice(pp, a, b), *_slice(mp, a, b), PROBE_STRIDE)
        if not ok:
            return None
        if und.size:                     # long texts the views could not compare: polars does
            rows = pl.Series(und + a)
            p_new = (patient.gather(rows) != patient.gather(rows - 1)).to_numpy()
            new = p_new | (metric.gather(rows) != metric.gather(rows - 1)).to_numpy()
            h, f = np.concatenate([h, und[new]]), np.concatenate([f, p_new[new]])
            order = np.argsort(h, kind="stable")
            h, f = h[order], f[order]
        heads.append(h + a)
        first.append(f)
    return np.concatenate(heads).astype(np.int64), np.concatenate(first).astype(bool)
