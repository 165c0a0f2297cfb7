"""The DNC core (`rlfleet.models.dnc`): its addressing maths against hand-computed values, the
core contract (shapes, episode resets, unroll = chained steps, gradients), and the copy task."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core_contract import (
    assert_episode_reset,
    assert_gradients_reach_every_parameter,
    assert_shapes,
    assert_unroll_equals_steps,
)
from rlfleet.models.dnc import DncCore, allocation_weights, content_weights, update_link

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "dnc_copy.py"
F, H = 5, 12


def small_core(**options) -> DncCore:
    torch.manual_seed(0)
    return DncCore(F, H, memory_slots=6, word_size=4, read_heads=2, **options)


def random_state(core: DncCore, B: int) -> torch.Tensor:
    """A state reached by running the core, so memory, usage and links are all non-trivial."""
    torch.manual_seed(1)
    _, state = core(torch.randn(4, B, F), torch.zeros(B, core.state_size))
    return state.detach()


# ----- addressing maths -----
def test_content_weights_are_a_softmax_of_scaled_cosine_similarity():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])  # [1,3,2]
    keys = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])  # [1,2,2]
    strengths = torch.tensor([[2.0, 1.0]])
    # cosines: key 0 -> (1, 0, 1/sqrt2); key 1 -> (0, -1, -1/sqrt2)
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[2.0, 0.0, 2 * s], [0.0, -1.0, -s]]).softmax(-1).unsqueeze(0)
    torch.testing.assert_close(content_weights(memory, keys, strengths), expected, atol=1e-5, rtol=0)


def test_content_weights_on_an_empty_memory_are_uniform_and_finite():
    memory = torch.zeros(1, 4, 3, requires_grad=True)
    weights = content_weights(memory, torch.randn(1, 2, 3), torch.tensor([[5.0, 1.0]]))
    torch.testing.assert_close(weights, torch.full((1, 2, 4), 0.25))
    weights[0, 0, 1].backward()
    assert torch.isfinite(memory.grad).all()


def test_allocation_weights_follow_sorted_usage():
    usage = torch.tensor([[0.5, 0.2, 0.9, 0.4]])
    # ascending: slot 1 (0.2), slot 3 (0.4), slot 0 (0.5), slot 2 (0.9)
    expected = torch.tensor([[0.5 * 0.2 * 0.4, 0.8, 0.1 * 0.2 * 0.4 * 0.5, 0.6 * 0.2]])
    torch.testing.assert_close(allocation_weights(usage), expected, atol=1e-5, rtol=0)


def test_allocation_picks_the_first_free_slot_and_nothing_when_memory_is_full():
    free = allocation_weights(torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    torch.testing.assert_close(free, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-5, rtol=0)
    full = allocation_weights(torch.ones(1, 5))
    assert float(full.sum()) < 1e-5


def test_link_update_for_known_write_weightings():
    link, precedence = torch.zeros(1, 3, 3), torch.zeros(1, 3)
    link, precedence = update_link(link, precedence, torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(link, torch.zeros(1, 3, 3))
    torch.testing.assert_close(precedence, torch.tensor([[1.0, 0.0, 0.0]]))
    link, precedence = update_link(link, precedence, torch.tensor([[0.0, 1.0, 0.0]]))
    expected = torch.zeros(1, 3, 3)
    expected[0, 1, 0] = 1.0  # slot 1 was written right after slot 0
    torch.testing.assert_close(link, expected)
    torch.testing.assert_close(precedence, torch.tensor([[0.0, 1.0, 0.0]]))


def test_link_update_with_soft_weights_matches_the_elementwise_equations():
    torch.manual_seed(0)
    link = torch.rand(1, 3, 3) * (1 - torch.eye(3))
    p = torch.tensor([[0.1, 0.6, 0.2]])
    w = torch.tensor([[0.5, 0.3, 0.2]])
    new_link, new_p = update_link(link, p, w)
    for i in range(3):
        for j in range(3):
            want = 0.0 if i == j else (1 - w[0, i] - w[0, j]) * link[0, i, j] + w[0, i] * p[0, j]
            assert float(new_link[0, i, j]) == pytest.approx(float(want), abs=1e-6)
    torch.testing.assert_close(new_p, (1 - 1.0) * p + w)


def test_interface_sizes_match_the_paper():
    core = small_core()
    R, W = 2, 4
    assert core.interface.out_features == W * R + 3 * W + 5 * R + 3
    assert small_core(link=False).interface.out_features == W * R + 3 * W + 2 * R + 3


def test_state_size_counts_every_part():
    N, W, R = 6, 4, 2
    assert small_core().state_size == 2 * H + N * W + N + N * N + N + R * N + N + R * W
    assert small_core(link=False).state_size == 2 * H + N * W + N + R * N + N + R * W


def test_state_parts_keep_the_dnc_invariants():
    """Usage in [0,1], write and read weightings at most 1 in total (reads mix content weights,
    which sum to 1, with link reads, which sum to at most 1), no self-links, memory written,
    read vectors read from the memory."""
    core = small_core()
    s = core.unflatten(random_state(core, 3))
    assert (s.usage >= 0).all() and (s.usage <= 1).all()
    assert (s.write_weights.sum(-1) <= 1 + 1e-6).all()
    assert (s.read_weights.sum(-1) <= 1 + 1e-6).all() and (s.read_weights.sum(-1) > 0).all()
    torch.testing.assert_close(torch.diagonal(s.link, dim1=1, dim2=2), torch.zeros(3, 6))
    assert s.memory.abs().sum() > 0
    torch.testing.assert_close(s.read_vectors, torch.bmm(s.read_weights, s.memory).flatten(1))


# ----- the core contract -----
@pytest.mark.parametrize("link", [True, False])
@pytest.mark.parametrize("T", [1, 7])
def test_shapes(T, link):
    core = small_core(link=link)
    assert core.output_size == H
    assert_shapes(core, torch.randn(T, 3, F))


@pytest.mark.parametrize("link", [True, False])
def test_episode_start_resets_one_column_inside_the_unroll(link):
    core = small_core(link=link)
    assert_episode_reset(core, torch.randn(8, 3, F), random_state(core, 3), k=3, column=1)


def test_episode_start_at_step_zero_ignores_the_given_state():
    core, B = small_core(), 2
    x, state = torch.randn(4, B, F), random_state(core, B)
    starts = torch.zeros(4, B, dtype=torch.bool)
    starts[0] = True
    with torch.no_grad():
        torch.testing.assert_close(core(x, state, starts)[0], core(x, torch.zeros_like(state))[0])


def test_unroll_equals_chained_single_steps():
    core, T, B = small_core(), 6, 3
    assert_unroll_equals_steps(core, torch.randn(T, B, F), random_state(core, B), torch.rand(T, B) < 0.3)


def test_gradients_reach_every_parameter():
    core = small_core()
    assert_gradients_reach_every_parameter(core, torch.randn(5, 3, F), random_state(core, 3))


def test_gradients_are_finite_from_a_zero_state():
    core = small_core()
    out, _ = core(torch.randn(3, 2, F), torch.zeros(2, core.state_size))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in core.parameters())


# ----- learning -----
@pytest.mark.slow
def test_dnc_learns_a_short_copy_task(tmp_path):
    """Lengths 1..3 of 8-bit vectors, 1200 updates: chance is a bit error of 0.5 (the outputs come
    after the input, so only memory can beat it); seeds 0, 1 and 2 all end at 0.0 (below 1% from
    update 700-800 on), about 35 s each here."""
    out = tmp_path / "copy.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--updates=1200", "--max-length=3", "--eval-every=400", f"--out={out}"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = json.loads(out.read_text())
    assert result["final_bit_error"] < 0.05, result["curve"]
