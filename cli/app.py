"""The ``adamml`` Typer application: one module per command group, plus plugin commands."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="adamml",
    help="Adaptive multi-modal video recognition (AdaMML): train, evaluate and inspect policy-plus-recognition systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module exposes ``register(app)``; the order is the order of --help.
COMMAND_MODULES = (
    "demo",
    "train",
    "evaluate",
    "prepare",
    "datasets",
    "flops",
    "benchmark",
    "plugins",
    "config",
)


def build_app() -> typer.Typer:
    for name in COMMAND_MODULES:
        importlib.import_module(f"adamml_cli.{name}").register(app)
    # Plugins may add their own subcommands; a broken plugin is reported by the loader, not here.
    from adamml_core.plugins import plugin_system

    try:
        plugin_system().add_commands(app)
    except Exception as exc:  # noqa: BLE001 - the CLI must still start to report it
        from adamml_cli.output import err_console

        err_console.print(f"[yellow]warning:[/] plugin commands not added: {exc}")
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
