"""Model size: parameters and forward FLOPs per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def count_parameters(module: nn.Module) -> int:
    """Trainable and frozen parameters of ``module`` (each shared tensor once)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one sample of per-sample shape ``input_shape``: 2 x the multiply-adds of
    every ``nn.Conv2d`` and ``nn.Linear`` call (``out.numel() * in_channels / groups * kh * kw``
    and ``out.numel() * in_features``; biases, activations, pooling, norms and attention's
    matrix products not counted), measured by forward hooks on a zero input ``[1, *input_shape]``
    (on the device of the module's parameters) in eval mode without gradients. The module's
    mode is restored afterwards."""
    macs = 0

    def conv_hook(layer: nn.Conv2d, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = layer.kernel_size
        macs += out.numel() * (layer.in_channels // layer.groups) * kh * kw

    def linear_hook(layer: nn.Linear, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * layer.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    return 2 * macs
