"""The runs whose alert queues are kept as golden files (``tests/golden/*.parquet``).

A change to the pipeline must leave these queues identical — same ``alert_id``s, same reasons,
same evidence, same times — unless it means to change what veille alerts on. Then regenerate
them with ``uv run python -m tests.golden.runs`` and say why in the commit.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SAMPLE = ROOT / "data_samples" / "cohort"
#: another cohort than the sample: another seed, size, length and start date
OTHER = dict(patients=160, days=35, seed=2027, start=dt.datetime(2025, 10, 20,
                                                                 tzinfo=dt.timezone.utc))
#: columns compared (the whole queue but the order-free ranks)
COLUMNS = ["alert_id", "priority", "patient_rank", "patient_id", "rule_id", "pack", "severity",
           "status", "opened_at", "last_seen_at", "resolved_at", "title", "reason", "evidence"]


def other_cohort():
    from engine.synth import generate_cohort
    return generate_cohort(OTHER["patients"], OTHER["days"], seed=OTHER["seed"],
                           start=OTHER["start"])


def runs():
    """``{name: queue}`` of every golden run, computed with the current code. The golden
    queues are the English ones (``lang="en"``): their reasons and titles are the packs'
    English texts, which a translation must leave byte for byte as they are."""
    import engine

    out = {}
    eng = engine.Engine.from_paths(lang="en")
    tel, pats = SAMPLE / "telemetry.parquet", SAMPLE / "patients.parquet"
    out["sample"] = eng.score(str(tel), str(pats)).queue
    site = engine.Engine.from_paths(sites=[ROOT / "rules" / "sites" / "meuse.yaml"], lang="en")
    out["sample_meuse"] = site.score(str(tel), str(pats)).queue
    cohort = other_cohort()
    out["other"] = eng.score(cohort.telemetry, cohort.patients).queue
    later = cohort.telemetry["ts"].max() + dt.timedelta(days=2, hours=5)
    out["other_later"] = eng.score(cohort.telemetry, cohort.patients, as_of=later).queue
    return {k: v.select(COLUMNS) for k, v in out.items()}


def main() -> int:
    for name, q in runs().items():
        q.write_parquet(HERE / f"{name}.parquet", compression="zstd")
        print(f"{name}: {q.height} alerts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
