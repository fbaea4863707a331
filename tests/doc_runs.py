"""Run the shell commands of docs/getting-started.md and docs/own-videos.md on tiny generated data.

The docs mark what a test runs: ```bash blocks hold `adamml` commands, one per line, run in
order in one working folder per document; ```yaml file=NAME blocks are files the reader saves
(written into the folder first); ```bash install is the install command (CI runs it). Any other
shell-like fence (sh, shell, console, a bash tag not known here) is an error, so a command
cannot slip into the docs untested.

A few documented commands are too slow for the suite (a full training run); the test runs a
faster variant of those, listed in :data:`SUBSTITUTIONS` with the reason. Every other command
runs exactly as written. Commands run in-process (typer's CliRunner), not as subprocesses: a
fresh ``adamml`` process costs seconds of imports each, more than most commands here.

The own-videos training run is shared by tests/test_docs_commands.py and
tests/test_own_videos_e2e.py through :func:`own_videos_run` (once per test process).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from media_factory import write_video

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"
GETTING_STARTED = DOCS / "getting-started.md"
OWN_VIDEOS = DOCS / "own-videos.md"

# Shrinks a config to the tests' sizes (tests/engine_configs.py's TINY): 3 segments of 2 frames
# at 32 px, width-8 networks, one epoch per stage, no worker processes, the CPU.
TINY_SIZES = [
    "sampling.train_segments=3", "sampling.test_segments=3", "sampling.frames_per_segment=2",
    "sampling.frame_stride=2", "sampling.decode_short_side=48",
    "modality_options.rgb.crop_size=32", "modality_options.rgb.policy_size=24",
    "modality_options.audio.input_size=32", "modality_options.audio.policy_size=24",
    "recognition.rgb.backbone.options.width=8", "recognition.audio.backbone.options.width_mult=0.25",
    "recognition.audio.backbone.options.last_channel=32",
    "policy.backbones.rgb.options.last_channel=16", "policy.backbones.audio.options.last_channel=16",
    "policy.mlp_dim=32", "policy.hidden_size=16",
    "train.batch_size=8", "train.unimodal.epochs=1", "train.policy_distill.epochs=1", "train.fusion.epochs=1",
    "train.warmup.epochs=1", "train.alternating.epochs=1", "train.alternating.policy_passes=1",
    "train.finetune.epochs=1", "runtime.workers=0", "runtime.threads=1", "runtime.device=cpu",
]
TINY_DEMO_DATA = [
    "dataset.options.num_classes=3", "dataset.options.train_per_class=3", "dataset.options.val_per_class=2",
    "dataset.options.duration=2.0", "dataset.options.fps=10", "dataset.options.width=64",
    "dataset.options.height=48", "dataset.options.regions=3", "dataset.options.workers=0",
]
_TINY = " ".join(TINY_SIZES)

# documented command -> (what the test runs instead, why). Keys must appear in the docs.
SUBSTITUTIONS: dict[str, tuple[str, str]] = {
    "adamml demo": (
        f"adamml demo --data-root data {' '.join(TINY_DEMO_DATA)} {_TINY}",
        "the full demo trains for ~11 minutes; the same command on 15 tiny synthetic videos with "
        "tiny networks and one epoch per stage (--data-root: never the user's ~/.cache)",
    ),
    "adamml demo --quick": (
        "adamml demo --quick --show-config",
        "--quick differs from the full demo only by its config overrides (cli/demo/command.py QUICK_OVERRIDES): "
        "the test resolves that config and checks its sizes; the demo's training path runs once, "
        "above, at tiny sizes",
    ),
    "adamml train my_videos.yaml": (
        f"adamml train my_videos.yaml --no-progress {_TINY}",
        "the doc's config trains for minutes; the same config at the tests' sizes (one epoch per "
        "stage, 32 px, no worker processes)",
    ),
}


@dataclass(frozen=True)
class Block:
    lang: str  # the fence's first word ("bash", "yaml", "text", "" ...)
    tag: str  # the rest of the info string ("install", "file=my_videos.yaml", "")
    text: str
    line: int  # of the opening fence, 1-based


SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh", "shell-session"}
KNOWN_BASH_TAGS = {"", "install"}


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    out, lines = [], path.read_text().splitlines()
    k = 0
    while k < len(lines):
        opening = re.match(r"^```(\S*)\s*(.*)$", lines[k])
        if opening is None:
            k += 1
            continue
        end = next((j for j in range(k + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise AssertionError(f"{path.name}:{k + 1}: unclosed code fence")
        out.append(Block(opening.group(1), opening.group(2).strip(), "\n".join(lines[k + 1 : end]), k + 1))
        k = end + 1
    return out


def commands(path: Path) -> list[str]:
    """The commands of a doc's ```bash blocks, one per line (comments and blank lines dropped).

    Raises for a shell block the runner does not know how to run (so none goes untested).
    """
    out = []
    for block in blocks(path):
        if block.lang not in SHELL_LANGS:
            continue
        if block.lang != "bash" or block.tag not in KNOWN_BASH_TAGS:
            raise AssertionError(f"{path.name}:{block.line}: ```{block.lang} {block.tag} block: tests/doc_runs.py "
                                 "runs only ```bash (and checks ```bash install)")
        if block.tag == "install":
            continue
        for line in block.text.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


def install_commands(path: Path) -> list[str]:
    return [b.text.strip() for b in blocks(path) if b.lang == "bash" and b.tag == "install"]


def files(path: Path) -> dict[str, str]:
    """``{name: text}`` of a doc's ```yaml file=NAME blocks (the files the reader is told to save)."""
    out = {}
    for block in blocks(path):
        match = re.fullmatch(r"file=(\S+)", block.tag)
        if match:
            out[match.group(1)] = block.text + "\n"
    return out


def to_run(command: str) -> str:
    """What the test runs for a documented command."""
    return SUBSTITUTIONS[command][0] if command in SUBSTITUTIONS else command


@contextlib.contextmanager
def working_dir(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


_RUNNER: list[Any] = []


def run(command: str, folder: Path) -> Any:
    """Run one ``adamml ...`` command line in-process in ``folder``; returns the click Result."""
    from typer.testing import CliRunner

    from adamml_cli.app import build_app

    words = shlex.split(command)
    assert words[0] == "adamml", f"not an adamml command: {command}"
    if not _RUNNER:
        _RUNNER.append((CliRunner(), build_app(["--help"])))
    runner, app = _RUNNER[0]
    with working_dir(folder):
        # wide enough that rich prints the tables' headers whole, as in the docs
        return runner.invoke(app, words[1:], env={"COLUMNS": "200"})


def check(result: Any, command: str) -> str:
    """The command's output; fails the test with it when the command did not exit 0."""
    if result.exit_code != 0:
        detail = result.output[-4000:]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            detail += "".join(traceback.format_exception(result.exception))[-4000:]
        raise AssertionError(f"`{command}` exited {result.exit_code}:\n{detail}")
    return result.output


# --------------------------------------------------------------------------- tiny generated data

# Three classes a tiny model can tell apart: tone pitch and how fast the square moves.
CLASSES = {"barking": (300.0, 1), "doorbell": (1500.0, 3), "guitar": (4000.0, 5)}


def write_clip(path: Path, *, tone_hz: float = 1000.0, speed: int = 2) -> Path:
    return write_video(path, width=64, height=48, fps=10, num_frames=20, tone_hz=tone_hz, speed=speed)


def own_videos_folder(folder: Path) -> Path:
    """The reader's working folder of docs/own-videos.md: videos/<class>/, new_clips/ and the doc's files."""
    for name, (hz, speed) in CLASSES.items():
        for k in range(4):
            write_clip(folder / "videos" / name / f"{name}{k}.mp4", tone_hz=hz + 40 * k, speed=speed)
    write_clip(folder / "new_clips" / "first.mp4", tone_hz=320.0, speed=1)
    write_clip(folder / "new_clips" / "more" / "second.mkv", tone_hz=3900.0, speed=5)
    for name, text in files(OWN_VIDEOS).items():
        (folder / name).write_text(text)
    return folder


TRAIN_COMMAND = "adamml train my_videos.yaml"
CHECKPOINT = Path("runs/my_videos/checkpoints/finetune.pt")
_OWN_RUN: dict[str, Path] = {}


def own_videos_run(tmp_path_factory: Any) -> Path:
    """docs/own-videos.md's folder after its (substituted) `adamml train`: once per test process.

    Returns the folder; its checkpoint is ``folder / CHECKPOINT``.
    """
    if "folder" not in _OWN_RUN:
        assert TRAIN_COMMAND in commands(OWN_VIDEOS), f"docs/own-videos.md no longer says `{TRAIN_COMMAND}`"
        folder = own_videos_folder(tmp_path_factory.mktemp("own-videos"))
        check(run(to_run(TRAIN_COMMAND), folder), TRAIN_COMMAND)
        assert (folder / CHECKPOINT).is_file()
        _OWN_RUN["folder"] = folder
    return _OWN_RUN["folder"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Import it into a test module: one torch thread for that module, the previous count restored after."""
    # tiny networks: one thread is faster, and two fight the other jobs on a shared CPU; the
    # trainings here set it anyway (runtime.threads=1), so give the other modules theirs back
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
