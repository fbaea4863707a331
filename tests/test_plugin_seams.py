"""Issue 20: the seams a third-party plugin uses, end to end, through the CLI.

The test distribution (tests/plugin_distribution) adds a loss term (``select_mass``, on the
policy's P(select)) to the built-in alternating stage from YAML, and a media source with options
(``zip_members``) that is the only one able to open a ``csv_list`` dataset's archive members.
A tiny run trains and evaluates on them; then each failure of issue 20 item 4 is checked for its
exit code and its one line: the checkpoint's media source missing (exit 2, the package to install),
and more substituted videos than ``dataset.max_failed_share`` in train, eval --mode all and
eval --mode adaptive (exit 1, which videos and why).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from engine_configs import TINY, data_root  # noqa: F401 - module fixture
from media_factory import write_garbage, write_video

CLASSES = ["bars", "dots"]
ARCHIVE = "clips.vidzip"  # not ".zip": accepted only because media.sources.zip_members.suffixes says so


def _archive(root: Path, garbage: bool = False) -> None:
    """``root/clips.vidzip`` with 3 train + 1 val clip per class, and the csv lists naming its members."""
    staging = root / "staging"
    rows = {"train": [], "val": []}
    with zipfile.ZipFile(root / ARCHIVE, "w", zipfile.ZIP_STORED) as z:
        for label, name in enumerate(CLASSES):
            for k in range(4):
                member = f"{name}/{k}.mp4"
                file = staging / member
                if garbage:
                    file.parent.mkdir(parents=True, exist_ok=True)
                    write_garbage(file)
                else:
                    write_video(file, width=64, height=48, fps=10, num_frames=20, speed=1 + 2 * label,
                                tone_hz=400.0 + 600 * label, sample_rate=16000, stereo=False)
                z.write(file, member)
                rows["train" if k < 3 else "val"].append(f"{ARCHIVE}/{member},{name}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")


def _config(root: Path, out: Path) -> dict:
    data = json.loads(json.dumps(TINY))
    data["dataset"] = {"name": "csv_list", "options": {"root": str(root), "train_list": str(root / "train.csv"),
                                                       "val_list": str(root / "val.csv"),
                                                       "class_list": str(root / "classes.txt")}}
    data["media"] = {"sources": {"zip_members": {"suffixes": [".vidzip"], "max_member_mb": 8}}}
    data["train"].update(stages=["warmup", "alternating"], batch_size=3)
    data["train"]["alternating"] = {"epochs": 1, "policy_passes": 1,
                                    "loss_terms": {"policy": [{"name": "select_mass", "options": {"weight": 0.5}}]}}
    data["output_dir"] = str(out)
    return data


@pytest.fixture(scope="module")
def app():
    from adamml_cli.app import build_app

    return build_app()


@pytest.fixture
def trained(grayscale_plugin, tmp_path, app, one_thread):
    root = tmp_path / "data"
    root.mkdir()
    _archive(root)
    config = tmp_path / "zip.yaml"
    config.write_text(yaml.safe_dump(_config(root, tmp_path / "run")))
    result = CliRunner().invoke(app, ["train", str(config), "--json"])
    assert result.exit_code == 0, result.output
    return root, config, tmp_path / "run"


def _one_error_line(result) -> str:
    """The one error line (a training run may have printed its progress before it)."""
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    assert result.output.rstrip().endswith(lines[0]), result.output  # nothing after it
    return lines[0]


def test_plugin_term_source_and_archive_members_train_evaluate_and_fail_clearly(trained, app):
    root, config, run = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    policy = [r for r in rows if r.get("stage") == "alternating" and r.get("pass") == "policy" and r.get("event") == "pass"]
    assert policy and policy[0]["select_mass"] > 0 and "efficiency" in policy[0]  # beside the stage's own term
    assert not any("select_mass" in r for r in rows if r.get("pass") == "recognition")
    ckpt = run / "checkpoints" / "alternating.pt"
    import torch

    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["components"]["media_sources"]["zip_members"]["distribution"] == "adamml-grayscale 0.1.0"
    assert saved["components"]["loss_terms"]["select_mass"]["plugin"] == "grayscale_recipe"

    runner = CliRunner()
    # --workers 1: the configured source travels to loader and pipeline worker processes
    ok = runner.invoke(app, ["eval", str(ckpt), "--mode", "all", "--mode", "adaptive", "--json", "--workers", "1"])
    assert ok.exit_code == 0, ok.output
    results = json.loads(ok.stdout)["results"]
    assert [r["mode"] for r in results] == ["all", "adaptive"] and "skipped" not in results[0]

    missing = runner.invoke(app, ["eval", str(ckpt), "--mode", "all"], env={"ADAMML_BLOCK_PLUGINS": "grayscale_archive"})
    assert missing.exit_code == 2
    line = _one_error_line(missing)
    assert "media source 'zip_members'" in line and "install adamml-grayscale" in line

    _archive(root, garbage=True)  # the same members, no longer decodable: every video is substituted
    for mode in ("all", "adaptive"):
        bad = runner.invoke(app, ["eval", str(ckpt), "--mode", mode, "--workers", "1"])  # counted in the main process
        assert bad.exit_code == 1, bad.output
        line = _one_error_line(bad)
        assert f"evaluation (mode {mode}): 2 of 2 videos (100 %) were skipped or substituted" in line
        assert "max_failed_share (5 %)" in line and "dots/3.mp4" in line and "cannot open archive member" in line
    retrain = runner.invoke(app, ["train", str(config), "-o", str(run.parent / "again")])
    assert retrain.exit_code == 1, retrain.output
    line = _one_error_line(retrain)
    assert "training pass 'warmup 1/1 recognition'" in line and "substituted: " in line and "cannot open" in line


def test_source_options_and_loss_terms_are_checked_before_any_work(grayscale_plugin, tmp_path, app):
    root = tmp_path / "data"
    root.mkdir()
    data = _config(root, tmp_path / "run")
    runner = CliRunner()

    def show(mutate) -> tuple[int, str]:
        cfg = json.loads(json.dumps(data))
        mutate(cfg)
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        result = runner.invoke(app, ["config", "show", str(path)])
        return result.exit_code, result.output

    code, out = show(lambda c: c["media"]["sources"]["zip_members"].update(sufixes=[".zip"]))
    assert code == 2 and "media.sources.zip_members" in out and "sufixes" in out and "suffixes" in out
    code, out = show(lambda c: c["media"]["sources"].update(zip_member={}))
    assert code == 2 and "media.sources.zip_member" in out and "zip_members" in out
    code, out = show(lambda c: c["train"]["alternating"]["loss_terms"].update(policy=["select_mas"]))
    assert code == 2 and "train.alternating.loss_terms.policy[0]" in out and "select_mass" in out
    code, out = show(lambda c: c["train"]["alternating"]["loss_terms"].update(polcy=["select_mass"]))
    assert code == 2 and "has no pass 'polcy'" in out and "recognition, policy" in out
    code, out = show(lambda c: c["train"].update(stages=["unimodal"], unimodal={"epochs": 1, "loss_terms": {
        "unimodal": ["select_mass"]}}))
    assert code == 2 and "'select_mass' needs probabilities" in out and "pass 'unimodal'" in out


def test_plugins_json_shows_options_schemas_and_source_priorities(grayscale_plugin, app):
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["components"]
    sources = {c["name"]: c for c in doc["media_sources"]}
    assert sources["zip_members"]["priority"] == 30 and "archive members" in sources["zip_members"]["accepts"]
    assert set(sources["zip_members"]["options_schema"]["properties"]) == {"suffixes", "max_member_mb"}
    assert sources["container"]["priority"] == 0 and sources["container"]["accepts"].startswith("regular files")
    stages = {c["name"]: c for c in doc["stages"]}
    assert "loss_terms" in stages["alternating"]["options_schema"]["properties"]
    terms = {c["name"]: c for c in doc["loss_terms"]}
    assert set(terms["select_mass"]["options_schema"]["properties"]) == {"weight"}


def test_adaptive_evaluation_judges_the_videos_it_could_open_and_stops_past_the_limit(data_root, tmp_path):
    """Issue 20 item 4: ``_selection_quality`` reopened every video outside on_error (a traceback)."""
    from adamml_core.engine.inference.evaluator import Evaluator
    from adamml_core.engine.experiment import build_experiment
    from adamml_core.engine.failures import TooManyFailedVideos
    from engine_configs import builtin_components, tiny_config

    cfg = tiny_config(data_root, tmp_path / "run", ["dataset.max_failed_share=0.3"])
    exp = build_experiment(cfg, components=builtin_components())
    records = exp.records["val"]
    write_garbage(records[0].path)  # found by the scan, undecodable when loaded
    system = exp.build_system()
    result = Evaluator(exp).evaluate(system, records, mode="adaptive")
    assert result["skipped"] == {"substituted": 1}, result.get("skipped")  # on_error: substitute (the default)
    assert result["selection_quality"] is not None  # judged on the 3 videos that open
    write_garbage(records[1].path)
    with pytest.raises(TooManyFailedVideos, match=r"evaluation \(mode all\): 2 of 4 videos \(50 %\)"):
        Evaluator(exp).evaluate(system, records, mode="all")
