"""``adamml datasets make-split``: draws a Mini-Sports1M split (the plugin adds it to the host's CLI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def _datasets_group(app: typer.Typer) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == "datasets" and group.typer_instance is not None:
            return group.typer_instance
    group = typer.Typer(help="Registered datasets.", no_args_is_help=True)
    app.add_typer(group, name="datasets")
    return group


def add_make_split(app: typer.Typer) -> None:
    group = _datasets_group(app)
    if any(c.name == "make-split" for c in group.registered_commands):
        return  # the app was built twice in one process (tests)
    group.command("make-split")(make_split_command)


def make_split_command(
    partition: Path = typer.Option(..., "--partition", help="a Sports-1M partition file (`<url> <labels>` lines) or its JSON variant"),
    out: Path = typer.Option(Path("data/mini_sports1m/lists"), "--out", help="folder for train.txt and test.txt"),
    train_per_class: int = typer.Option(30, min=1, help="training videos per class (the paper: 30)"),
    test_per_class: int = typer.Option(10, min=0, help="test videos per class (the paper: 10)"),
    seed: int = typer.Option(0, help="the draw depends only on the seed and the partition's content"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Draw a Mini-Sports1M split (30 train + 10 test videos per class) from a Sports-1M partition."""
    from adamml_core.api import ConfigError

    from adamml_plugins.datasets.mini_sports1m import make_split

    try:
        summary = make_split(partition, out, train_per_class=train_per_class, test_per_class=test_per_class, seed=seed)
    except (ConfigError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    typer.echo(f"wrote {summary['train']} training videos to {summary['train_list']}")
    typer.echo(f"wrote {summary['test']} test videos to {summary['test_list']}")
    if summary["classes_short"]:
        typer.echo(f"{len(summary['classes_short'])} classes had fewer than {train_per_class + test_per_class} videos", err=True)
    typer.echo("use them with: dataset.options.train_list=... dataset.options.val_list=...")
