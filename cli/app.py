"""The ``adamml`` Typer application: one module per command group, plus plugin commands.

Plugin commands are added only when the command line asks for something that is
not a built-in command (a plugin's command, ``--help``, or nothing): a built-in
command loads the plugins itself after reading its config, so that the config's
``plugins.block`` keeps a blocked plugin from being imported at all.
"""

from __future__ import annotations

import importlib
import sys

import typer


def new_app() -> typer.Typer:
    application = typer.Typer(
        name="adamml",
        help="Adaptive multi-modal video recognition (AdaMML): train, evaluate and inspect policy-plus-recognition systems.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @application.callback()
    def _each_invocation() -> None:
        # Runs before every command: it loads the plugins its own config allows, not a set an
        # earlier invocation in the same process (tests) loaded with other blocks or paths.
        from adamml_cli.session import reset

        reset()

    return application

# Each module exposes ``register(app)``; the order is the order of --help.
COMMAND_MODULES = (
    "demo.command",
    "train",
    "eval.command",
    "predict.command",
    "predict.explain",
    "compare.command",
    "prepare",
    "datasets",
    "flops",
    "benchmark.command",
    "plugins",
    "config",
)


def _children(group: typer.Typer) -> tuple[set[str], dict[str, typer.Typer]]:
    """(command names, sub-group name -> Typer) of a Typer app, as its command line spells them."""
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in group.registered_commands if c.callback}
    groups = {g.name: g.typer_instance for g in group.registered_groups if g.name and g.typer_instance}
    return commands, groups


def runs_builtin_command(application: typer.Typer, argv: list[str]) -> bool:
    """True when ``argv`` reaches a built-in command that is not a group (``train``, ``datasets check``).

    Plugins may add subcommands to a built-in group (``datasets make-split``), so a
    group alone does not tell: the words are followed down the built-in tree.
    """
    group = application
    for word in (a for a in argv if not a.startswith("-")):
        commands, groups = _children(group)
        if word in commands:
            return True
        if word not in groups:
            return False
        group = groups[word]
    return False


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """A fresh application with the built-in commands, plus plugin commands when ``argv`` may need them."""
    app = new_app()
    for name in COMMAND_MODULES:
        importlib.import_module(f"adamml_cli.{name}").register(app)
    argv = sys.argv[1:] if argv is None else argv
    if not runs_builtin_command(app, argv):
        from adamml_cli.output import err_console, user_errors
        from adamml_cli.session import plugin_system

        with user_errors():  # strict mode: a broken plugin is one error line, exit 2
            for report in plugin_system().add_commands(app):
                err_console.print(f"[yellow]warning:[/] plugin commands not added: {report}", highlight=False, soft_wrap=True)
    return app


def main() -> None:
    try:
        application = build_app()
    except typer.Exit as exc:  # a strict-mode plugin failure while adding commands: already reported in one line
        sys.exit(exc.exit_code)
    application()


if __name__ == "__main__":
    main()
