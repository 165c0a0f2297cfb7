"""The value-based family end to end: every algorithm trains, checkpoints, resumes exactly
(N steps in one go == N/2 steps + resume), and uses its options (PER, noise, transforms)."""

from __future__ import annotations

import pytest
import torch

from conftest import QUIET, assert_exact_resume, latest_state
from rlfleet.experiment import train

# Small and fast: 16-step batches, 4 updates each after 128 steps, tiny networks.
COMMON = [
    "sampler.batch_T=16",
    "replay.size=2000",
    "algo.learning_starts=128",
    "algo.batch_size=16",
    "algo.replay_ratio=4",
    "algo.target_update_interval=8",
    "agent.eps_steps=300",
    "model.hidden_sizes=[32,32]",
    "replay.beta_steps=1000",  # the default anneals over runner.n_steps, which resuming extends
    "runner.save_replay=true",
    "runner.log_interval_steps=128",
    "runner.eval_interval_steps=256",
    "runner.eval_episodes=2",
    *QUIET,
]

CASES = {
    "c51": ["model.n_atoms=11", "agent.v_min=0", "agent.v_max=50"],
    "rainbow": ["model.n_atoms=11", "agent.v_min=0", "agent.v_max=50", "algo.learning_starts=128"],
    "qrdqn": ["model.n_quantiles=8"],
    "iqn": ["algo.n_quantiles=8", "algo.n_target_quantiles=8", "agent.policy_quantiles=8", "model.embedding_dim=16"],
    "fqf": ["model.n_fractions=8", "model.embedding_dim=16", "algo.fraction_lr=0.0001"],
    "mdqn": [],
    "miqn": ["algo.n_quantiles=8", "algo.n_target_quantiles=8", "agent.policy_quantiles=8", "model.embedding_dim=16"],
    "dqn-per-noisy-transformed": [
        "replay.kind=prioritized",
        "algo.value_transform=true",
        "algo.n_step=3",
        "model.noisy=true",
        "model.dueling=true",
        "agent.eps_start=0",
        "agent.eps_end=0",
    ],
}


def _algorithm(case: str) -> str:
    return case.split("-")[0]


@pytest.mark.parametrize("case", list(CASES))
def test_trains_and_resumes_exactly(tmp_path, case):
    n = 512
    args = [*COMMON, *CASES[case]]
    algo = _algorithm(case)
    full, row = train(algo, "CartPole-v1", [*args, f"runner.n_steps={n}"], name="full", root=tmp_path)
    assert row["CumUpdates"] > 0 and torch.isfinite(torch.tensor(row["loss"]))
    half, _ = train(algo, "CartPole-v1", [*args, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)


def test_rainbow_defaults_are_rainbow(tmp_path):
    run_dir, row = train("rainbow", "CartPole-v1", [*COMMON, "runner.n_steps=256"], name="r", root=tmp_path)
    state = latest_state(run_dir)
    keys = state["agent"]["model"].keys()
    assert any(k.startswith("advantage.") for k in keys) and any("sigma" in k for k in keys)  # dueling, noisy
    assert "beta" in row  # prioritized replay
    assert row["epsilon"] == 0.0  # exploration comes from the noise
