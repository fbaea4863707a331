"""Placeholder: the `prepare` command group is added by its issue (see COMMAND_MODULES in app.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing registered yet."""
