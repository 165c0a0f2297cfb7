"""PPG (Phasic Policy Gradient): the auxiliary losses by hand, the networks' gradient routing,
the phase schedule and its gradient-step count, learning, determinism, exact resume mid-phase,
data-parallel training through auxiliary phases, and config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import (
    QUIET,
    assert_exact_resume,
    assert_identical,
    assert_same_model,
    eval_returns,
    latest_state,
    learning_columns,
    read_progress,
)
from rlfleet.algos.pg.ppg import auxiliary_losses
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.distributions import Categorical, DistInfo, DistInfoStd, Gaussian
from rlfleet.envs.spaces import Box, Discrete
from rlfleet.errors import CheckpointError, ConfigError
from rlfleet.experiment import train
from rlfleet.models.ppg import PhasicCategoricalModel
from rlfleet.runners.data_parallel import weights_digest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# CartPole, 32 x 4 = 128 steps per batch, an auxiliary phase every 3 batches (384 stored
# transitions): per batch max(E_pi, E_V) * 128 / 32 = 8 steps, per auxiliary phase 2 * 384 / 64 = 12.
SMALL = [
    "algo.anneal_lr=false",
    "sampler.batch_T=32",
    "sampler.batch_B=4",
    "algo.policy_epochs=2",
    "algo.value_epochs=1",
    "algo.minibatch_size=32",
    "algo.n_policy_iterations=3",
    "algo.aux_epochs=2",
    "algo.aux_minibatch_size=64",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=512",
    "runner.eval_episodes=2",
    *QUIET,
]
POLICY_STEPS, AUX_STEPS = 8, 12


# ----- (a) the auxiliary losses, by hand -----
def test_auxiliary_losses_categorical_by_hand():
    old = DistInfo(logits=torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))  # pi_old: (1/2, 1/2), (3/4, 1/4)
    new = DistInfo(logits=torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]]))  # pi: (3/4, 1/4), (1/2, 1/2)
    value, aux_value, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]), torch.tensor([2.0, 1.0])
    losses = auxiliary_losses(Categorical(2), old, new, value, aux_value, target, beta_clone=0.5)

    kl_0 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL((1/2,1/2) || (3/4,1/4))
    kl_1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL((3/4,1/4) || (1/2,1/2))
    kl = (kl_0 + kl_1) / 2
    aux_value_loss = 0.5 * ((0.0 - 2.0) ** 2 + (4.0 - 1.0) ** 2) / 2  # 0.5 * mean(4, 9) = 3.25
    value_loss = 0.5 * ((1.0 - 2.0) ** 2 + (2.0 - 1.0) ** 2) / 2  # 0.5
    assert losses.kl_clone.item() == pytest.approx(kl, rel=1e-6)
    assert losses.aux_value.item() == pytest.approx(3.25)
    assert losses.value.item() == pytest.approx(value_loss)
    assert losses.joint.item() == pytest.approx(aux_value_loss + 0.5 * kl, rel=1e-6)


def test_auxiliary_kl_gaussian_by_hand():
    """KL(N(0, 1) || N(1, 2^2)) = log 2 + (1 + 1) / 8 - 1/2, and the same pair in a second dimension
    swapped: KL(N(1, 2^2) || N(0, 1)) = -log 2 + (4 + 1) / 2 - 1/2; summed over dimensions."""
    old = DistInfoStd(mean=torch.tensor([[0.0, 1.0]]), log_std=torch.tensor([[0.0, math.log(2.0)]]))
    new = DistInfoStd(mean=torch.tensor([[1.0, 0.0]]), log_std=torch.tensor([[math.log(2.0), 0.0]]))
    zero = torch.zeros(1)
    losses = auxiliary_losses(Gaussian(2), old, new, zero, zero, zero, beta_clone=2.0)
    kl = (math.log(2.0) + 2.0 / 8 - 0.5) + (-math.log(2.0) + 5.0 / 2 - 0.5)
    assert losses.kl_clone.item() == pytest.approx(kl, rel=1e-5)
    assert losses.joint.item() == pytest.approx(2.0 * kl, rel=1e-5)


# ----- the value-network arrangements route the gradients as documented -----
def _grad_norms(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, float]:
    model.zero_grad()
    loss.backward()
    norms: dict[str, float] = {}
    for name, p in model.named_parameters():
        part = name.split(".")[0]
        norms[part] = norms.get(part, 0.0) + (0.0 if p.grad is None else p.grad.norm().item())
    return norms


OBS_SPACE = Box(low=-np.ones(4, np.float32), high=np.ones(4, np.float32), dtype=np.dtype(np.float32))


@pytest.mark.parametrize("value_network", ["separate", "detached", "joint"])
def test_value_network_gradient_routing(value_network):
    torch.manual_seed(0)
    model = PhasicCategoricalModel(OBS_SPACE, Discrete(3), hidden_sizes=(8,), value_network=value_network)
    obs, none = torch.randn(5, 2, 4), torch.zeros(5, 2)
    logits, value, aux_value = model.aux_forward(obs, none, none)
    assert logits.shape == (5, 2, 3) and value.shape == aux_value.shape == (5, 2)
    forward_logits, forward_value = model(obs, none, none)
    assert torch.equal(forward_logits, logits) and torch.equal(forward_value, value)

    value_grads = _grad_norms(model, model.aux_forward(obs, none, none)[1].pow(2).mean())
    aux_grads = _grad_norms(model, model.aux_forward(obs, none, none)[2].pow(2).mean())
    assert value_grads["v_head"] > 0 and value_grads["aux_v_head"] == 0
    assert aux_grads["aux_v_head"] > 0 and aux_grads["pi_encoder"] > 0 and aux_grads["v_head"] == 0
    if value_network == "separate":  # the value loss never reaches the policy network, nor the aux loss the value net
        assert value_grads["pi_encoder"] == 0 and value_grads["v_encoder"] > 0
        assert aux_grads["v_encoder"] == 0
    else:  # one shared encoder
        assert "v_encoder" not in value_grads
        assert (value_grads["pi_encoder"] > 0) == (value_network == "joint")


# ----- (b) the phase schedule -----
def test_aux_phase_after_every_n_policy_iterations_with_counted_steps():
    exp = build_experiment(validate(resolve("ppg", "CartPole-v1", [*SMALL, "runner.eval_interval_steps=0"])))
    algo, batches = exp.algo, []
    for i in range(1, 8):
        batch = exp.sampler.obtain_samples()
        batches.append(batch.torch_samples.env.observation.clone())
        updates = algo.updates
        info = algo.optimize_agent(i * 128, batch)
        aux = i % 3 == 0
        assert info["aux_phase"] == float(aux) and info["phase_iteration"] == (i - 1) % 3 + 1
        assert ("kl_clone" in info) is aux and ("aux_value_loss" in info) is aux
        assert algo.updates - updates == POLICY_STEPS + (AUX_STEPS if aux else 0), i
        assert all(math.isfinite(v) for v in info.values())
        if i == 5:  # the phase's two batches side by side in the store
            assert torch.equal(algo.store.observation[:, :4], batches[3])
            assert torch.equal(algo.store.observation[:, 4:8], batches[4])
            assert not algo.store.observation[:, 8:].any()  # the third not stored yet
    assert algo.aux_phases == 2 and algo.phase_iteration == 1
    assert algo.updates == algo.optimizer.steps == 7 * POLICY_STEPS + 2 * AUX_STEPS


def test_gaussian_ppg_runs_through_an_aux_phase(tmp_path):
    args = ["sampler.batch_T=32", "sampler.batch_B=2", "algo.n_policy_iterations=2", "algo.aux_minibatch_size=64"]
    args += ["runner.n_steps=256", "runner.log_interval_steps=128", "runner.eval_interval_steps=0", *QUIET]
    run_dir, _ = train("ppg", "Pendulum-v1", args, root=tmp_path)
    rows = read_progress(run_dir)
    assert [float(r["kl_clone"]) >= 0 for r in rows if r["kl_clone"]] == [True, True]
    assert latest_state(run_dir)["algo"]["aux_phases"] == 2


# ----- (c) learning -----
@pytest.mark.slow
def test_learns_cartpole(tmp_path):
    """The CartPole preset (an auxiliary phase every 2048 steps) for 20k steps: the untrained
    deterministic policy of seed 0 balances 9 steps; seeds 0-2 reach 457-500 (max over the evals)."""
    args = ["runner.n_steps=20480", "runner.eval_interval_steps=5120", "runner.eval_episodes=5", *QUIET]
    run_dir, _ = train("ppg", "CartPole-v1", args, seed=0, root=tmp_path)
    returns = eval_returns(run_dir)
    assert returns[0] < 50, returns
    assert max(returns) >= 400, returns


# ----- (d) determinism -----
def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    args = [*SMALL, "runner.n_steps=768"]
    a, _ = train("ppg", "CartPole-v1", args, seed=3, name="a", root=tmp_path)
    b, _ = train("ppg", "CartPole-v1", args, seed=3, name="b", root=tmp_path)
    c, _ = train("ppg", "CartPole-v1", args, seed=4, name="c", root=tmp_path)
    rows_a, rows_c = read_progress(a), read_progress(c)
    assert any(r["kl_clone"] for r in rows_a)
    assert learning_columns(rows_a) == learning_columns(read_progress(b))
    assert_same_model(a, b)
    assert_identical(latest_state(a)["algo"], latest_state(b)["algo"], "algo")
    for column in ("loss", "kl_clone", "ReturnAverage"):
        assert [r[column] for r in rows_a] != [r[column] for r in rows_c], column
    model_a, model_c = latest_state(a)["agent"]["model"], latest_state(c)["agent"]["model"]
    assert all(not torch.equal(model_a[k], model_c[k]) for k in model_a)


# ----- (e) exact resume mid-phase -----
def test_exact_resume_mid_phase(tmp_path):
    n = 1280  # 10 batches: auxiliary phases after 3, 6, 9; the half run stops 2 batches into a phase
    args = [*SMALL, "runner.log_interval_steps=128", "runner.eval_interval_steps=640"]  # n / 2 on both grids
    full, _ = train("ppg", "CartPole-v1", [*args, f"runner.n_steps={n}"], name="full", root=tmp_path)
    half, _ = train("ppg", "CartPole-v1", [*args, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    half_algo = latest_state(half)["algo"]
    assert half_algo["phase_iteration"] == 2 and half_algo["store"].return_.shape == (32, 8)
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)
    assert latest_state(full)["algo"]["aux_phases"] == 3


def test_phase_state_apart_from_its_optimizer_state_is_refused():
    """A data-parallel replica with no part in the checkpoint gets rank 0's optimizer state and its
    own fresh phase state: refused, as the replicas would step out of lockstep."""
    exp = build_experiment(validate(resolve("ppg", "CartPole-v1", [*SMALL, "runner.eval_interval_steps=0"])))
    fresh = exp.algo.state_dict()
    exp.algo.optimize_agent(128, exp.sampler.obtain_samples())
    trained = exp.algo.state_dict()
    merged = {**trained, **{k: v for k, v in fresh.items() if k != "optimizer"}}
    with pytest.raises(CheckpointError, match="runner.n_replicas"):
        exp.algo.load_state_dict(merged)
    exp.algo.load_state_dict(trained)  # its own state loads


# ----- (f) data-parallel -----
def test_data_parallel_replicas_stay_identical_through_aux_phases(tmp_path):
    """2 replicas x 32 x 2 envs = 128 steps per iteration; auxiliary phases after batches 3 and 6,
    each replica over its own 192 stored transitions (2 epochs x 192 / 64 = 6 steps)."""
    args = [*SMALL, "sampler.batch_B=2", "runner.kind=data_parallel", "runner.n_replicas=2", "runner.n_steps=896"]
    run_dir, _ = train("ppg", "CartPole-v1", args, root=tmp_path)
    state = latest_state(run_dir)  # rank 0 checked at the checkpoint that the replicas' weights agree
    (other,) = state["replicas"]
    assert other["weights"] == weights_digest(state["agent"]["model"])
    assert state["algo"]["aux_phases"] == other["algo"]["aux_phases"] == 2
    assert state["algo"]["updates"] == other["algo"]["updates"] == 7 * 4 + 2 * 6  # 64 per batch: 2 epochs x 2
    assert not torch.equal(state["algo"]["store"].observation, other["algo"]["store"].observation)


# ----- (g) config errors -----
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["algo.n_policy_iterations=0"], "config key 'algo.n_policy_iterations' must be >= 1"),
        (["algo.beta_clone=-1"], "config key 'algo.beta_clone' must be >= 0"),
        (["model.value_network=shared"], "model.value_network"),
        (["model.core=lstm"], "model.core"),
    ],
)
def test_bad_config_is_one_line_config_error(tmp_path, args, message):
    with pytest.raises(ConfigError) as info:
        train("ppg", "CartPole-v1", [*QUIET, *args], root=tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written
