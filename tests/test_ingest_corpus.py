"""The bad-input corpus (data_samples/dirty/make_dirty.py): every kind of bad file gets a clear
error naming the file, or a reasoned quarantine, and nothing is lost."""
from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.ingest import REASONS, ingest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_dirty", ROOT / "data_samples/dirty/make_dirty.py")
make_dirty = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_dirty)
NOW = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_dirty.build(tmp_path_factory.mktemp("dirty"))


def test_corpus_is_large_enough():
    assert len(make_dirty.CASES) >= 15
    quarantine_reasons = {r for *_, exp in make_dirty.CASES.values() if exp[0] == "quarantine"
                          for r in exp[1]}
    # every row-level reason has a file but the DST one and the unknown patient (a patients
    # table is needed), both tested in test_ingest.py
    assert set(REASONS) - quarantine_reasons == {"nonexistent_local_time", "unknown_patient"}


@pytest.mark.parametrize("case", list(make_dirty.CASES))
def test_case(case, corpus):
    _, _, expected = make_dirty.CASES[case]
    path = corpus[case]
    if expected[0] == "error":
        with pytest.raises(InputError) as info:
            ingest(str(path), now=NOW)
        message = str(info.value)
        assert expected[1] in message
        assert Path(str(path).split(":")[0]).name in message  # the message names the file
        assert "Traceback" not in message
        return
    _, reasons, used, collapsed = expected
    result = ingest(str(path), now=NOW)
    rep = result.report
    assert rep.by_reason == reasons
    assert rep.rows_used == used and rep.duplicates_collapsed == collapsed
    assert rep.rows_in == rep.rows_used + rep.rows_quarantined + rep.duplicates_collapsed
    assert result.quarantine["reason"].null_count() == 0
    assert result.quarantine["detail"].null_count() == 0
    assert result.clean.height == used
