"""What a scheduled run writes to its log: counts and file names, never a patient's id beside
a clinical value. On a terminal the 'Call first' table shows ids and reasons (asked for with
--top when the output is not a terminal)."""
from __future__ import annotations

import polars as pl
from typer.testing import CliRunner

from cli import app
from engine.paths import sample_cohort


def test_a_logged_run_prints_no_patient_beside_a_value(tmp_path):
    r = CliRunner().invoke(app, ["score", "--model", "none", "--out",
                                 str(tmp_path / "q.parquet")])
    assert r.exit_code == 0, r.output
    ids = pl.read_parquet(sample_cohort()[1])["patient_id"].to_list()
    printed = r.output
    assert "rows     rows in" in printed and "alerts   open:" in printed
    assert not [i for i in ids if i in printed], "a patient id reached the log"
    asked = CliRunner().invoke(app, ["score", "--model", "none", "--top", "3", "--out",
                                     str(tmp_path / "q2.parquet")])
    assert asked.exit_code == 0 and "Call first" in asked.output
    assert sum(i in asked.output for i in ids) == 3


def test_patients_table_errors_locate_the_cell_without_echoing_it(tmp_path):
    import pytest

    from engine.errors import InputError
    from engine.patients import check_patients

    base = {"patient_id": ["P1", "P2"], "programme": ["copd", "copd"]}
    for col, values, shown in (("age", [70, 187], "187"), ("age", ["70", "soixante"], "soixante"),
                               ("dry_weight_kg", [70.0, 912.0], "912")):
        with pytest.raises(InputError) as info:
            check_patients(pl.DataFrame({**base, col: values}))
        message = str(info.value)
        assert "row 2" in message and f"column '{col}'" in message
        assert shown not in message, message
