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
    """Load, override, validate and resolve against the registries: everything a command needs before work."""
    from adamml_core.config import load_config, resolve_config
    from adamml_core.plugins import load_plugins

    cfg = load_config(path, overrides)
    system = load_plugins(block=cfg.plugins.block) if cfg.plugins.block else None
    from adamml_core.plugins import components

    return resolve_config(cfg, system.components if system else components())


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
