"""docs/architecture.md stays true to the code: its capability table is what the specs declare."""

from __future__ import annotations

from pathlib import Path

from rlfleet.algos.registry import algorithms
from rlfleet.algos.spec import AlgoSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def capability_row(name: str, spec: AlgoSpec) -> str:
    paths = [spec.default_model] if isinstance(spec.default_model, str) else list(spec.default_model.values())
    model = " / ".join(path.split(":")[1] for path in paths)
    if spec.default_model_kwargs:
        model += " (" + ", ".join(f"{k}={v}" for k, v in spec.default_model_kwargs.items()) + ")"
    check = spec.check.__name__ if spec.check else "-"
    return (
        f"| `{name}` | {spec.policy} | {', '.join(spec.action_spaces)} | {', '.join(spec.runner_kinds)} | "
        f"`{spec.config.__name__}` | `{spec.agent_config.__name__}` | `{model}` | {check} |"
    )


def test_capability_table_matches_the_specs():
    doc_rows = {line for line in DOC.read_text().splitlines() if line.startswith("| `")}
    missing = [capability_row(n, s) for n, s in algorithms().items() if capability_row(n, s) not in doc_rows]
    assert not missing, "docs/architecture.md 'Declared capabilities' lacks or differs from:\n" + "\n".join(missing)
