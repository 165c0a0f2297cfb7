"""Checkpoints: one file per save under ``run_dir/checkpoints/``, written atomically.

Loading a checkpoint never runs code from the file:

- The file is read with ``torch.load(weights_only=True)``: only tensors, plain containers and
  numbers, plus what ``_SAFE_GLOBALS`` admits for the duration of the load (numpy arrays,
  dtypes and scalars, and namedarraytuples, which rebuild from their name, fields and values).
- Envs (for exact resume) are saved as ``pickle`` bytes, which ``torch.load`` returns as plain
  bytes. They are only ever unpickled by ``restricted_loads``, whose ``find_class`` admits
  exactly the globals that pickling the freshly built envs of the resuming run references
  (listed with ``pickletools``, see ``pickle_globals``), and always refuses the globals that
  could run code (``getattr``, ``eval``, ``exec``, ``__import__``, ``os``, ``subprocess``,
  ``sys``, ... see ``is_refused_global``). Envs whose own pickle needs a refused global are
  not saved at all (a resumed run restarts their episodes, as for unpicklable envs).
- ``check_checkpoint`` then reports, in one line, a missing part, a checkpoint written by
  another algorithm, or model tensors of another shape, before anything is restored.

What remains trusted is the code of the env classes themselves: a crafted env payload can
construct the run's own env classes with arguments of its choosing, nothing else.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import random
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlfleet.errors import CheckpointError
from rlfleet.utils.atomic import atomic_write
from rlfleet.utils.namedarraytuple import _rebuild as _rebuild_namedarraytuple

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")

# What torch.load(weights_only=True) may build besides tensors and plain data: numpy arrays,
# dtypes (one class per dtype, the object dtype excepted) and scalars, and namedarraytuples.
# The numpy 1.x module path is admitted too, for checkpoints written with numpy 1.
_SAFE_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    _reconstruct,
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
    scalar,
    (scalar, "numpy.core.multiarray.scalar"),
    _rebuild_namedarraytuple,
    *sorted({type(np.dtype(code)) for code in np.typecodes["All"] if code != "O"}, key=str),
]

# Plain data an env payload may always hold, whether or not the fresh envs do yet (an env
# whose attribute is None at reset holds a numpy scalar after a step): numpy arrays, dtypes
# and scalars, and ordered dicts.
_DATA_GLOBALS = frozenset(
    [(m, n) for m in ("numpy._core.multiarray", "numpy.core.multiarray") for n in ("_reconstruct", "scalar")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")]
)

#: Every part a checkpoint holds (``check_checkpoint`` reports the first one missing).
PARTS = ("config", "runner", "agent", "algo", "sampler", "rng")

# Never admitted from an env payload, even where the fresh envs' own pickle references them:
# everything that can call, import or reach arbitrary code.
_REFUSED_MODULES = frozenset(
    "os posix nt subprocess sys shutil importlib pickle _pickle marshal runpy code codeop ctypes "
    "types operator _operator functools _functools io _io pathlib socket pty platform signal "
    "tempfile webbrowser multiprocessing threading _thread asyncio inspect pdb bdb timeit shelve "
    "dill cloudpickle torch _posixsubprocess".split()
)
_SAFE_BUILTINS = frozenset(
    "bool int float complex str bytes bytearray list tuple dict set frozenset slice range object".split()
)


def is_refused_global(module: str, name: str) -> bool:
    """Whether a pickled env may never reference ``module.name`` (builtins other than plain
    data types, os, subprocess, sys, importlib, pickle, operator, functools, ...)."""
    if module in ("builtins", "__builtin__"):
        return name not in _SAFE_BUILTINS
    return module.split(".")[0] in _REFUSED_MODULES


_STRING_OPS = frozenset("STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8".split())


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """The ``(module, name)`` globals a pickle references (GLOBAL, INST and STACK_GLOBAL
    opcodes), read with ``pickletools`` without unpickling anything. Meant for pickles this
    process just wrote; a STACK_GLOBAL whose operands it cannot follow raises ValueError."""
    found: set[tuple[str, str]] = set()
    pushed: list[Any] = []  # what each opcode pushed: the string, or None for anything else
    memo: dict[Any, Any] = {}
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, name = arg.split(" ", 1)
            found.add((module, name))
            pushed.append(None)
        elif op.name == "STACK_GLOBAL":
            module, name = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            if not (isinstance(module, str) and isinstance(name, str)):
                raise ValueError("a STACK_GLOBAL whose module and name are not the two strings before it")
            found.add((module, name))
            pushed[-2:] = [None]
        elif op.name in _STRING_OPS:
            pushed.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif op.stack_after:
            pushed.append(None)
    return found


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, allowed: set[tuple[str, str]], what: str):
        super().__init__(io.BytesIO(data))
        self.allowed, self.what = allowed, what

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed or is_refused_global(module, name):
            raise CheckpointError(
                f"the saved {self.what} reference {module}.{name}, which the {self.what} of this run do not use: "
                "refusing to unpickle them"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"the saved {self.what} hold a persistent reference: refusing to unpickle them")


def restricted_loads(data: bytes, allowed: Iterable[tuple[str, str]], what: str = "envs") -> Any:
    """Unpickle ``data`` admitting only the ``allowed`` ``(module, name)`` globals and numpy
    arrays, dtypes and scalars (refused ones never); CheckpointError otherwise, or when
    ``data`` is not a valid pickle."""
    if not isinstance(data, bytes | bytearray):
        raise CheckpointError(f"the saved {what} are not a pickle ({type(data).__name__})")
    try:
        return _RestrictedUnpickler(bytes(data), set(allowed) | _DATA_GLOBALS, what).load()
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged pickle raises many types
        raise CheckpointError(f"the saved {what} are damaged ({type(err).__name__})") from None


def check_pickled_state(saved: Any, fresh: Any, what: str = "envs") -> None:
    """Unpickle (and discard) every bytes payload in ``saved`` with ``restricted_loads``,
    admitting the globals of the bytes payloads of ``fresh`` (the same state of freshly built
    objects): CheckpointError for one that needs anything else."""
    allowed: set[tuple[str, str]] = set()
    for payload in _payloads(fresh):
        allowed |= pickle_globals(payload)
    for payload in _payloads(saved):
        restricted_loads(payload, allowed, what)


def _payloads(state: Any) -> list[bytes]:
    if isinstance(state, bytes | bytearray):
        return [bytes(state)]
    if isinstance(state, Mapping):
        return [p for value in state.values() for p in _payloads(value)]
    if isinstance(state, list | tuple):
        return [p for value in state for p in _payloads(value)]
    return []


class Checkpoint(dict):
    """A loaded checkpoint: its parts, and ``path``, the file it was read from."""

    path: Path | None = None


def checkpoint_label(state: Mapping[str, Any]) -> str:
    """``checkpoint PATH`` for a checkpoint ``load_checkpoint`` read, for messages."""
    path = getattr(state, "path", None)
    return f"checkpoint {path}" if path is not None else "the checkpoint"


PER_ENV_AGENT_STATE = ("rnn_states",)
"""Agent state entries sized by the number of envs rather than the model: left out of the shape
check, so a run's agent loads into any number of evaluation envs."""


def check_checkpoint(
    state: Mapping[str, Any],
    algorithm: str | None = None,
    agent_state: Mapping[str, Any] | None = None,
    parts: Iterable[str] = PARTS,
) -> None:
    """One CheckpointError line if ``state`` lacks one of ``parts``, was written by another
    algorithm than ``algorithm``, or holds agent tensors (model parameters, target models,
    RNG states) of other names or shapes than ``agent_state``, this run's ``agent.state_dict()``."""
    label = checkpoint_label(state)
    for part in parts:
        if part not in state or state[part] is None:
            raise CheckpointError(f"{label} has no {part!r} part")
    config = state.get("config")
    if algorithm is not None and isinstance(config, Mapping):
        written_by = config.get("algorithm")
        if written_by != algorithm:
            raise CheckpointError(f"{label} was written by {written_by}, this run is {algorithm}")
    if agent_state is not None and "agent" in state:
        # per-env state (a recurrent agent's rnn_states) is sized by the envs, not the model
        saved, fresh = (
            {k: v for k, v in s.items() if k not in PER_ENV_AGENT_STATE} for s in (state["agent"], agent_state)
        )
        problem = _tensor_difference(saved, fresh, ())
        if problem is not None:
            raise CheckpointError(f"{label}: {problem}")


def _describe(path: tuple[str, ...]) -> str:
    if len(path) == 1:
        return f"agent state {path[0]!r}"
    kind = "model" if path[0] == "model" else path[0]
    return f"{kind} parameter {'.'.join(path[1:])!r}"


def _tensor_difference(saved: Any, current: Any, path: tuple[str, ...]) -> str | None:
    """The first tensor of ``current`` (nested mappings) that ``saved`` lacks or holds with
    another shape, or a tensor ``saved`` has that ``current`` lacks; None if they agree."""
    if isinstance(current, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            return f"{_describe(path)} is not a tensor in the file"
        if saved.shape != current.shape:
            return f"{_describe(path)} has shape {list(saved.shape)} in the file, {list(current.shape)} in this model"
        return None
    if not isinstance(current, Mapping):
        return None
    if not isinstance(saved, Mapping):
        return f"{_describe(path) if path else 'the agent part'} is not a mapping in the file"
    for key, value in current.items():
        if key not in saved:
            what = _describe((*path, str(key)))
            return f"{what} is missing from the file"
        problem = _tensor_difference(saved[key], value, (*path, str(key)))
        if problem is not None:
            return problem
    tensors = all(isinstance(v, torch.Tensor) for v in current.values())
    for key in saved:
        if key not in current and (tensors or isinstance(saved[key], torch.Tensor)):
            return f"the file has {_describe((*path, str(key)))}, which this model lacks"
    return None


def rng_state() -> dict[str, Any]:
    """The global RNGs (python, numpy, torch)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Checkpointer:
    """Saves ``ckpt_<env_steps>.pt`` files and keeps the newest ``keep`` of them.

    Args:
        directory: ``run_dir/checkpoints``.
        keep: how many checkpoints to keep (older ones are deleted after a successful save).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Existing checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], env_steps: int) -> Path:
        path = self.directory / f"ckpt_{env_steps:010d}.pt"
        with atomic_write(path, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
        for old in self.checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path:
        found = self.checkpoints()
        if not found:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        return found[-1]


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint file without running code from it (``weights_only=True``, admitting
    only ``_SAFE_GLOBALS``); CheckpointError for a missing, truncated, foreign or crafted file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged files
        if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
            found = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(err))
            what = f" ({found.group(1) or found.group(2)})" if found else ""
            raise CheckpointError(
                f"checkpoint {path} holds objects an rlfleet checkpoint never does{what}: refusing to load it"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not an rlfleet checkpoint")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format_version']}, this rlfleet reads format {FORMAT_VERSION}"
        )
    loaded = Checkpoint(state)
    loaded.path = path
    return loaded
