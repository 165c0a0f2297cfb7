"""DAAC and IDAAC: the losses against hand-computed values, the two networks' separate updates and
schedule, a tiny learning run, determinism, exact resume and config errors."""

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
from rlfleet.algos.pg.daac import (
    advantage_loss,
    adversarial_loss,
    discriminator_loss,
    episode_partners,
)
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.envs.spaces import Box, Discrete
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from rlfleet.models.daac import CategoricalDaacModel, GaussianDaacModel, OrderDiscriminator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# CartPole with 128 steps per batch and 4 minibatches per pass; the value network every 3rd batch
# (so a resume at 512 steps = 4 batches lands between two value phases), IDAAC on; a constant
# learning rate (the preset anneals it over runner.n_steps, which the resume changes on purpose).
DAAC_ARGS = [
    "algo.anneal_lr=false",
    "sampler.batch_T=32",
    "sampler.batch_B=4",
    "algo.minibatch_size=32",
    "algo.policy_epochs=2",
    "algo.value_epochs=3",
    "algo.value_freq=3",
    "algo.idaac=true",
    "algo.discriminator_hidden_sizes=[8]",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=512",
    "runner.eval_episodes=2",
    *QUIET,
]


def box(dim: int) -> Box:
    return Box(np.full(dim, -1.0, np.float32), np.full(dim, 1.0, np.float32), np.dtype(np.float32))


# ----- (a) the losses, by hand -----
def test_advantage_loss_is_the_mean_squared_error_to_the_gae_target():
    estimate, target = torch.tensor([1.0, -0.5]), torch.tensor([0.5, 0.5])
    # ((1 - 0.5)^2 + (-0.5 - 0.5)^2) / 2 = (0.25 + 1) / 2
    assert advantage_loss(estimate, target).item() == pytest.approx(0.625)


def test_discriminator_and_adversarial_losses_by_hand():
    logit = torch.tensor([0.0, math.log(3.0), 5.0], requires_grad=True)  # D = 1/2, 3/4, (unpaired)
    first = torch.tensor([True, False, True])
    paired = torch.tensor([True, True, False])  # the third step has no partner: left out
    # step 0: y=1, D=1/2 -> -log(1/2) = log 2; step 1: y=0, D=3/4 -> -log(1/4) = 2 log 2
    assert discriminator_loss(logit, first, paired).item() == pytest.approx((math.log(2) + 2 * math.log(2)) / 2)
    # against 1/2: step 0 -> log 2; step 1 -> -(1/2) log(3/4) - (1/2) log(1/4) = 2 log 2 - (1/2) log 3
    expected = (math.log(2) + 2 * math.log(2) - 0.5 * math.log(3)) / 2
    loss = adversarial_loss(logit, paired)
    assert loss.item() == pytest.approx(expected)
    # d/dz of the cross-entropy to 1/2 is (sigmoid(z) - 1/2) / n_paired: nothing where D = 1/2
    loss.backward()
    torch.testing.assert_close(logit.grad, torch.tensor([0.0, (0.75 - 0.5) / 2, 0.0]))


def test_discriminator_reads_both_features_in_order():
    d = OrderDiscriminator(feature_size=2, hidden_sizes=())
    with torch.no_grad():
        d.mlp.net[0].weight.copy_(torch.tensor([[1.0, 2.0, -1.0, 0.5]]))
        d.mlp.net[0].bias.fill_(0.25)
    f_i, f_j = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, -2.0]])
    # 1*1 + 2*1 - 1*2 + 0.5*(-2) + 0.25 = 0.25, and swapped: 1*2 + 2*(-2) - 1*1 + 0.5*1 + 0.25 = -2.25
    assert d(f_i, f_j).item() == pytest.approx(0.25)
    assert d(f_j, f_i).item() == pytest.approx(-2.25)
    # every replica builds the same discriminator (not from the global RNG)
    torch.manual_seed(1)
    a = OrderDiscriminator(4, [8]).state_dict()
    torch.manual_seed(2)
    assert_identical(a, OrderDiscriminator(4, [8]).state_dict())


def test_partners_are_other_steps_of_the_same_episode():
    # column 0: episodes {0, 1} and {2, 3, 4}; column 1: {0}, {1, 2, 3}, {4}
    done = torch.tensor([[False, True], [True, False], [False, False], [False, True], [False, False]])
    episodes = [[{0, 1}, {0, 1}, {2, 3, 4}, {2, 3, 4}, {2, 3, 4}], [{0}, {1, 2, 3}, {1, 2, 3}, {1, 2, 3}, {4}]]
    generator = torch.Generator().manual_seed(0)
    seen = [[set() for _ in range(2)] for _ in range(5)]
    for _ in range(100):
        partner, paired = episode_partners(done, generator)
        for t in range(5):
            for b in range(2):
                episode = episodes[b][t]
                assert paired[t, b].item() == (len(episode) > 1)
                if len(episode) > 1:
                    assert partner[t, b].item() in episode - {t}
                    seen[t][b].add(partner[t, b].item())
                else:
                    assert partner[t, b].item() == t
    assert seen[2][0] == {3, 4} and seen[2][1] == {1, 3}  # uniform over the other steps: all appear


def test_advantage_head_reads_the_one_hot_action():
    model = CategoricalDaacModel(box(3), Discrete(4), hidden_sizes=(5,))
    obs = torch.randn(6, 3)
    logits, advantage, features = model.policy(obs, None, None, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert logits.shape == (6, 4) and advantage.shape == (6,) and features.shape == (6, 5)
    w, b = model.advantage_head.weight[0], model.advantage_head.bias[0]
    expected = features @ w[:5] + w[5:][torch.tensor([0, 1, 2, 3, 0, 1])] + b
    torch.testing.assert_close(advantage, expected)
    # the acting forward is the PG models' contract; [T,B] leading dims come back
    logits_tb, value_tb = model(obs.view(2, 3, 3), None, None)
    assert logits_tb.shape == (2, 3, 4) and value_tb.shape == (2, 3)
    torch.testing.assert_close(value_tb.reshape(6), model.value(obs, None, None))


def test_gaussian_advantage_head_reads_the_raw_action():
    model = GaussianDaacModel(box(3), box(2), hidden_sizes=(5,))
    obs, action = torch.randn(4, 3), torch.randn(4, 2)
    mean, log_std, advantage, features = model.policy(obs, None, None, action)
    assert mean.shape == log_std.shape == (4, 2) and features.shape == (4, 5)
    w, b = model.advantage_head.weight[0], model.advantage_head.bias[0]
    torch.testing.assert_close(advantage, features @ w[:5] + action @ w[5:] + b)


# ----- (b) two networks, two optimizers, the value schedule -----
@pytest.mark.parametrize("idaac", [False, True])
def test_value_network_trains_every_value_freq_batches_and_networks_stay_apart(idaac):
    overrides = [
        "sampler.batch_T=16",
        "sampler.batch_B=2",
        "algo.minibatch_size=8",  # 4 minibatches per pass
        "algo.policy_epochs=2",  # 8 policy steps per batch
        "algo.value_epochs=3",  # 12 value steps when the value network trains
        "algo.value_freq=2",
        f"algo.idaac={str(idaac).lower()}",
        "runner.eval_interval_steps=0",
        *QUIET,
    ]
    exp = build_experiment(validate(resolve("daac", "CartPole-v1", overrides, None, 0)))
    algo, model = exp.algo, exp.agent.model
    try:
        policy_ids = {id(p) for p in algo.optimizer.parameters}
        value_ids = {id(p) for p in algo.value_optimizer.parameters}
        assert value_ids == {id(p) for p in model.value_net.parameters()}
        assert policy_ids.isdisjoint(value_ids) and policy_ids | value_ids == {id(p) for p in model.parameters()}
        if idaac:  # the discriminator is the algorithm's, trained by its own optimizer only
            discriminator_ids = {id(p) for p in algo.discriminator.parameters()}
            assert discriminator_ids == {id(p) for p in algo.discriminator_optimizer.parameters}
            assert discriminator_ids.isdisjoint(policy_ids | value_ids)
        assert algo.optimizers() == [algo.optimizer, algo.value_optimizer, *([algo.discriminator_optimizer] * idaac)]

        def untouched_by(phase: str, optimizer):
            """Wrap ``algo.<phase>``: during it, ``optimizer``'s parameters and gradients do not change."""
            original = getattr(algo, phase)

            def wrapped(data):
                flat, grad = optimizer.flat.clone(), optimizer.flat_grad.clone()
                out = original(data)
                assert torch.equal(optimizer.flat, flat), f"{phase} changed the other network"
                assert torch.equal(optimizer.flat_grad, grad), f"{phase} sent gradient into the other network"
                return out

            setattr(algo, phase, wrapped)

        untouched_by("train_policy", algo.value_optimizer)
        untouched_by("train_value", algo.optimizer)

        for itr in range(5):
            exp.agent.sample_mode(itr * 32)
            batch = exp.sampler.obtain_samples()
            exp.agent.train_mode(itr * 32)
            value_before, policy_before = algo.value_optimizer.flat.clone(), algo.optimizer.flat.clone()
            value_steps, policy_steps, updates = algo.value_optimizer.steps, algo.optimizer.steps, algo.updates
            info = exp.algo.optimize_agent(itr * 32, batch)
            trained = itr % 2 == 0
            assert info["value_updated"] == float(trained)
            assert algo.optimizer.steps - policy_steps == 8
            assert algo.value_optimizer.steps - value_steps == (12 if trained else 0)
            assert algo.updates - updates == 8 + (12 if trained else 0)
            assert not torch.equal(algo.optimizer.flat, policy_before)
            assert torch.equal(algo.value_optimizer.flat, value_before) != trained
            if idaac:
                assert algo.discriminator_optimizer.steps == 8 * (itr + 1)
            assert all(isinstance(v, float) for v in info.values())
    finally:
        exp.close()


# ----- (c) it learns -----
@pytest.mark.slow
@pytest.mark.parametrize("idaac", [False, True])
def test_daac_learns_cartpole(tmp_path, idaac):
    """20k CartPole steps (about 6 s for DAAC, 9 s for IDAAC on one core): every seed tried (0-3)
    evaluates 500 at the end; the untrained policy scores about 9."""
    overrides = [
        "sampler.batch_T=32",
        "sampler.batch_B=8",
        "algo.lr=0.001",
        "algo.anneal_lr=true",
        "algo.gamma=0.98",
        "algo.gae_lambda=0.8",
        "algo.minibatch_size=64",
        "algo.policy_epochs=10",
        "algo.value_epochs=10",
        "algo.entropy_coef=0",
        "algo.clip_value=0",
        f"algo.idaac={str(idaac).lower()}",
        "runner.n_steps=20480",
        "runner.log_interval_steps=4096",
        "runner.eval_interval_steps=4096",
        "runner.eval_episodes=5",
        "runner.torch_threads=1",
        *QUIET,
    ]
    run_dir, _ = train("daac", "CartPole-v1", overrides, seed=0, name="learn", root=tmp_path)
    returns = eval_returns(run_dir)
    assert returns[0] <= 50, returns  # untrained
    assert returns[-1] >= 400, returns


# ----- (d) determinism, (e) exact resume -----
def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    args = [*DAAC_ARGS, "runner.n_steps=1024"]
    a, _ = train("daac", "CartPole-v1", args, seed=3, name="a", root=tmp_path)
    b, _ = train("daac", "CartPole-v1", args, seed=3, name="b", root=tmp_path)
    c, _ = train("daac", "CartPole-v1", args, seed=4, name="c", root=tmp_path)
    rows_a, rows_c = read_progress(a), read_progress(c)
    assert learning_columns(rows_a) == learning_columns(read_progress(b))
    assert_same_model(a, b)
    assert_identical(latest_state(a)["algo"], latest_state(b)["algo"], "algo")

    assert [r["CumSteps"] for r in rows_c] == [r["CumSteps"] for r in rows_a]
    for column in ("ReturnAverage", "loss", "value_loss", "discriminator_loss"):
        assert [r[column] for r in rows_a] != [r[column] for r in rows_c], column
    model_a, model_c = latest_state(a)["agent"]["model"], latest_state(c)["agent"]["model"]
    assert all(not torch.equal(model_a[k], model_c[k]) for k in model_a)


def test_exact_resume(tmp_path):
    n = 1024
    full, _ = train("daac", "CartPole-v1", [*DAAC_ARGS, f"runner.n_steps={n}"], name="full", root=tmp_path)
    half, _ = train("daac", "CartPole-v1", [*DAAC_ARGS, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    state = latest_state(half)["algo"]
    assert state["iterations"] == 4 and state["iterations"] % 3 != 0  # between two value phases
    assert {"discriminator", "discriminator_optimizer", "value_optimizer"} <= state.keys()
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)


def test_data_parallel_replicas_keep_one_discriminator_and_value_network(tmp_path):
    """Every optimizer is averaged over the replicas and every replica takes the same steps: the
    discriminator (built on each replica, not broadcast) and both optimizers stay identical."""
    args = [*DAAC_ARGS, "runner.n_steps=1024", "runner.kind=data_parallel", "runner.n_replicas=2"]
    run_dir, _ = train("daac", "CartPole-v1", args, name="dp", root=tmp_path)
    state = latest_state(run_dir)  # saving checked that the models are identical
    other = state["replicas"][0]["algo"]
    for key in ("discriminator", "discriminator_optimizer", "value_optimizer", "iterations", "generator"):
        if key == "generator":  # each replica shuffles its own batch
            assert not torch.equal(state["algo"][key], other[key])
        else:
            assert_identical(state["algo"][key], other[key], key)
    assert state["algo"]["updates"] == 4 * 8 + 2 * 12  # 4 batches of 8 policy steps, value phases at 0 and 3


# ----- (f) config errors -----
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["algo.value_freq=0"], "config key 'algo.value_freq' must be >= 1, got 0"),
        (["algo.idaac_coef=-1"], "config key 'algo.idaac_coef' must be >= 0, got -1"),
        (["algo.discriminator_hidden_sizes=[0]"], "config key 'algo.discriminator_hidden_sizes"),
        (["algo.value_epoch=3"], "unknown config key 'algo.value_epoch'"),
        (["model.core=lstm"], "daac"),
    ],
)
def test_bad_config_is_one_line_config_error(args, message):
    with pytest.raises(ConfigError) as info:
        validate(resolve("daac", "CartPole-v1", args))
    text = str(info.value)
    assert "\n" not in text
    assert message in text
