"""``adamml datasets``: the registered datasets, and ``check`` which videos of a config's dataset exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from adamml_cli.output import console, emit_json, err_console, table, user_errors

SPLITS = ("train", "val")  # adamml_core.datasets.Split

datasets_app = typer.Typer(
    help="List the registered datasets (class count, metric); `check CONFIG` scans a dataset's videos.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")


def describe_datasets(components: Any) -> list[dict[str, Any]]:
    """Name, class count, metric and origin of every registered dataset (built with default options)."""
    rows = []
    for entry in components.datasets:
        classes: int | None = None
        metric = getattr(entry.factory, "metric", "?")
        multi_label = getattr(entry.factory, "multi_label", False)
        note = ""
        try:
            dataset = components.datasets.build(entry.name, {})
            classes = dataset.num_classes
            metric, multi_label = dataset.metric, dataset.multi_label
        except Exception as exc:  # noqa: BLE001 - a dataset that needs options (a root, a class list) still lists
            note = f"depends on options ({type(exc).__name__})"
        rows.append(
            {
                "name": entry.name,
                "classes": classes,
                "metric": metric,
                "multi_label": multi_label,
                "description": entry.description,
                "plugin": entry.origin.plugin,
                "distribution": entry.origin.distribution,
                "note": note,
            }
        )
    return rows


@datasets_app.callback()
def datasets(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """List registered datasets with their class count and metric (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    from adamml_cli.session import plugin_system

    with user_errors():
        rows = describe_datasets(plugin_system().components)
    if json_output:
        emit_json({"datasets": rows})
        return
    console.print(
        table(
            "Registered datasets",
            ["name", "classes", "metric", "labels", "plugin", "description"],
            [
                [r["name"], r["classes"] if r["classes"] is not None else "per options", r["metric"],
                 "multi" if r["multi_label"] else "single", r["plugin"], r["description"]]
                for r in rows
            ],
        )
    )


@datasets_app.command("check")
def check(
    config: Path = typer.Argument(..., help="experiment config (.yaml/.yml/.toml)"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides, e.g. dataset.options.root=/data/kinetics"),
    splits: list[str] = typer.Option(["train", "val"], "--split", help="split(s) to scan (repeat the option)"),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="open each file through the media sources to find unreadable ones and those without audio"),
    decode: bool = typer.Option(False, "--decode/--no-decode", help="with --probe: read every frame and the audio once, counting damaged packets and unreadable frames (a full decode of the dataset; default: open each file and decode its first frame)"),
    examples: int = typer.Option(5, min=0, help="examples shown per problem"),
    workers: int = typer.Option(8, min=1, help="files probed at once"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Scan a config's dataset: annotated videos found, missing, unreadable, damaged, without audio, with examples.

    Exit 0 when training could start (everything found, or dataset.allow_missing and something found), 1 otherwise.
    """
    from adamml_core.dataset_scan import scan_dataset
    from adamml_core.media.open import source_chain

    from adamml_cli.session import load_config_and_components

    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise typer.BadParameter(f"unknown split(s) {unknown}; splits: {', '.join(SPLITS)}", param_hint="--split")
    with user_errors():
        cfg, comps = load_config_and_components(config, overrides)
        dataset = comps.datasets.build(cfg.dataset.name, cfg.dataset.options, field_path="dataset.options")
        reports = scan_dataset(dataset, splits, probe=probe, max_examples=examples, progress=not json_output, workers=workers,
                               sources=source_chain(comps.media_sources, cfg.media.sources), decode=decode)
    ready = all(r.complete or (cfg.dataset.allow_missing and r.found > 0) for r in reports.values())
    if json_output:
        emit_json(
            {
                "config": str(config),
                "dataset": cfg.dataset.name,
                "root": str(getattr(dataset.options, "root", "")),
                "classes": dataset.num_classes,
                "allow_missing": cfg.dataset.allow_missing,
                "ready": ready,
                "splits": {name: r.to_dict() for name, r in reports.items()},
                "notes": {name: dataset.notes(name) for name in reports},
            }
        )
    else:
        _print_reports(cfg.dataset.name, dataset, reports, cfg.dataset.allow_missing, ready)
    if not ready:
        raise typer.Exit(1)


def _print_reports(name: str, dataset: Any, reports: dict, allow_missing: bool, ready: bool) -> None:
    rows = [[s, r.total, r.found, r.missing, *([r.unreadable, r.damaged, r.without_audio] if r.probed else ["-"] * 3)]
            for s, r in reports.items()]
    root = getattr(dataset.options, "root", "")
    console.print(table(f"Dataset '{name}' ({dataset.num_classes} classes) under {root}",
                        ["split", "annotated", "found", "missing", "unreadable", "damaged (usable)", "without audio"], rows))
    for split, report in reports.items():
        for status, items in report.examples.items():
            for item in items:  # soft_wrap: a long path stays on one line (and greppable)
                console.print(f"  {split} {status.replace('_', ' ')}: {item['path']} ({item['reason']})", highlight=False,
                              soft_wrap=True)
    for split in reports:
        for note in dataset.notes(split):
            console.print(f"  {note}", highlight=False, soft_wrap=True)
    if ready:
        console.print("[green]ready:[/] training can start" + (" on the videos found (dataset.allow_missing)" if allow_missing and not all(r.complete for r in reports.values()) else ""))
    else:
        err_console.print("[bold red]not ready:[/] videos are missing or unreadable; fix dataset.options (root, file_patterns) or set dataset.allow_missing: true")
