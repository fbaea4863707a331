"""How commands talk to people (rich tables, one-line errors) and to scripts (``--json``)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.table import Table

from adamml_core.config import ConfigError
from adamml_core.plugins import PluginLoadError
from adamml_core.registry import ComponentOptionsError, RegistryError

console = Console()
err_console = Console(stderr=True)

# Exceptions that are the user's to fix: reported as one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    RegistryError,
    ComponentOptionsError,
    PluginLoadError,
    FileNotFoundError,
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def emit_json(document: Any) -> None:
    """One JSON document on stdout, nothing else (scripts parse it)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(v) for v in r])
    return t
