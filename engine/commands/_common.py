"""What every command shares: plain-text output and one renderer for the errors a user can fix.

User data (patient ids, file names, rule text, reasons) is printed as plain text: never read as
rich markup (an id like ``P[/x]1`` would break it) and with control characters shown escaped
(an id carrying an ANSI escape sequence must not reach the terminal as one).
"""
from __future__ import annotations

import functools
import gc
import re
import sys

import typer
from rich.console import Console
from rich.text import Text

from ..errors import VeilleError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value) -> str:
    """``value`` as text with control characters escaped (``\\x1b``); newlines and tabs kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def say(*parts, err: bool = False) -> None:
    """Print user-facing text literally (no markup, control characters escaped)."""
    (err_console if err else console).print(plain(" ".join(str(p) for p in parts)),
                                            markup=False)


def cell(value) -> Text:
    """A table cell holding user data as plain text."""
    return Text(plain("" if value is None else value))


def fail(exc: VeilleError) -> None:
    """The one rendering of an error the user can fix: ``error: …`` on stderr, then exit."""
    err_console.print(Text("error: ", style="bold red") + Text(plain(exc)))
    raise typer.Exit(exc.exit_code)


def friendly_errors(fn):
    """Turn a VeilleError into one paragraph and a non-zero exit; bugs still trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VeilleError as exc:
            fail(exc)
        except KeyboardInterrupt:
            stopped()
        except SystemError as exc:
            if not isinstance(exc.__cause__, KeyboardInterrupt):
                raise
            stopped()

    return wrapper


def stopped() -> None:
    """A command stopped by Ctrl-C or SIGTERM before its outputs were written.

    The signal's KeyboardInterrupt usually arrives as itself; when it is raised while a
    compiled function runs Python code (numba's dispatcher checking an argument's type), CPython
    reports it as ``SystemError: … returned a result with an exception set`` caused by the
    KeyboardInterrupt, which is the same stop."""
    err_console.print("interrupted before the outputs were written: nothing was written.",
                      markup=False)
    sys.exit(130)


def settled() -> None:
    """Once a command has loaded its kernels, rule packs and model: those objects live until
    the process ends, so the garbage collector stops traversing them (``gc.freeze``)."""
    gc.freeze()
