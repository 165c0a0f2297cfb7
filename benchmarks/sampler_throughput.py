"""Env steps per second of rlfleet's samplers (serial, parallel, alternating, envpool) and of
Gymnasium's AsyncVectorEnv, side by side, on each env given.

All of them drive B envs with the same policy (`CategoricalPgAgent` with the default
`CategoricalActorCriticModel`: an MLP for vector observations, the Nature-CNN for images), torch
on one thread; the rlfleet samplers collect ``[T,B]`` batches, AsyncVectorEnv runs one batched
forward pass per vector step. Measurements alternate serial, parallel, alternating, envpool,
async, serial, ... for ``--rounds`` rounds; the tables report medians. envpool is left out where
it is not installed or does not support the env.

    python benchmarks/sampler_throughput.py                    # LunarLander-v3 and ALE/Pong-v5, 8 envs
    python benchmarks/sampler_throughput.py --env LunarLander-v3 --steps 40000 --rounds 5
    python benchmarks/sampler_throughput.py --steps 2048 512 --rounds 1   # a quick check
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

from rlfleet.agents.pg import CategoricalPgAgent
from rlfleet.envs.make import EnvConfig, make_env, make_gym_env
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.models import CategoricalActorCriticModel
from rlfleet.samplers.alternating import AlternatingSampler, alternating_stepper
from rlfleet.samplers.envpool_stepper import EnvpoolStepper
from rlfleet.samplers.parallel import ParallelStepper
from rlfleet.samplers.sampler import Sampler
from rlfleet.samplers.steppers import SerialStepper

DEFAULT_ENVS = ("LunarLander-v3", "ALE/Pong-v5")
DEFAULT_STEPS = {"LunarLander-v3": 40_000, "ALE/Pong-v5": 4096}  # env steps per measurement


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


def build_samplers(config: EnvConfig, args: argparse.Namespace) -> tuple[dict[str, Sampler], str]:
    """The rlfleet samplers to measure (envpool only where it runs the env) and a line saying
    how the parallel ones are laid out."""
    env_factory = functools.partial(make_env, config)
    parallel = ParallelStepper(env_factory, args.n_envs, n_workers=args.n_workers)
    alternating = alternating_stepper(env_factory, args.n_envs, workers_per_group=args.workers_per_group)
    samplers = {
        "serial": Sampler(SerialStepper(env_factory, args.n_envs), args.batch_t),
        "parallel": Sampler(parallel, args.batch_t),
        "alternating": AlternatingSampler(alternating, args.batch_t),
    }
    layout = (
        f"parallel: {parallel.n_workers} env slices (main process + {parallel.n_workers - 1} workers); "
        f"alternating: 2 groups of {len(alternating.worker_slices) // 2} worker(s)"
    )
    try:
        samplers["envpool"] = Sampler(EnvpoolStepper(config, args.n_envs, n_threads=args.envpool_threads), args.batch_t)
    except ConfigError as err:
        layout += f"; envpool left out: {err}"
    return samplers, layout


def measure(env_id: str, n_steps: int, args: argparse.Namespace) -> dict[str, float]:
    """Median env steps per second of every sampler on ``env_id``; prints a table."""
    config = EnvConfig(id=env_id)
    n_batches = max(1, n_steps // (args.batch_t * args.n_envs))
    samplers, layout = build_samplers(config, args)
    runners: dict[str, Callable[[], int]] = {}
    for name, sampler in samplers.items():
        sampler.initialize(make_agent(sampler.env_spaces), seed=0)
        sampler.obtain_samples()  # warm-up
        runners[name] = sampler_runner(sampler, n_batches)
    async_envs = gym.vector.AsyncVectorEnv(
        [functools.partial(make_gym_env, config)] * args.n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    runners["async"] = async_runner(async_envs, make_agent(samplers["serial"].env_spaces), n_batches * args.batch_t)
    runners["async"]()  # warm-up

    rates: dict[str, list[float]] = {name: [] for name in runners}
    load = [other_cpu_load()]
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            steps = run()
            rates[name].append(steps / (time.perf_counter() - start))
    load.append(other_cpu_load())
    for sampler in samplers.values():
        sampler.close()
    async_envs.close()

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"\n{env_id}: {args.n_envs} envs, {n_batches * args.batch_t * args.n_envs} steps per measurement, "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs; {layout}"
    )
    print(f"CPUs busy with other work, before / after the rounds: {load[0]:.2f} / {load[1]:.2f}")
    print(f"{'sampler':<12}{'median steps/s':>16}{'/ serial':>10}   per round")
    for name, values in rates.items():
        per_round = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:<12}{median[name]:>16,.0f}{median[name] / median['serial']:>9.2f}x   {per_round}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=list(DEFAULT_ENVS), help="env ids, measured one after another")
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=None,
        help="env steps (summed over envs) per measurement: one value for every env or one per env "
        f"(default: {DEFAULT_STEPS}, else 40000)",
    )
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-t", type=int, default=128, help="sampler batch length T")
    parser.add_argument("--n-workers", type=int, default=None, help="ParallelStepper env slices (default: its own)")
    parser.add_argument("--workers-per-group", type=int, default=None, help="alternating workers per group")
    parser.add_argument("--envpool-threads", type=int, default=None, help="envpool C++ threads (default: envpool's)")
    args = parser.parse_args()
    steps = args.steps or [DEFAULT_STEPS.get(env_id, 40_000) for env_id in args.env]
    if len(steps) not in (1, len(args.env)):
        parser.error(f"--steps takes one value or one per env ({len(args.env)})")
    torch.set_num_threads(1)

    medians = {env_id: measure(env_id, n, args) for env_id, n in zip(args.env, steps * len(args.env))}
    names = list(dict.fromkeys(name for median in medians.values() for name in median))
    print("\nmedian steps/s (x serial)")
    print(f"{'sampler':<12}" + "".join(f"{env_id:>26}" for env_id in medians))
    for name in names:
        cells = [
            f"{m[name]:>14,.0f} ({m[name] / m['serial']:.2f}x)" if name in m else f"{'-':>22}" for m in medians.values()
        ]
        print(f"{name:<12}" + "".join(f"{cell:>26}" for cell in cells))


if __name__ == "__main__":
    main()
