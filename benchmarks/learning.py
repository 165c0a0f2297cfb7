"""Train one algorithm on one env over several seeds and report evaluation returns.

    python benchmarks/learning.py ppo CartPole-v1 --seeds 0 1 2 --threshold 475 --steps 100000

For each seed: the best and the final deterministic evaluation return within the budget and
the first step at which the threshold was reached; then the median and spread over seeds.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time

from rlfleet.experiment import train


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("algorithm")
    parser.add_argument("env")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--steps", type=int, default=None, help="budget (default: the preset's)")
    parser.add_argument("--runs-dir", default="runs/bench")
    args = parser.parse_args()

    overrides = list(args.overrides) + ["logger.console=false", "logger.tensorboard=false"]
    if args.steps:
        overrides.append(f"runner.n_steps={args.steps}")
    name = time.strftime("bench-%Y%m%d-%H%M%S")
    best, final, reached = [], [], []
    for seed in args.seeds:
        start = time.time()
        run_dir, _ = train(args.algorithm, args.env, overrides, seed=seed, name=name, root=args.runs_dir)
        with open(run_dir / "progress.csv", newline="") as f:
            evals = [
                (int(r["CumSteps"]), float(r["EvalReturnAverage"]))
                for r in csv.DictReader(f)
                if r.get("EvalReturnAverage")
            ]
        budget = args.steps or max(s for s, _ in evals)
        within = [(s, r) for s, r in evals if s <= budget + 1024]  # the last batch may end just past the budget
        hit = next((s for s, r in within if r >= args.threshold), None)
        best.append(max(r for _, r in within))
        final.append(within[-1][1])
        reached.append(hit)
        print(
            f"seed {seed}: best eval {best[-1]:.1f}, final eval {final[-1]:.1f}, "
            f"threshold {args.threshold} reached at {hit if hit is not None else 'never'} steps, "
            f"{time.time() - start:.0f} s ({run_dir})",
            flush=True,
        )
    passed = sum(h is not None for h in reached)
    print(
        f"{args.algorithm} {args.env}: best eval median {statistics.median(best):.1f} "
        f"[min {min(best):.1f}, max {max(best):.1f}]; final eval median {statistics.median(final):.1f} "
        f"[min {min(final):.1f}, max {max(final):.1f}]; reached {args.threshold} in {passed}/{len(args.seeds)} seeds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
