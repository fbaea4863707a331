"""``adamml config show|validate``: the resolved, validated experiment config."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from adamml_cli.output import console, emit_json, user_errors

config_app = typer.Typer(help="Show or validate an experiment config (YAML or TOML) with key.path=value overrides.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


def load_resolved(path: Path, overrides: list[str] | None):
    """Load, override, validate and resolve against the registries: everything a command needs before work.

    The plugins are loaded after the config is read, so that its ``plugins.block``
    keeps a blocked plugin from being imported at all; the registries used are
    ``adamml_cli.session.components_for(cfg)``. The training recipe is checked too.
    """
    return load_resolved_with_components(path, overrides)[0]


def load_resolved_with_components(path: Path, overrides: list[str] | None, *, weights_loaded: bool = False):
    """(resolved config, the registries it was resolved with); the training recipe checked too.

    ``weights_loaded``: the command starts from another run's weights (``adamml train --init``/``--resume``).
    """
    from adamml_core.config import resolve_config
    from adamml_core.engine.train.recipe import check_recipe

    from adamml_cli.output import err_console
    from adamml_cli.session import load_config_and_components

    cfg, components = load_config_and_components(path, overrides)
    cfg = resolve_config(cfg, components)
    for note in check_recipe(cfg, components, weights_loaded=weights_loaded):  # stage/fusion mismatches etc., before any work
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    return cfg, components


@config_app.command("show")
def show(
    config: Path = typer.Argument(..., help="experiment config (.yaml/.yml/.toml)"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides, e.g. train.batch_size=8 modalities=[rgb,audio]"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Print the resolved config: defaults filled in, components checked, plugin options validated."""
    from adamml_core.config import config_to_dict

    with user_errors():
        cfg = load_resolved(config, overrides)
    data = config_to_dict(cfg)
    if json_output:
        emit_json(data)
    else:
        console.print(yaml.safe_dump(data, sort_keys=False), highlight=False, end="")


@config_app.command("validate")
def validate(
    config: Path = typer.Argument(..., help="experiment config (.yaml/.yml/.toml)"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Exit 0 when the config is valid, 2 with a one-line reason naming the field otherwise."""
    with user_errors():
        cfg = load_resolved(config, overrides)
    if json_output:
        emit_json({"valid": True, "config": str(config), "name": cfg.name})
    else:
        console.print(f"[green]valid:[/] {config} ({cfg.name}; modalities {', '.join(cfg.modalities)})")
