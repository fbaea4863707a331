"""Issue 19, item 5: the training details as typed options, each tested in both settings.

frozen parts' BatchNorm (``train.frozen_batchnorm``), the best-model rule (``train.best_model``),
the classifier dropout of the backbones, Mini-Sports1M's length filter
(``dataset.options.length_range``), the policy view's crop (``policy.view_crop``) and the flow
input scale (``modality_options.flow.input_scale``); see docs/training.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from adamml_core.config import ConfigError, SamplingConfig, validate_config
from adamml_core.engine.checkpoint import load_checkpoint
from adamml_core.engine.train.recipe import configure_pass
from adamml_core.media.transforms import IMAGENET_MEAN, IMAGENET_STD
from adamml_core.modality import Segment
from adamml_core.registry import ComponentOptionsError
from adamml_core.segmented_dataset import SegmentedVideoDataset
from adamml_core.datasets import VideoRecord
from adamml_plugins.datasets.mini_sports1m import MiniSports1M, MiniSports1MOptions
from adamml_plugins.flow import scale_flow
from adamml_plugins.recipe import AdaptiveForward, AlternatingStage, FinetuneStage
from engine_configs import TINY, builtin_components, data_root, keep_torch_threads, tiny_config  # noqa: F401
from media_factory import write_video
from tiny_models import tiny_system


def _running_means(module: torch.nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, _running_means(module)))


# --------------------------------------------------------------------------- a. frozen parts' BatchNorm


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_frozen_parts_batchnorm_follows_the_option(mode, tmp_path):
    components = builtin_components()
    cfg = tiny_config(tmp_path, tmp_path / "out", [f"train.frozen_batchnorm={mode}"])
    system, inputs, policy_inputs, _, _ = tiny_system(cfg, components, batch=2, segments=3)
    recognition_pass, policy_pass = AlternatingStage().plan(cfg.train.alternating, cfg).passes[:2]
    batch = {"inputs": inputs, "policy_inputs": policy_inputs, "target": torch.tensor([0, 1])}
    for plan, frozen in ((recognition_pass, [system.policy]), (policy_pass, [system.recognizers])):
        configure_pass(system, plan)
        before = [_running_means(m) for m in frozen]
        weights = [p.clone() for m in frozen for p in m.parameters()]
        AdaptiveForward()(system, batch, aux=None, multi_label=False)
        # the release keeps the frozen part's BatchNorm in train mode: its statistics move, its weights never
        assert all(_changed(b, m) for b, m in zip(before, frozen)) is (mode == "train")
        assert all(not p.requires_grad for m in frozen for p in m.parameters())
        assert all(torch.equal(a, b) for a, b in zip(weights, [p for m in frozen for p in m.parameters()]))


def test_frozen_batchnorm_reaches_warmup_and_finetune_and_bad_values_fail(tmp_path):
    for mode, expected in (("train", ("policy",)), ("eval", ())):
        cfg = tiny_config(tmp_path, tmp_path / "out", [f"train.frozen_batchnorm={mode}"])
        assert FinetuneStage().plan(cfg.train.finetune, cfg).passes[0].batchnorm_train == expected
    data = json.loads(json.dumps(TINY))
    data["train"]["frozen_batchnorm"] = "frozen"
    with pytest.raises(ConfigError, match="train.frozen_batchnorm"):
        validate_config(data)


# --------------------------------------------------------------------------- b. the best-model rule


def test_best_model_rule_plans(tmp_path):
    flags = {}
    for rule in ("alternating", "alternating_and_finetune", "last"):
        cfg = tiny_config(tmp_path, tmp_path / "out", [f"train.best_model={rule}"])
        fine = FinetuneStage().plan(cfg.train.finetune, cfg)
        alternating = AlternatingStage().plan(cfg.train.alternating, cfg)
        flags[rule] = (fine.start_from_best, fine.track_best, fine.validate_every_epoch, fine.end_with_best,
                       alternating.end_with_best)
    assert flags == {"alternating": (True, False, False, False, False),
                     "alternating_and_finetune": (True, True, True, True, True),
                     "last": (False, False, False, False, False)}
    with pytest.raises(ConfigError, match="train.best_model"):
        tiny_config(tmp_path, tmp_path / "out", ["train.best_model=best"])


def _train(data_root, out, rule):  # noqa: F811 - data_root is the fixture's value
    from adamml_core.engine.train.trainer import Trainer

    cfg = tiny_config(data_root, out, [f"train.best_model={rule}", "train.stages=[alternating,finetune]",
                                       "train.finetune.epochs=2", "train.finetune.optimizer.lr=0.05"])
    trainer = Trainer(cfg, components=builtin_components())
    trainer.fit()
    return trainer


@pytest.mark.parametrize("rule", ["alternating_and_finetune", "alternating"])
def test_the_run_ends_with_the_model_the_rule_picks(rule, data_root, tmp_path):  # noqa: F811
    trainer = _train(data_root, tmp_path / rule, rule)
    best = load_checkpoint(trainer.run.checkpoint("best.pt"))["model"]
    final = load_checkpoint(trainer.run.checkpoint("finetune.pt"))["model"]
    same = all(torch.equal(v, final[k]) for k, v in best.items())
    validated = [(h["stage"], h["epoch"]) for h in trainer.history]
    if rule == "alternating_and_finetune":
        # the release: fine-tuning validated every epoch, best.pt the best over both, the model the run ends with
        assert validated == [("alternating", 0), ("finetune", 0), ("finetune", 1)]
        assert same and all(torch.equal(v, trainer.system.state_dict()[k].cpu()) for k, v in best.items())
    else:
        assert validated == [("alternating", 0)] and trainer.best.best["stage"] == "alternating"
        assert not same  # fine-tuning trained on from best.pt and ends with its last epoch


# --------------------------------------------------------------------------- c. dropout


def test_recognition_classifiers_drop_out_half_by_default():
    components = builtin_components()
    for name, shape in (("resnet50_tsn", (2, 3, 32, 32)), ("mobilenet_v2", (1, 32, 32))):
        default = components.backbones.build(name, {"width": 8, "depth": 18} if name == "resnet50_tsn" else
                                             {"width_mult": 0.25}, input_shape=shape, num_classes=5)
        off = components.backbones.build(name, {"width": 8, "depth": 18, "dropout": 0.0} if name == "resnet50_tsn"
                                         else {"width_mult": 0.25, "dropout": 0.0}, input_shape=shape, num_classes=5)
        drops = [m.p for m in default.modules() if isinstance(m, torch.nn.Dropout)]
        assert drops == [0.5], name  # the release's --dropout 0.5 before both recognition networks' classifiers
        features = torch.ones(4, default.feature_dim)
        default.train(), off.train()
        torch.manual_seed(0)
        assert not torch.equal(default.head(features), default.head(features))
        assert torch.equal(off.head(features), off.head(features))


# --------------------------------------------------------------------------- d. Mini-Sports1M's 2-5 minutes


def test_mini_sports1m_keeps_two_to_five_minutes_and_reports_the_rest(tmp_path):
    listed = [{"id": "AAAAAAAAAAA", "duration": 60, "label487": [1]}, {"id": "BBBBBBBBBBB", "duration": 150, "label487": [2]},
              {"id": "CCCCCCCCCCC", "duration": 400.5, "label487": [3]}, {"id": "DDDDDDDDDDD", "label487": [4]}]
    (tmp_path / "train.json").write_text(json.dumps(listed))
    filtered = MiniSports1M(MiniSports1MOptions(root=tmp_path / "v", train_list=tmp_path / "train.json"))
    # D has no length and no file: kept, so that the file check reports it missing instead of hiding it
    assert [r.video_id for r in filtered.records("train")] == ["BBBBBBBBBBB", "DDDDDDDDDDD"]
    (note,) = filtered.notes("train")
    assert "left out 2 (1 shorter, 1 longer)" in note and "1 of unknown length kept" in note and "CCCCCCCCCCC" in note
    everything = MiniSports1M(MiniSports1MOptions(root=tmp_path / "v", train_list=tmp_path / "train.json",
                                                  length_range=None))
    assert len(everything.records("train")) == 4 and everything.notes("train") == []


def test_mini_sports1m_probes_lengths_through_the_media_sources(tmp_path):
    write_video(tmp_path / "v" / "AAAAAAAAAAA.mp4", num_frames=50, fps=25, audio=False)  # 2 s
    (tmp_path / "train.txt").write_text("AAAAAAAAAAA 1\n")
    for length_range, kept in (((1.0, 3.0), 1), ((3.0, 10.0), 0)):
        ds = MiniSports1M(MiniSports1MOptions(root=tmp_path / "v", train_list=tmp_path / "train.txt",
                                              length_range=length_range))
        assert len(ds.records("train")) == kept
    components = builtin_components()
    with pytest.raises(ComponentOptionsError, match="dataset.options.length_range"):
        components.datasets.build("mini_sports1m", {"length_range": [300, 120]}, field_path="dataset.options")


def test_datasets_check_reports_the_videos_the_length_filter_left_out(tmp_path):
    import yaml

    from dataset_helpers import cli_runner

    write_video(tmp_path / "v" / "AAAAAAAAAAA.mp4", num_frames=50, fps=25)  # 2 s: shorter than 2 minutes
    write_video(tmp_path / "v" / "BBBBBBBBBBB.mp4", num_frames=50, fps=25)
    (tmp_path / "train.txt").write_text("AAAAAAAAAAA 1\nBBBBBBBBBBB 2\n")
    cfg = {"dataset": {"name": "mini_sports1m", "options": {"root": str(tmp_path / "v"),
                                                            "train_list": str(tmp_path / "train.txt"),
                                                            "length_range": [1.0, 120.0]}},
           "modalities": ["rgb"], "fusion": {"name": "weighted"}}
    config = tmp_path / "ms.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = cli_runner()
    kept = json.loads(run("datasets", "check", str(config), "--split", "train", "--json").stdout)
    assert kept["splits"]["train"]["total"] == 2 and "left out 0" in kept["notes"]["train"][0]
    result = run("datasets", "check", str(config), "--split", "train", "dataset.options.length_range=[120,300]")
    assert "left out 2 (2 shorter, 0 longer)" in result.stdout  # none left: not ready, and told why


# --------------------------------------------------------------------------- e. the policy view's crop


def _rgb_items(video: Path, view_crop: str, items: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    components = builtin_components()
    sampling = SamplingConfig(train_segments=2, test_segments=2, frames_per_segment=4, frame_stride=2,
                              decode_short_side=64)
    rgb = components.modalities.build("rgb", {"crop_size": 32, "policy_size": 16}, sampling=sampling)
    dataset = SegmentedVideoDataset([VideoRecord("clip", video, (0,))], modalities={"rgb": rgb}, policy_views={"rgb": rgb},
                                    sampling=sampling, train=True, num_classes=2, multi_label=False,
                                    policy_view_crop=view_crop)
    out = []
    for epoch in range(items // 2):
        dataset.set_epoch(epoch)
        for c in range(2):
            out.append((dataset.load_item(0, c, "rgb").numpy(), dataset.load_item(0, c, "rgb", policy=True).numpy()))
    return out


def _as_pixels(chw: np.ndarray) -> np.ndarray:
    return (chw.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN) * 255.0


@pytest.mark.parametrize("view_crop", ["shared", "independent"])
def test_the_policy_view_is_the_recognition_crop_downsampled_when_shared(view_crop, tmp_path):
    video = write_video(tmp_path / "clip.mp4", num_frames=40, audio=False)
    gaps = []
    for recognition, policy in _rgb_items(video, view_crop):
        # the policy sees every other frame: recognition frame 2k downsampled must be policy frame k
        for k in range(policy.shape[0]):
            small = cv2.resize(np.clip(np.round(_as_pixels(recognition[2 * k])), 0, 255).astype(np.uint8), (16, 16),
                               interpolation=cv2.INTER_AREA).astype(np.float32)
            gaps.append(float(np.abs(small - _as_pixels(policy[k])).mean()))
    if view_crop == "shared":
        assert max(gaps) < 1.0, gaps  # the same pixels (0.0 measured)
    else:
        assert max(gaps) > 10.0, gaps  # another short side, crop or flip


# --------------------------------------------------------------------------- f. the flow input scale


def test_flow_scale_release_and_bound():
    flow = np.array([-30.0, -20.0, 0.0, 10.0, 20.0], np.float32)
    release = scale_flow(flow.copy(), 20.0, "release")
    std = np.mean([0.229, 0.224, 0.225])
    # 8-bit images as the release's extraction writes them, then its (x / 255 - 0.5) / 0.226
    expected = (np.array([0, 0, 128, 191, 255]) / 255.0 - 0.5) / std
    assert np.allclose(release, expected, atol=1e-5)
    assert np.allclose(scale_flow(flow.copy(), 20.0, "bound"), [-1.0, -1.0, 0.0, 0.5, 1.0])


@pytest.mark.parametrize("input_scale, still", [("release", (128 / 255 - 0.5) / np.mean([0.229, 0.224, 0.225])),
                                                ("bound", 0.0)])
def test_flow_modality_uses_its_input_scale(input_scale, still):
    class Still:  # a source whose frames never change: zero flow everywhere
        path, fps, num_frames, duration, has_video, has_audio, decode_short_side, cache = \
            Path("still"), 25.0, 20, 0.8, True, False, 32, None

        def frames(self, indices):
            return np.full((len(indices), 32, 40, 3), 90, np.uint8)

    components = builtin_components()
    flow = components.modalities.build("flow", {"algorithm": "dis", "input_scale": input_scale},
                                       sampling=SamplingConfig(frames_per_segment=1, decode_short_side=32))
    stack = flow.flow_stack(Still(), Segment(index=0, frame_indices=(3,), fps=25.0, num_frames=20), [3])
    assert np.allclose(stack, still, atol=1e-5)
    with pytest.raises(ComponentOptionsError, match="modality_options.flow.input_scale"):
        components.modalities.build("flow", {"input_scale": "unit"}, field_path="modality_options.flow",
                                    sampling=SamplingConfig())
