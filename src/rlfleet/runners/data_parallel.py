"""Synchronous data parallelism: N replicas in lockstep, each sampling its own envs, one averaged
gradient per step.

Every replica (a process, see `replicas.launch`) runs the ordinary `MinibatchRl` loop through
`DataParallelRl`: it samples a ``[T,B]`` batch from its own envs, and every gradient step of
the algorithm averages the replicas' gradients before the clip and the update, so all replicas
apply the same update to the same weights (broadcast from rank 0 at the start) and stay
identical without ever exchanging weights again.

Gradients: one ``all_reduce`` of `FlatOptimizer`'s flat gradient buffer, not
DistributedDataParallel. Every algorithm already keeps the gradient of all its parameters in
one contiguous buffer; summing that buffer across replicas and dividing by N between backward
and the clip (`FlatOptimizer.grad_hook`) is exactly what DDP does with a single bucket. DDP's
wrapper would only add constraints: it expects every backward to follow a forward through the
wrapper (the agents call their model in several ways: acting, training, bootstrap values under
``no_grad``), registers a hook per parameter and copies gradients into buckets of its own,
although the parameters are already views of one flat buffer. The overlap of communication with
backward that DDP's bucketing buys on large models is nothing for the networks of RL, whose
whole gradient is one message. The clip sees the averaged gradient, so ``grad_norm`` is the
norm of the update's gradient, as in one process on the concatenated batch.

Collectives besides the gradient: none per gradient step. Per iteration one non-blocking 1-float
all-reduce (`StopVote`) agrees on Ctrl-C; per progress row one object gather brings the other
replicas' completed trajectories to rank 0; per checkpoint one object gather brings their state.

Metrics (rank 0 writes every row): ``CumSteps`` counts the env steps of all replicas
(``n_replicas * batch_T * batch_B`` per iteration), and so does ``StepsPerSecond``;
``runner.n_steps`` and the intervals are in these steps, and so is the ``env_steps`` that
schedules (learning-rate annealing) see. ``Return*``, ``Length*`` and ``NewCompletedTrajs``
cover the trajectories of all replicas (the last 100, the replicas' new ones interleaved);
``ReplayRatio`` counts all replicas' trained samples; ``CumUpdates`` counts gradient steps (each
averaged over all replicas); losses are rank 0's; ``Eval*`` is rank 0's evaluation.

Checkpoints (rank 0 writes them) hold rank 0's full state plus, under ``replicas``, each other
replica's own part: its envs, normalisers, RNGs and PPO's minibatch generator, its trajectories
not yet logged. Resuming restores every replica exactly; a replica for which the checkpoint has
no part (written with fewer replicas, or by the minibatch runner) starts fresh episodes with the
shared weights. At each checkpoint rank 0 also checks that all replicas hold identical weights.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from typing import Any

import torch
import torch.distributed as dist

from rlfleet.checkpoint import rng_state
from rlfleet.runners.minibatch_rl import MinibatchRl, MinibatchRlEval
from rlfleet.runners.replicas import Replica
from rlfleet.samplers.evaluation import Evaluator


def average_over_replicas(flat_grad: torch.Tensor) -> None:
    """`FlatOptimizer.grad_hook`: replace ``flat_grad [n_parameters]`` by its mean over the
    replicas (one all-reduce of the whole buffer on the default group)."""
    dist.all_reduce(flat_grad)
    flat_grad.div_(dist.get_world_size())


def weights_digest(model_state: dict[str, torch.Tensor]) -> str:
    """A hash of a model's ``state_dict()`` (parameters and buffers), to compare replicas."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in model_state.values():
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class StopVote:
    """Agreement on stopping without a blocking collective per iteration: each call posts this
    replica's vote in a non-blocking all-reduce (max) and returns the result of the previous
    call's, so every replica stops after the same iteration, one iteration after the first vote.
    Once the result is "stop" nothing more is posted; ``settle()`` waits for a pending vote.

    Args:
        group: the (gloo) group to vote in.
    """

    def __init__(self, group: Any):
        self.group = group
        self._flag = torch.zeros(1)
        self._work: Any = None

    def __call__(self, vote: bool) -> bool:
        stop = self.settle()
        if not stop:
            self._flag = torch.tensor([float(vote)])
            self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=self.group, async_op=True)
        return stop

    def settle(self) -> bool:
        """Wait for the pending vote; whether any replica voted to stop in it."""
        if self._work is None:
            return False
        self._work.wait()
        self._work = None
        return bool(self._flag.item())


class DataParallelRl(MinibatchRlEval):
    """One replica's training loop: `MinibatchRlEval` on this replica's components, with the
    algorithm's gradients averaged over all replicas, all replicas' env steps counted, and
    logging, evaluation and checkpoint files left to rank 0 (the other replicas get no logger,
    checkpointer, evaluator or console).

    Every replica must call ``train()``: progress rows and checkpoints are collectives, due at
    the same iterations everywhere because all replicas count the same steps.

    Args:
        runner: this replica's runner as the composition root made it; its components are taken over.
        evaluator: its evaluator (None on ranks above 0).
        replica: this replica's place in the process group.
        config: the run's resolved config (stored in checkpoints).
        eval_interval_steps: env steps between evaluations by rank 0 (0: none).
    """

    def __init__(
        self, runner: MinibatchRl, evaluator: Evaluator | None, replica: Replica, config: dict, eval_interval_steps: int
    ):
        super().__init__(
            runner.algo,
            runner.agent,
            runner.sampler,
            n_steps=runner.n_steps,
            log_interval_steps=runner.log_interval_steps,
            checkpoint_interval_steps=runner.checkpoint_interval_steps,
            logger=runner.logger,
            checkpointer=runner.checkpointer,
            console=runner.console,
            config=config,
            evaluator=evaluator,
            eval_interval_steps=eval_interval_steps,
        )
        self.rank, self.n_replicas = replica.rank, replica.n_replicas
        self.control_group = replica.control_group
        self.stop_event = replica.stop_event
        self.stop_vote = StopVote(replica.control_group)
        self._stop_asked = False
        for optimizer in self.algo.optimizers():
            optimizer.grad_hook = average_over_replicas
        for tensor in self.agent.model.state_dict().values():  # parameters are views: updated in place
            dist.broadcast(tensor, src=0)

    # ----- hooks of MinibatchRl -----
    @property
    def steps_per_iteration(self) -> int:
        return self.sampler.batch_size * self.n_replicas

    @property
    def samples_trained(self) -> int:
        return self.algo.samples_trained * self.n_replicas

    def evaluation_due(self) -> bool:
        return self.eval_interval_steps > 0 and super().evaluation_due()

    def evaluate(self) -> dict[str, float]:
        return {} if self.evaluator is None else super().evaluate()

    # ----- the loop -----
    def iteration(self) -> dict[str, float] | None:
        row = super().iteration()
        self._interrupted = self.stop_vote(self._stop_asked or self.stop_event.is_set())
        if self._interrupted and not self._stop_asked:
            self.console.line("stop requested: every replica stops after this iteration; rank 0 writes a checkpoint")
        return row

    def train(self) -> dict[str, float]:
        row = super().train()
        self.stop_vote.settle()
        return row

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_asked:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop_asked = True
        self.console.line(
            "Ctrl-C: all replicas stop after the next iteration, then a checkpoint is written (Ctrl-C again to abort)"
        )

    def log_row(self) -> dict[str, float]:
        """Rank 0 first gathers the trajectories the others completed since the previous row."""
        mine = None if self.rank == 0 else (self._new_trajectories(), self.new_trajs)
        gathered = self._gather(mine)
        if gathered is not None:
            own = self._new_trajectories()
            others = [trajs for trajs, _ in gathered[1:]]
            kept = list(self.traj_infos)[: len(self.traj_infos) - len(own)]
            new = [t for group in itertools.zip_longest(own, *others) for t in group if t is not None]
            self.traj_infos = deque(kept + new, maxlen=self.traj_infos.maxlen)
            self.new_trajs += sum(count for _, count in gathered[1:])
        return super().log_row()

    def _new_trajectories(self) -> list[dict[str, float]]:
        """This replica's trajectories completed since the previous row (at most the last 100)."""
        k = min(self.new_trajs, len(self.traj_infos))
        return list(self.traj_infos)[len(self.traj_infos) - k :]

    def _gather(self, obj: Any) -> list[Any] | None:
        """Every replica's ``obj`` on rank 0 (None elsewhere)."""
        gathered = [None] * self.n_replicas if self.rank == 0 else None
        dist.gather_object(obj, gathered, dst=0, group=self.control_group)
        return gathered

    # ----- state -----
    def replica_state(self) -> dict[str, Any]:
        """This replica's own state, what the checkpoint's shared part (rank 0's) lacks: its
        trajectories, RNGs, envs and normalisers, and a digest of its weights."""
        return {
            "runner": {"traj_infos": list(self.traj_infos), "new_trajs": self.new_trajs},
            "agent": {k: v for k, v in self.agent.state_dict().items() if k != "model"},
            "algo": {k: v for k, v in self.algo.state_dict().items() if k != "optimizer"},
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
            "weights": weights_digest(self.agent.model.state_dict()),
        }

    def save_checkpoint(self) -> None:
        """Collective: rank 0 gathers the other replicas' own states, checks that their weights
        equal its own, and writes its state with theirs under ``replicas``."""
        gathered = self._gather(None if self.rank == 0 else self.replica_state())
        if gathered is None:
            return
        digest = weights_digest(self.agent.model.state_dict())
        diverged = [rank for rank, state in enumerate(gathered[1:], 1) if state["weights"] != digest]
        if diverged:
            raise RuntimeError(f"the weights of replicas {diverged} differ from rank 0's: the replicas diverged")
        if self.checkpointer is not None:
            self.checkpointer.save({**self.state_dict(), "replicas": gathered[1:]}, self.cum_steps)

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Every replica restores the shared state (weights, optimizer, counters: rank 0's) and
        its own part from ``state["replicas"]``; a replica with no saved part keeps its fresh
        envs and RNGs. Returns whether this replica's envs were restored exactly."""
        saved = state.get("replicas", [])
        if self.rank == 0:
            if len(saved) != self.n_replicas - 1:
                self.console.line(
                    f"note: the checkpoint holds the envs of {len(saved) + 1} replica(s), this run has "
                    f"{self.n_replicas}: replicas without saved envs start new episodes"
                )
            return super().load_state_dict(state)
        own = saved[self.rank - 1] if self.rank <= len(saved) else self.replica_state()
        return super().load_state_dict(
            {
                **state,
                "runner": {**state["runner"], **own["runner"]},
                "agent": {**state["agent"], **own["agent"]},
                "algo": {**state["algo"], **own["algo"]},
                "sampler": own["sampler"],
                "rng": own["rng"],
            }
        )
