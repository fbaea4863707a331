"""The plugin contract's public surface: plugins import from ``adamml_core.api`` only, and it has what they need."""

from __future__ import annotations

import ast
from pathlib import Path

import adamml_core.api as api

ROOT = Path(__file__).resolve().parent.parent
# the built-in plugins, the test plugin distribution and the example package: every plugin adamml ships
PLUGIN_TREES = [ROOT / "plugins", ROOT / "tests" / "plugin_distribution", ROOT / "docs" / "examples"]


def core_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of ``adamml_core`` in ``path``, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "adamml_core":
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names if alias.name.split(".")[0] == "adamml_core"]
    return found


def test_plugins_import_the_core_only_through_its_api():
    files = [p for tree in PLUGIN_TREES for p in sorted(tree.rglob("*.py"))]
    assert len(files) > 20  # the trees are where this test thinks they are
    stray = [f"{p.relative_to(ROOT)}:{line}: {module}" for p in files for line, module, _ in core_imports(p)
             if module != "adamml_core.api"]
    assert not stray, "plugins must import from adamml_core.api only:\n" + "\n".join(stray)
    unknown = [f"{p.relative_to(ROOT)}:{line}: {name}" for p in files for line, module, names in core_imports(p)
               for name in names if name not in api.__all__]
    assert not unknown, "names adamml_core.api does not export:\n" + "\n".join(unknown)


def test_the_checker_sees_a_stray_import(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("from adamml_core.api import hookimpl\n\ndef f():\n    from adamml_core.media.open import open_media\n")
    assert [module for _, module, _ in core_imports(plugin)] == ["adamml_core.api", "adamml_core.media.open"]


def test_every_exported_name_exists_and_is_documented():
    assert sorted(api.__all__) == sorted(set(api.__all__))
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing
    undocumented = [name for name in api.__all__ if name not in api.__doc__]
    assert not undocumented, f"listed in __all__ but not in the module docstring: {undocumented}"
