"""The parameter server of gradient-parallel A3C (Mnih et al. 2016) on Ray.

Workers hold copies of the model: each pulls ``weights()``, computes the gradient of a loss on
its own rollout (``FlatOptimizer.flat_gradient``), and ``push``es it with the version of the
weights it was computed at. `ParameterServer` holds the one trained model and a `FlatOptimizer`
over it, and applies every pushed gradient as it arrives.

The asynchrony is A3C's, without its Hogwild: the server runs as a Ray actor
(``ray.remote(ParameterServer)``, done where the runner starts it; nothing here imports Ray),
whose mailbox runs one method call at a time. Pushes are therefore applied whole, one after
another, in their order of arrival, and ``weights()`` never sees half an update; what remains
asynchronous is that a gradient may have been computed at older weights than those it is
applied to, by ``staleness`` updates, which ``stats()`` reports. When every gradient was
computed at the weights it updates (staleness 0), the server's parameters are exactly those of
a local ``FlatOptimizer.step`` on the losses they came from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rlfleet.algos.optimizer import FlatOptimizer


def _cpu_copy(value: object) -> object:
    """``value`` with every tensor in it (nested in dicts) replaced by a detached CPU copy."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    return value


class ParameterServer:
    """The trained model and its optimizer, updated by gradients pushed from workers.

    Args:
        model_factory: builds the model (called once here; workers build their copies with the
            same factory, so that their flat gradients share the server's parameter layout).
            Under Ray it travels to the actor by cloudpickle.
        kind, lr, eps, max_grad_norm, rmsprop_alpha: the `FlatOptimizer` options.

    ``version`` counts the updates applied (checkpointed); ``n_parameters`` is the length of the
    flat gradients ``push`` takes.
    """

    def __init__(
        self,
        model_factory: Callable[[], nn.Module],
        kind: str = "rmsprop",
        lr: float = 7e-4,
        eps: float = 1e-5,
        max_grad_norm: float = 0.0,
        rmsprop_alpha: float = 0.99,
    ):
        self.model = model_factory()
        self.optimizer = FlatOptimizer(
            self.model.parameters(), kind, lr=lr, eps=eps, max_grad_norm=max_grad_norm, rmsprop_alpha=rmsprop_alpha
        )
        self.n_parameters = self.optimizer.flat.numel()
        self.version = 0
        self._pushes = 0  # applied by this instance (stats; not checkpointed)
        self._staleness_sum = 0

    def push(self, flat_grad: torch.Tensor, worker_version: int) -> int:
        """Apply one worker's gradient; returns the new version.

        Args:
            flat_grad: ``[n_parameters]``, the gradient of the worker's loss in the flat layout
                (``FlatOptimizer.flat_gradient`` on the worker's copy of the model), unclipped:
                the clip to ``max_grad_norm`` is applied here, as ``FlatOptimizer.step`` does.
            worker_version: the version of the weights the gradient was computed at.

        Raises `NonFiniteError` if the update leaves a NaN or Inf in the parameters (the
        version is not advanced, the parameters are not restored: the run stops, as after
        ``FlatOptimizer.step``); under Ray the pushing worker gets it from ``ray.get``.
        """
        if not 0 <= worker_version <= self.version:
            raise ValueError(f"worker version {worker_version} is not one this server has had (0..{self.version})")
        staleness = self.version - worker_version
        self.optimizer.apply_gradient(flat_grad)
        self.version += 1
        self._pushes += 1
        self._staleness_sum += staleness
        return self.version

    def weights(self) -> tuple[int, dict[str, torch.Tensor]]:
        """``(version, state_dict)``: the model's current state dict as CPU copies, for workers'
        ``load_state_dict``, and the version to push their next gradient with."""
        return self.version, _cpu_copy(self.model.state_dict())

    def stats(self) -> dict[str, float]:
        """``pushes``: gradients applied by this server since it was built (a resumed one counts
        from 0); ``mean_staleness``: their mean of version at apply minus the worker's version
        (0 when every gradient was computed at the weights it updated; NaN before any push)."""
        mean = self._staleness_sum / self._pushes if self._pushes else float("nan")
        return {"pushes": self._pushes, "mean_staleness": mean}

    def state_dict(self) -> dict:
        """Model, optimizer state and version, as CPU copies, for a checkpoint."""
        return _cpu_copy(
            {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "version": self.version}
        )

    def load_state_dict(self, state: dict) -> None:
        """Resume from ``state_dict()``'s output: the next push continues as this server's would
        have (raises `CheckpointError` for another optimizer kind or model size)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.model.load_state_dict(state["model"])  # copies into the optimizer's flat buffer
        self.version = state["version"]
