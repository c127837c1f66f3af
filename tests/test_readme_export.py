"""The README's "Scoring your own export" section works as written, on its own example."""
from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    return README.read_text().split("## Scoring your own export", 1)[1].split("\n## ", 1)[0]


def test_the_example_export_scores_with_the_command_as_written(tmp_path, monkeypatch):
    section = _section()
    example = section.split("```\n", 2)[1].split("```", 1)[0]
    assert example.startswith('"id","time","gl"')
    # the example's three readings, and a week more of the same export in its shape
    lines = [example.strip()] + [f'"001",2014-10-0{2 + d // 288} {(d % 288) // 12:02d}:'
                                 f'{(d % 12) * 5:02d}:00,{150 + (d % 7)}' for d in range(1500)]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cgm.csv").write_text("\n".join(lines) + "\n")
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    args = block.replace("\\\n", " ").split()[3:]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    text = r.output.replace("\n", " ")
    assert "rows in 1,503 = used 1,502 + quarantined 1" in text and "missing_value 1" in text
    assert pl.read_parquet(tmp_path / "out" / "cgm-queue.quarantine.parquet")["reason"] \
        .to_list() == ["missing_value"]
