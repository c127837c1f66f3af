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

from ..schema import METRIC_NAMES
from . import kernels as K
from .encode import change_flags


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
        pnew = _changes(clean["patient_id"])
        offsets = K.series_starts(pnew, _changes(clean["metric"]))
        heads = offsets[:-1]
        first = pnew[heads].astype(bool)
        first[0] = True
        ids = clean["patient_id"].cast(pl.String).gather(heads[first])
        patient = (np.cumsum(first, dtype=np.int32) - 1).astype(np.int32)
        names = clean["metric"].cast(pl.String).gather(heads)
        code = {m: i for i, m in enumerate(METRIC_NAMES)}
        distinct = names.unique().to_list()
        metric = names.replace_strict(distinct, [code.get(x, -1) for x in distinct],
                                      return_dtype=pl.Int16).to_numpy()
        return cls(offsets, patient, metric.astype(np.int16), ids)


def _changes(col: pl.Series) -> np.ndarray:
    """uint8 per row: 1 where the value differs from the previous row's (row 0: 0)."""
    flags = change_flags(col)
    if flags is None:
        run = col.rle_id().to_numpy()
        flags = np.empty(run.size, np.uint8)
        flags[:1] = 0
        np.not_equal(run[1:], run[:-1], out=flags[1:].view(np.bool_))
    return flags
