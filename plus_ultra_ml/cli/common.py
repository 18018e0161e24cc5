"""What every command shares: one console, user errors as one sentence, and progress bars."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from plus_ultra_ml.errors import PlusUltraError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


def user_errors(command: F) -> F:
    """Turn a `PlusUltraError` into one red sentence on stderr and its exit code; no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(
            level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=err_console, show_path=False)]
        )
        try:
            return command(*args, **kwargs)
        except PlusUltraError as error:
            err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def progress() -> Progress:
    """A rich progress bar for long work (use as a context manager)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
