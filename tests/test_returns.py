"""GAE, n-step returns and next-state values against hand-computed numbers."""

import torch

from rlfleet.algos.pg.returns import generalized_advantage_estimation, next_values


def test_next_values_terminated_truncated_and_bootstrap():
    # T=3, B=1: step 0 normal, step 1 truncated (final obs value 7), step 2 normal (bootstrap 9)
    value = torch.tensor([[1.0], [2.0], [3.0]])
    terminated = torch.tensor([[False], [False], [False]])
    truncated = torch.tensor([[False], [True], [False]])
    truncated_value = torch.tensor([[0.0], [7.0], [0.0]])
    nxt = next_values(value, torch.tensor([9.0]), terminated, truncated, truncated_value)
    assert nxt.squeeze(1).tolist() == [2.0, 7.0, 9.0]
    terminated = torch.tensor([[False], [False], [True]])
    nxt = next_values(value, torch.tensor([9.0]), terminated, truncated, truncated_value)
    assert nxt.squeeze(1).tolist() == [2.0, 7.0, 0.0]


def test_gae_hand_computed():
    gamma, lam = 0.9, 0.5
    reward = torch.tensor([[1.0], [0.0], [2.0]])
    value = torch.tensor([[0.5], [1.0], [1.5]])
    next_value = torch.tensor([[1.0], [1.5], [0.0]])  # episode terminates after the last step
    done = torch.tensor([[False], [False], [True]])
    adv, ret = generalized_advantage_estimation(reward, value, next_value, done, gamma, lam)
    d2 = 2.0 + 0.9 * 0.0 - 1.5  # 0.5
    d1 = 0.0 + 0.9 * 1.5 - 1.0  # 0.35
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    a2 = d2
    a1 = d1 + 0.45 * a2
    a0 = d0 + 0.45 * a1
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(ret, adv + value)


def test_gae_cuts_at_done_and_lambda_one_is_discounted_return():
    gamma = 0.5
    reward = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    value = torch.zeros(4, 1)
    # episode ends (terminated) after step 1; the batch ends mid-episode with bootstrap 4.0
    next_value = torch.tensor([[0.0], [0.0], [0.0], [4.0]])
    done = torch.tensor([[False], [True], [False], [False]])
    _, ret = generalized_advantage_estimation(reward, value, next_value, done, gamma, 1.0)
    assert ret.squeeze(1).tolist() == [1.5, 1.0, 1.0 + 0.5 * (1.0 + 0.5 * 4.0), 1.0 + 0.5 * 4.0]
