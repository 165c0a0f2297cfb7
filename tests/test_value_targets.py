"""The value-based algorithms' targets and losses by hand, through the algorithm classes."""

import math

import torch

from rlfleet.agents.base import AgentInputs
from rlfleet.algos.dqn.c51 import CategoricalDQN
from rlfleet.algos.dqn.dqn import DQN, DQNConfig
from rlfleet.algos.dqn.qr_dqn import QRDQN, QRDQNConfig
from rlfleet.replays.n_step import ReplaySamples

NEG = -1e9  # a logit of (numerically) zero probability


class TableAgent:
    """Model outputs looked up from fixed tables by an integer observation."""

    def __init__(self, online, target, support=None):
        self.online, self.target_table, self._support = online, target, support
        if support is not None:
            self.v_min, self.v_max = float(support[0]), float(support[-1])

    def __call__(self, observation, prev_action, prev_reward):
        return self.online[observation.long()]

    def target(self, observation, prev_action, prev_reward):
        return self.target_table[observation.long()]

    def support(self, n_atoms):
        return self._support

    def q_values(self, output):
        return output if self._support is None else (output.softmax(-1) * self._support).sum(-1)


def one_transition(return_=1.0, discount=0.5, action=0):
    zero = torch.zeros(1)
    return ReplaySamples(
        agent_inputs=AgentInputs(torch.tensor([0]), zero, zero),
        action=torch.tensor([action]),
        return_=torch.tensor([return_]),
        bootstrap_inputs=AgentInputs(torch.tensor([1]), zero, zero),
        discount=torch.tensor([discount]),
    )


def test_c51_target_and_cross_entropy():
    support = torch.tensor([0.0, 1.0, 2.0])
    online = torch.zeros(2, 2, 3)
    online[0, 0] = torch.tensor([0.2, 0.5, 0.3]).log()  # p(s, a=0)
    target = torch.zeros(2, 2, 3)
    target[1, 0] = torch.tensor([0.0, NEG, NEG])  # at s': action 0 all mass on z=0 (Q = 0)
    target[1, 1] = torch.tensor([0.0, 0.0, NEG])  # action 1: half on z=0, half on z=1 (Q = 0.5) -> a* = 1
    algo = CategoricalDQN(DQNConfig(double=False))
    algo.agent = TableAgent(online, target, support)
    loss, priority = algo.loss(one_transition())
    # R + 0.5 z = [1, 1.5, 2] with masses [0.5, 0.5, 0]: 0.5 lands on z=1, 0.5 splits evenly
    # between z=1 and z=2 -> m = [0, 0.75, 0.25]; loss = -(0.75 log 0.5 + 0.25 log 0.3)
    expected = -(0.75 * math.log(0.5) + 0.25 * math.log(0.3))
    torch.testing.assert_close(loss, torch.tensor([expected]))
    torch.testing.assert_close(priority, loss)


def test_qr_dqn_target_and_quantile_huber():
    online = torch.zeros(2, 2, 2)
    online[0, 0] = torch.tensor([0.0, 1.0])  # quantiles of (s, a=0) at taus 0.25, 0.75
    target = torch.zeros(2, 2, 2)
    target[1, 0] = torch.tensor([1.0, 1.0])  # mean 1
    target[1, 1] = torch.tensor([0.0, 4.0])  # mean 2 -> a* = 1, target quantiles 1 + 0.5 [0, 4] = [1, 3]
    algo = QRDQN(QRDQNConfig(double=False, kappa=1.0))
    algo.agent = TableAgent(online, target)
    loss, _ = algo.loss(one_transition())
    # theta_0 = 0 (tau .25): u = [1, 3] -> .25 * (0.5 + 2.5) / 2 = 0.375
    # theta_1 = 1 (tau .75): u = [0, 2] -> .75 * (0 + 1.5) / 2 = 0.5625;  sum over i = 0.9375
    torch.testing.assert_close(loss, torch.tensor([0.9375]))


def test_transformed_bellman_target():
    eps = 1e-3
    h_of_2 = math.sqrt(3.0) - 1 + eps * 2  # h(2) = sign(2)(sqrt(2 + 1) - 1) + eps * 2
    online = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [h_of_2, 0.0]])  # Q_target(s', .) = [h(2), 0]: max is h(2)
    algo = DQN(DQNConfig(double=False, loss="mse", value_transform=True, value_transform_eps=eps))
    algo.agent = TableAgent(online, target)
    _, td = algo.loss(one_transition())
    # y = h(R + gamma^n h^-1(h(2))) = h(1 + 0.5 * 2) = h(2); Q(s, 0) = 0
    torch.testing.assert_close(td, torch.tensor([h_of_2]))
