"""One gradient step over parameters packed into a single contiguous buffer.

Small RL networks spend most of an update in per-tensor overhead, not arithmetic: Adam, the
gradient-norm clip and ``zero_grad`` each loop over every weight and bias. `FlatOptimizer`
moves all parameters of a model (and their gradients) into one flat tensor each, with the
module's parameters left as views into it, so those loops become a few ops on one tensor.
The model is used exactly as before; the maths of the step is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from rlfleet.errors import CheckpointError, NonFiniteError

OPTIMIZERS = ("adam", "rmsprop")


class FlatOptimizer:
    """Adam or RMSprop on a flat copy of ``parameters``, with global gradient-norm clipping.

    Args:
        parameters: the parameters to train (all on one device with one dtype). From here on
            they are views into ``self.flat``; do not move the module to another device.
        kind: ``adam`` or ``rmsprop`` (the update rules of ``torch.optim.Adam`` and
            ``torch.optim.RMSprop`` with their default options, written out on the flat buffer:
            ``torch.optim`` spends more time in Python bookkeeping than in the arithmetic for
            networks this small).
        lr: learning rate.
        eps: optimizer epsilon.
        max_grad_norm: clip the global gradient norm to this (0 disables).
        betas: Adam's moment decay rates.
        rmsprop_alpha: RMSprop smoothing constant.
        name: the progress.csv column of the loss it minimises (``critic_loss``), named by the
            error a non-finite loss or parameter raises.

    ``step(loss)`` zeroes the gradients, backpropagates ``loss``, applies ``grad_hook``, clips,
    updates, and returns the gradient norm before clipping (a 0-dim tensor). It then checks the
    loss and the updated parameters with one ``torch.isfinite(...).all()`` each and raises
    `NonFiniteError` on a NaN or Inf: one host sync per step (free on the CPU; on a GPU it
    waits for the step's kernels, so the next step's launches no longer overlap them).

    ``step`` is ``flat_gradient``'s backward followed by ``apply_gradient``, split for the
    gradient-parallel (A3C) runner: its workers compute ``flat_gradient(loss)`` on their own
    copies of the model and the parameter server applies each with ``apply_gradient``; gradients
    each computed at the weights it updates move the parameters exactly as ``step`` on the same
    losses would.

    ``grad_hook`` (None by default) is ``f(flat_grad)``, called with the whole gradient
    (``[n_parameters]``) after backward and before the norm and the clip, to change it in
    place: the data-parallel runner averages it over replicas there, so the clip and the
    update see the averaged gradient.
    """

    def __init__(
        self,
        parameters: Iterable[nn.Parameter],
        kind: str = "adam",
        lr: float = 3e-4,
        eps: float = 1e-8,
        max_grad_norm: float = 0.0,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        rmsprop_alpha: float = 0.99,
        name: str = "loss",
    ):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.parameters = [p for p in parameters if p.requires_grad]
        if not self.parameters:
            raise ValueError("no trainable parameters")
        if len({(p.device, p.dtype) for p in self.parameters}) > 1:
            raise ValueError("FlatOptimizer needs all parameters on one device with one dtype")
        self.kind, self.lr, self.eps, self.max_grad_norm = kind, lr, eps, max_grad_norm
        self.betas, self.rmsprop_alpha = betas, rmsprop_alpha
        self.name = name
        self.flat, self.flat_grad, self._grad_views = self._pack(self.parameters)
        self.grad_hook: Callable[[torch.Tensor], None] | None = None
        self.steps = 0
        self.exp_avg = torch.zeros_like(self.flat) if kind == "adam" else None  # Adam's first moment
        self.exp_avg_sq = torch.zeros_like(self.flat)  # second moment (RMSprop's square average)

    @staticmethod
    def _pack(parameters: list[nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        first = parameters[0]
        total = sum(p.numel() for p in parameters)
        flat = torch.empty(total, device=first.device, dtype=first.dtype)
        flat_grad = torch.zeros_like(flat)
        grad_views, offset = [], 0
        for p in parameters:
            n = p.numel()
            flat[offset : offset + n].copy_(p.detach().reshape(-1))
            p.data = flat[offset : offset + n].view_as(p)
            grad_views.append(flat_grad[offset : offset + n].view_as(p))
            offset += n
        return flat, flat_grad, grad_views

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """Minimise ``loss`` (a 0-dim tensor) by one update; returns the pre-clip gradient norm (0-dim)."""
        self._backward(loss)
        return self.apply_gradient(self.flat_grad, loss)

    def flat_gradient(self, loss: torch.Tensor) -> torch.Tensor:
        """The gradient of ``loss`` (0-dim) as a new ``[n_parameters]`` tensor, in ``self.flat``'s
        layout; the parameters and the optimizer state are left untouched."""
        self._backward(loss)
        return self.flat_grad.clone()

    def apply_gradient(self, flat_grad: torch.Tensor, loss: torch.Tensor | None = None) -> torch.Tensor:
        """Update the parameters with ``flat_grad`` (``[n_parameters]``, as ``flat_gradient`` returns it).

        Copies it into the gradient buffer, then ``grad_hook``, the clip, the update and the
        finiteness check of the parameters (and of ``loss``, the gradient's 0-dim loss, when
        given: ``step`` passes it so that one host sync checks both). Returns the gradient norm
        before clipping (0-dim); raises `NonFiniteError` on a NaN or Inf.
        """
        if flat_grad is not self.flat_grad:
            if flat_grad.shape != self.flat_grad.shape:
                raise ValueError(f"gradient of shape {tuple(flat_grad.shape)}, expected {tuple(self.flat_grad.shape)}")
            self.flat_grad.copy_(flat_grad)
        if self.grad_hook is not None:
            self.grad_hook(self.flat_grad)
        with torch.no_grad():
            grad_norm = torch.linalg.vector_norm(self.flat_grad)
            if self.max_grad_norm > 0:
                self.flat_grad.mul_((self.max_grad_norm / (grad_norm + 1e-6)).clamp_(max=1.0))
            self.steps += 1
            if self.kind == "adam":
                self._adam(self.flat_grad)
            else:
                self._rmsprop(self.flat_grad)
            finite = torch.isfinite(self.flat).all()
            if loss is not None:
                finite &= torch.isfinite(loss).all()
        if not finite:
            raise self._non_finite(loss, grad_norm)
        return grad_norm

    def _backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` into the zeroed flat gradient buffer."""
        self.flat_grad.zero_()
        for p, g in zip(self.parameters, self._grad_views):
            p.grad = g  # re-attach in case someone set grads to None; backward adds into g
        loss.backward()

    def _non_finite(self, loss: torch.Tensor | None, grad_norm: torch.Tensor) -> NonFiniteError:
        """The error for a step whose loss or updated parameters hold a NaN or Inf (a gradient
        applied without its loss is reported with loss NaN, in the parameters)."""
        if loss is None:
            return NonFiniteError(self.name, math.nan, float(grad_norm), in_parameters=True)
        value = float(loss.detach())
        err = NonFiniteError(self.name, value, float(grad_norm), in_parameters=math.isfinite(value))
        return err

    def _adam(self, g: torch.Tensor) -> None:
        """``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
        ``theta <- theta - lr m_hat / (sqrt(v_hat) + eps)`` with bias-corrected moments."""
        beta1, beta2 = self.betas
        self.exp_avg.lerp_(g, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2 = 1 - beta2**self.steps
        denominator = self.exp_avg_sq.sqrt().div_(math.sqrt(bias_correction2)).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denominator, value=-self.lr / bias_correction1)

    def _rmsprop(self, g: torch.Tensor) -> None:
        """``v <- alpha v + (1-alpha) g^2``, ``theta <- theta - lr g / (sqrt(v) + eps)``."""
        alpha = self.rmsprop_alpha
        self.exp_avg_sq.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        self.flat.addcdiv_(g, self.exp_avg_sq.sqrt().add_(self.eps), value=-self.lr)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "steps": self.steps, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind or "exp_avg_sq" not in state:
            raise CheckpointError(
                f"checkpoint's optimizer state is not {self.kind} state from this rlfleet version "
                f"(found {state.get('kind', 'an older format')!r})"
            )
        if state["exp_avg_sq"].shape != self.flat.shape:
            raise CheckpointError(
                f"checkpoint's optimizer state holds {state['exp_avg_sq'].numel()} parameters, this model "
                f"has {self.flat.numel()}: it was saved for a different model"
            )
        self.steps = state["steps"]
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        if self.exp_avg is not None:
            self.exp_avg.copy_(state["exp_avg"])
