"""Labels and metric of the untrimmed datasets: single-label cross-entropy + softmax mAP against the
label set by default (the paper's numbers, as the release trains), multi-label BCE + sigmoid mAP as
the ``labels: multi`` option."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from adamml_core.config import ConfigError, load_config, resolve_config
from adamml_core.engine.inference.metrics import ClassificationMeter, classification_scores
from adamml_core.losses import classification_loss
from adamml_core.plugins import load_plugins
from adamml_core.segmented_dataset import SegmentedVideoDataset
from adamml_plugins.datasets.activitynet import ActivityNet, ActivityNetOptions
from adamml_plugins.datasets.fcvid import FCVID, FCVIDOptions
from adamml_plugins.datasets.mini_sports1m import MiniSports1M, MiniSports1MOptions

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
UNTRIMMED = [(ActivityNet, ActivityNetOptions), (FCVID, FCVIDOptions), (MiniSports1M, MiniSports1MOptions)]


@pytest.mark.parametrize("cls,options", UNTRIMMED, ids=lambda x: getattr(x, "__name__", ""))
def test_single_label_is_the_default_and_multi_an_option(cls, options):
    assert cls(options()).multi_label is False and cls(options()).metric == "mAP"
    assert cls(options(labels="multi")).multi_label is True


def test_a_bad_label_mode_names_the_field_before_any_work():
    comps = load_plugins(strict=True).components
    cfg = load_config(CONFIGS / "activitynet" / "rgb_audio.yaml", ["dataset.options.labels=several"])
    with pytest.raises(ConfigError, match=r"dataset\.options\.labels") as info:
        resolve_config(cfg, comps)
    assert "\n" not in str(info.value).strip()


def _records(tmp_path, labels: str):
    """The shipped ActivityNet val list's first videos, with a two-label one among them."""
    ds = ActivityNet(ActivityNetOptions(root=tmp_path, labels=labels))
    records = ds.records("val")
    two = next(r for r in records if len(r.labels) == 2)
    return ds, [records[0], two]


@pytest.mark.parametrize("labels", ["single", "multi"])
def test_target_shape_and_loss_per_mode(tmp_path, labels):
    ds, records = _records(tmp_path, labels)
    seg = SegmentedVideoDataset(records, modalities={}, policy_views={}, sampling=load_config(
        CONFIGS / "activitynet" / "rgb_audio.yaml").sampling, train=False, num_classes=ds.num_classes,
        multi_label=ds.multi_label, load="recognition")
    targets = torch.stack([seg.target_of(r) for r in records])
    logits = torch.randn(2, ds.num_classes, generator=torch.Generator().manual_seed(0))
    loss = classification_loss(logits, targets, multi_label=ds.multi_label)
    if labels == "single":
        # the first-named label of each video (ActivityNet lists: the line's first label)
        assert targets.dtype == torch.long and targets.shape == (2,)
        assert targets.tolist() == [r.labels[0] for r in records]
        assert loss.item() == pytest.approx(F.cross_entropy(logits, targets).item())
    else:
        assert targets.shape == (2, ds.num_classes) and targets.sum(dim=1).tolist() == [1.0, 2.0]
        assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item())


def test_single_label_map_is_softmax_against_the_label_set():
    # video 0 has labels {0, 2} (target 0); video 1 {1}; video 2 {2}
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.5], [0.2, 0.1, 0.0]])
    target = torch.tensor([0, 1, 2])
    sets = [(0, 2), (1,), (2,)]
    meter = ClassificationMeter(3, multi_label=False, label_sets=sets)
    meter.update(logits[:2], target[:2], [0, 1])
    meter.update(logits[2:], target[2:], [2])
    s = meter.compute()
    p = logits.softmax(dim=1)
    # by hand: class 0 {v0}: v0 ranks first -> 1; class 1 {v1}: first -> 1;
    # class 2 {v0, v2}: ranked by p[:, 2] (v0 .245, v1 .07, v2 .30) -> v2, v0 -> precisions 1, 1 -> 1
    assert p[0, 2] > p[1, 2] and p[2, 2] > p[0, 2]
    assert s["mAP"] == pytest.approx(100.0)
    # lower v2's class-2 score so that v0's second label changes class 2's AP
    low = logits.clone()
    low[2] = torch.tensor([0.0, 0.0, -3.0])
    with_sets = classification_scores(low, target, multi_label=False, label_sets=torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1]]))
    one_hot = classification_scores(low, target, multi_label=False)
    # class 2 with the set {v0, v2}: order v0, v1, v2 -> AP (1 + 2/3) / 2; with {v2} only: AP 1/3
    assert with_sets["mAP"] == pytest.approx(100.0 * (1 + 1 + (1 + 2 / 3) / 2) / 3)
    assert one_hot["mAP"] == pytest.approx(100.0 * (1 + 1 + 1 / 3) / 3)
    assert with_sets["top1"] == one_hot["top1"]  # top-1 is against the training target


def test_multi_label_map_uses_sigmoid_scores_and_classes_with_a_positive():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.0, 1.0, 3.0]])
    multi = torch.tensor([[1, 0, 1], [0, 0, 1]])  # class 1 has no positive video: no AP, not a zero
    s = classification_scores(logits, multi, multi_label=True)
    # class 0 {v0}: 1; class 2 {v0, v1}: both positives -> 1
    assert s["mAP"] == pytest.approx(100.0)


class _Costs:
    def per_video(self, decisions):
        return decisions.sum(dim=(1, 2))


def test_eval_report_scores_a_single_label_map_dataset_by_class_ap():
    from adamml_cli.eval.report import class_rows

    low = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.5], [0.0, 0.0, -3.0]])
    outputs = {"logits": low, "target": torch.tensor([0, 1, 2]), "decisions": torch.ones(3, 2, 1),
               "label_sets": torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1]])}
    rows = class_rows(outputs, ["a", "b", "c"], ["rgb"], multi_label=False, costs=_Costs(), metric="mAP")
    assert [r["videos"] for r in rows] == [1, 1, 2]
    assert rows[2]["score"] == pytest.approx(100.0 * (1 + 2 / 3) / 2)  # v0 ranks first, v2 last of three
    top1 = class_rows(outputs, ["a", "b", "c"], ["rgb"], multi_label=False, costs=_Costs())
    assert top1[2]["score"] == 0.0  # a top-1 dataset: the hit rate of class c's one target video


def test_label_sets_survive_the_merge_of_ranks():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.5], [0.0, 0.0, -3.0]])
    target, sets = torch.tensor([0, 1, 2]), [(0, 2), (1,), (2,)]
    whole = ClassificationMeter(3, multi_label=False, label_sets=sets)
    whole.update(logits, target, [0, 1, 2])
    ranks = [ClassificationMeter(3, multi_label=False, label_sets=sets) for _ in range(2)]
    ranks[0].update(logits[:1], target[:1], [0])
    ranks[1].update(logits[1:], target[1:], [1, 2])
    merged = ClassificationMeter(3, multi_label=False, label_sets=sets)
    merged.merge([r.state() for r in ranks])
    assert merged.compute() == whole.compute()
    assert whole.compute()["mAP"] != classification_scores(logits, target, multi_label=False)["mAP"]
