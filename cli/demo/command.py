"""``adamml demo``: generate the synthetic audio-visual dataset, train small unimodal networks,
the weighted-fusion baseline and AdaMML, and compare them in one table (about 11 minutes on 2 CPU cores).

The demo config lives here (not in configs/) so that a fresh install needs no file:
``adamml demo --show-config`` prints it as YAML, ready for ``adamml train``. It is
configs/synthetic/rgb_audio.yaml (``--quick``: rgb_audio_quick.yaml) apart from name and
output_dir; tests/test_engine_demo.py keeps them the same.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import typer

from adamml_cli.output import console, emit_json, err_console, table, user_errors

# Small networks at 64 px / 4 frames; the policy sees 32 px and costs a few percent of
# what it can save. Options chosen from the prototype lessons (docs/training.md).
DEMO_CONFIG: dict[str, Any] = {
    "name": "demo",
    "dataset": {
        "name": "synthetic",
        "options": {"num_classes": 8, "train_per_class": 40, "val_per_class": 15, "duration": 4.0},
    },
    "modalities": ["rgb", "audio"],
    "modality_options": {
        "rgb": {"crop_size": 64, "policy_size": 32},
        "audio": {"frequency_bins": 128, "hop_ms": 10.0, "time_frames": 128, "input_size": 64, "policy_size": 32},
    },
    "sampling": {"train_segments": 5, "test_segments": 5, "frames_per_segment": 4, "frame_stride": 4,
                 "decode_short_side": 96},
    "recognition": {
        # dropout as before issue 19 (the release's 0.5 is the default now): the demo's numbers stay as measured
        "rgb": {"backbone": {"name": "resnet50_tsn", "options": {"depth": 18, "width": 16, "dropout": 0.0}}},
        "audio": {"backbone": {"name": "mobilenet_v2", "options": {"width_mult": 0.5, "dropout": 0.2}}},
    },
    "policy": {
        "backbones": {
            "rgb": {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 64}},
            "audio": {"name": "mobilenet_v2", "options": {"width_mult": 0.25, "last_channel": 64}},
        },
        "mlp_dim": 128,
        "hidden_size": 64,
        "final_temperature": 1.0,
        "view_crop": "independent",  # as before issue 19 (default: shared, the paper's)
    },
    "fusion": {"name": "weighted"},
    # lambda_k = 0.1 x cost_k / max cost from the counted costs (rgb 0.1, audio ~0.027): rgb costs ~3.7x audio
    # here, not ~47x as with the paper's networks (docs/training.md, issue 13 experiments)
    "loss": {"efficiency_weights": {"rgb": 0.25, "audio": 0.05}, "gamma": 10.0, "efficiency_from_costs": 0.1},
    "train": {
        # policy_distill gives every decision a direct target: the frozen networks' own probability of
        # the label on that segment (docs/training.md, "What the demo uses, and why")
        "stages": ["unimodal", "fusion", "policy_distill", "warmup", "alternating", "finetune"],
        "batch_size": 16,
        "unimodal": {"epochs": 6, "optimizer": {"lr": 0.01, "milestones": [4]}},
        "fusion": {"epochs": 1, "optimizer": {"lr": 0.01}},
        # not in the demo's stages: `adamml compare` on this config trains the joint baselines one epoch each
        "joint": {"epochs": 1, "optimizer": {"lr": 0.01}},
        "policy_distill": {"epochs": 6, "optimizer": {"name": "adam", "lr": 0.003}, "target": "probability"},
        "warmup": {"epochs": 1, "optimizer": {"lr": 0.001}},
        "alternating": {
            "epochs": 2,
            "policy_passes": 1,
            "policy_holdout": 0.0,
            "recognition_optimizer": {"name": "sgd", "lr": 0.001, "milestones": []},
            "policy_optimizer": {"name": "adam", "lr": 0.001, "milestones": []},
        },
        "finetune": {"epochs": 1, "optimizer": {"lr": 0.001}},
        "fused_average": "selected",
        "decision_rule": "rate_matched",
        "policy_batchnorm": "recalibrate",
        # as before issue 19 (defaults: the release's train-mode BatchNorm and best over alternating + fine-tuning)
        "frozen_batchnorm": "eval",
        "best_model": "alternating",
        "validate_stages": False,
        "log_every": 5,
    },
    "runtime": {"device": "auto", "workers": 1, "threads": 1, "seed": 0},
}

QUICK_OVERRIDES = [
    "dataset.options.train_per_class=12", "dataset.options.val_per_class=6", "train.unimodal.epochs=2",
    "train.unimodal.optimizer.milestones=[]", "train.policy_distill.epochs=2",
]


def demo_config(output: Path, *, seed: int = 0, data_root: Path | None = None, quick: bool = False,
                overrides: list[str] | None = None):
    from adamml_core.config import apply_overrides, resolve_config, validate_config

    data = copy.deepcopy(DEMO_CONFIG)
    data["output_dir"] = str(output)
    data["runtime"]["seed"] = seed
    if data_root is not None:
        data["dataset"]["options"]["root"] = str(data_root)
    apply_overrides(data, (QUICK_OVERRIDES if quick else []) + list(overrides or []))
    from adamml_cli.session import components_for

    cfg = validate_config(data)
    return resolve_config(cfg, components_for(cfg))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="run folder"),
    seed: int = typer.Option(0, "--seed", help="seed of the training run (the dataset has its own, dataset.options.seed)"),
    seeds: int = typer.Option(1, "--seeds", min=1, help="train this many seeds (--seed, --seed+1, ...) into <output>/seed-<s> and report mean ± spread"),
    data_root: Path = typer.Option(None, "--data-root", help="where the synthetic videos are cached (default ~/.cache/adamml/synthetic)"),
    quick: bool = typer.Option(False, "--quick", help="a much smaller run (about 3 minutes): checks the pipeline, not the method"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides of the demo config"),
    show_config: bool = typer.Option(False, "--show-config", help="print the demo config as YAML and exit"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Train and compare AdaMML with weighted fusion of all modalities on synthetic audio-visual videos."""
    from adamml_cli.train import engine_errors

    say = (lambda m: None) if json_output else (lambda m: err_console.print(f"[dim]{m}[/]"))
    with user_errors(), engine_errors():
        cfg = demo_config(output, seed=seed, data_root=data_root, quick=quick, overrides=overrides)
        if show_config:
            import yaml

            from adamml_core.config import config_to_dict

            console.print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), highlight=False, end="")
            return
        if seeds > 1:
            report = run_seeds(output, list(range(seed, seed + seeds)), data_root=data_root, quick=quick,
                               overrides=overrides, progress=not json_output, say=say)
        else:
            report = run_demo(cfg, progress=not json_output, say=say)
    if json_output:
        emit_json(report)
        return
    (print_seeds_report if seeds > 1 else print_report)(report)


def run_seeds(output: Path, seeds: list[int], *, data_root: Path | None, quick: bool, overrides: list[str] | None,
              progress: bool = True, say=lambda message: None) -> dict[str, Any]:
    """The demo once per training seed (same dataset), then mean and spread of every row."""
    from adamml_cli.demo.seeds import seeds_report

    reports = []
    for k, seed in enumerate(seeds):
        say(f"seed {seed} ({k + 1} of {len(seeds)})")
        cfg = demo_config(output / f"seed-{seed}", seed=seed, data_root=data_root, quick=quick, overrides=overrides)
        reports.append(run_demo(cfg, progress=progress, say=say))
    return seeds_report(reports, seeds)


def print_seeds_report(report: dict[str, Any]) -> None:
    from adamml_cli.demo.seeds import per_seed_rows, summary_rows

    columns, rows = summary_rows(report["summary"])
    seeds = report["seeds"]
    console.print(table(f"adamml demo over {len(seeds)} seeds ({', '.join(map(str, seeds))}): mean ± sample std",
                        columns, rows))
    console.print(table("per seed: AdaMML against its own weighted fusion",
                        ["seed", "AdaMML top-1", "fusion top-1", "gap", "GFLOPs vs fusion", "AdaMML informative % per modality"],
                        per_seed_rows(report)))
    for name, target in report["targets"].items():
        if name != "all_hold":
            value = target["value"]
            shown = "-" if value is None else f"{value:.3f}"
            console.print(f"{name}: {shown} ({'holds' if target['holds'] else 'does not hold'})", highlight=False)
    console.print(f"Time: {report['seconds']['total']:.0f} s in all. versions: "
                  + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items()), highlight=False)


def run_demo(cfg, *, progress: bool = True, say=lambda message: None) -> dict[str, Any]:
    from adamml_cli.session import components_for
    from adamml_core.engine.checkpoint import load_checkpoint
    from adamml_core.engine.train.trainer import Trainer
    from adamml_core.media.memory import clear as forget_preloaded, preload

    started = time.perf_counter()
    say(f"synthetic dataset: {cfg.dataset.options}")
    trainer = Trainer(cfg, components=components_for(cfg), progress=progress, log=say)
    # Every pass visits every video again: decode each clip once (~1.8 GB for the demo) instead of
    # ~30 times; the readers then give the very same arrays (adamml_core/media/memory.py).
    records = [r for split in ("train", "val") for r in trainer.exp.records[split]]
    loaded = preload(sorted({r.path for r in records}), cfg.sampling.decode_short_side)
    say(f"decoded {loaded['videos']} videos into memory ({loaded['bytes'] / 2**30:.1f} GiB)")
    prepared = time.perf_counter()
    try:
        trainer.fit()
        trained = time.perf_counter()
        adamml = trainer.evaluate("adaptive")

        # the baselines use the networks as they were before AdaMML's stages (lesson: a network
        # fine-tuned behind a policy does worse when run on everything)
        baseline = trainer.exp.build_system().to(trainer.ctx.device)
        baseline.load_state_dict(load_checkpoint(trainer.run.checkpoint("fusion"))["model"])
        val = trainer.exp.records["val"]
        fusion = trainer.evaluator.evaluate(baseline, val, mode="all")
        unimodal = [trainer.evaluator.evaluate(baseline, val, mode=f"unimodal:{m}") for m in cfg.modalities]
    finally:
        forget_preloaded()  # the memory goes back when the demo is done (it may run inside a longer process)
    finished = time.perf_counter()
    rows = [("AdaMML", adamml), ("weighted fusion", fusion)]
    rows += [(f"{m} only", r) for m, r in zip(cfg.modalities, unimodal)]
    report = {
        "results": {name: r for name, r in rows},
        "accuracy_gap": adamml["top1"] - fusion["top1"],
        "gflops_ratio": adamml["gflops_per_video"] / fusion["gflops_per_video"],
        "seconds": {"dataset": round(prepared - started, 1), "training": round(trained - prepared, 1),
                    "evaluation": round(finished - trained, 1), "total": round(finished - started, 1)},
        "run_dir": str(trainer.run.root),
        "videos": {"train": len(trainer.exp.records["train"]), "val": len(trainer.exp.records["val"])},
        "versions": package_versions(),
    }
    report["target_met"] = report["accuracy_gap"] >= -1.0 and report["gflops_ratio"] <= 0.5
    trainer.run.log({"event": "demo", **report})
    return report


# The packages whose kernels or decoders decide the demo's last bits (and so, through training, its table).
VERSIONED = ("torch", "torchvision", "torchaudio", "av", "opencv-contrib-python", "numpy")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def print_report(report: dict[str, Any]) -> None:
    results = report["results"]
    names = list(next(iter(results.values()))["selection"])
    rows = []
    for method, r in results.items():
        quality = r.get("selection_quality") or {}
        rows.append([
            method, f"{r['top1']:.1f}", f"{r['gflops_per_video'] * 1000:.1f}",
            *[f"{r['selection'][m]:.2f}" for m in names], f"{r['videos_per_second']:.1f}",
            "-" if quality.get("precision") is None else f"{100 * quality['precision']:.1f}",
        ])
    columns = ["method", "top-1 %", "MFLOPs/video", *[f"used {m}" for m in names], "videos/s", "informative %"]
    t = table(f"adamml demo: {report['videos']['val']} validation videos", columns, rows)
    t.caption = ("used <m>: share of segments on which <m>'s network ran; informative: share of the selected items "
                 "whose modality carries the label there (ground truth)")
    console.print(t)
    verdict = "met" if report["target_met"] else "not met"
    console.print(
        f"AdaMML vs weighted fusion: {report['accuracy_gap']:+.1f} points top-1 at {100 * report['gflops_ratio']:.0f}% "
        f"of its GFLOPs (target: within 1 point at <= 50%: {verdict}). "
        f"Time: {report['seconds']['total']:.0f} s (training {report['seconds']['training']:.0f} s). "
        f"Run folder: {report['run_dir']}"
    )
    versions = report.get("versions") or {}
    if versions:
        console.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), highlight=False)
