"""Write ``torchvision_reference.pt``: torchvision's SE and inverted residual blocks' weights, a
fixed input and their eval-mode outputs, for tests/test_blocks.py to compare rlfleet's blocks with.

    python tests/data/make_torchvision_reference.py /path/to/torchvision

The argument is a torchvision source tree (the package folder, holding ``ops/misc.py`` and
``models/mobilenetv2.py``). Only those files and the pure-Python modules they import run: the
``torchvision``, ``torchvision.models``, ``torchvision.ops`` and ``torchvision.transforms``
packages are stubbed in ``sys.modules`` (so no package ``__init__`` loads the compiled extension)
and ``torchvision.transforms._presets`` (the weights' preprocessing presets) is a placeholder.
Those modules need numpy and Pillow. The file holds tensors and plain data only, so it loads with
``torch.load(weights_only=True)``.

Cases (all with ``nn.BatchNorm2d``'s defaults, eval mode, BatchNorm running statistics and
affine parameters drawn at random so that they matter):

- ``se``: ``ops.misc.SqueezeExcitation(16, 4)`` (ReLU, sigmoid gate) on ``[2, 16, 5, 5]``;
- ``v2``: ``mobilenetv2.InvertedResidual(8, 8, stride=1, expand_ratio=6)`` (ReLU6, with the
  skip) on ``[2, 8, 7, 7]``;
- ``v3``: ``mobilenetv3.InvertedResidual`` of 16 -> 24 channels, expanded 48, kernel 5, stride 2,
  SE (hardsigmoid) and hardswish (no skip) on ``[2, 16, 9, 9]``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

SEED = 20240614
OUT = Path(__file__).resolve().parent / "torchvision_reference.pt"


def stub_torchvision(source: Path) -> None:
    """Register empty ``torchvision`` packages whose ``__path__`` is ``source``, so submodules
    import from the tree without any package ``__init__`` running."""
    for name, folder in [
        ("torchvision", source),
        ("torchvision.models", source / "models"),
        ("torchvision.ops", source / "ops"),
        ("torchvision.transforms", source / "transforms"),
    ]:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    presets = types.ModuleType("torchvision.transforms._presets")
    presets.ImageClassification = type("ImageClassification", (), {})
    sys.modules["torchvision.transforms._presets"] = presets


def randomise_batch_norm(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)


def case(module: nn.Module, input_shape: tuple[int, ...], config: dict[str, Any]) -> dict[str, Any]:
    randomise_batch_norm(module)
    module.eval()
    x = torch.randn(*input_shape)
    with torch.no_grad():
        y = module(x)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    return {"config": config, "state_dict": state, "input": x, "output": y}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="torchvision package folder (holding ops/ and models/)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    stub_torchvision(args.source.resolve())
    misc = importlib.import_module("torchvision.ops.misc")
    v2 = importlib.import_module("torchvision.models.mobilenetv2")
    v3 = importlib.import_module("torchvision.models.mobilenetv3")

    torch.manual_seed(SEED)
    cases = {
        "se": case(misc.SqueezeExcitation(16, 4), (2, 16, 5, 5), {"squeeze_channels": 4}),
        "v2": case(
            v2.InvertedResidual(8, 8, stride=1, expand_ratio=6),
            (2, 8, 7, 7),
            {"channels": 8, "expand_ratio": 6.0, "stride": 1, "activation": "relu6"},
        ),
        "v3": case(
            v3.InvertedResidual(
                v3.InvertedResidualConfig(16, 5, 48, 24, True, "HS", 2, 1, 1.0), norm_layer=nn.BatchNorm2d
            ),
            (2, 16, 9, 9),
            {
                "channels": 24,
                "expanded_channels": 48,
                "kernel": 5,
                "stride": 2,
                "activation": "hardswish",
                "se": True,
            },
        ),
    }
    torch.save({"seed": SEED, "source": "torchvision " + version(args.source), "cases": cases}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


def version(source: Path) -> str:
    """torchvision's version string from ``version.py`` in the tree, or ``unknown``."""
    path = source / "version.py"
    if not path.exists():
        return "unknown"
    for line in path.read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("'\"")
    return "unknown"


if __name__ == "__main__":
    main()
