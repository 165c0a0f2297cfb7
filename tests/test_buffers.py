"""Buffers: allocation from examples, shared memory, zero-copy conversions, leading dims."""

import multiprocessing

import numpy as np
import pytest
import torch

from rlfleet.utils.buffers import (
    buffer_from_example,
    buffer_method,
    buffer_to,
    infer_leading_dims,
    map_buffer,
    numpify_buffer,
    numpy_to_torch_dtype,
    restore_leading_dims,
    torchify_buffer,
)
from rlfleet.utils.namedarraytuple import namedarraytuple

Obs = namedarraytuple("BufObs", ["image", "vec"])
Step = namedarraytuple("BufStep", ["observation", "reward", "done", "action", "extra"])


def _example():
    obs = Obs(np.full((3, 4, 4), 7, np.uint8), np.ones(5, np.float32))
    return Step(obs, np.float32(1.5), np.bool_(True), np.int64(3), None)


@pytest.mark.parametrize("share_memory", [False, True])
@pytest.mark.parametrize("leading", [6, (6,), (2, 3)])
def test_buffer_from_example_shapes_dtypes_zeros(share_memory, leading):
    lead = (leading,) if isinstance(leading, int) else leading
    buf = buffer_from_example(_example(), leading, share_memory=share_memory)
    assert type(buf) is Step and type(buf.observation) is Obs
    assert buf.extra is None
    expected = {
        "image": (lead + (3, 4, 4), np.uint8),
        "vec": (lead + (5,), np.float32),
    }
    for name, leaf in buf.observation.items():
        assert isinstance(leaf, np.ndarray)
        assert (leaf.shape, leaf.dtype) == expected[name]
    assert (buf.reward.shape, buf.reward.dtype) == (lead, np.float32)
    assert (buf.done.shape, buf.done.dtype) == (lead, np.bool_)
    assert (buf.action.shape, buf.action.dtype) == (lead, np.int64)
    # Zero filled (not copies of the example's values) and writable.
    for leaf in (buf.observation.image, buf.observation.vec, buf.reward, buf.done, buf.action):
        assert not leaf.any()
        assert leaf.flags.writeable
    first = (0,) * len(lead)
    buf[first] = _example()
    assert buf.observation.image[first].min() == 7 and buf.observation.vec[first].min() == 1.0
    assert buf.reward[first] == 1.5 and buf.done[first] and buf.action[first] == 3
    assert buf.done.sum() == 1 and buf.reward.sum() == 1.5


def test_buffer_from_example_python_scalars():
    buf = buffer_from_example(Obs(0.0, 0), 4)
    assert buf.image.shape == (4,) and buf.image.dtype == np.float64
    assert buf.vec.shape == (4,) and np.issubdtype(buf.vec.dtype, np.integer)


def test_shared_memory_leaves_are_backed_by_shared_torch_storage():
    buf = buffer_from_example(_example(), (2, 3), share_memory=True)
    for leaf in (buf.observation.image, buf.observation.vec, buf.reward, buf.done, buf.action):
        owner = leaf.base
        assert isinstance(owner, torch.Tensor) and owner.is_shared()
        assert owner.dtype == numpy_to_torch_dtype(leaf.dtype)
        # The numpy view and the shared tensor are the same memory.
        leaf.reshape(-1)[-1] = 1
        assert owner.reshape(-1)[-1].item() == 1


def test_shared_memory_is_visible_to_spawned_process():
    buf = buffer_from_example(np.zeros(3, np.float32), (4,), share_memory=True)
    shared = buf.base
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        # The child fills the shared tensor in place; the parent's numpy view must see it.
        pool.apply_async(torch.Tensor.fill_, (shared[1], 2.5)).get(timeout=60)
    np.testing.assert_array_equal(buf[1], 2.5)
    np.testing.assert_array_equal(buf[[0, 2, 3]], 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_, np.int8, np.float16])
def test_numpy_to_torch_dtype(dtype):
    assert torch.zeros(1, dtype=numpy_to_torch_dtype(np.dtype(dtype))).numpy().dtype == np.dtype(dtype)


def test_torchify_numpify_are_zero_copy_both_ways():
    buf = buffer_from_example(_example(), (2,))
    t = torchify_buffer(buf)
    assert type(t) is Step and type(t.observation) is Obs and t.extra is None
    assert t.observation.image.dtype == torch.uint8 and t.reward.dtype == torch.float32
    assert t.done.dtype == torch.bool and t.action.dtype == torch.int64
    # torch -> numpy view
    t.observation.vec[1, 2] = 4.0
    t.done[0] = True
    assert buf.observation.vec[1, 2] == 4.0 and buf.done[0]
    # numpy -> torch view
    buf.action[1] = 11
    buf.observation.image[0, 0, 0, 0] = 200
    assert t.action[1].item() == 11 and t.observation.image[0, 0, 0, 0].item() == 200
    # numpify gives back views on the same memory, and passes numpy through untouched.
    n = numpify_buffer(t)
    assert np.shares_memory(n.observation.vec, buf.observation.vec)
    n.reward[1] = -3.0
    assert t.reward[1].item() == -3.0 and buf.reward[1] == -3.0
    assert numpify_buffer(buf).reward is buf.reward
    assert torchify_buffer(t).reward is t.reward


def test_torchify_shared_memory_buffer_is_zero_copy():
    buf = buffer_from_example(np.zeros(2, np.float32), 3, share_memory=True)
    t = torchify_buffer(buf)
    t[2, 1] = 9.0
    assert buf[2, 1] == 9.0


def test_buffer_to_and_buffer_method():
    t = torchify_buffer(buffer_from_example(_example(), (2,)))
    moved = buffer_to(t, "cpu")
    assert moved.reward is t.reward  # no-op on the same device
    as_double = buffer_to(t.observation, dtype=torch.float64)
    assert as_double.image.dtype == torch.float64 and as_double.vec.dtype == torch.float64
    assert as_double.image.shape == (2, 3, 4, 4)
    reshaped = buffer_method(t.observation, "reshape", 2, -1)
    assert reshaped.image.shape == (2, 48) and reshaped.vec.shape == (2, 5)
    cloned = buffer_method(t, "clone")
    cloned.reward[0] = 5.0
    assert t.reward[0].item() == 0.0 and cloned.extra is None
    assert map_buffer(lambda b: b.shape, t).observation.vec == (2, 5)
    assert map_buffer(lambda b: b, None) is None


@pytest.mark.parametrize(
    "shape, lead_dim, T, B",
    [((7, 3, 4, 5), 2, 7, 3), ((3, 4, 5), 1, 1, 3), ((4, 5), 0, 1, 1), ((1, 1, 4, 5), 2, 1, 1)],
)
def test_infer_and_restore_leading_dims_round_trip(shape, lead_dim, T, B):
    x = torch.randn(shape)
    got = infer_leading_dims(x, 2)
    assert got == (lead_dim, T, B, (4, 5))
    flat = x.reshape(T * B, 4, 5)
    out_a = flat.sum(-1)  # [T*B, 4]
    out_b = flat[:, 0, 0]  # [T*B]
    a, b = restore_leading_dims((out_a, out_b), lead_dim, T, B)
    assert a.shape == shape[:lead_dim] + (4,)
    assert b.shape == shape[:lead_dim]
    torch.testing.assert_close(a, x.sum(-1))
    torch.testing.assert_close(b, x[..., 0, 0])
    single = restore_leading_dims(out_a, lead_dim, T, B)
    assert isinstance(single, torch.Tensor) and single.shape == a.shape
    as_list = restore_leading_dims([out_a, None], lead_dim, T, B)
    assert isinstance(as_list, list) and as_list[1] is None and as_list[0].shape == a.shape


def test_restore_leading_dims_keeps_namedtuple_type():
    Out = namedarraytuple("BufOut", ["mean", "std"])
    out = restore_leading_dims(Out(torch.zeros(6, 2), torch.ones(6, 2)), 2, 2, 3)
    assert type(out) is Out and out.mean.shape == (2, 3, 2) and out.std.shape == (2, 3, 2)


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 5)])
def test_infer_leading_dims_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match="expected a tensor"):
        infer_leading_dims(torch.zeros(shape), 2)
