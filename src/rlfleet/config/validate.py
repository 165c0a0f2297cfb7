"""Build typed dataclasses from plain (YAML) dicts, rejecting unknown keys and wrong types
with one clear message that names the closest valid key."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

from rlfleet.errors import ConfigError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def closest(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``key`` (full dotted key first, then its last part)."""
    candidates = list(candidates)
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if match:
        return match[0]
    last = key.rsplit(".", 1)[-1]
    by_last = {c.rsplit(".", 1)[-1]: c for c in candidates}
    match = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.6)
    return by_last[match[0]] if match else None


def unknown_key_error(key: str, candidates: Iterable[str]) -> ConfigError:
    suggestion = closest(key, candidates)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where lossless (int -> float, list -> tuple), else
    raise ConfigError naming the key, the expected type and the value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_value(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no decimal point) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            return [check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return build_dataclass(tp, value, key)
        if isinstance(value, tp):
            return value
    else:
        return value
    raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def dataclass_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a (nested) dataclass."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        if dataclasses.is_dataclass(hints[f.name]):
            keys += dataclass_keys(hints[f.name], key + ".")
    return keys


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "", all_keys: list[str] | None = None) -> Any:
    """``cls(**data)`` with every key and value checked (nested dataclasses built too)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or cls.__name__!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    dot = f"{prefix}." if prefix else ""
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key_error(f"{dot}{key}", all_keys or [f"{dot}{k}" for k in dataclass_keys(cls)])
        kwargs[key] = check_value(value, hints[key], f"{dot}{key}")
    return cls(**kwargs)


def check_kwargs(fn: Any, kwargs: dict[str, Any], section: str, skip: Iterable[str] = ()) -> None:
    """Check ``kwargs`` against ``fn``'s signature (for models and envs named by import path)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = {n: p for n, p in sig.parameters.items() if n not in set(skip)}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: skip type checks
        hints = {}
    for key, value in kwargs.items():
        if key not in params:
            raise unknown_key_error(f"{section}.{key}", [f"{section}.{n}" for n in params])
        if key in hints:
            check_value(value, hints[key], f"{section}.{key}")
