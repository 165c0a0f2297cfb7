"""Env steps/s and peak memory of Ape-X on a local Ray with 1 and 2 actor workers, beside
rlfleet's asynchronous DQN (one sampler process), in one run on this machine.

    python benchmarks/ray_throughput.py --steps 30000 --out docs/benchmarks/ray-throughput.md

Each case is ``rlfleet train`` in a subprocess on CartPole-v1 with the same network, batch shape
(64 steps x 4 envs per sampler or actor), replay ratio (8) and learning start (1,000 steps), no
evaluation. Steps/s is the final progress row's ``CumSteps / CumTime`` (the run's own clock, Ray
start-up excluded); peak memory is the largest sum of the resident set sizes of the run's
process tree (the learner, and for Ray its raylet, GCS, workers and actors), sampled every 0.2 s.
Only ratios between the rows mean anything: the same machine type measures up to 3x apart.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = [
    "sampler.batch_T=64",
    "sampler.batch_B=4",
    "model.hidden_sizes=[256, 256]",
    "algo.replay_ratio=8",
    "algo.learning_starts=1000",
    "algo.batch_size=64",
    "runner.eval_interval_steps=0",
    "runner.log_interval_steps=5120",
    "logger.tensorboard=false",
]
CASES = {
    "dqn, runner.kind=async (1 sampler process)": ["dqn", "runner.kind=async"],
    "apex, 1 actor worker": ["apex", "runner.n_actors=1"],
    "apex, 2 actor workers": ["apex", "runner.n_actors=2"],
}


def tree_rss(root: int) -> int:
    """Resident bytes of process ``root`` and all its descendants (from ``ps``)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    children: dict[int, list[int]] = {}
    rss = {}
    for pid, ppid, kb in rows:
        children.setdefault(ppid, []).append(pid)
        rss[pid] = kb
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0) * 1024
        stack += children.get(pid, [])
    return total


def run_case(algorithm: str, overrides: list[str], steps: int, root: Path) -> tuple[float, float]:
    """(env steps/s, peak MB) of one training run."""
    cmd = [sys.executable, "-m", "rlfleet", "train", algorithm, "-e", "CartPole-v1", "--runs-dir", str(root)]
    cmd += ["--name", "tp", *COMMON, *overrides, f"runner.n_steps={steps}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read()[-2000:]}")
    progress = next(root.glob(f"CartPole-v1/{algorithm}/tp/seed0/progress.csv"))
    with open(progress) as f:
        last = list(csv.DictReader(f))[-1]
    return float(last["CumSteps"]) / float(last["CumTime"]), peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for label, (algorithm, *overrides) in CASES.items():
        with tempfile.TemporaryDirectory() as root:
            sps, peak = run_case(algorithm, overrides, args.steps, Path(root))
        rows.append(f"| {label} | {args.steps:,} | {sps:,.0f} | {peak:,.0f} |")
        print(rows[-1], flush=True)
    table = "\n".join(["| case | env steps | env steps/s | peak memory (MB) |", "|---|---|---|---|", *rows])
    if args.out is not None:
        args.out.write_text(
            "# Ape-X on Ray: throughput and memory\n\n"
            f"Reproduce: `python benchmarks/ray_throughput.py --steps {args.steps}`. "
            "CartPole-v1, 64 x 4 batches per sampler or actor, replay ratio 8 (so the learner's updates, "
            "not the envs, bound the rate); steps/s from the run's own clock; peak memory of the whole "
            "process tree.\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
