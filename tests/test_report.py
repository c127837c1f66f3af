"""``veille report``: one self-contained HTML page, checked as text and in a real browser
(headless Chromium, Debian's package, installed when missing)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

sys.path.insert(0, str(Path(__file__).parent))
from browser import Browser, find_chromium, install_chromium  # noqa: E402

runner = CliRunner()
SECTIONS = ["summary", "backtest", "sweep", "patients"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from engine.synth import write_cohort

    d = tmp_path_factory.mktemp("cohort")
    write_cohort(d, patients=40, days=14, seed=5)
    return d


@pytest.fixture(scope="module")
def report(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = invoke("report", cohort, "--out", out, "--model", "none", "--top", "2",
               "--sweep", "heart_failure.gain_3d=1.5:2.5:0.5")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium: installed with apt when missing and we are root (as on CI)."""
    path = find_chromium()
    if path is None:
        if os.geteuid() != 0:
            pytest.skip("chromium is not installed and installing it needs root "
                        "(apt-get install chromium)")
        path = install_chromium()
    return path


def test_report_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
    assert [m for m in re.findall(r"<section id='(\w+)'", page)] == SECTIONS
    assert "<html lang='fr'>" in page and "Résumé de la cohorte" in page
    points = [int(n) for n in re.findall(r"data-points='(\d+)'", page)]
    assert len(points) == 2 + 2 and all(n > 0 for n in points)     # 2 sweep curves, 2 patients
    assert "Alertes pour 100 patients-jours" in page and "(kg)" in page
    assert "seuil gain_3d" in page


def test_report_in_english_for_a_named_patient(cohort, tmp_path):
    import polars as pl

    pid = pl.read_parquet(cohort / "events.parquet")["patient_id"][0]
    out = tmp_path / "en.html"
    r = invoke("report", cohort, "--out", out, "--model", "none", "--patient", pid,
               "--lang", "en")
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "Cohort summary" in page and f"Patient {pid} (" in page
    assert "No sweep requested" in page
    assert len(re.findall(r"data-points='(\d+)'", page)) == 1
    r = invoke("report", cohort, "--out", tmp_path / "x.html", "--patient", "nobody",
               "--model", "none")
    assert r.exit_code == 2 and "--patient 'nobody' has no reading" in r.output
    r = invoke("report", cohort, "--out", tmp_path / "x.pdf")
    assert r.exit_code == 2 and "ending in .html" in r.output


def test_report_opens_in_chromium_without_errors(report, chromium, tmp_path):
    with Browser(chromium) as browser:
        page = browser.open(report)
        assert page["errors"] == []
        assert page["requests"] == []                     # nothing fetched, from anywhere
        assert page["scripts"] == 0
        assert page["sections"] == SECTIONS
        assert len(page["figures"]) == 4
        for fig in page["figures"]:
            assert fig["svg"] == 1
            # every point the page says it draws is a marker the browser laid out
            assert fig["points"] > 0
            assert fig["markers"] == fig["points"] == fig["shown"], fig
        shot = tmp_path / "report.png"
        browser.screenshot(shot, 1100, 1200)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
