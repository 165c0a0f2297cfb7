"""AlternatingSampler: the serial sampler's [T,B] batches (same env transitions for a
deterministic agent, episode ends, final observations, previous action/reward resets, reset_envs
calls, normalisers), checkpoints, bad B, per-env agent state, and PPO training through it."""

import functools

import numpy as np
import pytest
import torch

from conftest import QUIET, assert_sampler_state_round_trip, buffer_leaves
from rlfleet.agents.base import AgentStep
from rlfleet.agents.pg import CategoricalPgAgent
from rlfleet.config.loader import resolve, validate
from rlfleet.envs.make import EnvConfig, make_env
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from rlfleet.models import CategoricalActorCriticModel
from rlfleet.samplers.alternating import AlternatingSampler, alternating_stepper
from rlfleet.samplers.sampler import Sampler
from rlfleet.samplers.steppers import SerialStepper

N_ENVS, BATCH_T = 6, 24
# Short time limit: batches hold both terminations and truncations.
CARTPOLE = functools.partial(make_env, EnvConfig(id="CartPole-v1", max_episode_steps=9))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RecordingAgent(CategoricalPgAgent):
    """Acts deterministically (the distribution's mode) and records ``reset_envs`` calls."""

    def __init__(self, model_factory):
        super().__init__(model_factory)
        self.resets: list[np.ndarray] = []

    def reset_envs(self, done: torch.Tensor) -> None:
        self.resets.append(done.numpy().copy())


class PushLeftAgent(RecordingAgent):
    """Always action 0, whatever it observes (normalised observations then cannot change it)."""

    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        agent_step = super().step(observation, prev_action, prev_reward)
        return AgentStep(torch.zeros_like(agent_step.action), agent_step.agent_info)


def _sampler(sampler: Sampler, deterministic: bool = True, agent_class: type = RecordingAgent) -> Sampler:
    torch.manual_seed(0)  # same model weights for every sampler
    agent = agent_class(lambda spaces: CategoricalActorCriticModel(spaces.observation, spaces.action))
    agent.initialize(sampler.env_spaces, seed=3)
    if deterministic:
        agent.eval_mode(0)
    sampler.initialize(agent, seed=11)
    return sampler


def _normalizers() -> tuple[ObservationNormalizer, RewardNormalizer]:
    return ObservationNormalizer((4,)), RewardNormalizer(N_ENVS, 0.99)


@pytest.fixture(scope="module")
def stepper():
    stepper = alternating_stepper(CARTPOLE, N_ENVS, workers_per_group=1)
    yield stepper
    stepper.close()


def test_same_batches_as_serial_sampler(stepper):
    """With a deterministic agent every env sees the same transitions as with the serial
    sampler; the layout, episode ends, final observations, previous actions/rewards (zero after
    an episode end), reset_envs masks and trajectory records all match."""
    assert stepper.worker_slices == [(0, 3), (3, 6)] and stepper.n_workers == 2
    serial = _sampler(Sampler(SerialStepper(CARTPOLE, N_ENVS), BATCH_T))
    alternating = _sampler(AlternatingSampler(stepper, BATCH_T))
    seen_terminated = seen_truncated = False
    for _ in range(3):
        s_batch, a_batch = serial.obtain_samples(), alternating.obtain_samples()
        s_env, a_env = s_batch.samples.env, a_batch.samples.env
        for name in ("observation", "reward", "prev_reward", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(a_env, name), getattr(s_env, name), err_msg=name)
        truncated = s_env.truncated
        np.testing.assert_array_equal(a_env.final_observation[truncated], s_env.final_observation[truncated])
        np.testing.assert_array_equal(a_batch.samples.agent.action, s_batch.samples.agent.action)
        np.testing.assert_array_equal(a_batch.samples.agent.prev_action, s_batch.samples.agent.prev_action)
        # The model ran on half batches: equal up to floating-point summation order.
        for x, y in zip(
            buffer_leaves(a_batch.samples.agent.agent_info), buffer_leaves(s_batch.samples.agent.agent_info)
        ):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        for x, y in zip(buffer_leaves(a_batch.last), buffer_leaves(s_batch.last)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        done = s_env.terminated | s_env.truncated
        assert not a_batch.samples.agent.prev_action[1:][done[:-1]].any()
        assert not a_env.prev_reward[1:][done[:-1]].any()
        seen_terminated |= bool(s_env.terminated.any())
        seen_truncated |= bool(s_env.truncated.any())
        # Records come group by group (then time, then env) instead of by time, then env.
        assert sorted(map(str, a_batch.traj_infos)) == sorted(map(str, s_batch.traj_infos))
        assert len(s_batch.traj_infos) == done.sum()
    assert seen_terminated and seen_truncated
    # reset_envs: [B] masks. The first, from initialize, starts every env (the example step leaves no
    # per-env state); then per step one call per group with an episode end, in that group only.
    resets = np.array(alternating.agent.resets)
    assert resets.shape[1] == N_ENVS
    assert resets[0].all() and np.array(serial.agent.resets)[0].all()
    assert all(mask[:3].any() != mask[3:].any() for mask in resets[1:])
    np.testing.assert_array_equal(resets.sum(0), np.array(serial.agent.resets).sum(0))
    assert len(resets) > len(serial.agent.resets)
    serial.close()


def test_normalizers_see_every_env(stepper):
    """Observations and rewards are normalised one group at a time: after a batch the running
    statistics (and each env's running return) equal the serial sampler's up to rounding."""
    serial = _sampler(Sampler(SerialStepper(CARTPOLE, N_ENVS), BATCH_T, *_normalizers()), agent_class=PushLeftAgent)
    alternating = _sampler(AlternatingSampler(stepper, BATCH_T, *_normalizers()), agent_class=PushLeftAgent)
    for _ in range(2):
        s_batch, a_batch = serial.obtain_samples(), alternating.obtain_samples()
        np.testing.assert_array_equal(a_batch.samples.env.terminated, s_batch.samples.env.terminated)
        for norm in ("obs_normalizer", "reward_normalizer"):
            s_state, a_state = getattr(serial, norm).state_dict(), getattr(alternating, norm).state_dict()
            for key, value in s_state.items():
                np.testing.assert_allclose(a_state[key], value, rtol=1e-6, err_msg=f"{norm} {key}")
    serial.close()


def test_state_dict_round_trip(stepper):
    sampler = _sampler(AlternatingSampler(stepper, BATCH_T, *_normalizers()), deterministic=False)
    assert_sampler_state_round_trip(sampler)


def test_bad_batch_width(tmp_path):
    for n_envs in (0, 1, 5):
        with pytest.raises(ConfigError, match=f"batch_B must be even and at least 2, got {n_envs}"):
            alternating_stepper(CARTPOLE, n_envs)
    with pytest.raises(ConfigError, match="batch_B must be even"):
        train("ppo", "CartPole-v1", [*QUIET, "sampler.kind=alternating", "sampler.batch_B=3"], name="t", root=tmp_path)


@pytest.mark.parametrize("algorithm", ["ddpg", "td3"])
def test_rejects_per_env_noise(algorithm):
    """OU noise keeps one process per env for calls on all B envs: refused at validation by the
    algorithm's declared check, before any env or process exists."""
    overrides = ["sampler.kind=alternating", "agent.exploration_noise=ou"]
    with pytest.raises(ConfigError, match="exploration_noise=ou"):
        validate(resolve(algorithm, "Pendulum-v1", overrides))


def test_ppo_trains_through_alternating_sampler(tmp_path):
    overrides = [*QUIET, "sampler.kind=alternating", "runner.n_steps=4096", "runner.eval_interval_steps=0"]
    run_dir, row = train("ppo", "CartPole-v1", overrides, seed=0, name="t", root=tmp_path)
    assert row["CumSteps"] == 4096 and "kind: alternating" in (run_dir / "config.yaml").read_text()
    assert row["ReturnAverage"] > 0
