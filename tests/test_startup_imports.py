"""What the command line imports before it reads a row: no library only some runs need."""
from __future__ import annotations

import subprocess
import sys

#: each costs 0.15-4 s to import and is needed only by some runs (a DuckDB input or output, the
#: risk model and its explanations, pandas-based peers in the benchmarks)
HEAVY = ("duckdb", "pandas", "sklearn", "skops", "shap", "pyarrow.compute", "pyspark")


def last_line(code: str) -> str:
    """The last line ``code`` prints, run in a new interpreter (its stderr in the failure)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-2000:]
    return lines[-1]


def test_the_command_line_starts_without_heavy_optional_libraries():
    code = ("import sys, cli\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    assert last_line(code) == "[]"


def test_a_write_error_is_worded_with_or_without_duckdb_loaded(tmp_path):
    """The sinks name DuckDB's error class only once DuckDB is loaded (it cannot have raised
    one before): a file write failing before any DuckDB use is still an OutputError."""
    code = ("import sys, polars as pl\n"
            "from engine.sinks import write_frames\n"
            "from engine.errors import OutputError\n"
            f"target = {str(tmp_path / 'missing' / 'sub')!r}\n"
            "open(" + repr(str(tmp_path / "missing")) + ", 'w').close()   # a file, not a folder\n"
            "try:\n"
            "    write_frames([(pl.DataFrame({'a': [1]}), target + '/q.parquet', 'alerts')])\n"
            "except OutputError as e:\n"
            "    print('OutputError', 'duckdb' in sys.modules)\n")
    assert last_line(code) == "OutputError False"


def test_scoring_with_the_bundled_model_never_imports_shap():
    """The explanations are computed by engine.risk.treeshap (equal to shap's, tested in
    test_risk_trees): importing shap cost every run with the model 1.2 s."""
    code = ("import sys, engine\n"
            "from engine.paths import sample_cohort\n"
            "tel, pats = sample_cohort()\n"
            "r = engine.Engine.from_paths(model='default').score(tel, pats)\n"
            "assert r.queue['risk_factors'].drop_nulls().len() > 0\n"
            "print('shap' in sys.modules)\n")
    assert last_line(code) == "False"
