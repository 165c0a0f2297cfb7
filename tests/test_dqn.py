"""DQN targets by hand, and the DQN options (dueling, n-step, soft targets, MSE) end to end."""

import math

import pytest
import torch

from conftest import read_progress
from rlfleet.agents.base import AgentInputs
from rlfleet.algos.dqn.dqn import DQN, DQNConfig
from rlfleet.experiment import train
from rlfleet.replays.n_step import ReplaySamples


class TableAgent:
    """Q-values looked up from fixed tables by an integer observation."""

    def __init__(self, online, target):
        self.online, self.target_table = online, target

    def __call__(self, observation, prev_action, prev_reward):
        return self.online[observation.long()]

    def target(self, observation, prev_action, prev_reward):
        return self.target_table[observation.long()]

    def q_values(self, output):
        return output


def batch():
    zeros = torch.zeros(2)
    return ReplaySamples(
        agent_inputs=AgentInputs(torch.tensor([0, 0]), zeros, zeros),
        action=torch.tensor([1, 0]),
        return_=torch.tensor([1.0, 2.0]),
        bootstrap_inputs=AgentInputs(torch.tensor([1, 1]), zeros, zeros),
        discount=torch.tensor([0.5, 0.0]),  # the second transition terminated
    )


ONLINE = torch.tensor([[1.0, 3.0], [10.0, 4.0]], requires_grad=True)  # argmax at s'=1 is action 0
TARGET = torch.tensor([[0.0, 0.0], [2.0, 8.0]])


def test_double_dqn_target():
    algo = DQN(DQNConfig(double=True, loss="mse"))
    algo.agent = TableAgent(ONLINE, TARGET)
    loss, td = algo.loss(batch())
    # y1 = 1 + 0.5 * Q_target(s', argmax_a Q(s', a) = 0) = 1 + 0.5 * 2 = 2;  Q(s, 1) = 3
    # y2 = 2 (terminated);  Q(s, 0) = 1
    torch.testing.assert_close(td, torch.tensor([2.0 - 3.0, 2.0 - 1.0]))
    torch.testing.assert_close(loss, torch.tensor([1.0, 1.0]))  # per-sample squared errors


def test_vanilla_dqn_target_and_huber():
    algo = DQN(DQNConfig(double=False, loss="huber", huber_delta=1.0))
    algo.agent = TableAgent(ONLINE, TARGET)
    loss, td = algo.loss(batch())
    # y1 = 1 + 0.5 * max_a Q_target(s', a) = 1 + 0.5 * 8 = 5;  td = 5 - 3 = 2 -> huber 1.5
    torch.testing.assert_close(td, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(loss, torch.tensor([1.5, 0.5]))


@pytest.mark.slow
def test_dqn_options_train(tmp_path):
    overrides = [
        "runner.n_steps=3072",
        "runner.eval_interval_steps=0",
        "runner.log_interval_steps=1024",
        "logger.console=false",
        "logger.tensorboard=false",
        "model.dueling=true",
        "algo.n_step=3",
        "algo.target_tau=0.01",
        "algo.loss=mse",
        "algo.learning_starts=512",
    ]
    run_dir, row = train("dqn", "CartPole-v1", overrides, seed=0, name="o", root=tmp_path)
    state = torch.load(next((run_dir / "checkpoints").glob("*.pt")), weights_only=False)
    keys = state["agent"]["model"]
    assert any(k.startswith("advantage.") for k in keys) and any(k.startswith("value.") for k in keys)
    # soft updates: the target lags behind the online net instead of copying it
    online, target = keys["advantage.net.2.weight"], state["agent"]["target_model"]["advantage.net.2.weight"]
    assert not torch.equal(online, target)
    rows = read_progress(run_dir)
    assert math.isfinite(float(rows[-1]["loss"])) and float(rows[-1]["CumUpdates"]) > 0
    assert 0.04 < float(rows[-1]["epsilon"]) < 1.0
