"""V-trace (rlfleet.algos.pg.vtrace) against hand arithmetic, on-policy n-step returns and its truncations."""

from __future__ import annotations

import math

import pytest
import torch

from rlfleet.algos.pg.returns import generalized_advantage_estimation, next_values
from rlfleet.algos.pg.vtrace import vtrace_returns

T, B, GAMMA = 7, 5, 0.9


def random_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ``[T,B]`` data with terminations at t=2 (env 0), t=4 (env 1) and at the last step (env 2)."""
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(T, B, dtype=torch.bool)
    terminated[2, 0] = terminated[4, 1] = terminated[T - 1, 2] = True
    return {
        "behaviour_log_prob": -torch.rand(T, B, generator=g) * 2.0,
        "reward": torch.randn(T, B, generator=g),
        "value": torch.randn(T, B, generator=g),
        "bootstrap_value": torch.randn(B, generator=g),
        "discount": GAMMA * (~terminated).float(),
        "terminated": terminated,
    }


def n_step_returns(reward, bootstrap_value, discount) -> torch.Tensor:
    """``G_t = sum_{k=t}^{T-1} (prod_{j=t}^{k-1} d_j) r_k + (prod_{j=t}^{T-1} d_j) V(x_T)``, as an explicit sum."""
    n, m = reward.shape
    out = torch.zeros(n, m)
    for b in range(m):
        for t in range(n):
            total, weight = 0.0, 1.0
            for k in range(t, n):
                total += weight * reward[k, b].item()
                weight *= discount[k, b].item()
            out[t, b] = total + weight * bootstrap_value[b].item()
    return out


def call(data: dict[str, torch.Tensor], target_log_prob: torch.Tensor, **clips: float):
    args = {k: v for k, v in data.items() if k != "terminated"}
    return vtrace_returns(target_log_prob=target_log_prob, **args, **clips)


def test_hand_computed_case():
    # pi/mu = [0.5/0.25, 0.25/0.5, 0.5/0.5] = [2, 0.5, 1]; rho = c = min(1, ratio) = [1, 0.5, 1]
    behaviour = torch.log(torch.tensor([[0.25], [0.5], [0.5]]))
    target = torch.log(torch.tensor([[0.5], [0.25], [0.5]]))
    reward = torch.tensor([[1.0], [2.0], [3.0]])
    value = torch.tensor([[0.5], [1.0], [1.5]])
    bootstrap = torch.tensor([2.0])
    discount = torch.full((3, 1), 0.5)
    out = vtrace_returns(behaviour, target, reward, value, bootstrap, discount)

    # V(x_{t+1}) = [1.0, 1.5, 2.0]
    # delta_0 = 1.0 * (1 + 0.5 * 1.0 - 0.5) = 1.0
    # delta_1 = 0.5 * (2 + 0.5 * 1.5 - 1.0) = 0.875
    # delta_2 = 1.0 * (3 + 0.5 * 2.0 - 1.5) = 2.5
    # vs_2 - V_2 = 2.5                          -> vs_2 = 1.5 + 2.5 = 4.0
    # vs_1 - V_1 = 0.875 + 0.5 * 0.5 * 2.5 = 1.5 -> vs_1 = 1.0 + 1.5 = 2.5
    # vs_0 - V_0 = 1.0 + 0.5 * 1.0 * 1.5 = 1.75  -> vs_0 = 0.5 + 1.75 = 2.25
    expected_vs = torch.tensor([[2.25], [2.5], [4.0]])
    # A_0 = 1.0 * (1 + 0.5 * vs_1 - 0.5) = 1 + 1.25 - 0.5 = 1.75
    # A_1 = 0.5 * (2 + 0.5 * vs_2 - 1.0) = 0.5 * (2 + 2 - 1) = 1.5
    # A_2 = 1.0 * (3 + 0.5 * V(x_3) - 1.5) = 3 + 1 - 1.5 = 2.5
    expected_pg = torch.tensor([[1.75], [1.5], [2.5]])
    torch.testing.assert_close(out.vs, expected_vs)
    torch.testing.assert_close(out.pg_advantages, expected_pg)
    torch.testing.assert_close(out.clipped_rhos, torch.tensor([[1.0], [0.5], [1.0]]))


@pytest.mark.parametrize("clip", [1.0, 2.5])
def test_on_policy_is_the_n_step_return(clip: float):
    data = random_batch(1)
    out = call(data, data["behaviour_log_prob"], rho_clip=clip, c_clip=clip, pg_rho_clip=clip)
    expected = n_step_returns(data["reward"], data["bootstrap_value"], data["discount"])
    torch.testing.assert_close(out.vs, expected)
    # the terminal steps' targets are their rewards: nothing bootstrapped across them
    torch.testing.assert_close(out.vs[2, 0], data["reward"][2, 0])
    torch.testing.assert_close(out.vs[T - 1, 2], data["reward"][T - 1, 2])
    torch.testing.assert_close(out.clipped_rhos, torch.ones(T, B))

    # the same as lambda=1 GAE from returns.py: vs = its return, pg_advantages = its advantage
    no = torch.zeros(T, B, dtype=torch.bool)
    nxt = next_values(data["value"], data["bootstrap_value"], data["terminated"], no, torch.zeros(T, B))
    advantage, return_ = generalized_advantage_estimation(
        data["reward"], data["value"], nxt, data["terminated"], GAMMA, 1.0
    )
    torch.testing.assert_close(out.vs, return_)
    torch.testing.assert_close(out.pg_advantages, advantage)


def test_clipping_to_one_recovers_on_policy():
    data = random_batch(2)
    g = torch.Generator().manual_seed(3)
    above_one = data["behaviour_log_prob"] + 0.1 + torch.rand(T, B, generator=g) * 2.0  # pi/mu in (1.1, 8.2)
    clipped = call(data, above_one, rho_clip=1.0, c_clip=1.0, pg_rho_clip=1.0)
    on_policy = call(data, data["behaviour_log_prob"])
    torch.testing.assert_close(clipped.vs, on_policy.vs)
    torch.testing.assert_close(clipped.pg_advantages, on_policy.pg_advantages)
    torch.testing.assert_close(clipped.vs, n_step_returns(data["reward"], data["bootstrap_value"], data["discount"]))


def test_no_trace_is_the_one_step_target():
    data = random_batch(4)
    g = torch.Generator().manual_seed(5)
    target = data["behaviour_log_prob"] + torch.randn(T, B, generator=g)  # ratios on both sides of 1
    out = call(data, target, rho_clip=1.0, c_clip=0.0)
    rho = torch.clamp(torch.exp(target - data["behaviour_log_prob"]), max=1.0)
    assert (rho < 1).any() and (rho == 1).any()
    value, reward, discount = data["value"], data["reward"], data["discount"]
    nxt = torch.cat([value[1:], data["bootstrap_value"][None]])
    torch.testing.assert_close(out.vs, value + rho * (reward + discount * nxt - value))
    torch.testing.assert_close(out.clipped_rhos, rho)


def test_pg_rho_clip_is_separate_from_rho_clip():
    data = random_batch(6)
    g = torch.Generator().manual_seed(7)
    target = data["behaviour_log_prob"] + torch.randn(T, B, generator=g)
    ratio = torch.exp(target - data["behaviour_log_prob"])
    base = call(data, target, rho_clip=1.0, c_clip=1.0, pg_rho_clip=1.0)
    value, reward, discount = data["value"], data["reward"], data["discount"]
    q = reward + discount * torch.cat([base.vs[1:], data["bootstrap_value"][None]]) - value  # r_t + g_t v_{t+1} - V
    torch.testing.assert_close(base.pg_advantages, torch.clamp(ratio, max=1.0) * q)

    for pg_clip in (0.5, math.inf):
        out = call(data, target, rho_clip=1.0, c_clip=1.0, pg_rho_clip=pg_clip)
        torch.testing.assert_close(out.vs, base.vs)  # the value targets do not see pg_rho_clip
        torch.testing.assert_close(out.clipped_rhos, base.clipped_rhos)
        torch.testing.assert_close(out.pg_advantages, torch.clamp(ratio, max=pg_clip) * q)
    assert (ratio > 1).any() and (ratio < 0.5).any()  # both clips bite somewhere


def test_shapes_dtype_and_no_grad():
    data = random_batch(8)
    args = {k: v.clone().requires_grad_(True) for k, v in data.items() if k != "terminated"}
    target = (args["behaviour_log_prob"].detach() - 0.3).requires_grad_(True)
    out = vtrace_returns(target_log_prob=target, **args)
    for tensor in out:
        assert tensor.shape == (T, B)
        assert tensor.dtype == torch.float32
        assert not tensor.requires_grad
    with pytest.raises(ValueError, match="bootstrap_value"):
        vtrace_returns(target_log_prob=target, **{**args, "bootstrap_value": args["value"]})
