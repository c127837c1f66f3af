"""The ``veille`` command line: a thin layer over :mod:`engine` (one Typer app per group).

``main`` is the process's entry point (``veille``, ``python -m cli``); ``app`` is the Typer
application, built on first use (``from cli import app``); ``run`` runs one command in this
process and returns its exit status.

Signals (Ctrl-C, or SIGTERM from a scheduler) end a command with exit 130 and a message saying
what was and was not written, never with a traceback or the signal's own status (except in the
first tens of milliseconds, while the interpreter itself starts, before any of this runs):

- while the modules load (seconds: numba, polars, the commands) nothing has been written, and a
  KeyboardInterrupt raised inside numba's or LLVM's start-up could leave them half-initialised:
  the process ends at once;
- while a command runs, SIGTERM raises KeyboardInterrupt like Ctrl-C, and each command turns it
  into its message (``engine.commands._common``);
- while Typer reads the arguments (before the command runs) the command's message would not be
  printed: ``run`` says "interrupted: nothing was written.";
- once the command has returned, what it wrote is complete and the process ends at once
  (``os._exit``), without the interpreter's teardown: a signal during that teardown killed the
  process with the signal's status after a complete run (Python restores the default handlers
  first), and a KeyboardInterrupt that happened to cross C code running Python source (an
  extension's ``PyRun_String``) made CPython exit by SIGINT although the command had caught it
  and exited 130. Freeing a large run's memory object by object also took time for nothing.
"""
from __future__ import annotations

import gc
import os
import signal
import sys
import threading

_STOPPED_STARTING = "interrupted while starting: nothing was written."
_STOPPED_QUIETLY = "interrupted: nothing was written."
_STOPPED_AFTER = "interrupted after the command had ended: what it wrote is complete."

_app = None


def _stop(signum, frame):
    """SIGTERM (a scheduler stopping the job) stops a run like Ctrl-C: cleanly, saying what
    was and was not written."""
    raise KeyboardInterrupt


def _build():
    """The Typer application, with every command (imported once)."""
    global _app
    if _app is not None:
        return _app
    # A command is one batch process whose start-up (imports, numba's compiler, the rule packs)
    # allocates millions of objects that live until it ends: with Python's default thresholds
    # the collector traversed them all again and again (a fifth of a sample run's time).
    # Collect the youngest objects every 50,000 allocations, and freeze what start-up loaded
    # (below, and once the kernels and packs are loaded: engine.commands._common.settled).
    gc.set_threshold(50_000, 20, 20)

    import typer

    from engine.commands.backtest import backtest
    from engine.commands.generate import generate
    from engine.commands.queue import app as queue_app
    from engine.commands.report import report
    from engine.commands.rules import app as rules_app
    from engine.commands.score import score
    from engine.commands.train import train

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
    _app = app
    return app


def __getattr__(name: str):
    if name == "app":
        return _build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run(args: list[str] | None = None) -> int:
    """Run one ``veille`` command (``args``, or the process's arguments) in this process: its
    exit status."""
    from engine.commands.stopping import stop_at_once

    with stop_at_once(_STOPPED_STARTING):
        app = _build()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    try:
        app(args=args)                  # standalone mode: ends with SystemExit
    except SystemExit as exc:
        if exc.code == 130 and _typer_stopped(exc):
            print(_STOPPED_QUIETLY, file=sys.stderr)
        return _status(exc)
    except KeyboardInterrupt:           # while Typer was building the command, before it ran
        print(_STOPPED_QUIETLY, file=sys.stderr)
        return 130
    return 0


def _typer_stopped(exc: SystemExit) -> bool:
    """Typer turned a KeyboardInterrupt into a silent exit 130: the signal came while it read
    the arguments, or during a command that does not report interruptions itself (those that
    write nothing: ``rules test``, ``validate``, ``explain``)."""
    import typer

    return (isinstance(exc.__context__, typer.Exit)
            and isinstance(exc.__context__.__cause__, KeyboardInterrupt))


def main() -> None:
    """The process: one command, then exit at once with its status (see the module's text)."""
    try:
        code = run()
    except KeyboardInterrupt:           # a signal in the instant the command was returning
        print(_STOPPED_AFTER, file=sys.stderr)
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
