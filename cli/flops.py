"""``adamml flops CONFIG``: GFLOPs per component and per video, counted from the built networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from adamml_cli.output import console, emit_json, table, user_errors


def register(app: typer.Typer) -> None:
    app.command("flops")(flops)


def _num_classes(cfg: Any, components: Any, given: int | None) -> int:
    if given is not None:
        return given
    from adamml_core.config import ConfigError

    try:
        dataset = components.datasets.build(cfg.dataset.name, cfg.dataset.options, field_path="dataset.options")
        return dataset.num_classes
    except Exception as exc:  # noqa: BLE001 - any failure here only means "pass --num-classes"
        raise ConfigError(
            f"cannot get the number of classes from dataset '{cfg.dataset.name}' ({type(exc).__name__}: {exc}); "
            f"pass --num-classes"
        ) from None


def _fmt(value: float) -> str:
    return f"{value:.4f}" if value < 10 else f"{value:.2f}"


def flops(
    config: Path = typer.Argument(..., help="experiment config (.yaml/.yml/.toml)"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides, e.g. modalities=[rgb,audio]"),
    selection_ratio: float = typer.Option(0.5, "--selection-ratio", min=0.0, max=1.0,
                                          help="share of segments on which each modality is used, for the AdaMML total"),
    segments: int | None = typer.Option(None, "--segments", min=1, help="segments per video (default: sampling.test_segments)"),
    num_classes: int | None = typer.Option(None, "--num-classes", min=1, help="default: the dataset's class count"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Per-segment GFLOPs of the policy and every recognition network, and per-video totals
    for all modalities on every segment versus AdaMML at a selection ratio (1 multiply-add = 1 FLOP)."""
    from adamml_cli.session import load_config_and_components
    from adamml_core.config import resolve_config
    from adamml_core.cost_model import CostModel
    from adamml_core.flops import config_cost_report

    with user_errors():
        cfg, components = load_config_and_components(config, overrides)
        cfg = resolve_config(cfg, components)
        classes = _num_classes(cfg, components, num_classes)
        report = config_cost_report(cfg, classes, components, segments=segments)
    report["config"] = str(config)
    report["at_selection_ratio"] = CostModel.from_report(report).at_rates(selection_ratio)
    if json_output:
        emit_json(report)
        return

    c = report["segments"]
    seg = report["per_segment"]
    names = report["components"]
    rows = []
    for m, g in seg["policy_branches"].items():
        shape = "x".join(map(str, report["inputs"]["policy"][m]))
        rows.append([f"policy branch: {names['policy_views'][m]}", names["policy"][m]["name"], shape, _fmt(g), _fmt(g * c)])
    rows.append(["policy MLP + LSTM + heads", "", "", _fmt(seg["policy_head"]), _fmt(seg["policy_head"] * c)])
    rows.append(["policy total", "", "", _fmt(seg["policy_total"]), _fmt(seg["policy_total"] * c)])
    for m, g in seg["recognition"].items():
        shape = "x".join(map(str, report["inputs"]["recognition"][m]))
        rows.append([f"recognition: {m}", names["recognition"][m]["name"], shape, _fmt(g), _fmt(g * c)])
    rows.append([f"fusion: {names['fusion']}", "", "", _fmt(seg["fusion"]), _fmt(seg["fusion"] * c)])
    console.print(table(f"{cfg.name}: GFLOPs (1 multiply-add = 1 FLOP), {c} segments, {classes} classes",
                        ["component", "network", "input", "per segment", f"per video (x{c})"], rows))
    totals = report["at_selection_ratio"]
    console.print(table("per video", ["execution", "GFLOPs"], [
        [f"all modalities, every segment ({names['fusion']} fusion)", _fmt(totals["all_modalities"])],
        [f"AdaMML: policy + each modality on {selection_ratio:.0%} of segments", _fmt(totals["adamml"])],
        ["saving", f"{totals['saving']:.1%}"],
    ]))
    extra = {m: g for m, g in seg["preprocessing_not_counted"].items() if g}
    if extra:
        listed = ", ".join(f"{m} ~{_fmt(g)} GFLOPs/segment" for m, g in extra.items())
        console.print(f"not counted above (input preparation, estimated by the modality): {listed}", highlight=False)
