"""Checks of the recurrent core contract (`rlfleet.models.core.RecurrentCore`'s interface) that
every core must pass: ``core(x [T,B,F], state [B,S], episode_start [T,B], final_state) ->
(out [T,B,H], state [B,S] | None)``. Import by name (``from core_contract import ...``)."""

from __future__ import annotations

import torch
from torch import nn


def assert_shapes(core: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output and state shapes from a zero state, and the ``final_state=False`` path; returns the
    state after ``x``."""
    T, B = x.shape[:2]
    out, state = core(x, torch.zeros(B, core.state_size))
    assert out.shape == (T, B, core.output_size) and state.shape == (B, core.state_size)
    out2, none = core(x, state, torch.zeros(T, B, dtype=torch.bool), final_state=False)
    assert out2.shape == (T, B, core.output_size) and none is None
    return state


def assert_episode_reset(core: nn.Module, x: torch.Tensor, state: torch.Tensor, k: int, column: int) -> None:
    """An episode start at step ``k`` of env ``column``: from ``k`` on that column computes what a
    run of steps ``k..`` from a zero state computes (outputs and final state), before ``k`` and in
    the other columns nothing changes."""
    T, B = x.shape[:2]
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[k, column] = True
    one = slice(column, column + 1)
    with torch.no_grad():
        out, final = core(x, state, starts)
        plain, plain_final = core(x, state)
        fresh, fresh_final = core(x[k:, one], torch.zeros(1, core.state_size))
    torch.testing.assert_close(out[k:, one], fresh)
    torch.testing.assert_close(final[one], fresh_final)
    torch.testing.assert_close(out[:k, column], plain[:k, column])
    others = [b for b in range(B) if b != column]
    torch.testing.assert_close(out[:, others], plain[:, others])
    torch.testing.assert_close(final[others], plain_final[others])
    assert not torch.allclose(out[k:, column], plain[k:, column]), "the start state made no difference"


def assert_unroll_equals_steps(core: nn.Module, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor) -> None:
    """One ``[T,B]`` call computes what ``T`` single-step calls chained through the state compute
    (to 1e-5), episode starts included."""
    with torch.no_grad():
        out, final = core(x, state, starts)
        s, steps = state, []
        for t in range(x.shape[0]):
            o, s = core(x[t : t + 1], s, starts[t : t + 1])
            steps.append(o)
    torch.testing.assert_close(out, torch.cat(steps), atol=1e-5, rtol=0)
    torch.testing.assert_close(final, s, atol=1e-5, rtol=0)


def assert_gradients_reach_every_parameter(core: nn.Module, x: torch.Tensor, state: torch.Tensor) -> None:
    """A loss on the outputs and the final state gives every parameter a finite, non-zero gradient."""
    out, final = core(x, state)
    (out.square().sum() + final.sum()).backward()
    for name, p in core.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert torch.isfinite(p.grad).all(), name
