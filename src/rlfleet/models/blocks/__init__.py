"""Perception blocks and their composition from config sections (``model.encoder``).

``build_blocks((4, 84, 84), [{"kind": "impala_cnn"}, {"kind": "mlp", "hidden_sizes": [256],
"spectral_norm": True}])`` builds each block on the previous block's ``output_shape`` and returns
a `BlockStack`. A section is ``{kind: <name in BLOCKS>, **options}`` or ``{_target_:
"pkg.module:Class", **options}`` (a user's `Block` subclass); ``spectral_norm: true`` in any
section wraps that block's Linear/Conv2d layers (`apply_spectral_norm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlfleet.config.rules import EncoderSections
from rlfleet.config.validate import check_kwargs, check_value, closest
from rlfleet.errors import ConfigError
from rlfleet.models.blocks.attention import Cbam, SelfAttention, SqueezeExcitation
from rlfleet.models.blocks.base import Block, BlockStack, ShapeError
from rlfleet.models.blocks.conv import ConvStack, NatureCnnBlock
from rlfleet.models.blocks.impala import ImpalaCnn
from rlfleet.models.blocks.mlp import MlpBlock
from rlfleet.models.blocks.mobilenet import InvertedResidual
from rlfleet.models.blocks.random_conv import RandomConv
from rlfleet.models.blocks.residual import PreActResNet
from rlfleet.models.blocks.spectral import apply_spectral_norm
from rlfleet.utils.imports import import_object

BLOCKS: dict[str, type[Block]] = {
    "conv": ConvStack,
    "nature_cnn": NatureCnnBlock,
    "mlp": MlpBlock,
    "impala_cnn": ImpalaCnn,
    "resnet": PreActResNet,
    "se": SqueezeExcitation,
    "cbam": Cbam,
    "inverted_residual": InvertedResidual,
    "attention": SelfAttention,
    "random_conv": RandomConv,
}
"""Block classes by the ``kind`` name a config section gives."""


def block_class(section: Mapping[str, Any], name: str) -> tuple[str, type[Block]]:
    """(a label for messages, the class) that ``section`` names by ``kind`` or ``_target_``."""
    if "kind" in section and "_target_" in section:
        raise ConfigError(f"{name} gives both 'kind' and '_target_'; keep one")
    if "_target_" in section:
        path = check_value(section["_target_"], str, f"{name}._target_")
        try:
            cls = import_object(path, "block")
        except ConfigError as err:
            raise ConfigError(f"{name}._target_: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, Block)):
            raise ConfigError(f"{name}._target_ {path!r} is not a rlfleet.models.blocks.Block subclass")
        return path, cls
    kinds = ", ".join(sorted(BLOCKS))
    if "kind" not in section:
        raise ConfigError(f"{name} needs 'kind' (one of {kinds}) or '_target_'")
    kind = section["kind"]
    if kind not in BLOCKS:
        near = closest(str(kind), BLOCKS)
        hint = f"; did you mean {near!r}?" if near else ""
        raise ConfigError(f"{name}.kind {kind!r} is not a block kind{hint} (kinds: {kinds})")
    return kind, BLOCKS[kind]


def build_block(input_shape: tuple[int, ...], section: Mapping[str, Any], name: str) -> Block:
    """The block ``section`` describes, built on ``input_shape``; ``name`` (``model.encoder[1]``)
    prefixes every error."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{name} must be a mapping such as {{kind: conv}}, got {section!r}")
    label, cls = block_class(section, name)
    if "input_shape" in section:
        raise ConfigError(f"{name}.input_shape is inferred from the previous block or the observation; remove it")
    options = {k: v for k, v in section.items() if k not in ("kind", "_target_", "spectral_norm")}
    spectral = check_value(section.get("spectral_norm", False), bool, f"{name}.spectral_norm")
    check_kwargs(cls, options, name, skip=("input_shape",))
    try:
        block = cls(input_shape, **options)
    except ShapeError as err:
        raise ConfigError(f"{name} ({label}) got input shape {input_shape}, needs {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{name} ({label}): {err}") from None
    return apply_spectral_norm(block) if spectral else block


def build_blocks(input_shape: Sequence[int], sections: EncoderSections, where: str = "model.encoder") -> BlockStack:
    """``[*lead, *input_shape] -> [*lead, *output_shape]``: the blocks of ``sections`` (one
    mapping or a list of them) in order, each built on the previous one's ``output_shape``.
    Errors are ConfigErrors naming the section (``f"{where}[{i}]"``, or ``where`` for a single
    mapping): an unknown kind (with the nearest kind and the list), an unknown option (with the
    nearest option), a wrong option value, or an input shape the block cannot take."""
    single = isinstance(sections, Mapping)
    listed = [sections] if single else list(sections)
    if not listed:
        raise ConfigError(f"{where} lists no blocks; give at least one section such as {{kind: mlp}}")
    shape = tuple(int(d) for d in input_shape)
    blocks = []
    for i, section in enumerate(listed):
        block = build_block(shape, section, where if single else f"{where}[{i}]")
        blocks.append(block)
        shape = block.output_shape
    return BlockStack(blocks)


__all__ = [
    "BLOCKS",
    "Block",
    "BlockStack",
    "Cbam",
    "ConvStack",
    "ImpalaCnn",
    "InvertedResidual",
    "MlpBlock",
    "NatureCnnBlock",
    "PreActResNet",
    "RandomConv",
    "SelfAttention",
    "ShapeError",
    "SqueezeExcitation",
    "apply_spectral_norm",
    "build_block",
    "build_blocks",
]
