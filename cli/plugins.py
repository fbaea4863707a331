"""``adamml plugins``: every registered component and every plugin, with origins."""

from __future__ import annotations

import typer

from adamml_cli.output import console, emit_json, err_console, table, user_errors


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)


def component_document(kind: str, entry) -> dict:
    """One component for ``--json``: origin, description, the options' JSON schema; a media source's priority too."""
    doc = {
        "name": entry.name,
        "plugin": entry.origin.plugin,
        "distribution": entry.origin.distribution,
        "description": entry.description,
        "options_schema": entry.options_model.model_json_schema(),
    }
    if kind == "media_sources":
        factory = entry.factory
        doc["priority"] = int(getattr(factory, "priority", 0))
        # a source without accepts() is asked whether something exists at the path (media.open.accepting_source)
        doc["accepts"] = str(getattr(factory, "accepts_help", "any existing path (a file, or a folder)"))
    return doc


def plugins(json_output: bool = typer.Option(False, "--json", help="print one JSON document")) -> None:
    """List registered components by kind (name, plugin, distribution, description) and the plugins.

    A plugin that failed (import, hook, duplicate name) is listed with its error; the others still load.
    """
    from adamml_cli.session import plugin_system

    with user_errors():
        system = plugin_system()
    kinds = system.components.kinds()
    if json_output:
        emit_json(
            {
                "components": {
                    kind: [
                        component_document(kind, e)
                        for e in registry
                    ]
                    for kind, registry in kinds.items()
                },
                "plugins": [vars(p) for p in system.plugins],
            }
        )
        return
    rows = [
        [kind, e.name, e.origin.plugin, e.origin.distribution, e.description]
        for kind, registry in kinds.items()
        for e in registry
    ]
    console.print(table("Registered components", ["kind", "name", "plugin", "distribution", "description"], rows))
    prow = [[p.name, p.distribution, p.module, p.status, "; ".join([p.error] + p.problems if p.error else p.problems)
             or ", ".join(p.hooks)] for p in system.plugins]
    console.print(table("Plugins (entry-point group 'adamml')", ["plugin", "distribution", "module", "status", "hooks / error"], prow))
    if system.failed:
        err_console.print(f"[yellow]{len(system.failed)} plugin(s) reported problems[/]: "
                          + ", ".join(p.name for p in system.failed), highlight=False)
