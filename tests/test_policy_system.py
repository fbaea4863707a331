"""The policy network and the AdaMML system: Gumbel gradients, deterministic eval,
the selected-only inference path agreeing with the masked path, fallbacks, baselines."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adamml_core.config import ConfigError
from adamml_core.models.build import build_modalities, build_policy_views, build_system
from adamml_core.models.gumbel import deterministic_decisions, gumbel_hard
from tiny_models import NUM_CLASSES, tiny_components, tiny_config

B, C = 3, 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def components():
    return tiny_components()


def make(components, modalities=("tinyframes", "tinymotion", "tinysound"), **sections):
    cfg = tiny_config(modalities, **sections)
    mods = build_modalities(cfg, components)
    views = build_policy_views(cfg, mods, components)
    system = build_system(cfg, NUM_CLASSES, components, mods, views)
    inputs = {m: torch.randn(B, C, *mods[m].segment_shape()) for m in mods}
    policy_inputs = {m: torch.randn(B, C, *views[m].policy_shape()) for m in mods}
    return system, inputs, policy_inputs


def gather_items(inputs, decisions, modalities):
    items = {}
    for mi, m in enumerate(modalities):
        positions = decisions[:, :, mi].nonzero()
        items[m] = (inputs[m][positions[:, 0], positions[:, 1]], positions)
    return items


def test_build_uses_the_config_names_and_sizes(components):
    system, inputs, policy_inputs = make(components)
    assert system.modalities == ["tinyframes", "tinymotion", "tinysound"]
    assert system.policy.branches["tinymotion"].features[0][0].in_channels == 6  # the proxy's channels
    assert system.recognizers["tinymotion"].conv1.in_channels == 4
    assert system.policy.head.lstm.hidden_size == 16 and system.policy.head.mlp[0].out_features == 32
    assert system.policy.head.lstm.input_size == 32 + 2 * 3
    assert float(system.temperature) == 5.0


def test_unknown_backbone_fails_with_the_known_ones(components):
    cfg = tiny_config(("tinyframes",), recognition={"tinyframes": {"backbone": {"name": "resnet_tsm"}}})
    with pytest.raises(ConfigError, match=r"recognition\.tinyframes\.backbone\.name: unknown backbone 'resnet_tsm'; registered: .*mobilenet_v2, resnet50_tsn"):
        build_system(cfg, NUM_CLASSES, components)
    cfg = tiny_config(("tinyframes",), fusion={"name": "concat"})
    with pytest.raises(ConfigError, match="unknown fusion method 'concat'; registered: average, .*max, .*weighted"):
        build_system(cfg, NUM_CLASSES, components)


def test_a_weights_file_that_does_not_fit_names_the_config_entry(components, tmp_path):
    cfg = tiny_config(("tinyframes",), policy={"mlp_dim": 32, "hidden_size": 16, "backbones": {
        "tinyframes": {"name": "mobilenet_v2", "options": {"pretrained": str(tmp_path / "missing.pth")}}}})
    with pytest.raises(ConfigError, match=r"policy\.backbones\.tinyframes\.options\.pretrained: weights file not found"):
        build_system(cfg, NUM_CLASSES, components)


def test_policy_outputs_two_way_logits_per_segment_and_modality(components):
    system, _, policy_inputs = make(components)
    assert system.policy(policy_inputs).shape == (B, C, 3, 2)


def test_gumbel_hard_is_one_hot_with_soft_gradients():
    logits = torch.randn(4, 5, 2, requires_grad=True)
    sample = gumbel_hard(logits, 1.0)
    assert torch.equal(sample.sum(-1), torch.ones(4, 5)) and set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    (sample[..., 1] * torch.randn(4, 5)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    half = gumbel_hard(torch.randn(10_000, 2).half(), 5.0)  # mixed precision must not give -inf/NaN
    assert torch.isfinite(half).all() and torch.equal(half.sum(-1), torch.ones(10_000))
    # the sampling follows the logits: a strong preference is drawn (almost) always
    strong = gumbel_hard(torch.tensor([[0.0, 6.0]]).expand(10_000, 2), 1.0)
    assert strong[:, 1].mean() > 0.99


def test_classification_loss_gradients_reach_the_policy_through_the_gumbel_samples(components):
    system, inputs, policy_inputs = make(components)
    system.train()
    for p in system.recognizers.parameters():
        p.requires_grad_(False)
    out = system(inputs, policy_inputs)
    assert out.decisions.requires_grad
    F.cross_entropy(out.logits, torch.arange(B) % NUM_CLASSES).backward()
    assert system.policy.head.heads[0].weight.grad.abs().sum() > 0
    assert system.policy.branches["tinysound"].features[0][0].weight.grad.abs().sum() > 0
    assert system.policy.head.lstm.weight_ih.grad.abs().sum() > 0


def test_eval_is_deterministic(components):
    system, inputs, policy_inputs = make(components)
    system.eval()
    with torch.no_grad():
        a, b = system(inputs, policy_inputs), system(inputs, policy_inputs)
        d1, p1 = system.decide(policy_inputs)
        d2, p2 = system.decide(policy_inputs)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.decisions, b.decisions)
    assert torch.equal(d1, d2) and torch.equal(p1, p2) and torch.equal(d1, a.decisions)


def test_threshold_is_a_budget_knob():
    logits = torch.tensor([[[[0.0, 2.0], [0.0, -1.0], [0.0, 0.1]]]])  # P(select) = .88, .27, .52
    argmax, probs = deterministic_decisions(logits)
    assert argmax.tolist() == [[[1.0, 0.0, 1.0]]]
    assert deterministic_decisions(logits, 0.25)[0].tolist() == [[[1.0, 1.0, 1.0]]]
    assert deterministic_decisions(logits, 0.6)[0].tolist() == [[[1.0, 0.0, 0.0]]]
    assert torch.allclose(probs, torch.sigmoid(logits[..., 1] - logits[..., 0]))


def random_decisions(seed=1):
    g = torch.Generator().manual_seed(seed)
    decisions = (torch.rand(B, C, 3, generator=g) > 0.5).float()
    decisions[0, 1] = 0.0  # a segment that selects nothing
    decisions[1, 0] = 1.0  # a segment that selects everything
    return decisions


@pytest.mark.parametrize("fusion", ["weighted", "average", "max"])
@pytest.mark.parametrize("fused_average", ["segments", "selected"])
def test_selected_only_path_equals_the_masked_path(components, fusion, fused_average):
    system, inputs, policy_inputs = make(components, fusion={"name": fusion}, train={"fused_average": fused_average})
    system.eval()
    with torch.no_grad():
        if fusion == "weighted":
            system.fusion.free_weights.copy_(torch.tensor([0.5, 0.2]))
        decisions = random_decisions()
        masked = system.fuse(system.recognize_all(inputs), decisions)
        selected = system.forward_selected(gather_items(inputs, decisions, system.modalities), decisions,
                                           batch_size=B, num_segments=C, chunk_size=2)
        assert torch.allclose(selected, masked, atol=1e-5)
        # ... and with the policy's own decisions, against forward() in eval mode
        out = system(inputs, policy_inputs)
        again = system.forward_selected(gather_items(inputs, out.decisions, system.modalities), out.decisions)
        assert torch.allclose(again, out.logits, atol=1e-5)


def test_selected_only_path_runs_networks_only_on_selected_items(components):
    system, inputs, _ = make(components)
    system.eval()
    decisions = random_decisions()
    seen = {m: [] for m in system.modalities}
    handles = [system.recognizers[m].register_forward_pre_hook(lambda _mod, args, m=m: seen[m].append(args[0].shape[0]))
               for m in system.modalities]
    with torch.no_grad():
        system.forward_selected(gather_items(inputs, decisions, system.modalities), decisions)
    for h in handles:
        h.remove()
    for mi, m in enumerate(system.modalities):
        assert sum(seen[m]) == int(decisions[:, :, mi].sum())


def test_selected_only_path_rejects_items_that_do_not_match_the_decisions(components):
    system, inputs, _ = make(components)
    system.eval()
    decisions = random_decisions()
    items = gather_items(inputs, decisions, system.modalities)
    x, pos = items["tinysound"]
    items["tinysound"] = (x[:-1], pos[:-1])
    with pytest.raises(ValueError, match="tinysound"):
        system.forward_selected(items, decisions)
    with pytest.raises(ValueError, match="none were given"):
        system.forward_selected({}, decisions)


def test_fused_average_over_selected_segments(components):
    system, inputs, _ = make(components, fusion={"name": "average"}, train={"fused_average": "selected"})
    system.eval()
    decisions = torch.zeros(B, C, 3)
    decisions[:, 0, 0] = 1.0  # only the first segment, first modality
    with torch.no_grad():
        logits = system.fuse(system.recognize_all(inputs), decisions)
        first = system.recognizers["tinyframes"](inputs["tinyframes"][:, 0])
        assert torch.allclose(logits, first, atol=1e-5)
        system.fused_average = "segments"
        assert torch.allclose(system.fuse(system.recognize_all(inputs), decisions), first / C, atol=1e-5)


def test_a_video_that_selects_nothing_gets_its_most_probable_item(components):
    system, inputs, policy_inputs = make(components)
    system.eval()
    with torch.no_grad():
        decisions, probs = system.decide(policy_inputs, threshold=1.0)  # P(select) >= 1 never holds
        assert decisions.flatten(1).sum(1).tolist() == [1.0] * B
        best = probs.flatten(1).argmax(1)
        assert torch.equal(decisions.flatten(1).argmax(1), best)
        out = system(inputs, policy_inputs, threshold=1.0)
        assert torch.isfinite(out.logits).all() and out.logits.abs().sum() > 0
        system.empty_video = "zeros"
        decisions, _ = system.decide(policy_inputs, threshold=1.0)
        assert decisions.sum() == 0
        logits = system.forward_selected({}, decisions)
        assert torch.equal(logits, torch.zeros(B, NUM_CLASSES))


def test_training_path_survives_videos_that_select_nothing(components):
    system, inputs, policy_inputs = make(components, train={"fused_average": "selected"})
    system.train()
    with torch.no_grad():
        for head in system.policy.head.heads:  # force "skip" everywhere
            head.weight.zero_()
            head.bias.copy_(torch.tensor([50.0, -50.0]))
    out = system(inputs, policy_inputs)
    assert out.decisions.sum() == 0 and torch.isfinite(out.logits).all()
    loss = F.cross_entropy(out.logits, torch.zeros(B, dtype=torch.long))
    assert torch.isclose(loss, torch.log(torch.tensor(float(NUM_CLASSES))))
    loss.backward()


def test_temperature_is_model_state(components):
    system, _, _ = make(components)
    system.set_temperature(2.5)
    assert float(system.state_dict()["temperature"]) == 2.5


def test_weighted_fusion_weights_start_at_one_over_m_and_sum_to_one(components):
    system, _, _ = make(components)
    weights = system.fusion.weights()
    assert torch.allclose(weights, torch.full((3,), 1 / 3)) and torch.isclose(weights.sum(), torch.tensor(1.0))


def test_baselines_use_the_same_networks(components):
    system, inputs, _ = make(components, fusion={"name": "average"})
    system.eval()
    with torch.no_grad():
        per_modality = {m: system.forward_unimodal(m, inputs[m]) for m in system.modalities}
        for m in system.modalities:
            x = inputs[m].flatten(0, 1)
            assert torch.allclose(per_modality[m], system.recognizers[m](x).view(B, C, -1).mean(1), atol=1e-5)
        everything = system.forward_all(inputs)
        assert torch.allclose(everything, torch.stack(list(per_modality.values())).mean(0), atol=1e-5)
        assert torch.allclose(everything, system.fuse(system.recognize_all(inputs), torch.ones(B, C, 3)), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_selected_path_and_autocast(components):
    system, inputs, policy_inputs = make(components)
    device = torch.device("cuda")
    system.to(device)
    inputs = {m: x.to(device) for m, x in inputs.items()}
    policy_inputs = {m: x.to(device) for m, x in policy_inputs.items()}
    system.train()
    out = system(inputs, policy_inputs)
    F.cross_entropy(out.logits, torch.arange(B, device=device) % NUM_CLASSES).backward()
    assert system.policy.head.heads[0].weight.grad.abs().sum() > 0
    system.eval()
    with torch.no_grad(), torch.backends.cudnn.flags(allow_tf32=False):
        out = system(inputs, policy_inputs)
        decisions = random_decisions().to(device)
        masked = system.fuse(system.recognize_all(inputs), decisions)
        selected = system.forward_selected(gather_items(inputs, decisions, system.modalities), decisions)
        assert selected.device.type == "cuda" and torch.allclose(selected, masked, atol=1e-4)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            amp = system.forward_selected(gather_items(inputs, decisions, system.modalities), decisions)
        assert torch.isfinite(amp).all() and torch.allclose(amp.float(), masked, atol=0.1)


def test_build_system_resolves_an_unresolved_config_once(components, monkeypatch):
    import adamml_core.models.build as build

    calls = []
    real = build.resolve_config
    monkeypatch.setattr(build, "resolve_config", lambda cfg, comps: calls.append(cfg) or real(cfg, comps))
    cfg = tiny_config(("tinyframes", "tinymotion", "tinysound"))
    assert not build.is_resolved(cfg)
    build_system(cfg, NUM_CLASSES, components)
    assert len(calls) == 1  # not once more per builder (views, every recognizer, the policy)
    resolved_cfg = real(cfg, components)
    calls.clear()
    build_system(resolved_cfg, NUM_CLASSES, components)
    assert calls == []


def test_no_builder_falls_back_to_the_installed_plugins(components):
    """Without ``components`` a builder must not quietly load every installed plugin (hidden global state)."""
    import adamml_core.models.build as build
    from adamml_core.config import resolve_config

    cfg = resolve_config(tiny_config(("tinyframes",)), components)
    mods = build.build_modalities(cfg, components)
    calls = {
        "resolve_config": lambda: resolve_config(cfg),
        "build_modalities": lambda: build.build_modalities(cfg),
        "build_policy_views": lambda: build.build_policy_views(cfg, mods),
        "build_recognizer": lambda: build.build_recognizer(cfg, "tinyframes", mods["tinyframes"].segment_shape(), 3),
        "build_system": lambda: build.build_system(cfg, NUM_CLASSES),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match="components"):
            call()
