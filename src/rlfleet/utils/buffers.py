"""Allocation and conversion of (nested) array buffers.

A *buffer* is a numpy array, a torch tensor, a namedarraytuple of buffers, or ``None``.
Conversions between numpy and torch share memory (no copy) wherever dtypes allow it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlfleet.utils.namedarraytuple import is_namedtuple, namedarraytuple


def map_buffer(fn: Callable[[Any], Any], buffer: Any) -> Any:
    """Apply ``fn`` to every leaf array of a nested buffer, keeping the structure."""
    if buffer is None:
        return None
    if is_namedtuple(buffer):
        return type(buffer)(*(map_buffer(fn, b) for b in buffer))
    return fn(buffer)


def buffer_from_example(example: Any, leading_dims: tuple[int, ...] | int, share_memory: bool = False) -> Any:
    """Zero-filled numpy buffer shaped ``leading_dims + example.shape`` for every leaf.

    With ``share_memory=True`` every leaf lives in shared memory (a torch shared tensor viewed
    as numpy) so that worker processes started with ``spawn`` can write into it.
    """
    if isinstance(leading_dims, int):
        leading_dims = (leading_dims,)

    def alloc(leaf):
        arr = np.asarray(leaf)
        shape = tuple(leading_dims) + arr.shape
        if share_memory:
            return torch.zeros(shape, dtype=numpy_to_torch_dtype(arr.dtype)).share_memory_().numpy()
        return np.zeros(shape, dtype=arr.dtype)

    return map_buffer(alloc, example)


def numpy_to_torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def torchify_buffer(buffer: Any) -> Any:
    """numpy -> torch without copying (torch tensors pass through)."""
    return map_buffer(lambda b: b if isinstance(b, torch.Tensor) else torch.from_numpy(np.asarray(b)), buffer)


def numpify_buffer(buffer: Any) -> Any:
    """torch (CPU) -> numpy without copying (numpy arrays pass through)."""
    return map_buffer(lambda b: b.numpy() if isinstance(b, torch.Tensor) else b, buffer)


def buffer_to(buffer: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Any:
    """Move every torch leaf to ``device`` (no-op when already there)."""
    return map_buffer(lambda b: b.to(device=device, dtype=dtype) if dtype else b.to(device), buffer)


def buffer_method(buffer: Any, method: str, *args, **kwargs) -> Any:
    """Call ``leaf.method(*args, **kwargs)`` on every leaf and rebuild the structure."""
    return map_buffer(lambda b: getattr(b, method)(*args, **kwargs), buffer)


def dict_to_namedarraytuple(name: str, d: dict) -> Any:
    """Convert a (nested) dict into a namedarraytuple (keys become fields, sorted)."""
    keys = sorted(d)
    cls = namedarraytuple(name, keys)
    return cls(*(dict_to_namedarraytuple(name + "_" + k, d[k]) if isinstance(d[k], dict) else d[k] for k in keys))


def infer_leading_dims(tensor: torch.Tensor, dim: int) -> tuple[int, int, int, tuple[int, ...]]:
    """Split ``tensor.shape`` into leading dims and the ``dim`` trailing data dims.

    Accepts ``[T,B,*shape]``, ``[B,*shape]`` or ``[*shape]`` and returns
    ``(lead_dim, T, B, shape)`` with ``lead_dim`` in {0, 1, 2}.
    """
    lead_dim = tensor.dim() - dim
    if lead_dim not in (0, 1, 2):
        raise ValueError(f"expected a tensor with {dim} to {dim + 2} dims, got shape {tuple(tensor.shape)}")
    T, B = 1, 1
    shape = tuple(tensor.shape[lead_dim:])
    if lead_dim == 2:
        T, B = tensor.shape[:2]
    elif lead_dim == 1:
        B = tensor.shape[0]
    return lead_dim, T, B, shape


def restore_leading_dims(tensors: Any, lead_dim: int, T: int = 1, B: int = 1) -> Any:
    """Reshape outputs ``[T*B, ...]`` back to the caller's leading dims (inverse of infer)."""
    is_seq = isinstance(tensors, (tuple, list))
    tensors = tensors if is_seq else (tensors,)
    if lead_dim == 2:
        out = tuple(None if t is None else t.view((T, B) + t.shape[1:]) for t in tensors)
    elif lead_dim == 0:
        out = tuple(None if t is None else t.squeeze(0) for t in tensors)
    else:
        out = tuple(tensors)
    if not is_seq:
        return out[0]
    return type(tensors)(out) if not is_namedtuple(tensors) else type(tensors)(*out)


def concat_buffers(buffers: list[Any], dim: int = 0) -> Any:
    """Leaf-wise ``torch.cat`` (or ``np.concatenate``) of buffers with one structure along ``dim``."""
    first = buffers[0]
    if first is None:
        return None
    if is_namedtuple(first):
        return type(first)(*(concat_buffers(list(leaves), dim) for leaves in zip(*buffers)))
    if isinstance(first, torch.Tensor):
        return torch.cat(buffers, dim=dim)
    return np.concatenate(buffers, axis=dim)
