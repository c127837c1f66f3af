"""The ``veille`` command line: a thin layer over :mod:`engine` (one Typer app per group)."""
from __future__ import annotations

import gc

# A command is one batch process whose start-up (imports, numba's compiler, the rule packs)
# allocates millions of objects that live until it ends: with Python's default thresholds the
# collector traversed them all again and again (a fifth of a sample run's time). Collect the
# youngest objects every 50,000 allocations, and freeze what start-up loaded (below, and once
# the kernels and packs are loaded: engine.commands._common.settled).
gc.set_threshold(50_000, 20, 20)

import typer  # noqa: E402

from engine.commands.backtest import backtest  # noqa: E402
from engine.commands.generate import generate  # noqa: E402
from engine.commands.queue import app as queue_app  # noqa: E402
from engine.commands.report import report  # noqa: E402
from engine.commands.rules import app as rules_app  # noqa: E402
from engine.commands.score import score  # noqa: E402
from engine.commands.train import train  # noqa: E402

gc.freeze()

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
