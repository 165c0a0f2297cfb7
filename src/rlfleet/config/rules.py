"""Value rules of the config schema, written into the dataclasses' annotations.

``Annotated[int, Range(ge=1)]`` and friends are read by `rlfleet.config.validate`, which has
pydantic validate every given value against them (``Literal[...]`` choices too). This module
imports neither pydantic nor torch: the markers build their pydantic schema only when pydantic
asks for it, so ``rlfleet list`` and the config modules stay light. Rules that relate two fields
of one section are `Check`s listed in the section's ``checks`` class variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal


def _number(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Range:
    """A numeric interval: any of ``ge`` (>=), ``gt`` (>), ``le`` (<=), ``lt`` (<)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value: Any) -> bool:
        return not (
            (self.ge is not None and not value >= self.ge)
            or (self.gt is not None and not value > self.gt)
            or (self.le is not None and not value <= self.le)
            or (self.lt is not None and not value < self.lt)
        )

    def __str__(self) -> str:
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(") if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if low and high:
            return f"in {low[1]}{_number(low[0])}, {_number(high[0])}{high[1]}"
        if low:
            return f"{'>=' if low[1] == '[' else '>'} {_number(low[0])}"
        if high:
            return f"{'<=' if high[1] == ']' else '<'} {_number(high[0])}"
        return "a number"

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        schema = handler(source)
        bounds = {k: v for k, v in vars(self).items() if v is not None}
        if schema.get("type") in ("int", "float"):
            return {**schema, **bounds}
        from pydantic_core import PydanticCustomError, core_schema

        def check(value: Any) -> Any:
            if value not in self:
                raise PydanticCustomError("rlfleet_range", "must be {range}", {"range": str(self)})
            return value

        return core_schema.no_info_after_validator_function(check, schema)


@dataclass(frozen=True)
class TorchDevice:
    """A string that parses as a torch device present on this machine (torch is imported only
    for devices other than ``cpu``)."""

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not a usable device, or None."""
        if value == "cpu":
            return None
        import torch

        try:
            device = torch.device(value)
        except (RuntimeError, TypeError, ValueError) as err:
            return f"not a torch device ({str(err).splitlines()[0]}); use e.g. cpu, cuda or cuda:0"
        if device.type == "cpu":
            return None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                return "no CUDA device on this machine (torch.cuda.is_available() is False); use cpu"
            count = torch.cuda.device_count()
            if (device.index or 0) >= count:
                return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            return None
        if device.type == "mps":
            backend = getattr(torch.backends, "mps", None)
            if backend is None or not backend.is_available():
                return "no MPS device on this machine (torch.backends.mps.is_available() is False); use cpu"
            return None
        module = getattr(torch, device.type, None)
        available = getattr(module, "is_available", None)
        if callable(available) and not available():
            return f"no {device.type} device on this machine; use cpu"
        if device.type == "meta":
            return "the meta device holds no data; use cpu"
        return None

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import PydanticCustomError, core_schema

        def check(value: str) -> str:
            problem = self.problem(value)
            if problem is not None:
                raise PydanticCustomError("rlfleet_device", "{problem}", {"problem": problem})
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))


@dataclass(frozen=True)
class Check:
    """A rule over several fields of one section: ``test(section) -> bool``; ``message`` says
    what must hold (the validator names the section's keys and their values)."""

    keys: tuple[str, ...]
    test: Callable[[Any], bool]
    message: str


Count = Annotated[int, Range(ge=1)]
"""A number of things (steps, envs, epochs): >= 1."""
NonNegInt = Annotated[int, Range(ge=0)]
"""A count or interval where 0 means none / off."""
Positive = Annotated[float, Range(gt=0)]
"""Learning rates, epsilons, scales: > 0."""
NonNegative = Annotated[float, Range(ge=0)]
"""Coefficients, clips where 0 disables: >= 0."""
Probability = Annotated[float, Range(ge=0, le=1)]
"""Probabilities, discounts, lambdas: in [0, 1]."""
Rate = Annotated[float, Range(gt=0, le=1)]
"""Soft-update rates: in (0, 1]."""
Device = Annotated[str, TorchDevice()]
"""A torch device string that exists on this machine."""
Activation = Literal["tanh", "relu", "elu", "silu"]
"""Activation names of `rlfleet.models.mlp.ACTIVATIONS`."""
CoreKind = Literal["none", "lstm", "gru", "dnc", "gtrxl"]
"""A model's recurrent core (``model.core``): none (feed-forward), LSTM, GRU, a DNC (Graves et al.
2016) or a gated transformer memory (GTrXL, Parisotto et al. 2020)."""
EncoderSections = Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""``model.encoder``: one block section ``{kind: ..., **options}`` (or ``{_target_: ...}``) or a
list of them, stacked in order (`rlfleet.models.blocks`)."""
HiddenSizes = Sequence[Count]
"""Widths of hidden layers, each >= 1."""
