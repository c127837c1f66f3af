"""The atheris fuzz of the rule loader and of ingest (tests/faults/atheris_fuzz.py), a few
seconds for both. atheris is in the ``fuzz`` dependency group, one of the default groups, so
CI runs it (Linux x86_64 wheels; on another platform the test is skipped). Each run starts with the inputs
earlier campaigns found (``FOUND``), so a defence that breaks fails it every time; the rest of
the time is coverage-guided mutation. A finding leaves ``crash-<sha1>`` and a traceback."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris has wheels for Linux x86_64 only")

HARNESS = Path(__file__).with_name("atheris_fuzz.py")
ROOT = Path(__file__).resolve().parents[2]
RUNS = 40                    # the rule loader and ingest together: a few seconds on a quiet machine
SECONDS = 60                 # the most it may take on a loaded one


def test_a_short_atheris_campaign_finds_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(HARNESS), "both", str(tmp_path / "corpus"),
                        f"-runs={RUNS}", f"-max_total_time={SECONDS}", "-max_len=4096", "-timeout=10",
                        "-rss_limit_mb=3000", "-seed=1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    found = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert r.returncode == 0 and not found, (found, r.stderr[-4000:])
    runs = re.search(r"Done (\d+) runs", r.stderr)
    # every input of the corpus (the seeds and what earlier campaigns found) was replayed first
    assert "INITED" in r.stderr and runs and int(runs[1]) >= 1, r.stderr[-2000:]
