"""Build typed dataclasses from plain (YAML) dicts, rejecting unknown keys, wrong types and
values outside their rules with one clear message that names the key (and the closest valid
key, or the allowed values).

Types are checked and converted by `check_value` (bool, int and float kept apart; exact floats
and rl-zoo strings such as ``2e4`` become ints). The value rules written into the annotations
(``Literal`` choices, `rlfleet.config.rules` ranges and devices) are then validated by pydantic,
imported here on first use only, and a failure is explained in one line.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import decimal
import difflib
import inspect
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

from rlfleet.config.rules import Range, TorchDevice
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


_SEQUENCES = (list, tuple, typing.Sequence, collections.abc.Sequence)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in _SEQUENCES or tp in _SEQUENCES:
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args and args[0] is not Any else "a list"
    if origin is typing.Literal:
        return " or ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _exact_int(text: str) -> int | None:
    """``'20000'``, ``'2e4'``, ``'2.0e4'`` -> 20000 (rl-zoo writes budgets so); None if not exact."""
    if not _FLOAT.fullmatch(text.strip()):
        return None
    number = decimal.Decimal(text.strip())
    return int(number) if number == number.to_integral_value() else None


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
        if isinstance(value, str) and (number := _exact_int(value)) is not None:
            return number  # YAML 1.1 reads 2e4 as a string
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no decimal point) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in _SEQUENCES or tp in _SEQUENCES:
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            return [check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
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


def _has_rules(tp: Any) -> bool:
    """Whether ``tp`` carries value rules (``Annotated`` metadata or ``Literal`` choices)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated or origin is typing.Literal:
        return True
    return any(_has_rules(arg) for arg in typing.get_args(tp) if arg is not Ellipsis)


_ADAPTERS: dict[Any, Any] = {}


def _adapter(tp: Any) -> Any:
    from pydantic import TypeAdapter

    try:
        adapter = _ADAPTERS.get(tp)
    except TypeError:  # unhashable metadata
        return TypeAdapter(tp)
    if adapter is None:
        adapter = _ADAPTERS[tp] = TypeAdapter(tp)
    return adapter


def _explain(value: Any, tp: Any) -> tuple[str, str, str] | None:
    """Why ``value`` breaks a rule of ``tp``: (key suffix such as ``[1]``, ``config`` or
    ``device``, the text after the key), or None if it keeps them all."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        found = _explain(value, args[0])
        if found:
            return found
        for rule in args[1:]:
            try:
                outside = isinstance(rule, Range) and value not in rule
            except TypeError:
                outside = True
            if outside:
                return "", "config", f"must be {rule}, got {value!r}"
            if isinstance(rule, TorchDevice) and (problem := rule.problem(value)):
                return "", "device", f"{value!r}: {problem}"
        return None
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return None
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return "", "config", f"must be one of {', '.join(map(repr, args))}, got {value!r}{hint}"
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        found = [_explain(value, arg) for arg in args if arg is not type(None)]
        return None if not found or any(f is None for f in found) else found[0]
    if (origin in _SEQUENCES) and args and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _explain(item, args[0])
            if found:
                return f"[{i}]{found[0]}", found[1], found[2]
    return None


def check_rules(value: Any, tp: Any, key: str) -> Any:
    """Have pydantic validate ``value`` (already type-checked by `check_value`) against the
    rules annotated on ``tp``; ConfigError in one line naming ``key`` and what is allowed."""
    if not _has_rules(tp):
        return value
    from pydantic import ValidationError

    try:
        _adapter(tp).validate_python(value, strict=True)
    except ValidationError as err:
        found = _explain(value, tp)
        if found is None:
            first = err.errors()[0]
            loc = "".join(f"[{p}]" for p in first["loc"] if isinstance(p, int))
            found = loc, "config", f"is invalid: {first['msg'].lower()}, got {value!r}"
        suffix, kind, text = found
        name = f"{key}{suffix}"
        raise ConfigError(f"config key {name!r} {text}" if kind == "config" else f"{name} {text}") from None
    return value


def check_field(cls: type, name: str, value: Any, key: str) -> Any:
    """``value`` checked as field ``name`` of dataclass ``cls`` (its type, then its rules)."""
    tp = typing.get_type_hints(cls, include_extras=True)[name]
    return check_rules(check_value(value, typing.get_type_hints(cls)[name], key), tp, key)


def check_section(obj: Any, prefix: str = "") -> None:
    """The cross-field `rlfleet.config.rules.Check`s listed in ``type(obj).checks``."""
    dot = f"{prefix}." if prefix else ""
    for rule in getattr(type(obj), "checks", ()):
        if not rule.test(obj):
            keys = " and ".join(repr(f"{dot}{k}") for k in rule.keys)
            got = ", ".join(f"{k}={getattr(obj, k)!r}" for k in rule.keys)
            raise ConfigError(f"config keys {keys} must satisfy {rule.message}, got {got}")


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "", all_keys: list[str] | None = None) -> Any:
    """``cls(**data)`` with every key, value and rule checked (nested dataclasses built too)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or cls.__name__!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    rules = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)}
    dot = f"{prefix}." if prefix else ""
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key_error(f"{dot}{key}", all_keys or [f"{dot}{k}" for k in dataclass_keys(cls)])
        kwargs[key] = check_value(value, hints[key], f"{dot}{key}")
    for key, value in kwargs.items():
        if not dataclasses.is_dataclass(value):
            check_rules(value, rules[key], f"{dot}{key}")
    obj = cls(**kwargs)
    check_section(obj, prefix)
    return obj


def check_kwargs(fn: Any, kwargs: dict[str, Any], section: str, skip: Iterable[str] = ()) -> None:
    """Check ``kwargs`` against ``fn``'s signature (for models and envs named by import path)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = {n: p for n, p in sig.parameters.items() if n not in set(skip)}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
        rules = typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: skip type checks
        hints = rules = {}
    for key, value in kwargs.items():
        if key not in params:
            raise unknown_key_error(f"{section}.{key}", [f"{section}.{n}" for n in params])
        if key in hints:
            check_rules(check_value(value, hints[key], f"{section}.{key}"), rules[key], f"{section}.{key}")
