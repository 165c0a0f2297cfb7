"""Every third-party package that ``src/rlfleet`` imports is declared in pyproject.toml: in
``dependencies``, or in an extra (the optional integrations: ale_py, envpool, ray, wandb,
dm_control, ...). Imports anywhere count: module top level, inside functions, inside ``try``."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "rlfleet"
# Where an optional package is not installed here, importlib.metadata cannot say which
# distribution provides the module: these say it (module -> distribution).
NOT_INSTALLED_DISTRIBUTIONS = {
    "ale_py": "ale-py",
    "cv2": "opencv-python-headless",
    "dm_control": "dm-control",
    "envpool": "envpool",
    "minatar": "minatar",
    "mujoco": "mujoco",
    "ray": "ray",
    "shimmy": "shimmy",
    "stable_baselines3": "stable-baselines3",
    "wandb": "wandb",
}
# Installed by a script with pip's --no-deps (their metadata pins numpy < 2), which no extra can
# say: module -> (script, distribution); the script must name the distribution.
INSTALLED_BY_SCRIPT = {"procgen": ("scripts/install_procgen.sh", "procgen-mirror")}
# importlib.import_module("x") / importlib.util.find_spec("x") with a literal name count too
DYNAMIC_IMPORTS = {"import_module", "find_spec"}


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(source: str) -> set[str]:
    """Top-level names of the absolute imports in ``source``, wherever they stand."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in DYNAMIC_IMPORTS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return {name.split(".")[0] for name in names}


def third_party_imports() -> dict[str, list[str]]:
    """module -> the files of src/rlfleet importing it (the standard library and rlfleet aside)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for module in imported_modules(path.read_text()):
            if module not in sys.stdlib_module_names and module != "rlfleet":
                found.setdefault(module, []).append(str(path.relative_to(ROOT)))
    return found


def declared_distributions() -> set[str]:
    """Normalized names of everything in pyproject's ``dependencies`` and extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    return {normalized(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r.strip()).group()) for r in requirements}


def test_the_scan_finds_imports_everywhere():
    source = """
import numpy as np, os.path
from torch import nn
from . import sibling
from .models import x
import importlib
def f():
    import wandb
    try:
        from ale_py.roms import y
    except ImportError:
        pass
    importlib.import_module("envpool")
    return importlib.util.find_spec("ray.tune")
"""
    assert imported_modules(source) == {"numpy", "os", "torch", "importlib", "wandb", "ale_py", "envpool", "ray"}


def test_every_imported_package_is_declared():
    provided_by = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    undeclared, unknown = [], []
    for module, files in sorted(third_party_imports().items()):
        if module in INSTALLED_BY_SCRIPT:
            script, distribution = INSTALLED_BY_SCRIPT[module]
            if distribution not in (ROOT / script).read_text():
                undeclared.append(f"{module} from {distribution} (imported by {', '.join(files)}; not in {script})")
            continue
        distributions = provided_by.get(module) or [NOT_INSTALLED_DISTRIBUTIONS.get(module)]
        if distributions == [None]:
            unknown.append(f"{module} (imported by {', '.join(files)})")
        elif not declared & {normalized(d) for d in distributions}:
            undeclared.append(f"{module} from {' or '.join(distributions)} (imported by {', '.join(files)})")
    assert not unknown, "no distribution known for: " + "; ".join(unknown) + " (install it, or name it above)"
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)
