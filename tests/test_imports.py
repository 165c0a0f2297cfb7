"""The module graph: no import cycles among rlfleet's modules, runners never import the
composition root, and declarations (specs, configs) load without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rlfleet

PACKAGE_DIR = Path(rlfleet.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: rlfleet modules it imports}``, counting imports inside functions too."""
    modules = {module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("rlfleet") and target != name and target != "rlfleet":
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_runners_never_import_the_builder():
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith("rlfleet.runners."):
            assert not edges & {"rlfleet.build", "rlfleet.experiment"}, f"{name} imports {edges}"


def _modules_loaded_by(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(out.stdout.split())


def test_declarations_and_listing_import_no_torch():
    loaded = _modules_loaded_by(
        "from rlfleet.algos.registry import algorithms\n"
        "from rlfleet.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['list'])\n"
        "assert len(algorithms()) >= 15"
    )
    assert "rlfleet.algos.registry" in loaded
    assert "torch" not in loaded and "gymnasium" not in loaded


def test_a_typo_is_answered_without_torch(tmp_path):
    for argv in (["train", "ppoo", "-e", "CartPole-v1"], ["train", "ppo", "-e", "CartPole-v1", "algo.lrr=1"]):
        loaded = _modules_loaded_by(
            "import contextlib, io\n"
            "from rlfleet.cli import main\n"
            "with contextlib.redirect_stderr(io.StringIO()):\n"
            f"    assert main({argv!r}) == 2"
        )
        assert "rlfleet.cli" in loaded and "torch" not in loaded, argv
