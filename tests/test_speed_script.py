"""Smoke test of benchmarks/speed_vs_sb3.py: one tiny round of rlfleet and SB3 PPO on CartPole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "speed_vs_sb3.py"


def table_rows(text: str) -> dict[str, list[str]]:
    """The summary table's rows by library (the first table printed)."""
    lines = text.split("<details>")[0].splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    header = cells[0]
    return {row[0]: dict(zip(header, row)) for row in cells[2:]}


TINY_ROUNDS = {
    "ppo-cartpole": ["--steps=1024", "--eval-interval=512", "--hp=n_steps=64", "--hp=n_epochs=1"],
    "sac-pendulum": ["--steps=300", "--eval-interval=200", "--hp=learning_starts=100"],
    "rppo-cartpolenovel": ["--steps=512", "--eval-interval=256", "--hp=n_epochs=1", "--hp=lstm_hidden_size=16"],
}
PEERS = {"rppo-cartpolenovel": ("sb3-contrib", {"rlfleet-ff"})}


@pytest.mark.parametrize("case", list(TINY_ROUNDS))
def test_tiny_round(tmp_path, case):
    pytest.importorskip("stable_baselines3")
    peer, variants = PEERS.get(case, ("SB3", set()))
    if peer == "sb3-contrib":
        pytest.importorskip("sb3_contrib")
    out = tmp_path / "speed.md"
    cmd = [
        sys.executable,
        str(SCRIPT),
        f"--case={case}",
        "--rounds=1",
        *TINY_ROUNDS[case],
        "--hp=eval_episodes=2",
        "--hp=eval_envs=2",
        f"--out={out}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert set(rows) == {"rlfleet", peer, *variants}
    ratio_column = f"steps/s ratio to {peer}"
    for row in rows.values():
        assert float(row["env steps/s (median)"]) > 0
        assert float(row["peak RSS MiB"]) > 0
        assert float(row[ratio_column]) > 0
    assert float(rows[peer][ratio_column]) == 1.0
    for variant in variants:
        assert f"rlfleet / {variant} env steps/s:" in proc.stdout
    report = out.read_text()
    assert f"speed_vs_sb3.py --case={case}" in report and "stable-baselines3" in report
    assert table_rows(report.split("\n### ", 1)[1]).keys() == rows.keys()
