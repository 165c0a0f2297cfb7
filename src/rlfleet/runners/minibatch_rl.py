"""The training loop. Algorithms never write their own: sample, optimize, log, checkpoint."""

from __future__ import annotations

import math
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from rlfleet.agents.base import Agent
from rlfleet.algos.base import Algorithm
from rlfleet.checkpoint import Checkpointer, rng_state, set_rng_state
from rlfleet.logging.console import ConsoleProgress
from rlfleet.logging.progress import ProgressLogger
from rlfleet.samplers.sampler import Sampler


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C, once the checkpoint is written."""


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

    Args:
        algo, agent, sampler: the components (sampler initialised).
        n_steps: env-step budget.
        log_interval_steps: env steps between progress.csv rows.
        checkpoint_interval_steps: env steps between checkpoints (0: only at the end).
        logger: progress.csv / TensorBoard writer (None: no logging).
        checkpointer: checkpoint writer (None: no checkpoints).
        console: progress display.
        config: the resolved config, stored in every checkpoint.
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
    ):
        self.algo, self.agent, self.sampler = algo, agent, sampler
        self.n_steps = n_steps
        self.log_interval_steps = log_interval_steps
        self.checkpoint_interval_steps = checkpoint_interval_steps
        self.logger, self.checkpointer = logger, checkpointer
        self.console = console or ConsoleProgress(n_steps, enabled=False)
        self.config = config
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
        """Run to ``n_steps``; returns the last logged row."""
        previous_handler = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        row: dict[str, float] = {}
        try:
            if self.cum_steps == 0 and self.evaluation_due():
                self.last_eval = self.evaluate()
                row = self.log_row()
            while self.cum_steps < self.n_steps:
                row = self.iteration() or row
                if self._interrupted:
                    self.save_checkpoint()
                    raise TrainingInterrupted(f"interrupted at {self.cum_steps} steps; checkpoint written")
            if not row or row.get("CumSteps") != self.cum_steps:
                row = self.log_row()
            self.save_checkpoint()
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            self.console.close()
        return row

    def iteration(self) -> dict[str, float] | None:
        start = time.perf_counter()
        self.agent.sample_mode(self.cum_steps)
        batch = self.sampler.obtain_samples()
        self.cum_steps += self.steps_per_iteration
        self.agent.train_mode(self.cum_steps)
        opt_info = self.algo.optimize_agent(self.cum_steps, batch)
        self.itr += 1
        elapsed = time.perf_counter() - start
        self.cum_time += elapsed
        self.train_time += elapsed
        self.traj_infos.extend(batch.traj_infos)
        self.new_trajs += len(batch.traj_infos)
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
        recent = self.traj_infos[-1]["Return"] if self.traj_infos else None
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
            },
            "agent": self.agent.state_dict(),
            "algo": self.algo.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore everything; returns whether the envs were restored exactly."""
        r = state["runner"]
        self.itr, self.cum_steps, self.cum_time = r["itr"], r["cum_steps"], r["cum_time"]
        self.train_time = r["train_time"]
        self.traj_infos = deque(r["traj_infos"], maxlen=100)
        self._last_log, self.opt_infos, self.new_trajs = tuple(r["last_log"]), r["opt_infos"], r["new_trajs"]
        self.agent.load_state_dict(state["agent"])
        self.algo.load_state_dict(state["algo"])
        exact = self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        if self.logger is not None:
            self.logger.truncate_after(self.cum_steps)
        return exact

    def save_checkpoint(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save(self.state_dict(), self.cum_steps)


class MinibatchRlEval(MinibatchRl):
    """MinibatchRl plus a deterministic evaluation (its own envs) at step 0 and every
    ``eval_interval_steps``; each evaluation writes a progress row with ``Eval*`` columns.

    Args:
        evaluator: ``f(agent) -> list of trajectory dicts``.
        eval_interval_steps: env steps between evaluations.
    """

    def __init__(self, *args, evaluator: Callable[[Agent], list[dict[str, float]]], eval_interval_steps: int, **kwargs):
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
        trajs = self.evaluator(self.agent)
        row = _stats("EvalReturn", [t["Return"] for t in trajs])
        row.update(_stats("EvalLength", [t["Length"] for t in trajs]))
        row["EvalEpisodes"] = len(trajs)
        return row

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "evaluations": getattr(self.evaluator, "count", 0)}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        if hasattr(self.evaluator, "count"):
            self.evaluator.count = state["evaluations"]
        return super().load_state_dict(state)
