"""Where the bundled rules, model and sample cohort live (a source checkout or an installed wheel)."""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_CANDIDATES = (_PKG.parent, _PKG / "_bundled")


def bundled(name: str) -> Path:
    """Path of a bundled folder: ``rules``, ``models`` or ``data_samples``."""
    for base in _CANDIDATES:
        if (base / name).exists():
            return base / name
    return _CANDIDATES[0] / name


def sample_cohort() -> tuple[Path, Path]:
    """(telemetry, patients) of the bundled sample cohort."""
    d = bundled("data_samples") / "cohort"
    return d / "telemetry.parquet", d / "patients.parquet"
