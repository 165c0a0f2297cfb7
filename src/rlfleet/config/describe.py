"""``rlfleet config``: a resolved config as YAML-like lines, each key with its value, its type,
its default and the one-line doc of its field.

The docs come from the dataclasses' docstrings: each config dataclass documents its fields in
an ``Attributes:`` block (a model class its keyword arguments in an ``Args:`` block), one entry
per line, ``name: text`` or ``a, b: text`` for several fields, continuation lines indented
deeper. Fields a class inherits are documented by the class that declares them, so the method
resolution order is searched. This module imports neither torch nor gymnasium; the caller
passes the model class (whose import may need torch).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Sequence
from typing import Any

from rlfleet.config.rules import Range, TorchDevice

DOC_WIDTH = 100
_ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_][\w]*(?:\s*,\s*\*{0,2}[A-Za-z_][\w]*)*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_BLOCKS = ("Attributes:", "Args:", "Arguments:", "Parameters:")
CHANGED = "*"


def parse_docstring_fields(doc: str | None, blocks: Sequence[str] = _BLOCKS) -> dict[str, str]:
    """``{field: doc}`` of the ``Attributes:`` (or ``Args:``) blocks of a docstring: entries are
    the lines one indent below the block header, ``name: text`` or ``a, b: text`` (the text
    then documents each name), continuation lines are indented deeper; the text is joined into
    one line, RST double backticks made single."""
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    docs: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if lines[i].strip() not in blocks:
            i += 1
            continue
        header_indent = len(lines[i]) - len(lines[i].lstrip())
        i += 1
        entry_indent: int | None = None
        names: list[str] = []
        parts: list[str] = []

        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= header_indent:
                break
            if entry_indent is None:
                entry_indent = indent
            match = _ENTRY.match(line.strip()) if indent <= entry_indent else None
            if match:
                _add_entry(docs, names, parts)
                names = [n.strip().lstrip("*") for n in match.group(1).split(",")]
                parts = [match.group(2)]
            elif indent < entry_indent:
                break
            else:
                parts.append(line.strip())
            i += 1
        _add_entry(docs, names, parts)
    return docs


def _add_entry(docs: dict[str, str], names: list[str], parts: list[str]) -> None:
    text = _clean(" ".join(parts))
    for name in names:
        docs.setdefault(name, text)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("``", "`")).strip()


def one_line(text: str, width: int = DOC_WIDTH) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters (``...`` marks a cut)."""
    if len(text) <= width:
        return text
    cut = text[: width - 3].rsplit(" ", 1)[0].rstrip(",;:(")
    return cut + " ..."


def field_docs(cls: type) -> dict[str, str]:
    """``{field: doc}`` of a dataclass, inherited fields documented by their own class."""
    docs: dict[str, str] = {}
    for klass in cls.__mro__:
        for name, text in parse_docstring_fields(klass.__dict__.get("__doc__")).items():
            docs.setdefault(name, text)
    return docs


def type_name(tp: Any) -> str:
    """A short name of an annotation with its rule: ``int >= 1``, ``float in [0, 1]``,
    ``serial|parallel``, ``int >= 1 or None``, ``list of int >= 1``."""
    if tp is Any:
        return "any"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        base, *marks = args
        name = type_name(base)
        for mark in marks:
            if isinstance(mark, Range):
                name += f" {mark}"
            elif isinstance(mark, TorchDevice):
                name = "torch device"
        return name
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or None" if type(None) in args else "")
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple, Sequence):
        return f"list of {type_name(args[0])}" if args and args[0] is not Any else "list"
    if origin is dict or tp is dict:
        return "dict"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def format_value(value: Any) -> str:
    """A value as it would be written in YAML flow style."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        import yaml

        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        return text[: -len("...")].strip() if text.endswith("...") else text
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and not isinstance(a, bool) and a == b)


def _line(indent: str, key: str, value: Any, tp: str, default: Any, doc: str, has_default: bool = True) -> str:
    changed = has_default and not _same(value, default)
    meta = f"{tp}, default {format_value(default)}" if has_default else tp
    text = f"{indent}{key}: {format_value(value)}{' ' + CHANGED if changed else ''}  ({meta})"
    return f"{text}  {one_line(doc)}" if doc else text


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def describe_dataclass(obj: Any, indent: str = "  ", defaults: dict[str, Any] | None = None) -> list[str]:
    """One line per field of the dataclass instance ``obj`` (nested dataclasses as indented
    subsections); ``defaults`` overrides the fields' own defaults (e.g. an algorithm's replay
    defaults)."""
    cls = type(obj)
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = field_docs(cls)
    lines: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            summary = _summary(type(value))
            lines.append(f"{indent}{f.name}:" + (f"  # {summary}" if summary else ""))
            lines += describe_dataclass(value, indent + "  ")
            continue
        default = (defaults or {}).get(f.name, _default(f))
        has = default is not dataclasses.MISSING
        lines.append(_line(indent, f.name, value, type_name(hints[f.name]), default, docs.get(f.name, ""), has))
    return lines


def _summary(cls: type) -> str:
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    first = doc.split("\n\n", 1)[0]
    return one_line(_clean(first), 80) if first else ""


def describe_model(
    model_class: Any, given: dict[str, Any], fixed: dict[str, Any], skip: Sequence[str] = ()
) -> list[str]:
    """Lines of the ``model:`` keyword arguments of ``model_class``: the signature's defaults
    with the algorithm's ``fixed`` kwargs over them are the defaults, ``given`` (the config's
    ``model`` section) the values; docs from the class's ``Args:`` block."""
    try:
        params = inspect.signature(model_class).parameters
    except (TypeError, ValueError):
        return [f"  {k}: {format_value(v)}" for k, v in given.items()]
    try:
        hints = typing.get_type_hints(model_class.__init__, include_extras=True)
    except (NameError, TypeError, AttributeError):  # annotations that do not resolve: shown as written
        hints = {}
    docs = {**parse_docstring_fields(model_class.__doc__), **parse_docstring_fields(model_class.__init__.__doc__)}
    lines: list[str] = []
    for name, param in params.items():
        if name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        has = param.default is not param.empty or name in fixed
        default = fixed.get(name, param.default)
        value = given.get(name, default if has else None)
        if name in hints:
            tp = type_name(hints[name])
        elif param.annotation is not param.empty:
            tp = str(param.annotation)
        else:
            tp = "any"
        lines.append(_line("  ", name, value, tp, default, docs.get(name, ""), has))
    return lines


def describe_config(
    config: Any,
    spec: Any,
    model_class: Any | None = None,
    model_skip: Sequence[str] = (),
    title: str = "",
) -> str:
    """The text of ``rlfleet config``: the validated ``ExperimentConfig`` ``config`` of the
    algorithm ``spec``, one line per key grouped by section, then the ``model`` kwargs of
    ``model_class`` (the default model; None: the ``model`` section as given)."""
    lines = [f"# {title}" if title else "# resolved config"]
    lines.append(f"# each key: value  (type, default)  doc; {CHANGED} after a value: it differs from the default")
    top_hints = typing.get_type_hints(type(config), include_extras=True)
    top_docs = field_docs(type(config))
    lines.append(f"algorithm: {config.algorithm}  # {spec.description}")
    seed_field = next(f for f in dataclasses.fields(config) if f.name == "seed")
    lines.append(
        _line("", "seed", config.seed, type_name(top_hints["seed"]), seed_field.default, top_docs.get("seed", ""))
    )
    for name in ("env", "sampler", "runner", "logger", "algo", "agent", "replay"):
        section = getattr(config, name)
        if section is None:
            continue
        summary = f"{type(section).__name__}: {_summary(type(section))}"
        lines.append(f"{name}:  # {summary}")
        defaults = {"replay": dict(spec.replay_defaults), "runner": dict(spec.runner_defaults)}.get(name)
        lines += describe_dataclass(section, "  ", defaults)
    model = dict(config.model)
    target = model.pop("_target_", None)
    if target is not None:
        lines.append(f"model:  # {target}")
        lines += describe_model(model_class, model, {}, model_skip) if model_class else _plain(model)
    elif model_class is not None:
        lines.append(f"model:  # {model_class.__name__} (the default model), its keyword arguments")
        lines += describe_model(model_class, model, dict(spec.default_model_kwargs), model_skip)
    else:
        lines.append("model:  # keyword arguments of the default model")
        lines += _plain(model)
    return "\n".join(lines)


def _plain(kwargs: dict[str, Any]) -> list[str]:
    return [f"  {k}: {format_value(v)}" for k, v in kwargs.items()] or ["  {}"]
