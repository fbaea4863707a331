import importlib.metadata as md
import types

import pytest

from adamml_core import hookimpl
from adamml_core.plugins import ENTRY_POINT_GROUP, PluginLoadError, load_plugins
from plugin_dist import install_on_path, write_dist_info

BUILT_IN = {"rgb", "flow", "audio", "backbones", "fusion", "datasets", "synthetic"}


def test_built_ins_come_through_the_entry_point_group():
    advertised = {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == "adamml"}
    assert BUILT_IN <= set(advertised)
    assert all(ep.value.startswith("adamml_plugins.") for ep in advertised.values())
    system = load_plugins()
    status = {p.name: (p.status, p.distribution) for p in system.plugins}
    for name in BUILT_IN:
        assert status[name][0] == "loaded", status[name]
        assert status[name][1].startswith("adamml ")


def test_blocked_plugin_is_listed_but_not_loaded(monkeypatch):
    system = load_plugins(block=["synthetic"])
    assert {p.name: p.status for p in system.plugins}["synthetic"] == "blocked"
    assert "synthetic" not in system.components.datasets
    monkeypatch.setenv("ADAMML_BLOCK_PLUGINS", "fusion")
    assert {p.name: p.status for p in load_plugins().plugins}["fusion"] == "blocked"


def test_broken_plugin_is_named_with_its_distribution(tmp_path, monkeypatch):
    write_dist_info(tmp_path, "adamml-broken", "0.3.0", {"broken": "adamml_no_such_module_here"})
    install_on_path(monkeypatch, tmp_path)
    with pytest.warns(RuntimeWarning, match=r"plugin 'broken' \(distribution adamml-broken 0.3.0"):
        system = load_plugins()
    info = {p.name: p for p in system.plugins}["broken"]
    assert info.status == "failed" and "ModuleNotFoundError" in info.error
    with pytest.raises(PluginLoadError, match="adamml-broken 0.3.0"):
        load_plugins(strict=True)


def test_misspelt_hook_fails_loudly():
    plugin = types.SimpleNamespace()

    @hookimpl
    def register_modality(register):  # singular: not a hook
        pass

    plugin.register_modality = register_modality
    with pytest.raises(PluginLoadError, match="register_modality"):
        load_plugins(extra=[("typo", plugin)])


def test_failing_hook_names_the_plugin():
    plugin = types.SimpleNamespace()

    @hookimpl
    def register_datasets(register):
        raise RuntimeError("annotation file unreadable")

    plugin.register_datasets = register_datasets
    with pytest.raises(PluginLoadError, match="plugin 'flaky'.*register_datasets.*annotation file unreadable"):
        load_plugins(extra=[("flaky", plugin)])


def test_registration_records_origin_and_duplicates_name_both():
    first, second = types.ModuleType("first_plugin"), types.ModuleType("second_plugin")

    class Thing:
        """A thing."""

    @hookimpl
    def register_fusions(register):
        register("my_fusion", Thing)

    first.register_fusions = register_fusions
    second.register_fusions = register_fusions
    system = load_plugins(extra=[("one", first)])
    entry = system.components.fusions.get("my_fusion")
    assert entry.origin.plugin == "one" and entry.description == "A thing."
    with pytest.raises(PluginLoadError, match="registered twice: first by .*, again by"):
        load_plugins(extra=[("one", first), ("two", second)])
