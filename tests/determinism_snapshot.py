"""Cross-commit determinism snapshot (Tianshou's idea): the numbers of the first updates of every
algorithm, stored in ``tests/data/determinism.json`` and checked by ``test_determinism_snapshot.py``.

A refactor that changes any algorithm's numbers fails that test loudly. Regenerate the file only
when a change is meant to move the numbers, and say so in the commit:

    python tests/determinism_snapshot.py --write

Each case trains a tiny run through the public ``train`` API (sampler, replay, algorithm and
runner all take part) and records every logged column but the timings (losses, diagnostics,
returns, evaluations), and the sum and absolute sum of the trained agent's parameters.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path

SNAPSHOT_FILE = Path(__file__).resolve().parent / "data" / "determinism.json"
TIMING_COLUMNS = {"CumTime", "StepsPerSecond", "UpdatesPerSecond"}
# PPO's share of ratios beyond the clip edge: a count, which a ratio lying on the edge flips under
# float noise between CPUs (ppo-CartPoleNoVel-lstm: 0.015625 against 0.0 at one commit on two
# machines); approx_kl and pi_loss carry the same ratios continuously and stay compared.
THRESHOLD_COUNT_COLUMNS = {"clip_fraction"}
QUIET = ["logger.tensorboard=false", "logger.console=false"]
EVAL_AT_END = ["runner.eval_episodes=2", "runner.eval_envs=2"]
ON_POLICY = [
    "sampler.batch_T=16",
    "sampler.batch_B=4",
    "runner.n_steps=256",
    "runner.log_interval_steps=64",
    "runner.eval_interval_steps=256",
]
OFF_POLICY = [
    "sampler.batch_T=16",
    "sampler.batch_B=2",
    "runner.n_steps=320",
    "runner.log_interval_steps=64",
    "runner.eval_interval_steps=320",
    "algo.learning_starts=64",
    "algo.batch_size=32",
    "algo.replay_ratio=4",
]
RECURRENT = ["model.core=lstm", "model.core_size=16", "model.hidden_sizes=[16]", "model.head_sizes=[16]"]
# r2d2 / rdqn: QModel with an LSTM core on short sequences (r2d2 burns in 10 steps, its memory
# preset; rdqn none)
SEQUENCES = [
    "model.core_size=16",
    "model.hidden_sizes=[16, 16]",
    "replay.sequence_length=4",
    "replay.sequence_overlap=2",
    "algo.n_step=2",
    "algo.batch_size=4",
    "algo.target_update_interval=10",
]
# ppo with a DNC or GTrXL core (the memory preset's annealing off)
MEMORY_CORE = [
    "model.core_size=16",
    "model.hidden_sizes=[16]",
    "model.head_sizes=[16]",
    "algo.minibatch_size=32",
    "algo.epochs=2",
    "algo.sequence_length=8",
    "algo.anneal_lr=false",
    "algo.anneal_clip=false",
    "env.normalize_obs=false",
]
# dqn with Retrace targets and reactor: feed-forward networks on short sequences, no burn-in
FEED_FORWARD_SEQUENCES = [
    "model.hidden_sizes=[16, 16]",
    "replay.kind=sequence",
    "replay.burn_in=0",
    "replay.sequence_length=4",
    "replay.sequence_overlap=2",
    "algo.n_step=2",
    "algo.batch_size=4",
]
DISCRETE_VALUE = ["dqn", "c51", "rainbow", "qrdqn", "iqn", "fqf", "mdqn", "miqn", "sac_discrete"]
CONTINUOUS = ["ddpg", "td3", "sac", "tac"]

# name -> (algorithm, env id, overrides)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "ppo-CartPole": ("ppo", "CartPole-v1", [*ON_POLICY, "algo.minibatch_size=32", "algo.epochs=2"]),
    "ppo-Pendulum": ("ppo", "Pendulum-v1", [*ON_POLICY, "algo.minibatch_size=32", "algo.epochs=2"]),
    "a2c-CartPole": ("a2c", "CartPole-v1", ON_POLICY),
    "a2c-Pendulum": ("a2c", "Pendulum-v1", ON_POLICY),
    "impala-CartPole": ("impala", "CartPole-v1", ON_POLICY),
    "ppo-CartPole-parallel": (
        "ppo",
        "CartPole-v1",
        [*ON_POLICY, "algo.minibatch_size=32", "algo.epochs=2", "sampler.kind=parallel", "sampler.n_workers=2"],
    ),
    **{f"{a}-CartPole": (a, "CartPole-v1", OFF_POLICY) for a in DISCRETE_VALUE},
    "dqn-CartPole-per-nstep": ("dqn", "CartPole-v1", [*OFF_POLICY, "replay.kind=prioritized", "algo.n_step=3"]),
    **{f"{a}-Pendulum": (a, "Pendulum-v1", OFF_POLICY) for a in CONTINUOUS},
    "sac-Pendulum-per": ("sac", "Pendulum-v1", [*OFF_POLICY, "replay.kind=prioritized"]),
    "ppo-CartPoleNoVel-lstm": (
        "ppo",
        "CartPoleNoVel-v1",
        [
            *ON_POLICY,
            *RECURRENT,
            "algo.minibatch_size=32",
            "algo.epochs=2",
            "algo.sequence_length=8",
            "env.normalize_obs=false",
        ],
    ),
    "a2c-CartPoleNoVel-gru": ("a2c", "CartPoleNoVel-v1", [*ON_POLICY, *RECURRENT, "model.core=gru"]),
    **{f"{a}-CartPoleNoVel": (a, "CartPoleNoVel-v1", [*OFF_POLICY, *SEQUENCES]) for a in ("r2d2", "rdqn")},
    "r2d2-CartPoleNoVel-retrace": ("r2d2", "CartPoleNoVel-v1", [*OFF_POLICY, *SEQUENCES, "algo.target=retrace"]),
    "dqn-CartPole-retrace": ("dqn", "CartPole-v1", [*OFF_POLICY, *FEED_FORWARD_SEQUENCES, "algo.target=retrace"]),
    "reactor-CartPole": ("reactor", "CartPole-v1", [*OFF_POLICY, *FEED_FORWARD_SEQUENCES, "model.n_atoms=11"]),
    "reactor-CartPoleNoVel-lstm": (
        "reactor",
        "CartPoleNoVel-v1",
        [*OFF_POLICY, *SEQUENCES, "model.core=lstm", "model.n_atoms=11"],
    ),
    # memory cores and network-zoo blocks (model.encoder)
    "ppo-CartPoleNoVel-dnc": (
        "ppo",
        "CartPoleNoVel-v1",
        [*ON_POLICY, *MEMORY_CORE, "model.core=dnc", "model.core_options={memory_slots: 4, word_size: 4}"],
    ),
    "ppo-CartPoleNoVel-gtrxl": (
        "ppo",
        "CartPoleNoVel-v1",
        [*ON_POLICY, *MEMORY_CORE, "model.core=gtrxl", "model.core_options={layers: 1, memory_length: 8}"],
    ),
    "ppo-MinAtar-blocks": (
        "ppo",
        "MinAtar/Breakout-v1",
        [
            *ON_POLICY,
            "algo.minibatch_size=32",
            "algo.epochs=2",
            "model.encoder=[{kind: random_conv}, {kind: impala_cnn, channels: [4, 8], feature_size: null},"
            " {kind: cbam, reduction: 2}, {kind: mlp, hidden_sizes: [16], spectral_norm: true}]",
        ],
    ),
    # the PPO family: PPG (an auxiliary phase every 2 batches), DAAC and IDAAC, PPO with RND
    "ppg-CartPole": (
        "ppg",
        "CartPole-v1",
        [
            *ON_POLICY,
            "algo.minibatch_size=32",
            "algo.n_policy_iterations=2",
            "algo.aux_epochs=2",
            "algo.aux_minibatch_size=32",
        ],
    ),
    "daac-CartPole": ("daac", "CartPole-v1", [*ON_POLICY, "algo.minibatch_size=32", "algo.value_epochs=2"]),
    "idaac-CartPole": (
        "daac",
        "CartPole-v1",
        [*ON_POLICY, "algo.minibatch_size=32", "algo.value_epochs=2", "algo.idaac=true"],
    ),
    "ppo-DeepSea-rnd": (
        "ppo",
        "DeepSea-v0",
        [*ON_POLICY, "env.kwargs={size: 6}", "algo.minibatch_size=32", "algo.epochs=2", "algo.rnd.warmup_steps=64"],
    ),
    "dqn-MinAtar-spectral-norm": (
        "dqn",
        "MinAtar/Breakout-v1",
        [
            *OFF_POLICY,
            "model.encoder=[{kind: conv, channels: [4], kernels: [3], strides: [1]},"
            " {kind: mlp, hidden_sizes: [16], spectral_norm: true}]",
        ],
    ),
}


def run_case(algorithm: str, env_id: str, overrides: list[str]) -> dict[str, list[float]]:
    """Train one tiny run and return its recorded numbers."""
    import torch

    from rlfleet.checkpoint import Checkpointer, load_checkpoint
    from rlfleet.experiment import train

    with tempfile.TemporaryDirectory() as root:
        run_dir, _ = train(algorithm, env_id, [*overrides, *QUIET, *EVAL_AT_END], seed=3, name="snap", root=root)
        with open(Path(run_dir) / "progress.csv") as f:
            rows = list(csv.DictReader(f))
        state = load_checkpoint(Checkpointer(Path(run_dir) / "checkpoints").latest())
    record: dict[str, list[float]] = {}
    for key in sorted(rows[-1]):
        if key not in TIMING_COLUMNS | THRESHOLD_COUNT_COLUMNS:
            record[key] = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    params = [v.double() for k, v in sorted(state["agent"]["model"].items()) if torch.is_floating_point(v)]
    record["param_sum"] = [float(sum(p.sum() for p in params))]
    record["param_abs_sum"] = [float(sum(p.abs().sum() for p in params))]
    return record


def compare(expected: dict[str, list[float]], actual: dict[str, list[float]], rtol: float = 1e-5) -> list[str]:
    """Differences between two records, one line each (empty when they agree).

    ``abs_tol`` 1e-6: a float32 figure formed as ``1 - x`` near 0 (explained variance) carries an
    absolute rounding error of about float32's epsilon, 1.2e-7, which differs between CPUs (the
    DNC case's explained variance moved by 1.19e-7 between two machines at the same commit)."""
    problems = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual or key not in expected:
            problems.append(f"{key}: only in {'snapshot' if key in expected else 'this run'}")
            continue
        a, e = actual[key], expected[key]
        if len(a) != len(e) or any(not math.isclose(x, y, rel_tol=rtol, abs_tol=1e-6) for x, y in zip(a, e)):
            problems.append(f"{key}: snapshot {e}, this run {a}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="record the snapshot file anew")
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    args = parser.parse_args(argv)
    names = args.cases or list(CASES)
    stored = json.loads(SNAPSHOT_FILE.read_text()) if SNAPSHOT_FILE.exists() else {}
    failed = 0
    for name in names:
        record = run_case(*CASES[name])
        if args.write:
            stored[name] = record
            print(f"{name}: recorded {len(record)} series")
        else:
            problems = compare(stored.get(name, {}), record)
            failed += bool(problems)
            print(f"{name}: {'ok' if not problems else 'DIFFERS'}")
            for line in problems:
                print(f"  {line}")
    if args.write:
        SNAPSHOT_FILE.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT_FILE.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
