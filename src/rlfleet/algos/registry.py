"""The algorithms ``rlfleet train ALGO`` can build, found without a central list.

Each module of the `rlfleet.algos.specs` package declares one algorithm (``SPEC``); packages
outside rlfleet add theirs through the ``rlfleet.algorithms`` entry-point group, each entry
naming a module with a ``SPEC`` (``my_algo = "my_pkg.my_algo_spec"``). Declarations import no
torch, so listing algorithms and checking configs is fast.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil
from importlib.metadata import entry_points

from rlfleet.algos import specs
from rlfleet.algos.spec import AlgoSpec
from rlfleet.errors import ConfigError

ENTRY_POINT_GROUP = "rlfleet.algorithms"


def _spec_of(module_name: str) -> AlgoSpec:
    spec = importlib.import_module(module_name).SPEC
    if not isinstance(spec, AlgoSpec):
        raise ConfigError(f"{module_name}.SPEC is not an AlgoSpec")
    return spec


@functools.cache
def algorithms() -> dict[str, AlgoSpec]:
    """``{name: AlgoSpec}`` of every declared algorithm."""
    modules = [f"{specs.__name__}.{m.name}" for m in pkgutil.iter_modules(specs.__path__)]
    modules += [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    found: dict[str, AlgoSpec] = {}
    for module_name in modules:
        spec = _spec_of(module_name)
        if spec.name in found:
            raise ConfigError(f"algorithm {spec.name!r} is declared twice (the second time in {module_name})")
        found[spec.name] = spec
    return dict(sorted(found.items()))


def get_algorithm(name: str) -> AlgoSpec:
    """The spec of ``name``; ConfigError naming the closest algorithm otherwise."""
    known = algorithms()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown algorithm {name!r}{hint} (available: {', '.join(known)})")
