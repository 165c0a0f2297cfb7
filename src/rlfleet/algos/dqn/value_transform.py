"""Invertible value rescaling of the transformed Bellman operator (Pohlen et al. 2018).

Instead of clipping rewards, the network learns ``h(Q)`` and regresses onto

``y = h(R + gamma^n * h^-1(Q_target(s_{t+n}, a*)))``

(``R`` the n-step return, the bootstrap term dropped after termination). ``h`` squashes large
values roughly like a square root while staying invertible; the ``eps * x`` term keeps
``h^-1`` Lipschitz. Both functions are elementwise on tensors of any shape.
"""

from __future__ import annotations

import torch


def h(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``h(x) = sign(x) * (sqrt(|x| + 1) - 1) + eps * x``.

    ``sqrt(|x| + 1) - 1`` is evaluated as ``|x| / (sqrt(|x| + 1) + 1)``, which is exact in value
    and keeps full relative precision for tiny ``|x|``.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    magnitude = x.abs()
    return torch.sign(x) * magnitude / (torch.sqrt(magnitude + 1.0) + 1.0) + eps * x


def h_inverse(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Exact inverse of ``h``: ``h(h_inverse(x)) = x``.

    Pohlen et al.'s closed form is
    ``h^-1(x) = sign(x) * (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1)``.
    It is evaluated here in an algebraically equal form without cancellation: with
    ``t = sqrt(|y| + 1) - 1`` for the preimage ``y``, ``t`` solves ``eps t^2 + (1 + 2 eps) t = |x|``, so

    ``t = 2 |x| / (1 + 2 eps + sqrt((1 + 2 eps)^2 + 4 eps |x|))`` and ``h^-1(x) = sign(x) * t (t + 2)``,

    which is accurate for tiny ``|x|`` and also valid at ``eps = 0`` (``h^-1(x) = sign(x) ((|x| + 1)^2 - 1)``).
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    magnitude = x.abs()
    b = 1.0 + 2.0 * eps
    t = 2.0 * magnitude / (b + torch.sqrt(b * b + 4.0 * eps * magnitude))
    return torch.sign(x) * t * (t + 2.0)
