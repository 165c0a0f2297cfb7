"""Training speed of rlfleet against Stable-Baselines3 on the same env, hyperparameters and budget.

    python benchmarks/speed_vs_sb3.py --case ppo-cartpole --rounds 5 --out docs/benchmarks/speed.md
    python benchmarks/speed_vs_sb3.py --case dqn-cartpole --rounds 5
    python benchmarks/speed_vs_sb3.py --case ppo-cartpole --rounds 1 --steps 2048 --hp n_steps=64 --hp n_epochs=1

Each round trains rlfleet, then SB3 (A B A B ...), each in a fresh subprocess of this script
(``--worker``), so memory, imports and torch state never leak from one run into the next. Both
workers call ``torch.set_num_threads(--threads)`` (and get the same ``OMP_NUM_THREADS``).

What is measured, identically for both libraries:

* Evaluations: deterministic (greedy) policy, ``eval_episodes`` episodes over ``eval_envs`` envs
  of their own, at step 0, after every update whose batch crosses a multiple of
  ``eval_interval`` env steps, and after the last update (rlfleet's ``MinibatchRlEval``
  schedule; in SB3 a callback evaluates at ``on_training_start``, ``on_rollout_start`` -- which
  comes right after the previous rollout's update -- and ``on_training_end``).
* Training time: wall time from the end of the step-0 evaluation to the start of the final
  evaluation, minus the intermediate evaluations. Setup (imports, env and model construction),
  every evaluation and what comes after the last update (rlfleet's final checkpoint) are excluded.
  env steps/s = env steps trained / training time.
* Time to threshold: training time (as above, evaluations excluded) at the first evaluation whose
  average return reaches the case's threshold.
* Peak RSS: ``ru_maxrss`` of the worker subprocess (``os.wait4``), imports included.
* Final eval return: the evaluation after the last update.

The shared hyperparameters of a case live in one dict (``Case.hp``); ``--hp key=value``
overrides one of them, and both libraries' settings are derived from that dict, so they cannot
drift apart.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("rlfleet", "sb3")


# --------------------------------------------------------------------------------------------
# Cases: shared hyperparameters and their mapping onto each library
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One benchmark: an env, the hyperparameters both libraries share, and how to build each run.

    Attributes:
        name: ``--case`` value.
        env_id: Gymnasium id.
        rlfleet_algorithm: rlfleet algorithm name (``rlfleet train ALGO``).
        hp: shared hyperparameters, in SB3's vocabulary; ``total_steps``, ``threshold``,
            ``eval_interval``, ``eval_episodes`` and ``eval_envs`` are used by both workers.
        rlfleet_overrides: ``f(hp) -> list of dotted overrides`` for ``rlfleet.experiment.train``.
        sb3_model: ``f(hp, env, seed) -> SB3 model`` (``env``: the training VecEnv).
        sb3_n_envs: ``f(hp) -> training envs`` of the SB3 VecEnv.
        variants: further rlfleet runs measured in the same rounds, by label: ``f(hp) -> dotted
            overrides`` added to ``rlfleet_overrides(hp)`` (e.g. the feed-forward model beside a
            recurrent one).
        peer: the peer's name in reports.
    """

    name: str
    env_id: str
    rlfleet_algorithm: str
    hp: dict[str, Any]
    rlfleet_overrides: Callable[[dict[str, Any]], list[str]]
    sb3_model: Callable[[dict[str, Any], Any, int], Any]
    sb3_n_envs: Callable[[dict[str, Any]], int] = field(default=lambda hp: 1)
    variants: dict[str, Callable[[dict[str, Any]], list[str]]] = field(default_factory=dict)
    peer: str = "SB3"

    @property
    def libraries(self) -> tuple[str, ...]:
        """What each round runs, in order: rlfleet, the peer (``sb3``), then the variants."""
        return (*LIBRARIES, *self.variants)


def num(value: float) -> str:
    """A float as rlfleet's override parser (YAML 1.1) reads it back as a float: ``1e-05`` would
    be a string there, ``1.0e-05`` is a float."""
    text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


# ----- ppo-cartpole: SB3's PPO defaults ------------------------------------------------------

PPO_CARTPOLE_HP: dict[str, Any] = dict(
    total_steps=100_000,
    threshold=475.0,
    eval_interval=10_000,
    eval_episodes=10,
    eval_envs=5,
    n_envs=8,  # DummyVecEnv
    n_steps=2048,  # per env and rollout
    batch_size=64,
    n_epochs=10,
    learning_rate=3e-4,
    gamma=0.99,
    gae_lambda=0.95,
    clip_range=0.2,
    ent_coef=0.0,
    vf_coef=0.5,
    max_grad_norm=0.5,
)


def ppo_rlfleet_overrides(hp: dict[str, Any]) -> list[str]:
    # SB3 PPO -> rlfleet PPO, one for one. The rlfleet preset for CartPole (classic.yaml) tunes
    # lr/annealing/epochs/..., so every field the preset or SB3 sets is overridden explicitly.
    return [
        f"sampler.batch_T={hp['n_steps']}",  # n_steps per env per rollout
        f"sampler.batch_B={hp['n_envs']}",  # n_envs (serial sampler, like DummyVecEnv)
        f"algo.minibatch_size={hp['batch_size']}",  # batch_size: transitions per gradient step
        f"algo.epochs={hp['n_epochs']}",
        f"algo.lr={num(hp['learning_rate'])}",
        "algo.anneal_lr=false",  # SB3: constant learning_rate
        f"algo.clip_range={num(hp['clip_range'])}",
        "algo.anneal_clip=false",  # SB3: constant clip_range
        "algo.clip_value=0.0",  # SB3 clip_range_vf=None
        f"algo.gamma={num(hp['gamma'])}",
        f"algo.gae_lambda={num(hp['gae_lambda'])}",
        f"algo.entropy_coef={num(hp['ent_coef'])}",
        f"algo.value_coef={num(hp['vf_coef'])}",
        f"algo.max_grad_norm={num(hp['max_grad_norm'])}",
        "algo.normalize_advantage=true",  # SB3 normalize_advantage=True (per minibatch)
        "algo.target_kl=0.0",  # SB3 target_kl=None
        f"algo.optimizer_eps={num(1e-5)}",  # SB3 ActorCriticPolicy sets Adam eps=1e-5
        # SB3 MlpPolicy for PPO: separate pi/vf MLPs 64x64 tanh, orthogonal init (rlfleet's default).
        "model.hidden_sizes=[64,64]",
        "model.activation=tanh",
        "env.normalize_obs=false",
        "env.normalize_reward=false",
    ]


def ppo_sb3_model(hp: dict[str, Any], env: Any, seed: int) -> Any:
    from stable_baselines3 import PPO

    return PPO(
        "MlpPolicy",
        env,
        learning_rate=hp["learning_rate"],
        n_steps=hp["n_steps"],
        batch_size=hp["batch_size"],
        n_epochs=hp["n_epochs"],
        gamma=hp["gamma"],
        gae_lambda=hp["gae_lambda"],
        clip_range=hp["clip_range"],
        clip_range_vf=None,
        normalize_advantage=True,
        ent_coef=hp["ent_coef"],
        vf_coef=hp["vf_coef"],
        max_grad_norm=hp["max_grad_norm"],
        target_kl=None,
        seed=seed,
        device="cpu",
        verbose=0,
    )


# ----- dqn-cartpole: rl-baselines3-zoo's tuned DQN CartPole-v1 ------------------------------

DQN_CARTPOLE_HP: dict[str, Any] = dict(
    total_steps=50_000,
    threshold=475.0,
    eval_interval=10_000,
    eval_episodes=10,
    eval_envs=5,
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,  # env steps (SB3)
    train_freq=256,  # env steps between training phases
    gradient_steps=128,  # updates per training phase
    exploration_fraction=0.16,
    exploration_initial_eps=1.0,
    exploration_final_eps=0.04,
    max_grad_norm=10.0,  # SB3 DQN default
    hidden=256,  # net_arch=[hidden, hidden], relu
)


def dqn_rlfleet_overrides(hp: dict[str, Any]) -> list[str]:
    # SB3 DQN -> rlfleet DQN:
    # * one env; a sampler batch of train_freq steps is one SB3 rollout, and rlfleet's update
    #   phase after it is SB3's training phase.
    # * rlfleet does replay_ratio * T * B / batch_size updates per batch, so
    #   replay_ratio = gradient_steps * batch_size / train_freq (128 * 64 / 256 = 32).
    # * SB3 copies the target every target_update_interval *env steps*, i.e. during collection,
    #   when the online net does not change: with target_update_interval <= train_freq the target
    #   equals the online net as it was at the end of the previous training phase. rlfleet counts
    #   target_update_interval in *updates*: copying every gradient_steps updates (= at the end of
    #   each phase) gives the same targets.
    # * SB3's DQN is vanilla (max over the target net), so double=false; 1-step returns, Huber
    #   (smooth L1, delta 1) loss, max_grad_norm 10, Adam eps 1e-8, hard target copies (tau 1).
    # * exploration: SB3 anneals epsilon linearly over exploration_fraction * total_timesteps env
    #   steps (updated every step; rlfleet updates it once per sampler batch of train_freq steps).
    #   Before learning_starts SB3 acts uniformly at random; rlfleet's epsilon is ~1 there.
    # * learning_starts: SB3 trains once num_timesteps > learning_starts, rlfleet once
    #   env_steps >= learning_starts; with 256-step batches both first train at 1024 steps.
    if hp["target_update_interval"] > hp["train_freq"]:
        raise SystemExit("dqn mapping assumes target_update_interval <= train_freq (one copy per training phase)")
    replay_ratio = hp["gradient_steps"] * hp["batch_size"] / hp["train_freq"]
    if round(replay_ratio * hp["train_freq"] / hp["batch_size"]) != hp["gradient_steps"]:
        raise SystemExit(f"gradient_steps {hp['gradient_steps']} is not reachable with rlfleet's replay_ratio")
    hidden = int(hp["hidden"])
    return [
        f"sampler.batch_T={hp['train_freq']}",
        "sampler.batch_B=1",
        f"algo.lr={num(hp['learning_rate'])}",
        f"algo.batch_size={hp['batch_size']}",
        f"replay.size={hp['buffer_size']}",
        f"algo.learning_starts={hp['learning_starts']}",
        f"algo.gamma={num(hp['gamma'])}",
        f"algo.replay_ratio={num(replay_ratio)}",
        f"algo.target_update_interval={hp['gradient_steps']}",
        "algo.target_tau=1.0",
        "algo.double=false",
        "algo.n_step=1",
        "algo.loss=huber",
        "algo.huber_delta=1.0",
        f"algo.max_grad_norm={num(hp['max_grad_norm'])}",
        f"algo.optimizer_eps={num(1e-8)}",
        f"agent.eps_start={num(hp['exploration_initial_eps'])}",
        f"agent.eps_end={num(hp['exploration_final_eps'])}",
        f"agent.eps_steps={int(hp['exploration_fraction'] * hp['total_steps'])}",
        "agent.eps_eval=0.0",
        f"model.hidden_sizes=[{hidden},{hidden}]",
        "model.activation=relu",
        "model.dueling=false",
        "env.normalize_obs=false",
        "env.normalize_reward=false",
    ]


def dqn_sb3_model(hp: dict[str, Any], env: Any, seed: int) -> Any:
    from stable_baselines3 import DQN

    hidden = int(hp["hidden"])
    return DQN(
        "MlpPolicy",
        env,
        learning_rate=hp["learning_rate"],
        buffer_size=hp["buffer_size"],
        learning_starts=hp["learning_starts"],
        batch_size=hp["batch_size"],
        gamma=hp["gamma"],
        train_freq=hp["train_freq"],
        gradient_steps=hp["gradient_steps"],
        target_update_interval=hp["target_update_interval"],
        exploration_fraction=hp["exploration_fraction"],
        exploration_initial_eps=hp["exploration_initial_eps"],
        exploration_final_eps=hp["exploration_final_eps"],
        max_grad_norm=hp["max_grad_norm"],
        policy_kwargs=dict(net_arch=[hidden, hidden]),
        seed=seed,
        device="cpu",
        verbose=0,
    )


# ----- sac-pendulum: rl-baselines3-zoo's tuned SAC Pendulum-v1 ---------------------------------

SAC_PENDULUM_HP: dict[str, Any] = dict(
    total_steps=20_000,
    threshold=-200.0,
    eval_interval=2_000,
    eval_episodes=10,
    eval_envs=5,
    learning_rate=1e-3,  # the zoo's only change from SB3's SAC defaults below
    buffer_size=1_000_000,
    learning_starts=100,
    batch_size=256,
    tau=0.005,
    gamma=0.99,
    train_freq=1,
    gradient_steps=1,
    hidden=256,  # net_arch=[hidden, hidden], relu, for the actor and both critics
)


def sac_rlfleet_overrides(hp: dict[str, Any]) -> list[str]:
    # SB3 SAC -> rlfleet SAC:
    # * one env; a sampler batch of train_freq steps, then gradient_steps updates:
    #   replay_ratio = gradient_steps * batch_size / train_freq.
    # * ent_coef="auto" (initial value 1.0, target entropy -dim(A)) -> auto_alpha with alpha 1.0;
    #   one learning rate for actor, critics and temperature; targets updated every step.
    # * SB3 acts uniformly at random for the first learning_starts steps -> agent.random_action_steps.
    hidden = int(hp["hidden"])
    lr = num(hp["learning_rate"])
    return [
        f"sampler.batch_T={hp['train_freq']}",
        "sampler.batch_B=1",
        f"algo.actor_lr={lr}",
        f"algo.critic_lr={lr}",
        f"algo.alpha_lr={lr}",
        f"algo.batch_size={hp['batch_size']}",
        f"replay.size={hp['buffer_size']}",
        f"algo.learning_starts={hp['learning_starts']}",
        f"algo.replay_ratio={num(hp['gradient_steps'] * hp['batch_size'] / hp['train_freq'])}",
        f"algo.gamma={num(hp['gamma'])}",
        f"algo.tau={num(hp['tau'])}",
        "algo.auto_alpha=true",
        "algo.alpha=1.0",
        "algo.target_update_interval=1",
        "algo.policy_delay=1",
        "algo.n_step=1",
        f"agent.random_action_steps={hp['learning_starts']}",
        f"model.hidden_sizes=[{hidden},{hidden}]",
        "model.activation=relu",
        "env.normalize_obs=false",
        "env.normalize_reward=false",
    ]


def sac_sb3_model(hp: dict[str, Any], env: Any, seed: int) -> Any:
    from stable_baselines3 import SAC

    hidden = int(hp["hidden"])
    return SAC(
        "MlpPolicy",
        env,
        learning_rate=hp["learning_rate"],
        buffer_size=hp["buffer_size"],
        learning_starts=hp["learning_starts"],
        batch_size=hp["batch_size"],
        tau=hp["tau"],
        gamma=hp["gamma"],
        train_freq=hp["train_freq"],
        gradient_steps=hp["gradient_steps"],
        ent_coef="auto",
        policy_kwargs=dict(net_arch=[hidden, hidden]),
        seed=seed,
        device="cpu",
        verbose=0,
    )


# ----- rppo-cartpolenovel: rl-baselines3-zoo's tuned RecurrentPPO CartPoleNoVel-v1 ------------

RPPO_CARTPOLENOVEL_HP: dict[str, Any] = dict(
    PPO_CARTPOLE_HP,
    total_steps=100_000,
    n_envs=8,
    n_steps=32,
    batch_size=256,
    n_epochs=20,
    learning_rate=1e-3,  # rl-zoo anneals it linearly (lin_0.001) ...
    clip_range=0.2,  # ... and the clip range (lin_0.2): both libraries anneal them here
    gamma=0.98,
    gae_lambda=0.8,
    lstm_hidden_size=256,  # sb3-contrib MlpLstmPolicy defaults: LSTM 256, then pi/vf MLPs 64x64 tanh
)


def rppo_rlfleet_overrides(hp: dict[str, Any]) -> list[str]:
    # sb3-contrib RecurrentPPO -> rlfleet PPO with an LSTM core: the observation goes straight into
    # the LSTM (FlattenExtractor), the actor and the critic each have their own LSTM
    # (enable_critic_lstm=True, shared_lstm=False), then 64x64 tanh MLPs; rlfleet cuts no
    # sequences shorter than n_steps (sb3-contrib splits them at episode starts, rlfleet resets
    # inside the unroll: the same computation).
    ppo = [o for o in ppo_rlfleet_overrides(hp) if not o.startswith(("algo.anneal", "model.hidden_sizes"))]
    return [
        *ppo,
        "algo.anneal_lr=true",
        "algo.anneal_clip=true",
        "model.core=lstm",
        f"model.core_size={int(hp['lstm_hidden_size'])}",
        "model.critic_core=own",
        "model.hidden_sizes=[]",
        "model.head_sizes=[64,64]",
    ]


def rppo_sb3_model(hp: dict[str, Any], env: Any, seed: int) -> Any:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.utils import LinearSchedule

    return RecurrentPPO(
        "MlpLstmPolicy",
        env,
        learning_rate=LinearSchedule(hp["learning_rate"], 0.0, 1.0),
        n_steps=hp["n_steps"],
        batch_size=hp["batch_size"],
        n_epochs=hp["n_epochs"],
        gamma=hp["gamma"],
        gae_lambda=hp["gae_lambda"],
        clip_range=LinearSchedule(hp["clip_range"], 0.0, 1.0),
        clip_range_vf=None,
        normalize_advantage=True,
        ent_coef=hp["ent_coef"],
        vf_coef=hp["vf_coef"],
        max_grad_norm=hp["max_grad_norm"],
        target_kl=None,
        policy_kwargs=dict(lstm_hidden_size=int(hp["lstm_hidden_size"])),
        seed=seed,
        device="cpu",
        verbose=0,
    )


def feed_forward_overrides(hp: dict[str, Any]) -> list[str]:
    """The same run without the LSTM: a 64x64 MLP per head straight on the observation."""
    return ["model.core=none"]


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            "ppo-cartpole",
            "CartPole-v1",
            "ppo",
            PPO_CARTPOLE_HP,
            ppo_rlfleet_overrides,
            ppo_sb3_model,
            lambda hp: int(hp["n_envs"]),
        ),
        Case("dqn-cartpole", "CartPole-v1", "dqn", DQN_CARTPOLE_HP, dqn_rlfleet_overrides, dqn_sb3_model),
        Case("sac-pendulum", "Pendulum-v1", "sac", SAC_PENDULUM_HP, sac_rlfleet_overrides, sac_sb3_model),
        Case(
            "rppo-cartpolenovel",
            "CartPoleNoVel-v1",
            "ppo",
            RPPO_CARTPOLENOVEL_HP,
            rppo_rlfleet_overrides,
            rppo_sb3_model,
            lambda hp: int(hp["n_envs"]),
            variants={"rlfleet-ff": feed_forward_overrides},
            peer="sb3-contrib",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Workers (run inside a fresh subprocess)
# --------------------------------------------------------------------------------------------


class EvalClock:
    """Collects ``(env_steps, start, end, return)`` of each evaluation and turns them into the
    training time at each one (evaluations excluded)."""

    def __init__(self) -> None:
        self.evals: list[tuple[int, float, float, float]] = []

    def record(self, steps: int, start: float, end: float, ret: float) -> None:
        self.evals.append((int(steps), start, end, float(ret)))

    def summary(self, threshold: float) -> dict[str, Any]:
        if len(self.evals) < 2:
            raise RuntimeError(f"expected evaluations at step 0 and at the end, got {len(self.evals)}")
        train_start = self.evals[0][2]
        curve = []  # (steps, training seconds before this evaluation, return)
        eval_time = 0.0
        for steps, start, end, ret in self.evals:
            curve.append((steps, max(start - train_start - eval_time, 0.0), ret))
            if steps:
                eval_time += end - start
        final_steps, train_time, final_return = curve[-1]
        hit = next(((s, t) for s, t, r in curve if r >= threshold), None)
        return {
            "steps": final_steps,
            "train_time_s": train_time,
            "steps_per_s": final_steps / train_time if train_time > 0 else float("nan"),
            "eval_time_s": sum(end - start for _, start, end, _ in self.evals),
            "final_return": final_return,
            "threshold_steps": hit[0] if hit else None,
            "threshold_time_s": hit[1] if hit else None,
            "curve": curve,
        }


def run_rlfleet(
    case: Case, hp: dict[str, Any], seed: int, threads: int, workdir: str, variant: str | None = None
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from rlfleet.experiment import train
    from rlfleet.runners.minibatch_rl import MinibatchRlEval

    clock = EvalClock()
    evaluate = MinibatchRlEval.evaluate

    def timed_evaluate(runner: MinibatchRlEval) -> dict[str, float]:
        start = time.perf_counter()
        row = evaluate(runner)
        clock.record(runner.cum_steps, start, time.perf_counter(), row["EvalReturnAverage"])
        return row

    MinibatchRlEval.evaluate = timed_evaluate  # this subprocess only
    overrides = (
        case.rlfleet_overrides(hp)
        + (case.variants[variant](hp) if variant else [])
        + [
            f"runner.n_steps={hp['total_steps']}",
            f"runner.eval_interval_steps={hp['eval_interval']}",
            f"runner.eval_episodes={hp['eval_episodes']}",
            f"runner.eval_envs={hp['eval_envs']}",
            f"runner.log_interval_steps={hp['eval_interval']}",
            "runner.checkpoint_interval_steps=0",
            f"runner.torch_threads={threads}",
            "runner.device=cpu",
            "sampler.kind=serial",
            "logger.console=false",
            "logger.tensorboard=false",
            "logger.wandb=false",
        ]
    )
    run_dir, _ = train(case.rlfleet_algorithm, case.env_id, overrides, seed=seed, name="speed", root=workdir)
    result = clock.summary(hp["threshold"])
    # Cross-check against what rlfleet itself logged (CumTime there includes evaluation time).
    with open(Path(run_dir) / "progress.csv", newline="") as f:
        logged = [r for r in csv.DictReader(f) if r.get("EvalReturnAverage")]
    result["logged_final_return"] = float(logged[-1]["EvalReturnAverage"])
    result["logged_steps_per_s_incl_eval"] = float(logged[-1]["CumSteps"]) / max(float(logged[-1]["CumTime"]), 1e-9)
    return result


def run_sb3(case: Case, hp: dict[str, Any], seed: int, threads: int, workdir: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from rlfleet.envs.make import register_extra_envs

    register_extra_envs(case.env_id)  # rlfleet's own ids (CartPoleNoVel-v1) for SB3's gym.make
    env = make_vec_env(case.env_id, n_envs=case.sb3_n_envs(hp), seed=seed)
    eval_env = make_vec_env(case.env_id, n_envs=int(hp["eval_envs"]), seed=seed + 10_000)
    clock = EvalClock()

    class ScheduledEval(BaseCallback):
        """Evaluates at training start, after each update whose rollout crossed a multiple of
        ``eval_interval`` steps (seen at the next ``on_rollout_start``), and at training end."""

        def __init__(self) -> None:
            super().__init__()
            self.last_steps = 0

        def evaluate(self) -> None:
            start = time.perf_counter()
            mean, _ = evaluate_policy(
                self.model, eval_env, n_eval_episodes=int(hp["eval_episodes"]), deterministic=True
            )
            clock.record(self.model.num_timesteps, start, time.perf_counter(), mean)

        def _on_training_start(self) -> None:
            self.evaluate()

        def _on_rollout_start(self) -> None:
            k, steps = int(hp["eval_interval"]), self.model.num_timesteps
            if steps and steps // k > self.last_steps // k:
                self.evaluate()
            self.last_steps = steps

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self.evaluate()

    model = case.sb3_model(hp, env, seed)
    model.learn(total_timesteps=int(hp["total_steps"]), callback=ScheduledEval())
    env.close()
    eval_env.close()
    return clock.summary(hp["threshold"])


WORKERS = {"rlfleet": run_rlfleet, "sb3": run_sb3}


def worker_main(spec_json: str, result_path: str) -> int:
    spec = json.loads(spec_json)
    case, library = CASES[spec["case"]], spec["library"]
    args = (case, spec["hp"], spec["seed"], spec["threads"], spec["workdir"])
    result = run_rlfleet(*args, variant=library) if library in case.variants else WORKERS[library](*args)
    Path(result_path).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def run_in_subprocess(library: str, case: Case, hp: dict[str, Any], seed: int, threads: int) -> dict[str, Any]:
    """One training run in a fresh interpreter; adds its wall time and peak RSS (MiB)."""
    with tempfile.TemporaryDirectory(prefix=f"speed-{library}-") as tmp:
        result_path = Path(tmp) / "result.json"
        spec = dict(library=library, case=case.name, hp=hp, seed=seed, threads=threads, workdir=tmp)
        cmd = [sys.executable, __file__, "--worker", json.dumps(spec), "--result", str(result_path)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env)
        # os.wait4 (not proc.wait) to get this child's own resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{library} worker failed with exit code {proc.returncode}")
        result = json.loads(result_path.read_text())
    rss_mib = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux
    result.update(library=library, seed=seed, process_wall_s=wall, peak_rss_mib=rss_mib)
    return result


def parse_hp(case: Case, items: list[str]) -> dict[str, Any]:
    hp = dict(case.hp)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in hp:
            raise SystemExit(f"--hp {item!r}: expected key=value with key one of {', '.join(hp)}")
        hp[key] = type(hp[key])(float(value)) if isinstance(hp[key], (int, float)) else value
    return hp


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summarise(results: list[dict[str, Any]], libraries: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for library in libraries:
        runs = [r for r in results if r["library"] == library]
        hits = [r["threshold_time_s"] for r in runs if r["threshold_time_s"] is not None]
        rows.append(
            {
                "library": library,
                "runs": len(runs),
                "sps": statistics.median(r["steps_per_s"] for r in runs),
                "sps_min": min(r["steps_per_s"] for r in runs),
                "sps_max": max(r["steps_per_s"] for r in runs),
                "train_s": statistics.median(r["train_time_s"] for r in runs),
                "threshold_s": statistics.median(hits) if hits else None,
                "reached": len(hits),
                "rss": statistics.median(r["peak_rss_mib"] for r in runs),
                "final_return": statistics.median(r["final_return"] for r in runs),
            }
        )
    base = rows[1]["sps"]
    for row in rows:
        row["ratio"] = row["sps"] / base
    return rows


def markdown(case: Case, hp: dict[str, Any], results: list[dict[str, Any]], threads: int) -> str:
    threshold, n = hp["threshold"], len(case.libraries)
    rows = summarise(results, case.libraries)
    lines = [
        f"### {case.name}: {case.env_id}, {hp['total_steps']} env steps, rounds: {len(results) // n}, "
        f"{threads} torch thread(s)",
        "",
        "| library | env steps/s (median) | steps/s min-max | train time s | "
        f"time to {threshold:g} s (reached) | peak RSS MiB | final eval return | steps/s ratio to {case.peer} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        label = case.peer if r["library"] == "sb3" else r["library"]
        lines.append(
            f"| {label} | {r['sps']:.0f} | {r['sps_min']:.0f}-{r['sps_max']:.0f} | {r['train_s']:.1f} | "
            f"{fmt(r['threshold_s'])} ({r['reached']}/{r['runs']}) | {r['rss']:.0f} | {r['final_return']:.1f} | "
            f"{r['ratio']:.2f} |"
        )
    for r in rows[2:]:
        lines += ["", f"rlfleet / {r['library']} env steps/s: {rows[0]['sps'] / r['sps']:.2f}"]
    lines += [
        "",
        "Medians over rounds. Training time excludes setup and every evaluation; time to threshold is "
        f"training time at the first evaluation (every {hp['eval_interval']} steps, {hp['eval_episodes']} "
        "deterministic episodes) averaging at least the threshold, over the runs that reached it.",
        "",
        "<details><summary>per run</summary>",
        "",
        "| round | library | seed | env steps | steps/s | train s | eval s | process s | peak RSS MiB | "
        "threshold at step | final return |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(results):
        lines.append(
            f"| {i // n + 1} | {r['library']} | {r['seed']} | {r['steps']} | {r['steps_per_s']:.0f} | "
            f"{r['train_time_s']:.1f} | {r['eval_time_s']:.1f} | {r['process_wall_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} | {r['threshold_steps'] if r['threshold_steps'] is not None else '-'} | "
            f"{r['final_return']:.1f} |"
        )
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def machine_info(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"- machine: {cpu}; {os.cpu_count()} CPUs ({usable} usable by this process); {platform.platform()}\n"
        f"- python {platform.python_version()}, torch {version('torch')}, stable-baselines3 "
        f"{version('stable-baselines3')}, sb3-contrib {version('sb3-contrib')}, gymnasium {version('gymnasium')}, "
        f"rlfleet {version('rlfleet')}\n"
        f"- torch threads: {threads} in both libraries (OMP_NUM_THREADS={threads})\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="ppo-cartpole")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (rlfleet, the peer, variants)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in both")
    parser.add_argument("--seed", type=int, default=0, help="round i uses seed + i, the same in both")
    parser.add_argument("--steps", type=int, default=None, help="env-step budget (default: the case's)")
    parser.add_argument("--eval-interval", type=int, default=None, help="env steps between evaluations")
    parser.add_argument(
        "--hp", action="append", default=[], metavar="KEY=VALUE", help="override a shared hyperparameter"
    )
    parser.add_argument("--out", default=None, help="also write the markdown report here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker, args.result)

    case = CASES[args.case]
    hp = parse_hp(case, args.hp)
    if args.steps:
        hp["total_steps"] = args.steps
    if args.eval_interval:
        hp["eval_interval"] = args.eval_interval
    try:  # SB3 is an optional dependency: fail early, before any rlfleet run.
        metadata.version("stable-baselines3")
    except metadata.PackageNotFoundError:
        print("stable-baselines3 is not installed: pip install 'rlfleet[bench]'", file=sys.stderr)
        return 2

    results = []
    for i in range(args.rounds):
        seed = args.seed + i
        for library in case.libraries:
            print(f"round {i + 1}/{args.rounds}: {library} (seed {seed}) ...", file=sys.stderr, flush=True)
            r = run_in_subprocess(library, case, hp, seed, args.threads)
            print(
                f"  {r['steps']} steps in {r['train_time_s']:.1f} s train time: {r['steps_per_s']:.0f} steps/s, "
                f"final eval {r['final_return']:.1f}, peak RSS {r['peak_rss_mib']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
            results.append(r)

    table = markdown(case, hp, results, args.threads)
    print(table)
    if args.out:
        command = shlex.join(["python", os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])])
        changed = {k: v for k, v in hp.items() if v != case.hp[k]}
        report = (
            "# Training speed: rlfleet vs Stable-Baselines3\n\n"
            f"Reproduce with:\n\n```\n{command}\n```\n\n"
            f"{machine_info(args.threads)}"
            f"- measured {time.strftime('%Y-%m-%d %H:%M')}"
            + (f"; hyperparameters changed from the case: {changed}" if changed else "")
            + "\n\n"
            + table
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
