"""What every command shares: one clear paragraph for errors the user can fix."""
from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from ..errors import VeilleError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False)


def friendly_errors(fn):
    """Turn a VeilleError into a one-paragraph message and a non-zero exit; bugs still trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VeilleError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: nothing was written.")
            sys.exit(130)

    return wrapper
