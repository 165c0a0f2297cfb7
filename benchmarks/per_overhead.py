"""Wall-time cost of prioritized replay against uniform replay for DQN at the same settings.

    python benchmarks/per_overhead.py --env CartPole-v1 --steps 50000 --rounds 2

Runs DQN with the env's shipped preset, uniform then prioritized (A B A B ...), each in a fresh
subprocess, with evaluation off, and prints the training time of each and the median ratio
prioritized / uniform. Everything but ``replay.kind`` is identical.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

WORKER = """
import json, sys, torch
from rlfleet.experiment import train
torch.set_num_threads(1)
env, steps, prioritized, root = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
overrides = [f"runner.n_steps={steps}", "runner.eval_interval_steps=0", "runner.torch_threads=1",
             "logger.console=false", "logger.tensorboard=false",
             f"replay.kind={'prioritized' if prioritized else 'uniform'}"]
_, row = train("dqn", env, overrides, seed=0, name="per" if prioritized else "uniform", root=root)
print(json.dumps({"train_time": row["CumTime"], "updates": row["CumUpdates"]}))
"""


def run(env: str, steps: int, prioritized: bool, root: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, env, str(steps), "1" if prioritized else "0", root],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.rounds):
            uniform = run(args.env, args.steps, False, f"{root}/{i}")
            per = run(args.env, args.steps, True, f"{root}/{i}")
            ratios.append(per["train_time"] / uniform["train_time"])
            print(
                f"round {i + 1}: uniform {uniform['train_time']:.1f} s, prioritized {per['train_time']:.1f} s "
                f"({per['updates']} updates each), ratio {ratios[-1]:.2f}",
                flush=True,
            )
    median = statistics.median(ratios)
    print(f"DQN on {args.env}, {args.steps} steps: prioritized / uniform wall time, median {median:.2f}")


if __name__ == "__main__":
    main()
