"""``veille backtest``: per-pack sensitivity, alert burden and lead time on a labelled cohort."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..paths import bundled
from ._common import console, friendly_errors


@friendly_errors
def backtest(
    cohort: Annotated[Optional[Path], typer.Argument(
        help="Folder with telemetry.parquet, patients.parquet and events.parquet (as written "
             "by `veille generate`). Default: the bundled sample cohort.",
        show_default=False)] = None,
    rules: Annotated[list[Path], typer.Option(help="Rule packs (default: bundled rules/).")] = [],
    site: Annotated[list[Path], typer.Option(help="Site override file (repeatable).")] = [],
    markdown: Annotated[bool, typer.Option(help="Print the table as Markdown.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the table (.parquet, .csv, "
                                                     ".jsonl).")] = None,
) -> None:
    """Score a labelled cohort and report, per pack, how many labelled episodes it caught."""
    from ..backtest import backtest as run_backtest
    from ..backtest import to_markdown
    from ..errors import InputError
    from ..pipeline import Engine
    from ..sinks import write_frame
    from ..sources import read_table

    folder = cohort or bundled("data_samples") / "cohort"
    files = {n: folder / f"{n}.parquet" for n in ("telemetry", "patients", "events")}
    for name, path in files.items():
        if not path.exists():
            raise InputError(f"the cohort folder has no {name}.parquet.", path=str(folder))
    engine = Engine.from_paths(rules or [bundled("rules")], sites=site)
    result = engine.score(str(files["telemetry"]), str(files["patients"]))
    events = read_table(str(files["events"]), what="events")
    table = run_backtest(result.episodes, events, result.clean, result.patients,
                         engine.ruleset.packs)
    if out:
        write_frame(table, out, table="backtest")
    if markdown:
        console.print(to_markdown(table), soft_wrap=True)
        return
    t = Table(title=f"Backtest on {folder}")
    for col in ("pack", "events", "early", "sens.", "lead", "≤ +24 h", "episodes",
                "per 100 pd", "unmatched"):
        t.add_column(col, justify="left" if col == "pack" else "right")
    def f(v, fmt):
        return "–" if v is None else fmt.format(v)

    for r in table.iter_rows(named=True):
        t.add_row(r["pack"], str(r["events"]), str(r["detected"]),
                  f(r["sensitivity"], "{:.0%}"), f(r["median_lead_h"], "{:.1f} h"),
                  str(r["detected_24h"]), str(r["episodes"]), f(r["alerts_per_100_pd"], "{:.2f}"),
                  f(r["unmatched_share"], "{:.0%}"))
    console.print(t)
