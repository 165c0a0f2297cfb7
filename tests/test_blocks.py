"""The perception blocks (rlfleet.models.blocks): shapes for every leading-dim layout, gradients,
network randomization, spectral norm, the IMPALA CNN's size, torchvision equivalence of the SE
and inverted residual blocks, and the config errors of build_blocks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from rlfleet.errors import ConfigError
from rlfleet.models.blocks import BLOCKS, Block, InvertedResidual, SqueezeExcitation, build_blocks
from rlfleet.models.flops import count_flops, count_parameters

REFERENCE = Path(__file__).resolve().parent / "data" / "torchvision_reference.pt"

# (input shape, section) per kind: small inputs that every kind accepts.
IMAGE = (3, 16, 16)
CASES: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {
    "conv": (IMAGE, {"channels": [8, 8], "kernels": [3], "strides": [2, 1], "paddings": [1]}),
    "nature_cnn": ((2, 36, 36), {"feature_size": 32, "channels": [8, 8, 8]}),
    "mlp": ((5,), {"hidden_sizes": [16, 8], "activation": "tanh"}),
    "impala_cnn": (IMAGE, {"channels": [4, 8], "feature_size": 16}),
    "resnet": (IMAGE, {"blocks": 2, "channels": 8, "stride": 2, "norm": "batch"}),
    "se": ((8, 6, 6), {"reduction": 4}),
    "cbam": ((8, 6, 6), {"reduction": 2}),
    "inverted_residual": ((8, 6, 6), {"expand_ratio": 4.0, "se": True, "activation": "hardswish"}),
    "attention": (IMAGE, {"embed_dim": 16, "heads": 2, "layers": 2, "patch_size": 4, "pool": "mean"}),
    "random_conv": (IMAGE, {"clean_probability": 0.0}),
}


def test_every_kind_has_a_case():
    assert set(CASES) == set(BLOCKS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_output_shapes_for_every_leading_layout(kind: str):
    torch.manual_seed(0)
    shape, options = CASES[kind]
    stack = build_blocks(shape, {"kind": kind, **options})
    out = stack.output_shape
    assert stack(torch.randn(3, 2, *shape)).shape == (3, 2, *out)
    assert stack(torch.randn(4, *shape)).shape == (4, *out)
    assert stack(torch.randn(*shape)).shape == out
    assert stack.output_size == torch.Size(out).numel()


@pytest.mark.parametrize("kind", sorted(k for k in CASES if k != "random_conv"))
def test_gradients_reach_every_parameter(kind: str):
    torch.manual_seed(0)
    shape, options = CASES[kind]
    stack = build_blocks(shape, {"kind": kind, **options})
    params = dict(stack.named_parameters())
    assert params
    stack(torch.randn(3, 2, *shape)).sum().backward()
    missing = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{kind}: no gradient for {missing}"


def test_random_conv_has_no_parameters_and_passes_gradients_to_its_input():
    stack = build_blocks(IMAGE, {"kind": "random_conv", "clean_probability": 0.0}).train()
    assert count_parameters(stack) == 0 and not list(stack.buffers())
    x = torch.randn(2, *IMAGE, requires_grad=True)
    stack(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_random_conv_redraws_in_training_and_is_the_identity_in_eval():
    torch.manual_seed(0)
    block = build_blocks(IMAGE, {"kind": "random_conv", "clean_probability": 0.0})
    x = torch.rand(4, *IMAGE)
    block.train()
    first, second = block(x), block(x)
    assert first.shape == x.shape
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, x)
    block.eval()
    assert torch.equal(block(x), x)
    pixels = torch.randint(0, 256, (2, *IMAGE), dtype=torch.uint8)
    assert torch.allclose(block(pixels), pixels.float() / 255)


def test_random_conv_weights_follow_xavier_normal():
    torch.manual_seed(0)
    block = build_blocks((32, 3, 3), {"kind": "random_conv", "clean_probability": 0.0}).train()
    # A unit impulse at the centre of channel 0 reads out the 32 x 3 x 3 weights from that channel.
    impulse = torch.zeros(1, 32, 3, 3)
    impulse[0, 0, 1, 1] = 1.0
    taps = torch.stack([block(impulse).flatten() for _ in range(20)])
    std = (2 / (32 * 9 + 32 * 9)) ** 0.5  # Xavier normal: sqrt(2 / (fan_in + fan_out))
    assert taps.std().item() == pytest.approx(std, rel=0.05)
    assert abs(taps.mean().item()) < 0.1 * std


def test_random_conv_clean_probability():
    torch.manual_seed(0)
    x = torch.rand(1, *IMAGE)
    always = build_blocks(IMAGE, {"kind": "random_conv", "clean_probability": 1.0}).train()
    assert torch.equal(always(x), x)
    tiny = torch.rand(1, 1, 3, 3)
    tenth = build_blocks((1, 3, 3), {"kind": "random_conv"}).blocks[0].train()
    clean = sum(torch.equal(tenth.forward_batch(tiny), tiny) for _ in range(1000))
    assert 60 <= clean <= 140  # the default 0.1 (Lee et al. 2020): binomial(1000, 0.1) within 4.2 sd


def test_spectral_norm_makes_the_largest_singular_value_one():
    torch.manual_seed(0)
    sections = [
        {"kind": "conv", "channels": [8, 8], "kernels": [3], "strides": [1], "spectral_norm": True},
        {"kind": "mlp", "hidden_sizes": [32, 16], "spectral_norm": True},
    ]
    stack = build_blocks((3, 8, 8), sections).train()
    for _ in range(20):  # one power iteration per layer and training-mode forward
        stack(torch.randn(4, 3, 8, 8))
    stack.eval()  # reading a weight in training mode would run another iteration
    layers = [m for m in stack.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) == 4
    for layer in layers:
        assert torch.nn.utils.parametrize.is_parametrized(layer, "weight")
        w = layer.weight.detach()
        sigma = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), 2).item()
        assert sigma == pytest.approx(1.0, abs=1e-2)
    plain = build_blocks((3, 8, 8), [sections[0], {"kind": "mlp", "hidden_sizes": [32]}])
    last = plain.blocks[1].net.net[0]
    assert not torch.nn.utils.parametrize.is_parametrized(last, "weight")


def test_impala_cnn_size_matches_the_hand_count():
    stack = build_blocks((3, 64, 64), {"kind": "impala_cnn", "channels": [16, 32, 32]})
    assert stack.output_shape == (256,)
    # stage convs 448, 4,640, 9,248; residual convs 4 x 2,320 = 9,280 and 2 x 4 x 9,248 = 73,984; fc 524,544
    assert count_parameters(stack) == 448 + 9_280 + 4_640 + 36_992 + 9_248 + 36_992 + 524_544 == 622_144
    # multiply-adds: 64x64x16x27 + 4x32x32x16x144 + 32x32x32x144 + 4x16x16x32x288 + 16x16x32x288
    # + 4x8x8x32x288 + 2048x256 = 30,605,312
    assert count_flops(stack, (3, 64, 64)) == pytest.approx(61.2e6, rel=0.01)
    assert count_flops(stack, (3, 64, 64)) == 2 * 30_605_312


def test_count_flops_leaves_the_module_as_it_was():
    stack = build_blocks(IMAGE, {"kind": "resnet", "channels": 4, "norm": "batch"}).train()
    before = {k: v.clone() for k, v in stack.state_dict().items()}
    # two units of two 3x3 convs (3 -> 4, then 4 -> 4) and a 1x1 projection (3 -> 4), at 16x16
    assert count_flops(stack, IMAGE) == 2 * 256 * 4 * (27 + 36 + 3 + 36 + 36)
    assert all(m.training for m in stack.modules())
    assert all(torch.equal(v, before[k]) for k, v in stack.state_dict().items())


def test_nature_cnn_block_is_the_nature_cnn():
    from rlfleet.models.cnn import NatureCNN

    block = build_blocks((4, 84, 84), {"kind": "nature_cnn"})
    reference = NatureCNN((4, 84, 84))
    assert count_parameters(block) == count_parameters(reference) == 1_684_128
    reference.load_state_dict(block.blocks[0].net.state_dict())
    pixels = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert torch.equal(block(pixels), reference(pixels))


def test_uint8_images_are_scaled_by_the_first_conv_block():
    torch.manual_seed(0)
    stack = build_blocks(IMAGE, [{"kind": "conv", "channels": [4], "kernels": [3], "strides": [1]}, {"kind": "mlp"}])
    pixels = torch.randint(0, 256, (2, *IMAGE), dtype=torch.uint8)
    assert torch.allclose(stack(pixels), stack(pixels.float() / 255), atol=1e-6)


def test_attention_over_entities_is_order_equivariant():
    torch.manual_seed(0)
    block = build_blocks((5, 3), {"kind": "attention", "embed_dim": 8, "heads": 2, "pool": "none"}).blocks[0]
    entities = torch.randn(2, 5, 3)
    order = torch.tensor([3, 0, 4, 1, 2])
    assert block.output_shape == (5, 8)
    assert torch.allclose(block(entities)[:, order], block(entities[:, order]), atol=1e-5)
    flat = build_blocks((5, 3), {"kind": "attention", "embed_dim": 8, "heads": 2, "pool": "flatten"})
    assert flat.output_shape == (40,)


def test_a_vector_block_flattens_an_image():
    stack = build_blocks(IMAGE, [{"kind": "se"}, {"kind": "mlp", "hidden_sizes": [7]}])
    assert stack.blocks[1].input_shape == IMAGE
    assert stack(torch.randn(3, 2, *IMAGE)).shape == (3, 2, 7)


class Doubler(Block):
    """A user block for the ``_target_`` test: ``[*lead, F] -> [*lead, F]``, ``x * factor``."""

    def __init__(self, input_shape, factor: float = 2.0):
        super().__init__(input_shape)
        self.factor = factor
        self.output_shape = self.input_shape

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_a_target_section_builds_a_user_block():
    stack = build_blocks((4,), [{"_target_": "test_blocks:Doubler", "factor": 3.0}, {"kind": "mlp"}])
    assert isinstance(stack.blocks[0], Doubler)
    assert torch.equal(stack.blocks[0](torch.ones(4)), torch.full((4,), 3.0))
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\]\.facter.*'model\.encoder\[0\]\.factor'"):
        build_blocks((4,), [{"_target_": "test_blocks:Doubler", "facter": 3.0}])
    with pytest.raises(ConfigError, match="not a rlfleet.models.blocks.Block subclass"):
        build_blocks((4,), [{"_target_": "torch.nn:Linear"}])


# ----- torchvision equivalence -----
def reference_case(name: str) -> dict[str, Any]:
    return torch.load(REFERENCE, weights_only=True)["cases"][name]


# torchvision's keys -> ours. InvertedResidual v2 (torchvision: ``conv = [expand ConvBNReLU6,
# depthwise ConvBNReLU6, project conv, project BN]``) and v3 (``block = [expand, depthwise, SE,
# project]``, each but SE a Conv2dNormActivation ``[conv, norm]``) map onto our ``expand``,
# ``depthwise``, ``se`` and ``project`` (each ``conv``, ``norm``); SqueezeExcitation's keys
# (``fc1``, ``fc2``) are ours.
KEY_MAPS = {
    "se": [],
    "v2": [
        (r"^conv\.0\.0\.", "expand.conv."),
        (r"^conv\.0\.1\.", "expand.norm."),
        (r"^conv\.1\.0\.", "depthwise.conv."),
        (r"^conv\.1\.1\.", "depthwise.norm."),
        (r"^conv\.2\.", "project.conv."),
        (r"^conv\.3\.", "project.norm."),
    ],
    "v3": [
        (r"^block\.0\.0\.", "expand.conv."),
        (r"^block\.0\.1\.", "expand.norm."),
        (r"^block\.1\.0\.", "depthwise.conv."),
        (r"^block\.1\.1\.", "depthwise.norm."),
        (r"^block\.2\.", "se."),
        (r"^block\.3\.0\.", "project.conv."),
        (r"^block\.3\.1\.", "project.norm."),
    ],
}


def ours(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mapped = {}
    for key, value in state.items():
        for pattern, replacement in KEY_MAPS[name]:
            key = re.sub(pattern, replacement, key)
        mapped[key] = value
    return mapped


@pytest.mark.parametrize("name", ["se", "v2", "v3"])
def test_blocks_equal_torchvision(name: str):
    case = reference_case(name)
    x, expected = case["input"], case["output"]
    cls = SqueezeExcitation if name == "se" else InvertedResidual
    block = cls(tuple(x.shape[1:]), **case["config"])
    block.load_state_dict(ours(name, case["state_dict"]))  # strict: every key maps, none is left over
    block.eval()
    assert block.output_shape == tuple(expected.shape[1:])
    with torch.no_grad():
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_the_reference_file_is_small_and_plain():
    assert REFERENCE.stat().st_size < 200_000
    data = torch.load(REFERENCE, weights_only=True)
    assert set(data["cases"]) == {"se", "v2", "v3"}


# ----- configuration errors -----
def test_unknown_kind_names_the_nearest_kind_and_lists_them():
    with pytest.raises(ConfigError) as err:
        build_blocks(IMAGE, [{"kind": "se"}, {"kind": "impala"}])
    message = str(err.value)
    assert "model.encoder[1].kind 'impala'" in message
    assert "did you mean 'impala_cnn'?" in message
    assert "attention, cbam, conv" in message and "\n" not in message


def test_unknown_option_names_the_nearest_option():
    with pytest.raises(
        ConfigError, match=r"'model\.encoder\[1\]\.chanels'; did you mean 'model\.encoder\[1\]\.channels'"
    ):
        build_blocks(IMAGE, [{"kind": "se"}, {"kind": "impala_cnn", "chanels": [16]}])
    with pytest.raises(ConfigError, match=r"model\.encoder\.hidden_size.*did you mean 'model\.encoder\.hidden_sizes'"):
        build_blocks((4,), {"kind": "mlp", "hidden_size": [16]})


def test_wrong_option_values_are_rejected():
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\]\.pool.*'mean'.*did you mean 'mean'"):
        build_blocks(IMAGE, [{"kind": "attention", "pool": "maen"}])
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\]\.channels\[1\]' must be >= 1"):
        build_blocks(IMAGE, [{"kind": "conv", "channels": [4, 0]}])
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\] \(conv\): kernels has 2 entries for 3 conv layers"):
        build_blocks(IMAGE, [{"kind": "conv", "kernels": [3, 3]}])
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\]\.spectral_norm' expects bool"):
        build_blocks(IMAGE, [{"kind": "se", "spectral_norm": "yes"}])


def test_incompatible_shape_names_the_block_the_shape_and_what_it_needs():
    with pytest.raises(ConfigError) as err:
        build_blocks(IMAGE, [{"kind": "mlp", "hidden_sizes": [32]}, {"kind": "conv"}])
    assert str(err.value) == (
        "model.encoder[1] (conv) got input shape (32,), needs an image [C, H, W]; put image blocks before vector blocks"
    )
    with pytest.raises(
        ConfigError,
        match=r"model\.encoder \(nature_cnn\) got input shape \(3, 16, 16\), needs an image of at least 36x36 ",
    ):
        build_blocks(IMAGE, {"kind": "nature_cnn"})
    with pytest.raises(ConfigError, match=r"\(attention\) got input shape \(3, 16, 16\), needs .*patch_size 5"):
        build_blocks(IMAGE, {"kind": "attention", "patch_size": 5})


def test_a_section_without_kind_or_an_empty_list_is_rejected():
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\] needs 'kind' \(one of attention, "):
        build_blocks(IMAGE, [{"channels": [4]}])
    with pytest.raises(ConfigError, match="lists no blocks"):
        build_blocks(IMAGE, [])
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\]\.input_shape is inferred"):
        build_blocks(IMAGE, [{"kind": "se", "input_shape": [3, 16, 16]}])
    with pytest.raises(ConfigError, match=r"model\.encoder\[0\]\._target_: cannot import block module 'nope'"):
        build_blocks(IMAGE, [{"_target_": "nope:Block"}])
