"""``python -m engine.synth --patients N --days D --seed S --out DIR [--start ISO-DATE]``."""
from __future__ import annotations

import argparse
import sys

from ..errors import VeilleError
from .write import write_cohort


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.synth",
        description="Write a labelled synthetic telemonitoring cohort (telemetry.parquet, "
                    "patients.parquet, events.parquet) into a folder.")
    parser.add_argument("--patients", type=int, required=True, help="number of patients")
    parser.add_argument("--days", type=int, required=True, help="length of the window in days")
    parser.add_argument("--seed", type=int, required=True, help="random seed (same seed, same "
                        "bytes)")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--start", default=None, help="first day, ISO date or datetime (UTC if "
                        "no zone); default 2026-01-05")
    args = parser.parse_args(argv)
    try:
        paths = write_cohort(args.out, patients=args.patients, days=args.days, seed=args.seed,
                             start=args.start)
    except VeilleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for name, path in paths.items():
        print(f"{name}: {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
