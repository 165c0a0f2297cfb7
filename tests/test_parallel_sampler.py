"""ParallelStepper: same samples as the serial stepper, checkpoints, worker errors, clean close."""

import functools
import multiprocessing as mp
import os
import signal

import numpy as np
import pytest
import torch

from conftest import assert_sampler_state_round_trip, buffer_leaves
from rlfleet.agents.pg import CategoricalPgAgent
from rlfleet.envs.make import EnvConfig, make_env
from rlfleet.models import CategoricalActorCriticModel
from rlfleet.samplers.parallel import ParallelStepper, ParallelWorkerError
from rlfleet.samplers.sampler import Sampler
from rlfleet.samplers.steppers import SerialStepper

N_ENVS, BATCH_T = 5, 24
# Short time limit: batches hold both terminations and truncations.
CARTPOLE = functools.partial(make_env, EnvConfig(id="CartPole-v1", max_episode_steps=12))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sampler(stepper) -> Sampler:
    sampler = Sampler(stepper, BATCH_T)
    torch.manual_seed(0)  # same model weights for every sampler
    agent = CategoricalPgAgent(lambda spaces: CategoricalActorCriticModel(spaces.observation, spaces.action))
    agent.initialize(sampler.env_spaces, seed=3)
    sampler.initialize(agent, seed=11)
    return sampler


def _assert_batches_equal(a, b) -> None:
    for x, y in zip(buffer_leaves(a.samples) + buffer_leaves(a.last), buffer_leaves(b.samples) + buffer_leaves(b.last)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def parallel_stepper():
    stepper = ParallelStepper(CARTPOLE, N_ENVS, n_workers=3)  # this process + 2 worker processes
    yield stepper
    stepper.close()


def test_parallel_matches_serial(parallel_stepper):
    assert parallel_stepper._slices == [(0, 2), (2, 3), (3, 5)] and len(parallel_stepper._processes) == 2
    serial = _sampler(SerialStepper(CARTPOLE, N_ENVS))
    parallel = _sampler(parallel_stepper)
    seen_terminated = seen_truncated = False
    for _ in range(3):
        s_batch, p_batch = serial.obtain_samples(), parallel.obtain_samples()
        _assert_batches_equal(s_batch, p_batch)
        env = s_batch.samples.env
        done = env.terminated | env.truncated
        seen_terminated |= bool(env.terminated.any())
        seen_truncated |= bool(env.truncated.any())
        # Serial order: time, then env. Parallel order: env slice, then time, then env.
        t_idx, b_idx = np.nonzero(done)
        env_slice = np.searchsorted([2, 3], b_idx, side="right")
        expected = [s_batch.traj_infos[i] for i in np.lexsort((b_idx, t_idx, env_slice))]
        assert len(s_batch.traj_infos) == len(t_idx)
        assert p_batch.traj_infos == expected
    assert seen_terminated and seen_truncated  # both kinds of episode end were compared
    serial.close()


def test_state_dict_round_trip(parallel_stepper):
    sampler = _sampler(parallel_stepper)
    state = assert_sampler_state_round_trip(sampler)

    state["stepper"]["slices"] = [(0, 5)]
    with pytest.raises(ValueError, match="slices"):
        sampler.stepper.load_state_dict(state["stepper"])


def test_worker_exception_and_death_surface():
    stepper = ParallelStepper(CARTPOLE, 4, n_workers=2)
    try:
        stepper.reset([0, 1, 2, 3])
        # CartPole asserts on the invalid action 7.
        with pytest.raises(ParallelWorkerError, match=r"worker 0 \(envs \(2, 4\)\) failed:(.|\n)*invalid"):
            stepper.step(np.array([0, 1, 0, 7]))  # in the worker process
        with pytest.raises(AssertionError, match="invalid"):
            stepper.step(np.array([7, 1, 0, 1]))  # in this process's slice
        stepper.step(np.array([0, 1, 0, 1]))  # everything still works
        os.kill(stepper._processes[0].pid, signal.SIGKILL)
        with pytest.raises(ParallelWorkerError, match="worker 0 .* died"):
            stepper.step(np.array([0, 1, 0, 1]))
        with pytest.raises(RuntimeError, match="closed"):
            stepper.step(np.array([0, 1, 0, 1]))
    finally:
        stepper.close()


def test_close_leaves_no_children():
    stepper = ParallelStepper(CARTPOLE, 3)
    assert stepper.n_workers == min(3, os.cpu_count())
    processes = list(stepper._processes)
    stepper.reset([None] * 3)
    stepper.step(np.zeros(3, dtype=np.int64))
    stepper.close()
    stepper.close()  # idempotent
    assert all(p.exitcode == 0 for p in processes)
    assert not set(processes) & set(mp.active_children())


def test_restoring_env_states_larger_than_a_pipe_buffer():
    # a resumed run's env states reach the workers through their pipes; the worker must be woken
    # before a message that cannot fit in the pipe's buffer is sent
    large = functools.partial(make_env, EnvConfig(id="faulty_envs:LargeState"))
    stepper = ParallelStepper(large, 4, n_workers=2)
    try:
        stepper.reset([0, 1, 2, 3])
        stepper.step(np.array([0, 1, 0, 1]))
        state = stepper.state_dict()
        assert stepper.load_state_dict(state)  # restored exactly, without hanging
        stepper.step(np.array([0, 1, 0, 1]))
    finally:
        stepper.close()
