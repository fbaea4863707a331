import importlib.metadata as md
import json
import subprocess
import types
from pathlib import Path

import pytest
import typer
import yaml

from adamml_core import hookimpl
from adamml_core.plugins import ENTRY_POINT_GROUP, PluginLoadError, load_plugins
from plugin_dist import adamml_command, install_on_path, pythonpath_env, write_dist_info

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


def _plugin(name: str, **hooks):
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def _datasets_then_raise(register):
    register("half_registered", type("Half", (), {"__doc__": "registered before the hook raised"}))
    raise RuntimeError("annotation file unreadable")


def test_misspelt_hook_is_reported_and_the_other_plugins_load(monkeypatch):
    typo = _plugin("typo_plugin", register_modality=lambda register: None)  # singular: not a hook
    with pytest.warns(RuntimeWarning, match=r"plugin 'typo' \(distribution in-process.*register_modality.*not an adamml hook"):
        system = load_plugins(extra=[("typo", typo)])
    info = system.info("typo")
    assert info.status == "failed" and "register_modalities" in info.error  # lists the real hooks
    assert "rgb" in system.components.modalities
    with pytest.raises(PluginLoadError, match="register_modality"):
        load_plugins(extra=[("typo", typo)], strict=True)
    monkeypatch.setenv("ADAMML_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="register_modality"):
        load_plugins(extra=[("typo", typo)])


def test_a_raising_hook_fails_its_plugin_only_and_registers_nothing_of_it():
    flaky = _plugin("flaky_plugin", register_datasets=_datasets_then_raise,
                    register_commands=lambda app: pytest.fail("a failed plugin's commands must not be added"))
    with pytest.warns(RuntimeWarning, match=r"plugin 'flaky'.*register_datasets.*annotation file unreadable"):
        system = load_plugins(extra=[("flaky", flaky)])
    assert system.info("flaky").status == "failed"
    assert "half_registered" not in system.components.datasets  # the staging area was dropped
    assert "synthetic" in system.components.datasets  # the built-ins still loaded
    assert system.add_commands(typer.Typer()) == []  # the failed plugin was unregistered: its command hook never runs
    with pytest.raises(PluginLoadError, match=r"plugin 'flaky'.*register_datasets.*annotation file unreadable"):
        load_plugins(extra=[("flaky", flaky)], strict=True)


def test_a_raising_command_hook_is_reported_and_the_other_commands_are_added():
    added = []
    bad = _plugin("bad_cmds", register_commands=lambda app: (_ for _ in ()).throw(ValueError("no such sub-app")))
    good = _plugin("good_cmds", register_commands=lambda app: added.append(app))
    system = load_plugins(extra=[("bad", bad), ("good", good)])
    app = typer.Typer()
    reports = system.add_commands(app)
    assert added == [app]
    assert len(reports) == 1 and "plugin 'bad'" in reports[0] and "no such sub-app" in reports[0]


def test_duplicate_name_keeps_the_first_and_reports_the_second():
    class Thing:
        """A thing."""

    class Other:
        """Another thing."""

    first = _plugin("first_plugin", register_fusions=lambda register: register("my_fusion", Thing))
    second = _plugin("second_plugin", register_fusions=lambda register: (register("my_fusion", Other),
                                                                         register("second_only", Other)))
    system = load_plugins(extra=[("one", first)])
    entry = system.components.fusions.get("my_fusion")
    assert entry.origin.plugin == "one" and entry.description == "A thing."
    with pytest.warns(RuntimeWarning, match=r"plugin 'two'.*registered twice: first by one \(in-process\), again by two"):
        system = load_plugins(extra=[("one", first), ("two", second)])
    assert system.components.fusions["my_fusion"] is Thing
    assert system.components.fusions["second_only"] is Other  # the rest of the second plugin still registers
    assert system.info("two").status == "loaded" and "registered twice" in system.info("two").problems[0]
    assert [p.name for p in system.failed] == ["two"]
    with pytest.raises(PluginLoadError, match="registered twice"):
        load_plugins(extra=[("one", first), ("two", second)], strict=True)


def test_options_model_that_is_not_pydantic_fails_the_plugin():
    odd = _plugin("odd_plugin", register_fusions=lambda register: register("odd", object, options_model=dict))
    with pytest.warns(RuntimeWarning, match="options_model must be a pydantic BaseModel"):
        system = load_plugins(extra=[("odd", odd)])
    assert system.info("odd").status == "failed" and "odd" not in system.components.fusions


def test_adamml_plugins_lists_a_broken_plugin_and_still_works(tmp_path):
    write_dist_info(tmp_path, "adamml-broken", "0.3.0", {"broken": "adamml_no_such_module_here"})
    env = pythonpath_env(tmp_path)
    env.pop("ADAMML_STRICT_PLUGINS", None)
    out = subprocess.run(adamml_command() + ["plugins", "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert plugins["broken"]["status"] == "failed" and "adamml-broken 0.3.0" in plugins["broken"]["error"]
    assert plugins["rgb"]["status"] == "loaded"
    assert "warning:" in out.stderr and "Traceback" not in out.stderr
    table = subprocess.run(adamml_command() + ["plugins"], capture_output=True, text=True, env=env)
    assert table.returncode == 0 and "failed" in table.stdout and "broken" in table.stderr
    env["ADAMML_STRICT_PLUGINS"] = "1"
    strict = subprocess.run(adamml_command() + ["plugins"], capture_output=True, text=True, env=env)
    assert strict.returncode == 2 and "adamml-broken 0.3.0" in strict.stderr and "Traceback" not in strict.stderr


SIDE_EFFECT_PLUGIN = """
import os, pathlib
pathlib.Path(os.environ["ADAMML_TEST_MARKER"]).write_text("imported")
"""


def test_plugins_block_in_a_config_keeps_the_plugin_from_being_imported(tmp_path):
    (tmp_path / "adamml_sidefx_probe.py").write_text(SIDE_EFFECT_PLUGIN)
    write_dist_info(tmp_path, "adamml-sidefx", "1.0", {"sidefx": "adamml_sidefx_probe"})
    marker = tmp_path / "imported.txt"
    env = pythonpath_env(tmp_path)
    env["ADAMML_TEST_MARKER"] = str(marker)
    data = yaml.safe_load(Path("configs/synthetic/rgb_audio_quick.yaml").read_text())
    data.setdefault("plugins", {})["block"] = ["sidefx"]
    config = tmp_path / "blocked.yaml"
    config.write_text(yaml.safe_dump(data))
    for command in (["config", "validate", str(config)], ["datasets", "check", str(config), "--no-probe", "--json"]):
        run = subprocess.run(adamml_command() + command, capture_output=True, text=True, env=env)
        assert "Traceback" not in run.stderr, run.stderr
        assert not marker.exists(), f"`adamml {' '.join(command[:2])}` imported a plugin its config blocks"
    # Not blocked, the same plugin is imported: the check above can fail.
    data["plugins"]["block"] = []
    config.write_text(yaml.safe_dump(data))
    run = subprocess.run(adamml_command() + ["config", "validate", str(config)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert marker.exists()
