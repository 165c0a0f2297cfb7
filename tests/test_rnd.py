"""Random network distillation as ``algo.rnd`` of PPO (`rlfleet.algos.pg.rnd`): hand-computed
pieces, the two-headed targets inside PPO, the frozen target, determinism and exact resume,
config errors, and a tiny learning check on DeepSea."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from conftest import QUIET, assert_exact_resume, latest_state, learning_columns, read_progress
from rlfleet.algos.pg.returns import generalized_advantage_estimation, next_values
from rlfleet.algos.pg.rnd import (
    RND,
    IntrinsicRewardNormalizer,
    ObservationStatistics,
    combined_advantage,
    discounted_return_filter,
    intrinsic_targets,
)
from rlfleet.algos.specs.ppo import RNDConfig
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.envs.spaces import Box
from rlfleet.errors import ConfigError
from rlfleet.experiment import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "env.kwargs.size=4",
    "algo.rnd.enabled=true",
    "algo.rnd.target_hidden_sizes=[16]",
    "algo.rnd.predictor_hidden_sizes=[16]",
    "algo.rnd.output_size=8",
    "algo.rnd.warmup_steps=32",
    "sampler.batch_T=8",
    "sampler.batch_B=4",
    "algo.epochs=2",
    "algo.minibatch_size=16",
    "model.hidden_sizes=[16]",
    "runner.log_interval_steps=64",
    "runner.eval_interval_steps=128",
    "runner.eval_episodes=2",
    *QUIET,
]


def build(overrides: list[str]):
    return build_experiment(validate(resolve("ppo", "DeepSea-v0", overrides)))


# ----- hand-computed pieces -----
def test_intrinsic_reward_is_the_squared_prediction_error():
    config = RNDConfig(enabled=True, target_hidden_sizes=(), predictor_hidden_sizes=(), output_size=2)
    space = Box(np.zeros(2, np.float32), np.ones(2, np.float32), np.dtype(np.float32))
    rnd = RND(space, config, n_envs=1, lr=1e-3, optimizer_eps=1e-8, max_grad_norm=0.0, device="cpu")
    target, predictor = rnd.target.mlp.net[0], rnd.predictor.mlp.net[0]  # one linear layer each
    with torch.no_grad():
        target.weight.copy_(torch.eye(2))
        target.bias.zero_()
        predictor.weight.zero_()
        predictor.bias.copy_(torch.tensor([1.0, 0.0]))
    obs = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])  # [T=2, B=1, 2]
    # ||(1, 0) - (3, 4)||^2 = 4 + 16 = 20; ||(1, 0) - (1, 0)||^2 = 0
    torch.testing.assert_close(rnd.intrinsic_reward(obs), torch.tensor([[20.0], [0.0]]))
    # the predictor's loss: the mean over features, over the masked rows only
    loss = rnd.predictor_loss(obs.reshape(2, 2), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(loss, torch.tensor(10.0))


def test_return_filter_runs_over_time_per_env():
    reward = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)  # [T=3, B=2]
    # env 0: 1, 0.5*1 + 3 = 3.5, 0.5*3.5 + 5 = 6.75; env 1: 2, 0.5*2 + 4 = 5, 0.5*5 + 6 = 8.5
    filtered = discounted_return_filter(reward, torch.zeros(2, dtype=torch.float64), 0.5)
    torch.testing.assert_close(filtered, torch.tensor([[1.0, 2.0], [3.5, 5.0], [6.75, 8.5]], dtype=torch.float64))

    normalizer = IntrinsicRewardNormalizer(n_envs=2, gamma=0.5)
    out = normalizer(reward)
    # the running statistics (prior: count 1e-4, mean 0, var 1) take in the six returns:
    # sum 26.75, mean 4.458333, sum of squares 160.0625, population variance 6.800347
    values = [1.0, 2.0, 3.5, 5.0, 6.75, 8.5]
    n, mean = 6, sum(values) / 6
    var = sum(v * v for v in values) / n - mean**2
    assert var == pytest.approx(6.800347, abs=1e-6)
    total = 1e-4 + n
    expected_var = (1e-4 * 1.0 + var * n + mean**2 * 1e-4 * n / total) / total
    assert normalizer.stats.var == pytest.approx(expected_var)
    torch.testing.assert_close(out, reward / np.sqrt(expected_var + 1e-8))
    torch.testing.assert_close(normalizer.returns, torch.tensor([6.75, 8.5], dtype=torch.float64))
    # filtered over envs instead (cleanrl issue #360) the returns would be 1, 3, 5 and
    # 0.5*(1, 3, 5) + (2, 4, 6) = 2.5, 5.5, 8.5: another variance
    wrong = [1.0, 3.0, 5.0, 2.5, 5.5, 8.5]
    assert np.var(wrong) != pytest.approx(np.var(values), rel=1e-3)
    # the next batch carries each env's return on: R = 0.5 * 6.75 + 1
    normalizer(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(normalizer.returns, torch.tensor([4.375, 4.25], dtype=torch.float64))


def test_intrinsic_gae_is_non_episodic_and_advantages_combine():
    reward = torch.tensor([[1.0], [0.0], [2.0]])
    value = torch.tensor([[0.5], [1.0], [0.2]])
    bootstrap = torch.tensor([0.4])
    advantage, return_ = intrinsic_targets(reward, value, bootstrap, gamma=0.9, gae_lambda=0.8)
    # deltas: 2 + 0.9*0.4 - 0.2 = 2.16; 0 + 0.9*0.2 - 1 = -0.82; 1 + 0.9*1 - 0.5 = 1.4
    # A_2 = 2.16; A_1 = -0.82 + 0.72*2.16 = 0.7352; A_0 = 1.4 + 0.72*0.7352 = 1.929344
    expected = torch.tensor([[1.929344], [0.7352], [2.16]])
    torch.testing.assert_close(advantage, expected)
    torch.testing.assert_close(return_, expected + value)
    ext = torch.tensor([[1.0], [-1.0], [0.5]])
    torch.testing.assert_close(combined_advantage(ext, advantage, 2.0, 1.0), 2 * ext + expected)


def test_observations_are_normalised_and_clipped_to_5():
    stats = ObservationStatistics((2,))
    stats.update(torch.tensor([[0.0, 1.0], [0.0, 3.0]]))  # feature 0 constant: a tiny variance
    out = stats.normalize(torch.tensor([[1.0, 2.0], [-1.0, 100.0]]))
    assert out.dtype == torch.float32
    assert out[0, 0] == 5.0 and out[1, 0] == -5.0 and out[1, 1] == 5.0
    mean, var = stats.stats.mean[1], stats.stats.var[1]
    assert out[0, 1].item() == pytest.approx((2.0 - mean) / np.sqrt(var + 1e-8), rel=1e-6)


# ----- inside PPO -----
def test_ppo_rnd_targets_two_heads_and_frozen_target():
    experiment = build([*TINY, "algo.rnd.warmup_steps=0"])
    try:
        algo, agent = experiment.algo, experiment.agent
        assert agent.model.value_heads == 2  # set by the spec's model_kwargs, no model key given
        assert algo.optimizers() == [algo.optimizer, algo.rnd.optimizer]
        batch = experiment.sampler.obtain_samples()
        s = batch.torch_samples
        assert s.agent.agent_info.value.shape == (8, 4, 2)
        assert (s.env.terminated).any()  # size-4 episodes end inside the batch
        stats = algo.rnd.state_dict()  # rnd_targets updates the statistics: check on a copy
        targets, normalized, intrinsic = algo.rnd_targets(batch)
        algo.rnd.load_state_dict(stats)
        value, bootstrap = s.agent.agent_info.value, agent.value(*batch.last)
        done = s.env.terminated | s.env.truncated
        ext_next = next_values(value[..., 0], bootstrap[..., 0], s.env.terminated, s.env.truncated, torch.zeros(8, 4))
        ext_adv, ext_ret = generalized_advantage_estimation(s.env.reward, value[..., 0], ext_next, done, 0.99, 0.95)
        # the intrinsic stream ignores the episode ends: hand recursion with no cut
        int_adv, running = torch.zeros(8, 4), torch.zeros(4)
        int_next = torch.cat([value[1:, :, 1], bootstrap[None, :, 1]])
        for t in reversed(range(8)):
            running = intrinsic[t] + 0.99 * int_next[t] - value[t, :, 1] + 0.99 * 0.95 * running
            int_adv[t] = running
        torch.testing.assert_close(targets.advantage, 2.0 * ext_adv + 1.0 * int_adv)
        torch.testing.assert_close(targets.return_, torch.stack([ext_ret, int_adv + value[..., 1]], -1))
        assert normalized.abs().max() <= 5.0

        target_before = {k: v.clone() for k, v in algo.rnd.target.state_dict().items()}
        predictor_before = {k: v.clone() for k, v in algo.rnd.predictor.state_dict().items()}
        info = algo.optimize_agent(32, batch)
        assert {"intrinsic_reward", "rnd_loss", "ext_value_loss", "int_value_loss"} <= set(info)
        assert all(not p.requires_grad for p in algo.rnd.target.parameters())
        for key, tensor in algo.rnd.target.state_dict().items():
            assert torch.equal(tensor, target_before[key]), key
        assert any(not torch.equal(t, predictor_before[k]) for k, t in algo.rnd.predictor.state_dict().items())
    finally:
        experiment.close()


def test_warmup_batches_update_statistics_only():
    experiment = build(TINY)  # warmup_steps=32: the first batch (32 steps) trains nothing
    try:
        algo = experiment.algo
        before = algo.rnd.observation_statistics.stats.count
        assert algo.optimize_agent(32, experiment.sampler.obtain_samples()) == {}
        assert algo.updates == 0 and algo.rnd.observation_statistics.stats.count == before + 32
        assert algo.optimize_agent(64, experiment.sampler.obtain_samples())["rnd_loss"] >= 0
        assert algo.updates > 0
    finally:
        experiment.close()


def test_recurrent_ppo_with_rnd_trains(tmp_path):
    recurrent = ["model.core=gru", "model.core_size=8", "algo.sequence_length=4", "runner.n_steps=128"]
    run_dir, _ = train("ppo", "DeepSea-v0", [*TINY, *recurrent], seed=0, name="gru", root=tmp_path)
    rows = read_progress(run_dir)
    assert float(rows[-1]["rnd_loss"]) >= 0 and "int_value_loss" in rows[-1]


def test_determinism_and_exact_resume_with_rnd(tmp_path):
    n = 256
    full, _ = train("ppo", "DeepSea-v0", [*TINY, f"runner.n_steps={n}"], seed=1, name="full", root=tmp_path)
    again, _ = train("ppo", "DeepSea-v0", [*TINY, f"runner.n_steps={n}"], seed=1, name="again", root=tmp_path)
    assert learning_columns(read_progress(full)) == learning_columns(read_progress(again))
    half, _ = train("ppo", "DeepSea-v0", [*TINY, f"runner.n_steps={n // 2}"], seed=1, name="half", root=tmp_path)
    assert "rnd" in latest_state(half)["algo"]
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)


# ----- config errors -----
@pytest.mark.parametrize(
    ("algorithm", "overrides", "message"),
    [
        ("a2c", ["algo.rnd.enabled=true"], "unknown config key 'algo.rnd'"),
        ("ppo", ["algo.rnd.update_proportion=0"], "'algo.rnd.update_proportion' must be in \\(0, 1\\]"),
        ("ppo", ["algo.rnd.int_gamma=1.5"], "'algo.rnd.int_gamma' must be in \\[0, 1\\]"),
        ("ppo", ["algo.rnd.warmup_steps=-1"], "'algo.rnd.warmup_steps' must be >= 0"),
        ("ppo", ["algo.rnd.enabld=true"], "did you mean 'algo.rnd.enabled'"),
        ("ppo", ["algo.rnd.enabled=true", "runner.kind=data_parallel"], "algo.rnd keeps its networks"),
        ("ppo", ["model.value_heads=2"], "ppo trains one value head"),
    ],
)
def test_bad_rnd_config_is_one_line(algorithm, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate(resolve(algorithm, "CartPole-v1", overrides))
    assert "\n" not in str(err.value)


def test_value_heads_contradicting_rnd_is_refused_at_build():
    with pytest.raises(ConfigError, match="model.value_heads=1 contradicts") as err:
        build([*TINY, "model.value_heads=1"])
    assert "\n" not in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("minigrid") is None, reason="needs minigrid")
def test_doorkey_8x8_preset_builds_rnd_on_images():
    config = validate(resolve("ppo", "MiniGrid-DoorKey-8x8-v0", ["sampler.batch_B=2", "sampler.batch_T=4"]))
    experiment = build_experiment(config)
    try:
        batch = experiment.sampler.obtain_samples()
        assert batch.torch_samples.env.observation.dtype == torch.uint8
        experiment.algo.config.rnd.warmup_steps = 0
        assert experiment.algo.optimize_agent(8, batch)["rnd_loss"] >= 0
    finally:
        experiment.close()


# ----- learning -----
@pytest.mark.slow
def test_rnd_finds_the_deepsea_treasure_plain_ppo_does_not(tmp_path):
    common = [
        "env.kwargs.size=10",
        "sampler.batch_T=32",
        "sampler.batch_B=16",
        "algo.epochs=4",
        "algo.minibatch_size=256",
        "algo.lr=0.001",
        "algo.anneal_lr=false",
        "algo.rnd.warmup_steps=512",
        "runner.n_steps=20480",
        "runner.log_interval_steps=2048",
        "runner.eval_interval_steps=0",
        *QUIET,
    ]
    found = {}
    for rnd in ("true", "false"):
        run_dir, _ = train("ppo", "DeepSea-v0", [*common, f"algo.rnd.enabled={rnd}"], seed=0, name=rnd, root=tmp_path)
        found[rnd] = float(read_progress(run_dir)[-1]["found_treasureAverage"])
    assert found["true"] >= 0.9, found
    assert found["false"] < 0.1, found
