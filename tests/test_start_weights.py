"""``recognition.<m>.checkpoint``: a recognition network starts from a file (an adamml checkpoint or a
plain state_dict); a missing or unfitting file is one line naming the field, before any training."""

from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from adamml_cli.app import build_app
from adamml_core.config import ConfigError
from adamml_core.engine.train.recipe import check_recipe
from adamml_core.engine.train.trainer import Trainer
from engine_configs import builtin_components, tiny_config


@pytest.fixture(scope="module")
def unimodal(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("unimodal")
    trainer = Trainer(tiny_config(data_root, out, ["train.stages=[unimodal]", "train.unimodal.epochs=1"]),
                      components=builtin_components())
    trainer.fit()
    audio = out / "audio_state_dict.pt"
    torch.save(trainer.system.recognizers["audio"].state_dict(), audio)  # a plain state_dict of one network
    return out / "checkpoints" / "unimodal.pt", audio, trainer.system.state_dict()


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_each_network_starts_from_its_file(data_root, unimodal, tmp_path):
    checkpoint, audio, trained = unimodal
    cfg = tiny_config(data_root, tmp_path, [f"recognition.rgb.checkpoint={checkpoint}",
                                            f"recognition.audio.checkpoint={audio}", "train.stages=[joint]"])
    assert check_recipe(cfg, builtin_components()) == []  # a joint stage has its unimodal networks: both files
    said = []
    system = Trainer(cfg, components=builtin_components(), log=said.append).system
    for m in ("rgb", "audio"):
        expected = {k[len(f"recognizers.{m}."):]: v for k, v in trained.items() if k.startswith(f"recognizers.{m}.")}
        got = _state(system.recognizers[m])
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in got), m
    assert any("recognition.audio: weights from" in s for s in said)
    fresh = Trainer(tiny_config(data_root, tmp_path / "fresh"), components=builtin_components()).system
    assert not torch.equal(fresh.recognizers["rgb"].conv1.weight, system.recognizers["rgb"].conv1.weight)


def test_one_file_is_not_every_unimodal_network(data_root, unimodal, tmp_path):
    cfg = tiny_config(data_root, tmp_path, [f"recognition.rgb.checkpoint={unimodal[0]}", "train.stages=[joint]"])
    with pytest.raises(ConfigError, match="stage 'joint' trains from the unimodal networks"):
        check_recipe(cfg, builtin_components())


def test_a_missing_or_unfitting_file_is_one_line_naming_the_field(data_root, unimodal, tmp_path):
    checkpoint, audio, _ = unimodal
    missing = tiny_config(data_root, tmp_path, [f"recognition.audio.checkpoint={tmp_path / 'nope.pt'}"])
    with pytest.raises(ConfigError, match=r"recognition\.audio\.checkpoint: no such file"):
        check_recipe(missing, builtin_components())
    wrong = tiny_config(data_root, tmp_path, [f"recognition.rgb.checkpoint={audio}"])  # the audio network's weights
    with pytest.raises(ConfigError, match=r"recognition\.rgb\.checkpoint: .* does not fit the configured"):
        Trainer(wrong, components=builtin_components())
    config = tmp_path / "missing.yaml"
    config.write_text(yaml.safe_dump(missing.model_dump(mode="json")))
    result = CliRunner().invoke(build_app(["train"]), ["train", str(config), "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "recognition.audio.checkpoint" in result.output and not (tmp_path / "run").exists()
