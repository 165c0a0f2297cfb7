"""rlfleet's spaces: numpy-side descriptions of observations and actions.

Converted from Gymnasium spaces by `from_gym`. Dict and Tuple observation spaces become a
`Composite` whose samples are namedarraytuples (Dict keys sorted; Tuple fields ``f0, f1, ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlfleet.utils.namedarraytuple import namedarraytuple


class Space:
    """Base class: ``shape`` and ``dtype`` of one sample, ``null_value()`` and ``sample()``."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def null_value(self) -> Any:
        return np.zeros(self.shape, dtype=self.dtype)

    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError


@dataclass
class Box(Space):
    low: np.ndarray
    high: np.ndarray
    dtype: np.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.low.shape)

    def __repr__(self) -> str:
        return f"Box(shape={self.shape}, dtype={self.dtype})"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        low = np.where(np.isfinite(self.low), self.low, -1.0)
        high = np.where(np.isfinite(self.high), self.high, 1.0)
        if np.issubdtype(self.dtype, np.integer):
            return rng.integers(low, high + 1).astype(self.dtype)
        return rng.uniform(low, high).astype(self.dtype)


@dataclass
class Discrete(Space):
    n: int
    start: int = 0
    dtype: np.dtype = np.dtype(np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(rng.integers(self.n), dtype=self.dtype)


@dataclass
class MultiDiscrete(Space):
    nvec: np.ndarray
    dtype: np.dtype = np.dtype(np.int64)
    start: np.ndarray | None = None  # Gymnasium's per-component offset; rlfleet's values are 0-based

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.nvec.shape)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.nvec).astype(self.dtype)


@dataclass
class Composite(Space):
    """Named sub-spaces; samples and null values are namedarraytuples."""

    spaces: tuple[Space, ...]
    names: tuple[str, ...]
    typename: str = "Observation"

    @property
    def shape(self) -> tuple:  # type: ignore[override]
        return tuple(s.shape for s in self.spaces)

    @property
    def dtype(self):  # type: ignore[override]
        return tuple(s.dtype for s in self.spaces)

    @property
    def tuple_class(self) -> type:
        return namedarraytuple(self.typename, self.names)

    def null_value(self) -> Any:
        return self.tuple_class(*(s.null_value() for s in self.spaces))

    def sample(self, rng: np.random.Generator) -> Any:
        return self.tuple_class(*(s.sample(rng) for s in self.spaces))

    def convert(self, value: dict | tuple) -> Any:
        """Gymnasium Dict/Tuple sample -> namedarraytuple (recursively)."""
        items = [value[n] for n in self.names] if isinstance(value, dict) else list(value)
        return self.tuple_class(
            *(
                s.convert(v) if isinstance(s, Composite) else np.asarray(v, dtype=s.dtype)
                for s, v in zip(self.spaces, items)
            )
        )


@dataclass
class EnvSpaces:
    observation: Space
    action: Space

    @property
    def action_kind(self) -> str:
        """``discrete``, ``box``, ``multi_discrete`` or ``composite``: the action-space kind that
        algorithm specs declare support for."""
        return {Discrete: "discrete", Box: "box", MultiDiscrete: "multi_discrete"}.get(type(self.action), "composite")


def from_gym(space: gym.Space, typename: str = "Observation") -> Space:
    """Convert a Gymnasium space; raises ValueError naming any unsupported space."""
    if isinstance(space, gym.spaces.Box):
        return Box(low=np.asarray(space.low), high=np.asarray(space.high), dtype=np.dtype(space.dtype))
    if isinstance(space, gym.spaces.Discrete):
        return Discrete(n=int(space.n), start=int(space.start))
    if isinstance(space, gym.spaces.MultiBinary):
        return MultiDiscrete(nvec=np.full(space.shape, 2, dtype=np.int64))
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiDiscrete(nvec=np.asarray(space.nvec, dtype=np.int64), start=np.asarray(space.start, dtype=np.int64))
    if isinstance(space, gym.spaces.Dict):
        names = tuple(sorted(space.spaces))
        return Composite(
            spaces=tuple(from_gym(space.spaces[n], f"{typename}_{n}") for n in names), names=names, typename=typename
        )
    if isinstance(space, gym.spaces.Tuple):
        names = tuple(f"f{i}" for i in range(len(space.spaces)))
        return Composite(
            spaces=tuple(from_gym(s, f"{typename}_f{i}") for i, s in enumerate(space.spaces)),
            names=names,
            typename=typename,
        )
    raise ValueError(
        f"unsupported space {type(space).__name__}; rlfleet supports Box, Discrete, MultiDiscrete, Dict, Tuple"
    )
