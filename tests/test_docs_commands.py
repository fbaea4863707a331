"""Every command of docs/getting-started.md and docs/own-videos.md runs, in order, on tiny generated data.

The commands come from the docs' ```bash blocks (tests/doc_runs.py reads them), so a command added
to a doc is run here without an edit; a shell block of another kind fails. The few commands too
slow for the suite run as the faster variant in ``doc_runs.SUBSTITUTIONS``, with the reason:

- ``adamml demo``: the same command at tiny sizes (15 synthetic videos, tiny networks, one epoch
  per stage) with ``--data-root data`` (never the user's ~/.cache);
- ``adamml demo --quick``: ``--show-config`` (the quick demo is the full demo plus config
  overrides; its config is resolved and checked, its training path is the run above);
- ``adamml train my_videos.yaml``: the same config at the tests' sizes, shared with
  tests/test_own_videos_e2e.py (one training run per test process).

The install command is CI's to run (.ci/run runs README's ```bash test block, the same command with
the test extra); here it is checked to be README's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import doc_runs
from doc_runs import CHECKPOINT, GETTING_STARTED, OWN_VIDEOS, README, SUBSTITUTIONS, TRAIN_COMMAND

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_docs_hold_only_commands_this_test_runs():
    docs = {doc.name: doc_runs.commands(doc) for doc in (GETTING_STARTED, OWN_VIDEOS)}
    everything = [c for cmds in docs.values() for c in cmds]
    assert docs["getting-started.md"] and docs["own-videos.md"]
    assert all(c.startswith("adamml ") for c in everything), [c for c in everything if not c.startswith("adamml ")]
    stale = sorted(set(SUBSTITUTIONS) - set(everything))
    assert not stale, f"substituted commands no longer in the docs: {stale}"
    for doc in (GETTING_STARTED, OWN_VIDEOS):  # a yaml file the doc has the reader save is used by its commands
        for name in doc_runs.files(doc):
            assert any(name in c for c in doc_runs.commands(doc)), name


def test_a_shell_block_of_another_kind_fails(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n```bash\nadamml plugins\n```\n\n```console\n$ adamml flops x.yaml\n```\n")
    with pytest.raises(AssertionError, match="console"):
        doc_runs.commands(doc)


def test_install_command_is_the_one_ci_runs():
    install = doc_runs.install_commands(GETTING_STARTED)
    assert len(install) == 1
    readme = doc_runs.blocks(README)
    try_it = next(b.text.strip() for b in readme if b.lang == "bash" and b.tag == "")
    ci = next(b.text.strip() for b in readme if b.lang == "bash" and b.tag == "test")
    assert try_it == install[0] + " && adamml demo"
    assert ci == install[0].replace("-e .", '-e ".[test]"') + " && pytest"


def _run_all(doc: Path, folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    outputs = {}
    for command in doc_runs.commands(doc):
        if command in skip:
            continue
        outputs[command] = doc_runs.check(doc_runs.run(doc_runs.to_run(command), folder), command)
    return outputs


def test_getting_started_commands(tmp_path):
    doc_runs.write_clip(tmp_path / "my_clip.mp4", tone_hz=300.0, speed=1)
    for k, name in enumerate(("a.mp4", "b.mkv")):
        doc_runs.write_clip(tmp_path / "clips" / name, tone_hz=800.0 + 900 * k, speed=1 + 2 * k)
    out = _run_all(GETTING_STARTED, tmp_path)

    # what "Read its output" explains is what the demo prints
    table = out["adamml demo"]
    for column in ("method", "top-1 %", "MFLOPs/video", "used rgb", "used audio", "videos/s", "informative %"):
        assert column in table, column
    for row in ("AdaMML", "weighted fusion", "rgb only", "audio only", "AdaMML vs weighted fusion"):
        assert row in table, row
    assert "train_per_class: 12" in out["adamml demo --quick"]
    assert (tmp_path / "runs/demo/checkpoints/finetune.pt").is_file()

    predicted = [json.loads(line) for line in
                 out["adamml predict my_clip.mp4 clips/ --checkpoint runs/demo/checkpoints/finetune.pt --json"].splitlines()
                 if line.startswith("{")]
    assert [Path(p["video"]).name for p in predicted] == ["my_clip.mp4", "a.mp4", "b.mkv"]
    assert all(len(p["top_k"]) == 3 and p["gflops"] > 0 for p in predicted)  # 3 classes in the tiny demo
    assert (tmp_path / "my_clip.png").stat().st_size > 0
    index = (tmp_path / "explained" / "index.html").read_text()
    assert "a.png" in index and "b.png" in index


def test_own_videos_commands(tmp_path_factory):
    folder = doc_runs.own_videos_run(tmp_path_factory)  # runs the doc's `adamml train` (substituted)
    assert TRAIN_COMMAND in doc_runs.commands(OWN_VIDEOS)
    out = _run_all(OWN_VIDEOS, folder, skip=(TRAIN_COMMAND,))

    assert "valid: my_videos.yaml" in out["adamml config validate my_videos.yaml"]
    assert "training can start" in out["adamml datasets check my_videos.yaml"]
    assert any((folder / "cache").iterdir()), "adamml prepare wrote nothing into the config's cache_dir"
    ckpt = CHECKPOINT.as_posix()
    assert "budget" in out[f"adamml eval {ckpt} --budget-gflops 0.08"]
    sweep = folder / "runs/my_videos/checkpoints/sweep-finetune"
    assert (sweep / "sweep.png").is_file() and (sweep / "sweep.json").is_file()
    assert {p.name for p in (folder / "runs/my_videos/report").iterdir()} >= {"report.csv", "report.json", "report.png"}
    lines = out[f"adamml predict new_clips/ --checkpoint {ckpt} --json --budget-gflops 0.08"].splitlines()
    predicted = [json.loads(line) for line in lines if line.startswith("{")]
    assert sorted(Path(p["video"]).name for p in predicted) == ["first.mp4", "second.mkv"]
    assert {p["top_k"][0]["label"] for p in predicted} <= set(doc_runs.CLASSES)
    index = (folder / "explained" / "index.html").read_text()
    assert "first.png" in index and "second.png" in index
