"""The core stands alone: importing every adamml_core module imports no built-in plugin and no CLI."""

import json
import subprocess
import sys

PROBE = r"""
import importlib, json, pkgutil, sys
import adamml_core
names = sorted(m.name for m in pkgutil.walk_packages(adamml_core.__path__, "adamml_core."))
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("adamml_plugins", "adamml_cli"))
print(json.dumps({"modules": names, "leaked": leaked}))
"""


def test_importing_every_core_module_imports_no_plugin_and_no_cli():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "adamml_core.plugins" in report["modules"] and "adamml_core.models.build" in report["modules"]
    assert report["leaked"] == [], f"adamml_core imports {report['leaked']}"
