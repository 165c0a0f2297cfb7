"""``model.encoder`` block sections and ``model.core`` memory cores wired into every model family:
shapes inferred from the env's spaces, stacks of blocks, one-line errors for bad sections, and
exact resume of runs that use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import QUIET, assert_exact_resume, read_progress
from rlfleet.envs.spaces import Box, Discrete
from rlfleet.experiment import train
from rlfleet.models.blocks import BlockStack
from rlfleet.models.ddpg import DeterministicActorCriticModel
from rlfleet.models.distributional import CategoricalQModel, ImplicitQuantileModel, QuantileQModel
from rlfleet.models.fqf import FqfModel
from rlfleet.models.pg import CategoricalActorCriticModel, GaussianActorCriticModel
from rlfleet.models.q import QModel
from rlfleet.models.sac import SacDiscreteModel, SacModel
from test_cli_errors import check_one_line_error


def box(low: float, high: float, shape: tuple[int, ...], dtype: type) -> Box:
    return Box(np.full(shape, low, dtype), np.full(shape, high, dtype), np.dtype(dtype))


IMAGE = box(0, 255, (3, 16, 16), np.uint8)
VECTOR = box(-1, 1, (6,), np.float32)
ACTIONS = Discrete(4)
TORQUES = box(-1, 1, (2,), np.float32)
#: IMPALA CNN keeping its feature map, squeeze-and-excitation on it, a spectrally normalised head
STACK = [
    {"kind": "impala_cnn", "channels": [8, 8], "feature_size": None},
    {"kind": "se", "reduction": 2},
    {"kind": "mlp", "hidden_sizes": [32], "spectral_norm": True},
]


def image_batch(*lead: int) -> torch.Tensor:
    return torch.randint(0, 256, (*lead, *IMAGE.shape), dtype=torch.uint8)


@pytest.mark.parametrize(
    ("model_class", "action_space", "extra"),
    [
        (CategoricalActorCriticModel, ACTIONS, {}),
        (GaussianActorCriticModel, TORQUES, {}),
        (QModel, ACTIONS, {"dueling": True}),
        (CategoricalQModel, ACTIONS, {"n_atoms": 5}),
        (QuantileQModel, ACTIONS, {"n_quantiles": 3}),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_every_family_reads_the_stack_with_any_leading_dims(model_class, action_space, extra):
    torch.manual_seed(0)
    model = model_class(IMAGE, action_space, encoder=STACK, **extra)
    encoders = [m for m in model.modules() if isinstance(m, BlockStack)]
    assert encoders and all(e.output_shape == (32,) for e in encoders)
    for lead in [(5, 3), (3,), ()]:
        n = int(np.prod(lead))
        outputs = model(image_batch(*lead), torch.zeros(lead, dtype=torch.long), torch.zeros(lead))
        for out in outputs if isinstance(outputs, tuple) else (outputs,):
            assert out.shape[: len(lead)] == lead
            assert out.numel() % max(n, 1) == 0
    out = model(image_batch(16), torch.zeros(16, dtype=torch.long), torch.zeros(16))
    loss = sum(o.float().pow(2).sum() for o in (out if isinstance(out, tuple) else (out,)))
    loss.backward()
    encoder = encoders[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_quantile_networks_and_continuous_critics_take_an_encoder():
    iqn = ImplicitQuantileModel(IMAGE, ACTIONS, encoder=STACK)
    assert iqn(image_batch(2), None, None, torch.rand(2, 7)).shape == (2, 4, 7)
    fqf = FqfModel(IMAGE, ACTIONS, encoder=STACK)
    assert fqf.q_values(image_batch(2, 3), None, None).shape == (2, 3, 4)
    sac = SacDiscreteModel(IMAGE, ACTIONS, encoder=STACK)
    assert sac.actor(image_batch(3), None, None).shape == (3, 4)
    assert all(q.shape == (3, 4) for q in sac.critic(image_batch(3), None, None))
    sac = SacModel(IMAGE, TORQUES, encoder=STACK)
    mean, log_std = sac.actor(image_batch(3), None, None)
    assert mean.shape == log_std.shape == (3, 2)
    assert all(q.shape == (3,) for q in sac.critic(image_batch(3), torch.zeros(3, 2)))
    td3 = DeterministicActorCriticModel(IMAGE, TORQUES, twin_critic=True, encoder=STACK)
    action = td3(image_batch(5, 2))
    assert action.shape == (5, 2, 2) and action.abs().max() <= 1
    assert all(q.shape == (5, 2) for q in td3.q(image_batch(5, 2), action))


def test_vector_observations_take_vector_blocks():
    sections = [{"kind": "mlp", "hidden_sizes": [16]}, {"kind": "mlp", "hidden_sizes": [8], "spectral_norm": True}]
    model = QModel(VECTOR, ACTIONS, encoder=sections)
    assert model(torch.zeros(7, 6), None, None).shape == (7, 4)
    # the heads read the stack's features directly: encoder, then one linear layer per head
    assert [tuple(p.shape) for n, p in model.named_parameters() if n.startswith("head")] == [(4, 8), (4,)]


def test_memory_cores_behind_an_encoder():
    for core, options in [("dnc", {"memory_slots": 4, "word_size": 4, "read_heads": 1}), ("gtrxl", {})]:
        model = CategoricalActorCriticModel(
            IMAGE, ACTIONS, encoder=STACK, core=core, core_size=16, core_options=options, critic_core="shared"
        )
        T, B = 3, 2
        state = torch.zeros(B, model.rnn_state_size)
        logits, value, next_state = model(image_batch(T, B), None, None, state, torch.zeros(T, B, dtype=torch.bool))
        assert logits.shape == (T, B, 4) and value.shape == (T, B)
        assert next_state.shape == state.shape


# ----- from the command line: bad sections are one line and write nothing -----
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sections")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            ["model.encoder=[{kind: impala_cn}]"],
            ["model.encoder[0].kind", "'impala_cn'", "did you mean 'impala_cnn'"],
            id="unknown-kind",
        ),
        pytest.param(
            ["model.encoder={kind: impala_cnn, channel: [16]}"],
            ["model.encoder.channel", "model.encoder.channels"],
            id="unknown-option",
        ),
        pytest.param(
            ["model.encoder=[{kind: mlp}, {kind: conv}]"],
            ["model.encoder[1]", "conv", "(256,)"],
            id="conv-after-a-vector",
        ),
        pytest.param(
            ["model.core=gru", "model.core_options={memory_slots: 8}"],
            ["model.core_options", "memory_slots", "dnc and gtrxl"],
            id="options-of-another-core",
        ),
        pytest.param(
            ["model.core=dnc", "model.core_options={memory_slot: 8}"],
            ["model.core_options.memory_slot", "memory_slots"],
            id="unknown-core-option",
        ),
    ],
)
def test_bad_sections_are_one_line(workdir, overrides, expected):
    args = ["train", "ppo", "-e", "CartPoleNoVel-v1", "--runs-dir", "runs", *overrides, *QUIET]
    check_one_line_error(workdir, args, *expected)


# ----- runs with blocks and memory cores resume exactly -----
# the memory preset anneals the rate and the clip over the run's budget: off, so that the half
# run's first iterations are the full run's
PPO_TINY = [
    "sampler.batch_T=16",
    "sampler.batch_B=2",
    "algo.minibatch_size=16",
    "algo.epochs=2",
    "algo.anneal_lr=false",
    "algo.anneal_clip=false",
]


@pytest.mark.parametrize(
    ("algo", "env_id", "args"),
    [
        pytest.param(
            "dqn",
            "MinAtar/Breakout-v1",
            [
                "model.encoder=[{kind: conv, channels: [4], kernels: [3], strides: [1]},"
                " {kind: mlp, hidden_sizes: [16], spectral_norm: true}]",
                "sampler.batch_T=4",
                "sampler.batch_B=1",
                "algo.learning_starts=100",
                "algo.batch_size=8",
                "runner.save_replay=true",
            ],
            id="dqn-spectral-norm",
        ),
        pytest.param(
            "ppo",
            "CartPoleNoVel-v1",
            [*PPO_TINY, "model.core=dnc", "model.core_size=16", "model.core_options={memory_slots: 4, word_size: 4}"],
            id="ppo-dnc",
        ),
        pytest.param(
            "ppo",
            "CartPoleNoVel-v1",
            [*PPO_TINY, "model.core=gtrxl", "model.core_size=16", "model.core_options={memory_length: 8}"],
            id="ppo-gtrxl",
        ),
    ],
)
def test_exact_resume(tmp_path, algo, env_id, args):
    n = 512
    common = [
        *args,
        "runner.log_interval_steps=128",
        "runner.eval_interval_steps=256",
        "runner.eval_episodes=2",
        *QUIET,
    ]
    full, _ = train(algo, env_id, [*common, f"runner.n_steps={n}"], name="full", root=tmp_path)
    half, _ = train(algo, env_id, [*common, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)
    assert len(read_progress(full)) >= 2
