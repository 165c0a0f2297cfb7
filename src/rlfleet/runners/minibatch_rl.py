"""The training loop. Algorithms never write their own: sample, optimize, log, checkpoint."""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlfleet.agents.base import Agent
from rlfleet.algos.base import Algorithm
from rlfleet.checkpoint import Checkpointer, check_checkpoint, checkpoint_label, rng_state, set_rng_state
from rlfleet.envs.gym_env import env_fault
from rlfleet.errors import CheckpointError, EnvError, NonFiniteError, RunFailure, SamplerWorkerDied
from rlfleet.logging.console import ConsoleProgress
from rlfleet.logging.progress import ProgressLogger
from rlfleet.samplers.evaluation import TEST_SPLIT, TRAIN_SPLIT, EvaluationInterrupted, Evaluator
from rlfleet.samplers.sampler import Sampler


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C, once the checkpoint is written; the message ends with the command
    that resumes the run."""


class RunAlreadyFinished(Exception):
    """A resumed run is already at ``runner.n_steps`` or beyond: nothing to train, nothing
    written (no progress row, no checkpoint). Not an error: the CLI prints it and exits 0."""

    def __init__(self, run_dir: str | os.PathLike | None, steps: int):
        self.run_dir, self.steps = run_dir, steps
        where = f"run {run_dir}" if run_dir is not None else "run"
        resume = f"--resume {shlex.quote(str(run_dir))}" if run_dir is not None else "--resume DIR"
        super().__init__(
            f"{where} already finished at {steps} steps; raise runner.n_steps to continue "
            f"(e.g. {resume} runner.n_steps={2 * steps})"
        )


def _stats(prefix: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    return {
        f"{prefix}Average": arr.mean(),
        f"{prefix}Std": arr.std(),
        f"{prefix}Min": arr.min(),
        f"{prefix}Max": arr.max(),
    }


class MinibatchRl:
    """Alternates ``sampler.obtain_samples()`` and ``algo.optimize_agent()`` for ``n_steps``
    env steps; logs online statistics over the last 100 completed trajectories every
    ``log_interval_steps``; checkpoints every ``checkpoint_interval_steps``, at the end and on
    Ctrl-C (at the next iteration boundary, so the checkpoint is consistent).

    Faults stop the run with a `RunFailure` whose one line says what happened and what was kept:

    - an exception in an env's ``step`` or ``reset`` (training or evaluation envs, in this
      process or a parallel worker) becomes `EnvError` naming the env, the method and the
      exception; the full traceback is appended to ``run_dir/error.log`` and a checkpoint is
      written at the last completed iteration's step count (unless one exists there). It holds
      the agent, the algorithm (optimizer, replay) and the counters as after that iteration,
      and the envs, observations, normalisers and RNGs as at the failure (the partial batch is
      dropped, so ``--resume`` continues from the envs as they were, not exactly as an
      uninterrupted run would);
    - NaN or Inf in a loss or in the parameters after a step (`NonFiniteError`, raised by
      `FlatOptimizer.step`) is named with the loss's progress.csv column, the update and the
      env steps; no checkpoint is written after it (not at the end, not on Ctrl-C), so the
      last one holds finite weights;
    - a dead sampler worker (`SamplerWorkerDied`) writes no checkpoint (its envs are gone).

    Args:
        algo, agent, sampler: the components (sampler initialised).
        n_steps: env-step budget.
        log_interval_steps: env steps between progress.csv rows.
        checkpoint_interval_steps: env steps between checkpoints (0: only at the end).
        logger: progress.csv / TensorBoard writer (None: no logging).
        checkpointer: checkpoint writer (None: no checkpoints).
        console: progress display.
        config: the resolved config, stored in every checkpoint.
        run_dir: where ``error.log`` goes (default: the checkpointer's or the logger's run
            directory; None: nowhere).
        replay: the off-policy algorithm's replay: every batch is appended to it before the
            algorithm's updates (None: on-policy).
        save_replay: checkpoints hold the whole replay (else only its sampling RNG and counters).
    """

    def __init__(
        self,
        algo: Algorithm,
        agent: Agent,
        sampler: Sampler,
        n_steps: int,
        log_interval_steps: int,
        checkpoint_interval_steps: int = 0,
        logger: ProgressLogger | None = None,
        checkpointer: Checkpointer | None = None,
        console: ConsoleProgress | None = None,
        config: dict | None = None,
        replay: Any = None,
        save_replay: bool = False,
        run_dir: str | os.PathLike | None = None,
    ):
        self.algo, self.agent, self.sampler = algo, agent, sampler
        self.replay, self.save_replay = replay, save_replay
        self.n_steps = n_steps
        self.log_interval_steps = log_interval_steps
        self.checkpoint_interval_steps = checkpoint_interval_steps
        self.logger, self.checkpointer = logger, checkpointer
        self.console = console or ConsoleProgress(n_steps, enabled=False)
        self.config = config
        self._run_dir = None if run_dir is None else Path(run_dir)
        self._non_finite = False  # set by a NonFiniteError: no checkpoint is written after it
        self.itr = 0
        self.cum_steps = 0
        self.cum_time = 0.0  # wall time of sampling, updates and evaluations
        self.train_time = 0.0  # the same without evaluations: StepsPerSecond is based on it
        self.traj_infos: deque[dict[str, float]] = deque(maxlen=100)
        self.new_trajs = 0
        self.opt_infos: dict[str, list[float]] = {}
        self.last_eval: dict[str, float] = {}  # evaluation not yet written to a progress row
        self.latest_eval_return: float | None = None  # for the console
        self._interrupted = False
        self._eval_pending = False  # an evaluation abandoned by Ctrl-C: run first on resume
        self._last_log = (0, 0.0, 0)  # steps, train time, updates at the previous log row
        self.on_log: Callable[[dict[str, float]], None] | None = None

    # ----- hooks for subclasses -----
    @property
    def steps_per_iteration(self) -> int:
        """Env steps one iteration adds to ``cum_steps``: the sampler's ``[T,B]`` batch
        (the data-parallel runner counts the batches of all its replicas)."""
        return self.sampler.batch_size

    @property
    def samples_trained(self) -> int:
        """Samples the updates have trained on, ReplayRatio's numerator (all replicas' under
        data parallelism)."""
        return self.algo.samples_trained

    def evaluation_due(self) -> bool:
        return False

    def evaluate(self) -> dict[str, float]:
        return {}

    # ----- the loop -----
    def train(self) -> dict[str, float]:
        """Run to ``n_steps``; returns the last logged row. `RunAlreadyFinished` (before
        anything is written) when a resumed run already is at ``n_steps`` or beyond."""
        if self.cum_steps and self.cum_steps >= self.n_steps:
            self.console.close()
            raise RunAlreadyFinished(self.run_dir, self.cum_steps)
        # the last batch may pass n_steps: the bar's total is the step count the run will reach
        remaining = self.n_steps - self.cum_steps
        self.console.set_total(self.cum_steps + -(-remaining // self.steps_per_iteration) * self.steps_per_iteration)
        previous_handler = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        row: dict[str, float] = {}
        try:
            try:
                if self._eval_pending or (self.cum_steps == 0 and self.evaluation_due()):
                    self.last_eval = self.evaluate()
                    row = self.log_row()
                while self.cum_steps < self.n_steps:
                    row = self.iteration() or row
                    if self._interrupted:
                        self.save_checkpoint()
                        raise TrainingInterrupted(self._interrupted_message())
                if not row or row.get("CumSteps") != self.cum_steps:
                    row = self.log_row()
                self.save_checkpoint()
            except EvaluationInterrupted:  # Ctrl-C during an evaluation (see MinibatchRlEval.evaluate)
                self.save_checkpoint()
                raise TrainingInterrupted(self._interrupted_message()) from None
            except RunFailure as err:
                self._report_failure(err)
                raise
            except Exception as err:
                env_error = self._env_error(err)
                if env_error is None:
                    raise
                raise env_error from err
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            self.console.close()
        return row

    def sample_and_optimize(self) -> tuple[list[dict[str, float]], dict[str, float]]:
        """One iteration's work: sample a batch (adding ``steps_per_iteration`` to
        ``cum_steps``), append it to the replay, optimise. Returns the trajectories completed
        and the algorithm's diagnostics (the Ray learner gathers its actors' batches here)."""
        self.agent.sample_mode(self.cum_steps)
        batch = self.sampler.obtain_samples()
        self.cum_steps += self.steps_per_iteration
        if self.replay is not None:
            self.replay.append(batch.samples)
        self.agent.train_mode(self.cum_steps)
        return batch.traj_infos, self.algo.optimize_agent(self.cum_steps, batch)

    def iteration(self) -> dict[str, float] | None:
        start = time.perf_counter()
        traj_infos, opt_info = self.sample_and_optimize()
        self.itr += 1
        elapsed = time.perf_counter() - start
        self.cum_time += elapsed
        self.train_time += elapsed
        self.traj_infos.extend(traj_infos)
        self.new_trajs += len(traj_infos)
        for key, value in opt_info.items():
            self.opt_infos.setdefault(key, []).append(value)
        row = None
        if self.evaluation_due():
            eval_start = time.perf_counter()
            self.last_eval = self.evaluate()
            self.cum_time += time.perf_counter() - eval_start
            row = self.log_row()
        elif (
            self.cum_steps // self.log_interval_steps
            > (self.cum_steps - self.steps_per_iteration) // self.log_interval_steps
        ):
            row = self.log_row()
        # ReturnAverage's statistic: the mean over the last 100 completed trajectories
        recent = float(np.mean([t["Return"] for t in self.traj_infos])) if self.traj_infos else None
        sps = self.cum_steps / self.train_time if self.train_time else 0.0
        self.console.update(self.cum_steps, sps, recent, self.latest_eval_return)
        ckpt = self.checkpoint_interval_steps
        if (
            ckpt
            and self.cum_steps // ckpt > (self.cum_steps - self.steps_per_iteration) // ckpt
            and self.cum_steps < self.n_steps
        ):
            self.save_checkpoint()
        return row

    def log_row(self) -> dict[str, float]:
        steps0, time0, updates0 = self._last_log
        dt = max(self.train_time - time0, 1e-9)
        trajs = list(self.traj_infos)
        row: dict[str, float] = {
            "Iteration": self.itr,
            "CumSteps": self.cum_steps,
            "CumTime": round(self.cum_time, 3),
            "CumUpdates": self.algo.updates,
            "StepsPerSecond": (self.cum_steps - steps0) / dt,
            "UpdatesPerSecond": (self.algo.updates - updates0) / dt,
            "ReplayRatio": self.samples_trained / max(self.cum_steps, 1),
            "NewCompletedTrajs": self.new_trajs,
        }
        for key in ("Return", "Length", "DiscountedReturn"):
            row.update(_stats(key, [t[key] for t in trajs]))
        extra = sorted({k for t in trajs for k in t} - {"Return", "Length", "DiscountedReturn"})
        for key in extra:
            row[f"{key}Average"] = float(np.mean([t[key] for t in trajs if key in t]))
        row.update(self.last_eval)
        self.latest_eval_return = self.last_eval.get("EvalReturnAverage", self.latest_eval_return)
        for key, values in self.opt_infos.items():
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                row[key] = float(np.mean(finite))
        if self.logger is not None:
            self.logger.log(row, self.cum_steps)
        if self.on_log is not None:
            self.on_log(row)
        self.console.line(
            f"steps {self.cum_steps:>9}  sps {row['StepsPerSecond']:>7.0f}  "
            f"return {row.get('ReturnAverage', float('nan')):8.2f}"
            + (f"  eval {self.last_eval['EvalReturnAverage']:8.2f}" if self.last_eval else "")
        )
        self._last_log = (self.cum_steps, self.train_time, self.algo.updates)
        self.opt_infos = {}
        self.new_trajs = 0
        self.last_eval = {}
        return row

    # ----- state -----
    def _interrupted_message(self) -> str:
        """``interrupted at N steps; checkpoint written; resume with: rlfleet train --resume DIR``."""
        text = f"interrupted at {self.cum_steps} steps"
        if self.checkpointer is None or self._non_finite:
            return text + "; no checkpoint written"
        text += "; checkpoint written"
        if self.run_dir is not None:
            text += f"; resume with: rlfleet train --resume {shlex.quote(str(self.run_dir))}"
        return text

    def _on_sigint(self, signum, frame) -> None:
        if self._interrupted:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._interrupted = True
        self.console.line("Ctrl-C: finishing this iteration, writing a checkpoint (Ctrl-C again to abort)")

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "runner": {
                "itr": self.itr,
                "cum_steps": self.cum_steps,
                "cum_time": self.cum_time,
                "train_time": self.train_time,
                "traj_infos": list(self.traj_infos),
                "last_log": self._last_log,
                "opt_infos": self.opt_infos,
                "new_trajs": self.new_trajs,
                "eval_pending": self._eval_pending,
            },
            "agent": self.agent.state_dict(),
            "algo": self.algo.state_dict(),
            "sampler": self.sampler.state_dict(),
            "replay": self._replay_state(),
            "rng": rng_state(),
        }

    def _replay_state(self) -> dict[str, Any] | None:
        if self.replay is None:
            return None
        if self.save_replay:
            return {"whole": self.replay.state_dict()}
        return {"rng": self.replay.rng.bit_generator.state}

    def _load_replay_state(self, state: dict[str, Any] | None) -> None:
        if self.replay is None or state is None:
            return
        if "whole" in state:
            self.replay.load_state_dict(state["whole"])
        else:
            self.replay.rng.bit_generator.state = state["rng"]

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore everything; returns whether the envs were restored exactly. CheckpointError
        (one line, before anything is restored) for a checkpoint missing a part, written by
        another algorithm or holding another model shape (``check_checkpoint``), and for env
        pickles that need globals these envs do not use."""
        check_checkpoint(
            state,
            algorithm=(self.config or {}).get("algorithm"),
            agent_state=self.agent.state_dict(),
        )
        r = state["runner"]
        self.itr, self.cum_steps, self.cum_time = r["itr"], r["cum_steps"], r["cum_time"]
        self.train_time = r["train_time"]
        self.traj_infos = deque(r["traj_infos"], maxlen=100)
        self._last_log, self.opt_infos, self.new_trajs = tuple(r["last_log"]), r["opt_infos"], r["new_trajs"]
        self._eval_pending = r.get("eval_pending", False)
        self.agent.load_state_dict(state["agent"])
        self.algo.load_state_dict(state["algo"])
        self._load_replay_state(state.get("replay"))
        try:
            exact = self.sampler.load_state_dict(state["sampler"])
        except CheckpointError as err:
            raise CheckpointError(f"{checkpoint_label(state)}: {err}") from None
        set_rng_state(state["rng"])
        if self.logger is not None:
            self.logger.truncate_after(self.cum_steps)
        return exact

    def save_checkpoint(self) -> None:
        """Write a checkpoint (none once a NaN or Inf was found: the last one is kept)."""
        if self.checkpointer is not None and not self._non_finite:
            self.checkpointer.save(self.state_dict(), self.cum_steps)

    # ----- faults -----
    @property
    def run_dir(self) -> Path | None:
        """Where ``error.log`` goes: the constructor's ``run_dir``, else the checkpointer's or
        the logger's run directory (looked up when needed: they may be attached later)."""
        if self._run_dir is not None:
            return self._run_dir
        if self.checkpointer is not None:
            return self.checkpointer.directory.parent
        if self.logger is not None:
            return self.logger.path.parent
        return None

    def _report_failure(self, err: RunFailure) -> None:
        """Add where a non-finite number or a worker's death happened, and what was kept."""
        details: list[str] = []
        if isinstance(err, NonFiniteError):
            self._non_finite = True
            err.at = f"at update {self.algo.updates + 1}, {self.cum_steps} env steps"
            details.append(self._last_checkpoint("the last checkpoint before it is kept"))
        elif isinstance(err, SamplerWorkerDied):
            details.append(f"at {self.cum_steps} env steps; no checkpoint written")
            if self._last_checkpoint(""):
                details.append(self._last_checkpoint("the last one is kept"))
        err.details = [*err.details, *details]

    def _last_checkpoint(self, text: str) -> str:
        """``text (path)`` for the newest checkpoint; ``no checkpoint was written before it``
        (or "" for an empty ``text``) when there is none or no checkpointer."""
        found = self.checkpointer.checkpoints() if self.checkpointer is not None else []
        if not found:
            return "no checkpoint was written before it" if text else ""
        return f"{text} ({found[-1]})"

    def _env_error(self, err: Exception) -> EnvError | None:
        """For an exception an env's ``step`` or ``reset`` raised (here or in a parallel
        worker): the `EnvError` to raise, after appending the traceback to ``error.log`` and
        writing a checkpoint (see the class docstring). None for any other exception."""
        fault = env_fault(err)
        if fault is None:
            return None
        env_error = EnvError(*fault)
        details = []
        if self.run_dir is not None:
            log = self.run_dir / "error.log"
            with open(log, "a") as f:
                f.write(
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {env_error.summary()} "
                    f"(iteration {self.itr + 1}, after {self.cum_steps} env steps)\n"
                )
                f.write("".join(traceback.format_exception(err)) + "\n")
            details.append(f"traceback in {log}")
        details.append(self._fault_checkpoint())
        env_error.details = [d for d in details if d]
        return env_error

    def _fault_checkpoint(self) -> str:
        """Write the checkpoint of an env failure (directly, not through a subclass's
        `save_checkpoint`: no collectives under data parallelism); says what was done."""
        if self.checkpointer is None or self._non_finite:
            return ""
        for path in self.checkpointer.checkpoints():
            match = re.fullmatch(r"ckpt_(\d+)\.pt", path.name)
            if match and int(match.group(1)) == self.cum_steps:
                return f"the checkpoint at {self.cum_steps} steps is kept"
        try:
            self.checkpointer.save(self.state_dict(), self.cum_steps)
        except Exception as err:  # noqa: BLE001 - e.g. a sampler whose workers are gone
            return f"no checkpoint written ({type(err).__name__}: {err})".split("\n")[0]
        return f"checkpoint written at {self.cum_steps} steps"


class MinibatchRlEval(MinibatchRl):
    """MinibatchRl plus a deterministic evaluation (its own envs) at step 0 and every
    ``eval_interval_steps``; each evaluation writes a progress row with ``Eval*`` columns
    (``EvalCapped``, with a console note, when episodes were cut at the evaluator's
    ``max_episode_steps``, ``runner.eval_max_steps``) and, with a held-out split
    (``EnvConfig.test_kwargs``), the same ``EvalTest*`` columns and ``GeneralizationGap``.

    Ctrl-C during an evaluation: the evaluator checks the flag before every env step and the
    evaluation is abandoned at once. An evaluation changes no training state (agent weights
    and training RNG, algorithm, replay, sampler, envs, normalisers, counters) except the
    evaluator's ``count`` and the agent's evaluation RNG; those two (and the global RNGs) are
    put back as they were before it, the runner state says ``eval_pending``, and the
    checkpoint is written as at the iteration boundary just before the evaluation. A resumed
    run runs that evaluation first, with the same seeds and RNG, and logs its row, so its
    evaluations equal an uninterrupted run's. (Data-parallel ranks stop only at iteration
    boundaries; an evaluation abandoned at ``n_steps`` is not run again: the run is finished.)

    Args:
        evaluator: the `Evaluator` (``evaluator(agent) -> {split: list of trajectory dicts}``; its
            ``count`` of evaluations so far is checkpointed, as it seeds the next one); None on
            data-parallel ranks above 0, which do not evaluate.
        eval_interval_steps: env steps between evaluations.
    """

    def __init__(self, *args, evaluator: Evaluator | None, eval_interval_steps: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluator = evaluator
        self.eval_interval_steps = eval_interval_steps

    def evaluation_due(self) -> bool:
        if self.cum_steps == 0 or self.cum_steps >= self.n_steps:
            return True
        k = self.eval_interval_steps
        return self.cum_steps // k > (self.cum_steps - self.steps_per_iteration) // k

    def evaluate(self) -> dict[str, float]:
        self.agent.eval_mode(self.cum_steps)
        count, eval_rng, global_rng = self.evaluator.count, self.agent.eval_generator.get_state(), rng_state()
        try:
            splits = self.evaluator(self.agent, interrupted=lambda: self._interrupted)
        except EvaluationInterrupted:
            self.evaluator.count = count
            self.agent.eval_generator.set_state(eval_rng)
            set_rng_state(global_rng)
            self._eval_pending = True
            self.console.line(f"Ctrl-C: evaluation at {self.cum_steps} steps abandoned; a resumed run runs it again")
            raise
        self._eval_pending = False
        row: dict[str, float] = {}
        for prefix, trajs in splits.items():  # Eval*, then EvalTest* for a held-out split
            row.update(_stats(f"{prefix}Return", [t["Return"] for t in trajs]))
            row.update(_stats(f"{prefix}Length", [t["Length"] for t in trajs]))
            row[f"{prefix}Episodes"] = len(trajs)
            capped = sum(1 for t in trajs if t.get("Capped"))
            if capped:
                row[f"{prefix}Capped"] = capped
                held_out = "held-out " if prefix == TEST_SPLIT else ""
                self.console.line(
                    f"note: {capped} of {len(trajs)} {held_out}evaluation episodes reached "
                    f"{self.evaluator.max_episode_steps} steps and were cut there (runner.eval_max_steps)"
                )
        train, test = f"{TRAIN_SPLIT}ReturnAverage", f"{TEST_SPLIT}ReturnAverage"
        if train in row and test in row:
            row["GeneralizationGap"] = row[train] - row[test]
        return row

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "evaluations": self.evaluator.count if self.evaluator is not None else 0}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        if self.evaluator is not None:
            self.evaluator.count = state.get("evaluations", 0)
        return super().load_state_dict(state)
