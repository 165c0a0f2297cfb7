"""The gated transformer memory core (`rlfleet.models.gtrxl`): the GRU gate's equations, the core
contract (shapes, episode resets, unroll = chained steps, gradients), its attention window and
its options."""

from __future__ import annotations

import pytest
import torch

from core_contract import (
    assert_episode_reset,
    assert_gradients_reach_every_parameter,
    assert_shapes,
    assert_unroll_equals_steps,
)
from rlfleet.config.validate import check_kwargs
from rlfleet.errors import ConfigError
from rlfleet.models.gtrxl import GatedTransformerCore, GruGate, relative_positions

F, D, M = 5, 16, 4


def small_core(**options) -> GatedTransformerCore:
    torch.manual_seed(0)
    return GatedTransformerCore(F, D, **{"layers": 2, "heads": 4, "memory_length": M, **options})


def filled_state(core: GatedTransformerCore, B: int, T: int = 3) -> torch.Tensor:
    """The state after ``T`` steps from empty (``T < M`` leaves empty slots)."""
    torch.manual_seed(1)
    _, state = core(torch.randn(T, B, F), torch.zeros(B, core.state_size))
    return state.detach()


# ----- the gate -----
def test_gru_gate_equations():
    torch.manual_seed(0)
    gate, x, y = GruGate(3, bias=2.0), torch.randn(4, 3), torch.randn(4, 3)
    w_r, w_z, w_g = gate.w.weight.chunk(3, dim=0)
    u_r, u_z = gate.u.weight.chunk(2, dim=0)
    r = torch.sigmoid(y @ w_r.T + x @ u_r.T)
    z = torch.sigmoid(y @ w_z.T + x @ u_z.T - 2.0)
    h = torch.tanh(y @ w_g.T + (r * x) @ gate.u_g.weight.T)
    torch.testing.assert_close(gate(x, y), (1 - z) * x + z * h)


def test_gru_gate_starts_near_the_identity():
    torch.manual_seed(0)
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(GruGate(8, bias=30.0)(x, y), x)
    gate = GruGate(8, bias=2.0)
    for linear in (gate.w, gate.u, gate.u_g):
        torch.nn.init.zeros_(linear.weight)
    # z = sigmoid(-2), h = 0: the stream is scaled by 1 - sigmoid(-2), about 0.88
    torch.testing.assert_close(gate(x, y), (1 - torch.sigmoid(torch.tensor(-2.0))) * x)


def test_identity_gates_pass_the_embedding_through_every_layer():
    core = small_core(gate_bias=30.0)
    x = torch.randn(6, 2, F)
    with torch.no_grad():
        out, _ = core(x, filled_state(core, 2))
        torch.testing.assert_close(out, core.embed(x))


def test_relative_positions_are_transformer_xl_sinusoids():
    pos = relative_positions(5, 6)
    inverse_frequency = 1 / 10_000 ** (torch.tensor([0.0, 2.0, 4.0]) / 6)
    torch.testing.assert_close(pos[3, :3], torch.sin(3 * inverse_frequency))
    torch.testing.assert_close(pos[3, 3:], torch.cos(3 * inverse_frequency))
    torch.testing.assert_close(pos[0], torch.tensor([0.0, 0, 0, 1, 1, 1]))


# ----- the core contract -----
@pytest.mark.parametrize("T", [1, 9])
def test_shapes_and_state_layout(T):
    core, B = small_core(), 3
    assert core.state_size == 2 * M * D + M and core.output_size == D
    state = assert_shapes(core, torch.randn(T, B, F))
    valid = state[:, -M:]
    filled = min(T, M)
    torch.testing.assert_close(valid, torch.cat([torch.zeros(B, M - filled), torch.ones(B, filled)], 1))
    memory = state[:, :-M].view(B, 2, M, D)
    assert (memory[:, :, : M - filled] == 0).all() and (memory[:, :, M - filled :] != 0).any()


def test_episode_start_resets_one_column_inside_the_unroll():
    core = small_core()
    assert_episode_reset(core, torch.randn(9, 3, F), filled_state(core, 3), k=3, column=1)


def test_a_reset_near_the_end_clears_the_older_memory():
    core, T = small_core(), 6
    starts = torch.zeros(T, 1, dtype=torch.bool)
    starts[T - 2] = True
    _, state = core(torch.randn(T, 1, F), filled_state(core, 1), starts)
    torch.testing.assert_close(state[0, -M:], torch.tensor([0.0, 0, 1, 1]))
    assert (state[0, :-M].view(2, M, D)[:, :2] == 0).all()


def test_unroll_equals_chained_single_steps():
    core, T, B = small_core(), 11, 3  # T > M: memory slides within the unroll
    assert_unroll_equals_steps(core, torch.randn(T, B, F), filled_state(core, B), torch.rand(T, B) < 0.2)


def test_attention_is_causal_and_windowed():
    """With one layer a step sees its own input and the ``M`` before it, never a later one."""
    core, T = small_core(layers=1), 8
    x = torch.randn(T, 1, F)
    changed = x.clone()
    changed[2] += 1.0
    with torch.no_grad():
        out = core(x, torch.zeros(1, core.state_size))[0]
        other = core(changed, torch.zeros(1, core.state_size))[0]
    differs = [not torch.allclose(out[t], other[t]) for t in range(T)]
    assert differs == [t in range(2, 2 + M + 1) for t in range(T)]


def test_gradients_reach_every_parameter():
    core = small_core()
    assert_gradients_reach_every_parameter(core, torch.randn(5, 3, F), filled_state(core, 3))


# ----- options -----
def test_heads_must_divide_the_width():
    message = r"heads=5 does not divide the gtrxl width 16 \(model.core_size\); use heads=4$"
    with pytest.raises(ConfigError, match=message):
        GatedTransformerCore(F, D, heads=5)


def test_options_are_checked_against_the_signature():
    def check(options):
        check_kwargs(GatedTransformerCore, options, "model.core_options", skip=("input_size", "hidden_size"))

    check({"layers": 3, "memory_length": 8, "feedforward_size": None, "gate_bias": 0})
    with pytest.raises(ConfigError, match="memory_length' must be >= 1"):
        check({"memory_length": 0})
    with pytest.raises(ConfigError, match="did you mean 'model.core_options.heads'"):
        check({"head": 2})
    assert small_core(feedforward_size=7).blocks[0].mlp[0].out_features == 7
