"""The README's first command, as written there, run from a fresh folder: it scores the bundled
sample into the queue store and its exports, and running it again changes nothing."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import duckdb
import polars as pl
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[1]


def first_command() -> list[str]:
    """The arguments of `veille` in the README's first command block."""
    block = re.search(r"## Two commands.*?```bash\n(.*?)\n```", (ROOT / "README.md").read_text(),
                      re.S).group(1)
    words = shlex.split(block.split("&&")[-1])
    assert words[:4] == ["uv", "run", "--locked", "veille"], words
    return words[4:]


def test_the_first_command_writes_the_store_and_its_exports(tmp_path, monkeypatch):
    args = first_command()
    assert "--store" in args, "the README's first command keeps the queue in a store"
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    store = tmp_path / args[args.index("--store") + 1]
    out = tmp_path / args[args.index("--out") + 1]
    assert "stored   run 1 in" in r.output
    queue = pl.read_parquet(out)
    with duckdb.connect(str(store), read_only=True) as con:
        alerts = con.execute("select count(*) from alerts").fetchone()[0]
        runs = con.execute("select count(*) from runs").fetchone()[0]
    assert alerts == queue.height > 0 and runs == 1
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "stored   run 2 in" in again.output
    with duckdb.connect(str(store), read_only=True) as con:
        assert con.execute("select count(*) from alerts").fetchone()[0] == alerts
        assert con.execute("select new_readings from runs where run_id = 2").fetchone()[0] == 0
    assert pl.read_parquet(out).equals(queue)
