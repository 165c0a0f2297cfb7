"""Env steps per second of rlfleet's serial and parallel samplers and of Gymnasium's AsyncVectorEnv.

All three drive the same B envs with the same policy (`CategoricalPgAgent` with the default
`CategoricalActorCriticModel`: an MLP for vector observations, the Nature-CNN for images), one
batched forward pass per time step, torch on one thread. Measurements alternate
serial, parallel, async, serial, ... for ``--rounds`` rounds; the table reports medians.

    python benchmarks/sampler_throughput.py --env LunarLander-v3 --n-envs 8 --steps 40000 --rounds 5
    python benchmarks/sampler_throughput.py --env ALE/Pong-v5 --n-envs 8 --steps 4096 --rounds 3
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import torch

from rlfleet.agents import CategoricalPgAgent
from rlfleet.envs.make import EnvConfig, make_env, make_gym_env
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.models import CategoricalActorCriticModel
from rlfleet.samplers.parallel import ParallelStepper
from rlfleet.samplers.sampler import Sampler
from rlfleet.samplers.steppers import SerialStepper


def other_cpu_load(seconds: float = 1.0) -> float:
    """Busy CPUs (0..n_cpus) over ``seconds`` from /proc/stat, taken while this benchmark idles:
    other work on the machine that the measurements compete with (NaN where unavailable)."""

    def busy_idle() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        idle = ticks[3] + ticks[4]
        return sum(ticks) - idle, idle

    if not os.path.exists("/proc/stat"):
        return float("nan")
    busy0, idle0 = busy_idle()
    time.sleep(seconds)
    busy1, idle1 = busy_idle()
    return os.cpu_count() * (busy1 - busy0) / max(1, busy1 - busy0 + idle1 - idle0)


def make_agent(env_spaces: EnvSpaces) -> CategoricalPgAgent:
    agent = CategoricalPgAgent(lambda spaces: CategoricalActorCriticModel(spaces.observation, spaces.action))
    agent.initialize(env_spaces, seed=0)
    agent.sample_mode(0)
    return agent


def sampler_runner(sampler: Sampler, n_batches: int) -> Callable[[], int]:
    """``run() -> env steps`` collecting ``n_batches`` batches of ``[T,B]``."""

    def run() -> int:
        for _ in range(n_batches):
            sampler.obtain_samples()
        return n_batches * sampler.batch_size

    return run


def async_runner(envs: gym.vector.AsyncVectorEnv, agent: CategoricalPgAgent, n_steps: int) -> Callable[[], int]:
    """``run() -> env steps``: ``n_steps`` vector steps, actions from one ``[B, ...]`` forward each."""
    n_envs = envs.num_envs
    prev_action = torch.zeros(n_envs, dtype=torch.int64)
    prev_reward = torch.zeros(n_envs)
    observation, _ = envs.reset(seed=0)

    def run() -> int:
        nonlocal observation
        for _ in range(n_steps):
            action = agent.step(torch.from_numpy(observation), prev_action, prev_reward).action
            observation, *_ = envs.step(action.numpy())
        return n_steps * n_envs

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="LunarLander-v3")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40_000, help="env steps (summed over envs) per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-t", type=int, default=128, help="sampler batch length T")
    parser.add_argument("--n-workers", type=int, default=None, help="ParallelStepper workers (default: its own)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = EnvConfig(id=args.env)
    env_factory = functools.partial(make_env, config)
    n_batches = max(1, args.steps // (args.batch_t * args.n_envs))
    runners: dict[str, Callable[[], int]] = {}
    closers = []
    parallel_workers = 0
    for name, stepper_cls in (("serial", SerialStepper), ("parallel", ParallelStepper)):
        kwargs = {"n_workers": args.n_workers} if stepper_cls is ParallelStepper else {}
        stepper = stepper_cls(env_factory, args.n_envs, **kwargs)
        if isinstance(stepper, ParallelStepper):
            parallel_workers = stepper.n_workers
        sampler = Sampler(stepper, args.batch_t)
        sampler.initialize(make_agent(sampler.env_spaces), seed=0)
        sampler.obtain_samples()  # warm-up
        runners[name] = sampler_runner(sampler, n_batches)
        closers.append(sampler.close)
    async_envs = gym.vector.AsyncVectorEnv(
        [functools.partial(make_gym_env, config)] * args.n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    closers.append(async_envs.close)
    runners["async"] = async_runner(async_envs, make_agent(sampler.env_spaces), n_batches * args.batch_t)
    runners["async"]()  # warm-up

    rates: dict[str, list[float]] = {name: [] for name in runners}
    load = [other_cpu_load()]
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            steps = run()
            rates[name].append(steps / (time.perf_counter() - start))
    load.append(other_cpu_load())
    for close in closers:
        close()

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"\n{args.env}: {args.n_envs} envs, {n_batches * args.batch_t * args.n_envs} steps per measurement, "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs, parallel: {parallel_workers} env slices "
        f"(main process + {parallel_workers - 1} workers)"
    )
    print(f"CPUs busy with other work, before / after the rounds: {load[0]:.2f} / {load[1]:.2f}")
    print(f"{'stepper':<10}{'median steps/s':>16}   per round")
    for name, values in rates.items():
        print(f"{name:<10}{median[name]:>16,.0f}   {', '.join(f'{v:,.0f}' for v in values)}")
    print(f"parallel / serial: {median['parallel'] / median['serial']:.2f}x")
    print(f"parallel / async:  {median['parallel'] / median['async']:.2f}x")


if __name__ == "__main__":
    main()
