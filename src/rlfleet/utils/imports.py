"""Resolve user objects named by import path: ``pkg.module:Name`` or ``pkg.module.Name``."""

from __future__ import annotations

import importlib
from typing import Any

from rlfleet.errors import ConfigError

#: Prefixes of rlfleet's own env ids that are shaped like import paths (``procgen:coinrun``).
ENV_ID_PREFIXES = ("procgen:",)


def looks_like_import_path(name: str) -> bool:
    """``pkg.module:Name``: a dotted module path and an identifier (so ``dmc:cheetah-run``,
    ``ALE/Pong-v5`` and the `ENV_ID_PREFIXES` ids are not)."""
    module, sep, attr = name.partition(":")
    return (
        bool(sep)
        and attr.isidentifier()
        and all(part.isidentifier() for part in module.split("."))
        and not name.startswith(ENV_ID_PREFIXES)
    )


def import_object(path: str, what: str = "object") -> Any:
    """Import ``pkg.module:Name`` (or dotted ``pkg.module.Name``); ConfigError when it fails."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{what} import path {path!r} must look like 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"cannot import {what} module {module_name!r} from {path!r}: {err}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module_name!r} has no {what} named {attr!r}")
        obj = getattr(obj, part)
    return obj
