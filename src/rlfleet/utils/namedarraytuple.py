"""Named tuples of arrays that index and assign across every field at once.

`namedarraytuple` follows rlpyt's semantics: ``x[loc]`` returns a new instance whose fields
are ``field[loc]`` (``None`` fields stay ``None``), ``x[loc] = value`` writes ``value`` (an
instance with the same fields, or anything that broadcasts) into every field, and fields may
themselves be namedarraytuples. Attribute access (``x.observation``) reaches one field;
integer indexing does *not* return a field, it indexes all of them.

Classes are cached by (name, fields) and instances pickle by value, so they survive the
``spawn`` start method even when the class was created at run time (e.g. from a Dict space).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable
from typing import Any

_CLASS_CACHE: dict[tuple[str, tuple[str, ...]], type] = {}


def _rebuild(typename: str, fields: tuple[str, ...], values: tuple) -> Any:
    return namedarraytuple(typename, fields)(*values)


def _getitem(self, loc):
    try:
        return type(self)(*(None if f is None else f[loc] for f in self))
    except (IndexError, TypeError, KeyError) as err:
        for name, field in zip(self._fields, self):
            if field is None:
                continue
            try:
                field[loc]
            except (IndexError, TypeError, KeyError) as field_err:
                raise type(field_err)(f"{type(self).__name__}.{name}: cannot index with {loc!r}: {field_err}") from None
        raise err


def _setitem(self, loc, value):
    if isinstance(value, tuple) and getattr(value, "_fields", None) is not None:
        if tuple(value._fields) != tuple(self._fields):
            raise ValueError(
                f"{type(self).__name__}: cannot assign {type(value).__name__} with fields "
                f"{value._fields}, expected {self._fields}"
            )
        pairs = zip(self._fields, self, value)
    else:
        pairs = ((name, field, value) for name, field in zip(self._fields, self))
    for name, field, item in pairs:
        if field is None or item is None:
            continue
        try:
            field[loc] = item
        except (ValueError, IndexError, TypeError, RuntimeError) as err:
            raise type(err)(f"{type(self).__name__}.{name}: cannot assign at {loc!r}: {err}") from None


def _reduce(self):
    return (_rebuild, (type(self).__name__, tuple(self._fields), tuple(self)))


def _get(self, name: str, default: Any = None) -> Any:
    return getattr(self, name, default)


def namedarraytuple(typename: str, field_names: Iterable[str] | str) -> type:
    """Create (or fetch from cache) a namedarraytuple class.

    Args:
        typename: class name.
        field_names: sequence of field names, or one string separated by spaces/commas.
    """
    if isinstance(field_names, str):
        field_names = field_names.replace(",", " ").split()
    fields = tuple(field_names)
    key = (typename, fields)
    cls = _CLASS_CACHE.get(key)
    if cls is not None:
        return cls
    for reserved in ("get", "items"):
        if reserved in fields:
            raise ValueError(f"{typename}: field name {reserved!r} is reserved")
    base = namedtuple(typename, fields)
    cls = type(
        typename,
        (base,),
        {
            "__slots__": (),
            "__getitem__": _getitem,
            "__setitem__": _setitem,
            "__reduce__": _reduce,
            "get": _get,
            "items": lambda self: zip(self._fields, self),
            "__module__": __name__,
            "__qualname__": typename,
            "__doc__": f"namedarraytuple {typename}({', '.join(fields)})",
        },
    )
    _CLASS_CACHE[key] = cls
    return cls


def is_namedarraytuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields") and hasattr(obj, "__setitem__")


def is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")
