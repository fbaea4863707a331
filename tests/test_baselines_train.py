"""Every baseline of issue 11 trains with `adamml train`'s engine and is scored by the evaluator on the
synthetic dataset, on CPU, with small backbones: late fusion (average, weighted, max), mid-level fusion,
collaborative experts, lateral connections (unilateral, bilateral), gradient blending and the random
policy. One unimodal run is shared: every method starts from its recognition networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adamml_core.config import ConfigError
from adamml_core.engine.checkpoint import load_checkpoint
from adamml_core.engine.inference.evaluator import EvaluationError
from adamml_core.engine.train.recipe import check_recipe
from adamml_core.engine.train.trainer import Trainer
from adamml_core.models.fusion_contract import baseline_stages
from engine_configs import builtin_components, data_root, keep_torch_threads, tiny_config  # noqa: F401

FUSIONS = ["average", "weighted", "max", "mid", "experts", "unilateral", "bilateral", "gblend"]
METHODS = [*FUSIONS, "random"]
SMALL = ["train.fusion.epochs=1", "train.joint.epochs=1", "fusion.options={}",
         "train.gradient_blending={epochs: 1, holdout: 0.25, mode: online, every_n_epochs: 1}"]
# small heads; no DropPathway here (it drops the connections' gradients at random; test_fusion_lateral covers it)
OPTIONS = {"mid": "fusion.options={hidden: 32}", "experts": "fusion.options={width: 16}",
           "unilateral": "fusion.options={drop_pathway: 0.0}", "bilateral": "fusion.options={drop_pathway: 0.0}"}


def method_overrides(method: str) -> list[str]:
    fusion = "weighted" if method == "random" else method
    stages = [s for s in baseline_stages(builtin_components().fusions.get(fusion)) if s != "unimodal"]
    extra = [OPTIONS[method]] if method in OPTIONS else []
    return [f"fusion.name={fusion}", f"train.stages=[{','.join(stages)}]", *SMALL, *extra]


@pytest.fixture(scope="module")
def unimodal_weights(data_root, tmp_path_factory):  # noqa: F811
    """The recognition networks after one unimodal epoch, shared by every method."""
    out = tmp_path_factory.mktemp("unimodal")
    trainer = Trainer(tiny_config(data_root, out, ["train.stages=[unimodal]"]), components=builtin_components())
    trainer.fit()
    model = load_checkpoint(out / "checkpoints" / "unimodal.pt")["model"]
    return {k[len("recognizers."):]: v for k, v in model.items() if k.startswith("recognizers.")}


@pytest.fixture(scope="module")
def trained(data_root, unimodal_weights, tmp_path_factory):  # noqa: F811
    """``trained(method) -> (trainer, fusion state before training, run dir)``, each method trained once."""
    runs: dict = {}

    def get(method):
        if method not in runs:
            out = tmp_path_factory.mktemp(method)
            trainer = Trainer(tiny_config(data_root, out, method_overrides(method)), components=builtin_components())
            trainer.system.recognizers.load_state_dict(unimodal_weights)
            before = {k: v.clone() for k, v in trainer.system.fusion.state_dict().items()}
            trainer.fit()
            runs[method] = (trainer, before, out)
        return runs[method]
    return get


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_evaluates_with_its_fusion_counted(method, trained):
    trainer, before, _ = trained(method)
    system, exp = trainer.system, trainer.exp
    # what it trained: a method with parameters changed them (average and max have none)
    after = system.fusion.state_dict()
    learnable = [k for k, _ in system.fusion.named_parameters()]
    if method in ("average", "max"):
        assert learnable == []
    else:
        assert learnable and any(not torch.equal(before[k], after[k]) for k in learnable), method
    mode = "random" if method == "random" else "all"
    result = trainer.evaluate(mode)
    assert result["videos"] == len(exp.records["val"]) and math.isfinite(result["score"])
    costs = trainer.evaluator.cost_model(system)
    c = exp.cfg.sampling.test_segments
    if method != "random":
        assert costs.fusion > 0.0 or method in ("average", "max")
        expected = c * (sum(costs.recognition.values()) + costs.fusion)
        assert result["gflops_per_video"] == pytest.approx(expected, rel=1e-9)
    # forward and backward through every part of the method
    system.train()
    system.requires_grad_(True)  # the last stage froze what it did not train
    inputs = {m: torch.randn(2, c, *exp.modalities[m].segment_shape()) for m in system.modalities}
    system.zero_grad(set_to_none=True)
    F.cross_entropy(system.forward_all(inputs), torch.tensor([0, 1])).backward()
    for m in system.modalities:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in system.recognizers[m].parameters()), m
    for name, p in system.fusion.named_parameters():
        assert p.grad is not None, name


def test_gradient_blending_weights_are_positive_sum_to_one_are_logged_and_stored(trained):
    trainer, _, tmp_path = trained("gblend")
    stored = load_checkpoint(tmp_path / "checkpoints" / "gradient_blending.pt")["model"]["fusion.blend_weights"]
    assert stored.shape == (3,) and bool((stored > 0).all()) and float(stored.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(stored, trainer.system.fusion.blend_weights)
    import json

    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [e for e in events if e.get("event") == "gradient_blending"]
    assert len(logged) == 1 and set(logged[0]["weights"]) == {"rgb", "audio", "fused"}
    assert torch.allclose(stored, torch.tensor([logged[0]["weights"][k] for k in ("rgb", "audio", "fused")]))
    steps = [e for e in events if e.get("event") == "step" and e.get("stage") == "gradient_blending"]
    assert steps and steps[0]["w_fused"] == pytest.approx(logged[0]["weights"]["fused"], rel=1e-5)
    assert baseline_stages(trainer.system.fusion) == ("unimodal", "gradient_blending")


def test_blend_weights_follow_generalisation_over_overfitting_squared():
    from adamml_plugins.gradient_blending import blend_weights

    before = {"train": {"a": 1.0, "b": 1.0, "fused": 1.0}, "held": {"a": 1.0, "b": 1.0, "fused": 1.0}}
    # a: held-out loss -0.2, overfitting +0.1; b: -0.1, +0.1; fused: held-out loss rose (no gain)
    after = {"train": {"a": 0.7, "b": 0.8, "fused": 0.5}, "held": {"a": 0.8, "b": 0.9, "fused": 1.1}}
    w = blend_weights(before, after)["weights"]
    assert w["a"] == pytest.approx(2 * w["b"], rel=1e-6) and 0 < w["fused"] < 1e-6
    assert sum(w.values()) == pytest.approx(1.0)


def test_random_policy_draws_at_the_rates_through_the_lazy_path(trained, monkeypatch):
    from adamml_core.engine.inference.pipeline import runner as pipeline_module

    trainer, _, _ = trained("random")
    rules = []
    original = pipeline_module.evaluation_batches

    def spy(*args, **kwargs):  # the lazy pipeline, driven by the random draws instead of the policy
        rules.append(kwargs.get("decide"))
        yield from original(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "evaluation_batches", spy)
    records = trainer.exp.records["train"]
    learned = trainer.evaluate("adaptive", split="train")
    default = trainer.evaluator.evaluate(trainer.system, records, mode="random")
    assert default["rates_from"] == "learned" and default["rates"] == learned["selection"]
    costs = trainer.evaluator.cost_model(trainer.system)
    rates = {"rgb": 0.3, "audio": 0.7}
    runs = [trainer.evaluator.evaluate(trainer.system, records, mode="random", rates=rates, seed=s) for s in (5, 5)]
    assert runs[0]["selection"] == runs[1]["selection"] and runs[0]["score"] == runs[1]["score"]  # seeded
    assert runs[0]["rates"] == rates and runs[0]["rates_from"] == "given"
    assert len(rules) == 5 and rules[0] is None and all(callable(r) for r in rules[2:])  # adaptive, then random
    items = runs[0]["videos"] * trainer.exp.cfg.sampling.test_segments
    for r in runs:
        for m, rate in rates.items():  # within 3 standard errors (plus the empty-video fill)
            assert abs(r["selection"][m] - rate) <= 3 * math.sqrt(rate * (1 - rate) / items) + 1 / items
        segments = items
        selected = {m: r["selection"][m] * segments for m in rates}
        # the same formula as the adaptive path's (no policy network runs)
        assert r["gflops_per_video"] == pytest.approx(
            costs.mean_per_video(selected, segments, r["videos"], policy=False, fusion=True), rel=1e-9)
    with pytest.raises(EvaluationError, match="--rates"):
        trainer.evaluator.evaluate(trainer.system, records, mode="random", rates="rgb=0.3")
    with pytest.raises(EvaluationError, match="only applies to --mode random"):
        trainer.evaluator.evaluate(trainer.system, records, mode="all", rates=rates)


def test_random_policy_keeps_the_empty_video_rule():
    from adamml_core.engine.decisions.random_policy import random_rule

    class System:
        modalities = ["a", "b"]
        empty_video = "best_item"

    inputs = {"a": torch.zeros(64, 4, 1)}
    filled = random_rule(System(), {"a": 0.0, "b": 0.0}, seed=0)(inputs)
    assert bool((filled.flatten(1).sum(dim=1) == 1).all())  # exactly one item per video switched on
    System.empty_video = "zeros"
    assert float(random_rule(System(), {"a": 0.0, "b": 0.0}, seed=0)(inputs).sum()) == 0.0


@pytest.mark.parametrize("fusion", ["unilateral", "bilateral"])
def test_a_lateral_method_with_adaptive_stages_fails_config_validation(fusion, data_root, tmp_path):  # noqa: F811
    cfg = tiny_config(data_root, tmp_path, [f"fusion.name={fusion}"])  # the default stages: warm-up, alternating...
    with pytest.raises(ConfigError, match=f"fusion '{fusion}' needs every modality.*warmup, alternating, finetune"):
        check_recipe(cfg, builtin_components())
    ok = tiny_config(data_root, tmp_path, [f"fusion.name={fusion}", "train.stages=[unimodal,fusion]"])
    check_recipe(ok, builtin_components())


def test_the_compile_wrapper_keeps_the_encoder_and_head_split():
    from adamml_core.engine.inference.pipeline.fast import Bucketed, _compiled_parts

    class Net(torch.nn.Module):
        feature_dim = 3

        def __init__(self):
            super().__init__()
            self.body, self.out = torch.nn.Linear(5, 3), torch.nn.Linear(3, 2)

        def encode(self, x):
            return self.body(x)

        def head(self, f):
            return self.out(f)

        def forward(self, x):
            return self.head(self.encode(x))

    net = Net()
    wrapped = Bucketed(net, 8, {"encode": net.encode, "head": net.head})
    x = torch.randn(3, 5)
    assert torch.equal(wrapped.encode(x), net.encode(x)) and torch.equal(wrapped.head(net.encode(x)), net(x))
    assert wrapped.feature_dim == 3 and torch.equal(wrapped(x), net(x))
    plain = Bucketed(torch.nn.Linear(5, 2), 8, _compiled_parts(torch.nn.Linear(5, 2)))
    assert not hasattr(plain, "encode") and not hasattr(plain, "head")
