"""The ``veille`` command line: a thin layer over :mod:`engine` (one Typer app per group)."""
from __future__ import annotations

import typer

from engine.commands.backtest import backtest
from engine.commands.generate import generate
from engine.commands.queue import app as queue_app
from engine.commands.report import report
from engine.commands.rules import app as rules_app
from engine.commands.score import score
from engine.commands.train import train

app = typer.Typer(name="veille", no_args_is_help=True, add_completion=False,
                  help="Clinical alert and risk-scoring engine for home telemonitoring.")
app.command("score")(score)
app.command("generate")(generate)
app.command("backtest")(backtest)
app.command("train")(train)
app.command("report")(report)

app.add_typer(rules_app, name="rules", help="Validate, test and explain rule packs.")
app.add_typer(queue_app, name="queue",
              help="The queue kept in a store: list it, acknowledge, snooze, resolve alerts.")


def _stop(signum, frame):
    """SIGTERM (a scheduler stopping the job) stops a run like Ctrl-C: cleanly, saying what
    was and was not written."""
    raise KeyboardInterrupt


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _stop)
    app()


if __name__ == "__main__":
    main()
