"""``adamml predict`` and ``adamml explain`` on video files that are in no dataset, with a tiny trained checkpoint."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from dataset_helpers import cli_runner
from engine_configs import builtin_components, tiny_config
from engine_configs import data_root, keep_torch_threads  # noqa: F401 - shared fixtures
from media_factory import write_garbage, write_video


@pytest.fixture(scope="module")
def checkpoint(data_root, tmp_path_factory):  # noqa: F811 - the shared fixture
    """One finetune epoch of the tiny config: a real checkpoint (policy and networks), trained once per module."""
    from adamml_core.engine.train.trainer import Trainer

    out = tmp_path_factory.mktemp("run")
    Trainer(tiny_config(data_root, out, ["train.stages=[finetune]"]), components=builtin_components()).fit()
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder with a video, one without audio (in a subfolder) and an unreadable one; plus a loose video."""
    root = tmp_path_factory.mktemp("videos")
    folder = root / "mine"
    write_video(folder / "a_tone.mp4", num_frames=40, fps=10, width=64, height=48, tone_hz=800.0)
    write_video(folder / "sub" / "b_silent.mkv", num_frames=30, fps=10, width=64, height=48, audio=False, speed=4)
    write_garbage(folder / "c_broken.mp4")
    (folder / "notes.txt").write_text("not a video")  # not a video extension: not searched
    loose = write_video(root / "d_loose.mp4", num_frames=25, fps=10, width=48, height=64, tone_hz=1500.0)
    return {"folder": folder, "loose": loose, "a": folder / "a_tone.mp4", "b": folder / "sub" / "b_silent.mkv",
            "c": folder / "c_broken.mp4"}


@pytest.fixture(scope="module")
def model(checkpoint):
    """(experiment, system, cost model) of the checkpoint, as the commands build them."""
    from adamml_core.cost_model import CostModel
    from adamml_core.engine.experiment import from_checkpoint

    _, exp, system = from_checkpoint(checkpoint, components=builtin_components(), splits=(), prepare=False)
    system.eval()
    costs = CostModel.from_system(system, exp.modalities, exp.policy_views, exp.cfg.sampling.test_segments)
    return exp, system, costs


def _lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _expected_gflops(costs, decisions) -> float:
    d = np.asarray(decisions)
    return (costs.policy + costs.fusion) * d.shape[0] + sum(d[:, k].sum() * costs.recognition[m]
                                                            for k, m in enumerate(costs.modalities))


def test_predict_json_streams_one_line_per_input_in_order(checkpoint, videos, model):
    _, _, costs = model
    result = cli_runner()("predict", str(videos["folder"]), str(videos["loose"]), "--checkpoint", str(checkpoint),
                          "--json", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    lines = _lines(result)
    expected = [videos["a"], videos["c"], videos["b"], videos["loose"]]  # the folder sorted, then the file
    assert [line["video"] for line in lines] == [str(p) for p in expected]
    broken = lines[1]
    assert set(broken) == {"video", "error"} and "cannot" in broken["error"].lower()
    for line in (lines[0], lines[2], lines[3]):
        assert line["modalities"] == ["rgb", "audio"]
        assert len(line["top_k"]) == 4  # 4 classes, fewer than --top-k 5
        scores = [t["score"] for t in line["top_k"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert np.asarray(line["decisions"]).shape == (3, 2) and np.asarray(line["p_select"]).shape == (3, 2)
        assert line["gflops"] == pytest.approx(_expected_gflops(costs, line["decisions"]), rel=1e-6)
        assert line["gflops_all_modalities"] == pytest.approx(costs.all_modalities(), rel=1e-6)
        assert line["seconds"] > 0
    assert lines[2]["notes"] == {"no audio track: silence": 1} and lines[0]["notes"] == {}


def test_predict_decides_what_eval_decides(checkpoint, videos, model):
    from adamml_core.datasets import VideoRecord
    from adamml_core.engine.inference.pipeline.runner import evaluation_batches

    from adamml_core.engine.inference.predict import Predictor

    exp, system, costs = model
    paths = [videos["a"], videos["b"], videos["loose"]]
    p = np.concatenate([np.asarray(r.probs).ravel() for r in Predictor(system, exp, costs=costs).predict(paths)])
    threshold = float(np.median(p))  # between the probabilities: some items in, some out
    run = cli_runner()("predict", *map(str, paths), "-c", str(checkpoint), "--json", "--threshold", f"{threshold:.6f}",
                       "--batch-size", "1")
    lines = _lines(run)
    decisions = np.asarray([line["decisions"] for line in lines])
    assert 0 < decisions.sum() < decisions.size

    records = [VideoRecord(f"v{i}", path, (0,)) for i, path in enumerate(paths)]
    dataset = exp.make_dataset(records, train=False, load="policy")
    with torch.no_grad():
        outs = list(evaluation_batches(system, dataset, [0, 1, 2], threshold=float(f"{threshold:.6f}"), device="cpu",
                                       workers=0, batch_size=8))
    eval_decisions = torch.cat([o.decisions for o in outs]).numpy()
    eval_scores = torch.softmax(torch.cat([o.logits for o in outs]), dim=-1)
    np.testing.assert_array_equal(decisions, eval_decisions)
    for line, scores in zip(lines, eval_scores):
        assert line["top_k"][0]["score"] == pytest.approx(float(scores.max()), abs=1e-5)
        assert line["top_k"][0]["label"] == exp.dataset.class_names()[int(scores.argmax())]


def test_predict_budget_text_output_and_exit_codes(checkpoint, videos, model):
    _, _, costs = model
    run = cli_runner()
    # a budget above what every modality costs selects everything (calibrated on the training videos)
    rich = _lines(run("predict", str(videos["a"]), "-c", str(checkpoint), "--json", "--budget-gflops", "1000"))
    assert rich[0]["decisions"] == [[1, 1]] * 3
    assert rich[0]["gflops"] == pytest.approx(costs.all_modalities() + costs.policy * 3, rel=1e-6)

    text = run("predict", str(videos["b"]), str(videos["c"]), "-c", str(checkpoint))
    assert text.exit_code == 0, text.output
    assert "could not be read" in text.stdout and "no audio track: silence" in text.stdout
    assert re.search(r"GFLOPs against [0-9.e-]+ for every modality on every segment \([0-9]+% of it\)", text.stdout) and "rgb" in text.stdout and "audio" in text.stdout
    assert "1 of 2 video(s) predicted" in text.stderr

    nothing = run("predict", str(videos["c"]), "-c", str(checkpoint), "--json")
    assert nothing.exit_code == 1 and "no video could be read" in nothing.stderr
    assert _lines(nothing)[0]["video"] == str(videos["c"])
    both = run("predict", str(videos["a"]), "-c", str(checkpoint), "--budget-gflops", "1", "--threshold", "0.5")
    assert both.exit_code == 2 and "not both" in both.output


def test_results_come_out_before_the_last_video_is_read(model, videos):
    from adamml_core.engine.inference.predict import Predictor
    from adamml_core.engine.inference.pipeline.runner import PipelineOptions

    exp, system, costs = model
    paths = [videos["a"], videos["b"], videos["loose"], videos["a"], videos["b"]]
    predictor = Predictor(system, exp, options=PipelineOptions(batch_size=1), costs=costs)
    opened: list[int] = []
    make = predictor.dataset

    def counting(p):
        dataset = make(p)
        original = dataset.open
        dataset.open = lambda index: (opened.append(index), original(index))[1]
        return dataset

    predictor.dataset = counting
    stream = predictor.predict(paths)
    first = next(stream)
    assert first.position == 0 and first.error is None
    assert max(opened) < len(paths) - 1  # the last videos are not even opened yet
    rest = list(stream)
    assert [r.position for r in rest] == [1, 2, 3, 4]
    assert rest[2].decisions == first.decisions and rest[2].top_k == first.top_k  # the same file twice


def _png(path):
    import matplotlib.image as mpimg

    return mpimg.imread(path)[..., :3]


def _is_green(pixel) -> bool:
    return bool(np.allclose(pixel, np.array([0x18, 0xA0, 0x18]) / 255, atol=0.08))


def test_explain_one_video_writes_the_figure_of_layout_for(checkpoint, videos):
    from adamml_cli.predict.explain_figure import layout_for

    out = videos["folder"].parent / "figs" / "one.png"
    result = cli_runner()("explain", str(videos["a"]), "-c", str(checkpoint), "--out", str(out), "--json",
                          "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["figures"] == [str(out)] and doc["index"] is None
    summary = doc["videos"][0]
    layout = layout_for(3, ["rgb", "audio"])
    image = _png(out)
    assert (image.shape[1], image.shape[0]) == layout.size == tuple(summary["size"])
    assert summary["columns"] == 3
    for (c, m), (x0, y0, x1, y1) in layout.cells.items():
        selected = summary["decisions"][c][["rgb", "audio"].index(m)]
        assert _is_green(image[(y0 + y1) // 2, x0]) == bool(selected), (c, m)
        assert not _is_green(image[(y0 + y1) // 2, x0 - 8])  # the gap between columns is not green


def test_explain_folder_writes_an_index_with_one_figure_per_video(checkpoint, videos, tmp_path):
    result = cli_runner()("explain", str(videos["folder"]), str(videos["loose"]), "-c", str(checkpoint),
                          "--out", str(tmp_path / "report" / "index.html"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    figures = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert figures == ["a_tone.png", "b_silent.png", "d_loose.png"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == figures
    assert "c_broken.mp4" in page and "could not explain" in page
    assert doc["index"] == str(tmp_path / "report" / "index.html")
    labels = {v["top_k"][0]["label"] for v in doc["videos"] if "top_k" in v}
    assert all(f"<th>{label}</th>" in page for label in labels)


def test_built_in_pictures_flow_only_where_selected(videos):
    """rgb: the segment's middle frame; audio: its spectrogram; flow: None unless selected, then (H, W, 2) pixels."""
    from adamml_core.config import SamplingConfig
    from adamml_core.media.open import open_media
    from adamml_core.media.sampling import sample_test_segments
    from adamml_plugins.audio import AudioModality, AudioOptions
    from adamml_plugins.flow import FlowModality, FlowOptions
    from adamml_plugins.rgb import RGBModality, RGBOptions

    sampling = SamplingConfig(test_segments=2, frames_per_segment=4, frame_stride=2, decode_short_side=48)
    flow = FlowModality(FlowOptions(algorithm="farneback", threads=1), sampling=sampling)
    rgb = RGBModality(RGBOptions(), sampling=sampling)
    audio = AudioModality(AudioOptions(), sampling=sampling)
    with open_media(videos["a"], decode_short_side=48) as media:
        segment = sample_test_segments(media.num_frames, media.fps, sampling)[1]
        middle = segment.frame_indices[len(segment.frame_indices) // 2]
        assert flow.display(media, segment, selected=False) is None
        field = flow.display(media, segment, selected=True)
        frame = rgb.display(media, segment, selected=False)
        strip = audio.display(media, segment, selected=False)
        np.testing.assert_array_equal(frame, media.frames([middle])[0])
    assert field.shape == (*frame.shape[:2], 2) and np.abs(field).max() > 0.1  # the square moves
    assert strip.shape == (audio.spec.bins, audio.spec.time_frames)
    assert int(strip.mean(axis=1).argmax()) == pytest.approx(800 * audio.spec.n_fft / 24_000, abs=2)  # the 800 Hz tone


def test_a_video_that_raises_is_named_and_the_others_go_on(model, videos, monkeypatch):
    """Not a media error (a bug in a modality, say): the pipeline stops, the culprit is isolated, the rest run."""
    from adamml_core.engine.inference.predict import Predictor

    exp, system, costs = model
    audio = exp.modalities["audio"]
    original = audio.load_policy

    def fragile(media, segment, **kwargs):
        if media.path.name == "b_silent.mkv":
            raise RuntimeError("boom in the audio view")
        return original(media, segment, **kwargs)

    monkeypatch.setattr(audio, "load_policy", fragile)
    results = list(Predictor(system, exp, costs=costs).predict([videos["a"], videos["b"], videos["loose"]]))
    assert [r.position for r in results] == [0, 1, 2]
    assert results[0].error is None and results[2].error is None
    assert results[1].error == "RuntimeError: boom in the audio view"
