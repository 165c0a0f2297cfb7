"""``rlfleet`` command line: train, eval, list, bench, sweep, plot.

Every user error (unknown algorithm, env or key; wrong type; bad checkpoint) prints one line
``rlfleet: error: ...`` and exits with status 2, and so does a fault that stops a training run
(`RunFailure`: an exception in an env's step or reset, with its traceback in the run's
``error.log``; NaN or Inf in a loss or the parameters; a dead sampler worker); Ctrl-C during
training writes a checkpoint and exits with status 130. ``rlfleet sweep`` exits with status 1
when one of its runs failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rlfleet.errors import RlfleetError
from rlfleet.utils.extras import require_extra


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlfleet", description="Deep reinforcement learning in PyTorch.")
    parser.add_argument("--version", action="version", version=f"rlfleet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train an agent: rlfleet train ALGO -e ENV [key=value ...]",
        epilog="every config key with its value, type, default and doc: rlfleet config ALGO -e ENV [key=value ...]",
    )
    train.add_argument("algorithm", nargs="?", help="algorithm name (see `rlfleet list`)")
    train.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. algo.lr=3e-4 sampler.batch_B=16")
    train.add_argument(
        "-e", "--env", help="Gymnasium id (CartPole-v1, ALE/Pong-v5, ...), dmc:<domain>-<task> or pkg.module:EnvClass"
    )
    train.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    train.add_argument("--name", default=None, help="run name (default: a timestamp)")
    train.add_argument("--config", default=None, help="YAML config file (e.g. a run's config.yaml)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    train.add_argument("--runs-dir", default="runs", help="root of run directories (default: runs)")
    _add_short_forms(train)

    config = sub.add_parser(
        "config",
        help="the resolved config, each key with its type, default and doc: rlfleet config ALGO -e ENV [key=value ...]",
    )
    config.add_argument("algorithm", nargs="?", help="algorithm name (see `rlfleet list`)")
    config.add_argument("overrides", nargs="*", help="dotted config overrides, as for rlfleet train")
    config.add_argument("-e", "--env", help="env id, as for rlfleet train")
    config.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    config.add_argument("--config", default=None, help="YAML config file (e.g. a run's config.yaml)")
    _add_short_forms(config)

    ev = sub.add_parser("eval", help="evaluate a run's latest checkpoint")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--video", action="store_true", help="record the first episode to RUN_DIR/videos/")
    ev.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the latest)")
    ev.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the episodes' env resets: the first episode's reset takes S (the video episode, with --video),"
        " the rest continue from S+1; the same S and checkpoint give the same episodes (default 12345)",
    )

    sub.add_parser("list", help="list algorithms, presets and env suites")

    bench = sub.add_parser("bench", help="run a learning benchmark suite and write its report")
    bench.add_argument("suite", help="suite name (benchmarks/suites/NAME.yaml) or a YAML path")
    bench.add_argument("--workers", type=int, default=1, help="training runs at a time")
    bench.add_argument("--seeds", type=int, nargs="+", default=None, help="override every entry's seeds")
    bench.add_argument("--runs-dir", default="runs/bench")
    bench.add_argument("--out-dir", default="docs/benchmarks")
    bench.add_argument(
        "--name", default=None, help="run name (default: suite and timestamp); reuse one to finish an interrupted suite"
    )

    sweep = sub.add_parser(
        "sweep", help="run a grid of training runs: rlfleet sweep ALGO -e ENV algo.lr=1e-3,3e-4 seed=0,1"
    )
    sweep.add_argument("algorithm", nargs="?", help="algorithm name (see `rlfleet list`)")
    sweep.add_argument(
        "overrides", nargs="*", help="key=v1,v2,... makes a grid axis (seed=0,1,2 too), key=value a fixed override"
    )
    sweep.add_argument("-e", "--env", help="env id, as for rlfleet train")
    sweep.add_argument(
        "--config", default=None, help="sweep YAML: algorithm, env, grid {key: [values]}, overrides [key=value]"
    )
    sweep.add_argument(
        "--slots",
        type=int,
        default=None,
        help="runs at a time, each pinned to its own core (default: one per core); with --ray local: Ray's CPUs",
    )
    sweep.add_argument("--name", default=None, help="sweep name (default: sweep-<timestamp>)")
    sweep.add_argument("--runs-dir", default="runs", help="root of run directories; the sweep's go to DIR/sweeps/NAME")
    sweep.add_argument(
        "--ray", default=None, metavar="ADDRESS", help="run as Ray tasks on the cluster at ADDRESS (local: a local Ray)"
    )

    plot = sub.add_parser("plot", help="learning curves of run directories (seeds aggregated)")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--x", choices=["steps", "time"], default="steps")
    plot.add_argument("--y", default="EvalReturnAverage", help="a progress.csv column")
    plot.add_argument("--out", default="plot.png")
    return parser


def _version() -> str:
    from rlfleet import __version__

    return __version__


def _add_short_forms(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", default=None, metavar="N", help="short for runner.n_steps=N (2e4 works too)")
    parser.add_argument("--device", default=None, metavar="D", help="short for runner.device=D (cpu, cuda, cuda:1)")


def _with_short_forms(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """``overrides`` with ``--steps`` and ``--device`` as the overrides they stand for (last,
    so they win over the same key given as key=value)."""
    if args.steps is not None:
        overrides = [*overrides, f"runner.n_steps={args.steps}"]
    if args.device is not None:
        overrides = [*overrides, f"runner.device={args.device}"]
    return overrides


def _check_config_early(args: argparse.Namespace, algorithm: str | None, overrides: list[str]) -> None:
    """Keys, types and values checked before torch is imported, so that a typo answers at once
    (`rlfleet.experiment.train` checks everything again, with the env's spaces)."""
    from rlfleet.config.loader import apply_overrides, check_override_keys, load_yaml, resolve, validate

    if algorithm and not args.config:
        check_override_keys(algorithm, overrides)
    if args.resume:
        validate(apply_overrides(load_yaml(Path(args.resume, "config.yaml")), overrides))
    else:
        validate(resolve(algorithm, args.env, overrides, args.config, args.seed))


def _algorithm_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The ALGO positional and the overrides; a first positional holding ``=`` is an override
    (``rlfleet train --resume DIR key=value``, ``rlfleet sweep --config grid.yaml key=v1,v2``)."""
    overrides = list(args.overrides)
    if args.algorithm and "=" in args.algorithm:
        return None, [args.algorithm, *overrides]
    return args.algorithm, overrides


def _train(args: argparse.Namespace) -> int:
    algorithm, overrides = _algorithm_and_overrides(args)
    overrides = _with_short_forms(args, overrides)
    if args.resume:
        if not Path(args.resume, "config.yaml").is_file():
            raise RlfleetError(f"{args.resume} is not a run directory (no config.yaml)")
    _check_config_early(args, algorithm, overrides)
    from rlfleet.experiment import train
    from rlfleet.runners.minibatch_rl import RunAlreadyFinished, TrainingInterrupted

    try:
        run_dir, row = train(
            algorithm,
            args.env,
            overrides,
            seed=args.seed,
            name=args.name,
            config_file=args.config,
            resume=args.resume,
            root=args.runs_dir,
        )
    except TrainingInterrupted as err:
        print(f"rlfleet: {err}", file=sys.stderr)
        return 130
    except RunAlreadyFinished as err:  # nothing to do is not a failure (as SB3's learn() past its budget)
        print(err)
        return 0
    summary = f"steps {row.get('CumSteps', 0)}"
    if "EvalReturnAverage" in row:
        summary += f", eval return {row['EvalReturnAverage']:.2f}"
    if "ReturnAverage" in row:
        summary += f", train return {row['ReturnAverage']:.2f}"
    print(f"run directory: {run_dir}\nfinished: {summary}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from rlfleet.config.describe import describe_config
    from rlfleet.config.loader import MODEL_SPACE_ARGS, check_override_keys, resolve, validate

    algorithm, overrides = _algorithm_and_overrides(args)
    overrides = _with_short_forms(args, overrides)
    if algorithm and not args.config:
        check_override_keys(algorithm, overrides)
    data = resolve(algorithm, args.env, overrides, args.config, args.seed)
    config = validate(data)  # torch-free: a bad key or value answers here
    from rlfleet.algos.registry import get_algorithm
    from rlfleet.envs.make import make_env

    env = make_env(config.env)  # the env's spaces pick the default model and check model.*
    try:
        spaces = env.spaces
    finally:
        env.close()
    config = validate(data, spaces)
    spec = get_algorithm(config.algorithm)
    target = config.model.get("_target_")
    if target:
        from rlfleet.utils.imports import import_object

        model_class = import_object(str(target), what="model")
    else:
        model_class = spec.default_model_class(spaces.action_kind)
    command = " ".join(["rlfleet config", *(a for a in (algorithm, f"-e {args.env}" if args.env else "") if a)])
    print(describe_config(config, spec, model_class, MODEL_SPACE_ARGS, title=f"{command} (resolved, validated)"))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from rlfleet.sweep import SweepSpec, load_sweep_file, merge_command_line, run_sweep

    algorithm, overrides = _algorithm_and_overrides(args)
    spec = load_sweep_file(args.config) if args.config else SweepSpec()
    spec = merge_command_line(spec, algorithm, args.env, overrides)
    return run_sweep(spec, name=args.name, runs_root=args.runs_dir, slots=args.slots, ray_address=args.ray)


def _eval(args: argparse.Namespace) -> int:
    if args.video:
        require_extra("video", "rlfleet eval --video")
    if args.episodes < 1:
        raise RlfleetError(f"--episodes must be at least 1, got {args.episodes}")
    from rlfleet.evaluate import evaluate_run

    seed = {} if args.seed is None else {"seed": args.seed}
    result = evaluate_run(args.run_dir, episodes=args.episodes, video=args.video, checkpoint=args.checkpoint, **seed)
    print(
        f"{result['episodes']} episodes at {result['steps']} steps: return {result['mean']:.2f} "
        f"+/- {result['std']:.2f} (min {result['min']:.2f}, max {result['max']:.2f})"
    )
    if result.get("video"):
        print(f"video: {result['video']}")
    return 0


def _list() -> int:
    from rlfleet.algos.registry import algorithms
    from rlfleet.config.loader import available_presets

    presets = available_presets()
    specs = algorithms()
    width = max(map(len, specs))
    print("algorithms:")
    for name, spec in specs.items():
        print(f"  {name:<{width}} {spec.description}")
        print(f"  {'':<{width}} presets: {', '.join(presets.get(name, [])) or '-'}")
    print("env suites (preset chosen from the env id):")
    print("  classic  Gymnasium classic control (CartPole-v1, Acrobot-v1, MountainCar-v0, Pendulum-v1)")
    print("  box2d    LunarLander-v3, BipedalWalker-v3, CarRacing-v3 (extra: box2d)")
    print("  mujoco   HalfCheetah-v5, Hopper-v5, ... (extra: mujoco)")
    print("  atari    ALE/<Game>-v5 with standard preprocessing (extra: atari)")
    print("  minatar  MinAtar/<Game>-v1 (extra: minatar)")
    print("  dmc      dmc:<domain>-<task>, e.g. dmc:cheetah-run (extra: dmc, needs mujoco < 4)")
    print("  custom   any pkg.module:EnvClass import path")
    return 0


def _cwd_on_path() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` does, so that
    ``-e corridor:Corridor`` finds ``corridor.py`` here from the ``rlfleet`` script too. Spawned
    children (sampler workers, the async sampler process, data-parallel replicas, bench runs)
    inherit ``sys.path`` through multiprocessing's preparation data; sweep runs are
    ``python -m rlfleet`` subprocesses started in this directory."""
    cwd = os.getcwd()
    if not any(os.path.abspath(p or os.curdir) == cwd for p in sys.path[:1]):
        sys.path.insert(0, cwd)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (argparse stops collecting positionals there)
    unknown = [a for a in extra if "=" not in a or a.startswith("-")]
    if unknown or (extra and args.command not in ("train", "sweep", "config")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    if args.command in ("train", "eval", "sweep", "bench", "config"):
        _cwd_on_path()
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "config":
            return _config(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "bench":
            require_extra("plot", "rlfleet bench")
            from rlfleet.bench import SuiteInterrupted, find_suite, load_suite, run_suite

            try:
                report = run_suite(
                    load_suite(find_suite(args.suite)),
                    workers=args.workers,
                    runs_root=args.runs_dir,
                    out_dir=args.out_dir,
                    seeds=args.seeds,
                    name=args.name,
                )
            except SuiteInterrupted as err:
                print(f"rlfleet: {err}", file=sys.stderr)
                return 130
            print(f"report: {report}")
            return 0
        if args.command == "plot":
            require_extra("plot", "rlfleet plot")
            from rlfleet.plotting import plot_runs

            run_dirs = []  # a folder above runs stands for every run below it
            for arg in args.run_dirs:
                below = sorted(p.parent for p in Path(arg).rglob("progress.csv"))
                run_dirs += [arg] if Path(arg, "progress.csv").exists() or not below else below
            print(f"plot: {plot_runs(run_dirs, x=args.x, y=args.y, out=args.out)}")
            return 0
        return _list()
    except RlfleetError as err:
        print(f"rlfleet: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlfleet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
