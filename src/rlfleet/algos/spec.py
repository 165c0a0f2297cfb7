"""`AlgoSpec`: what an algorithm declares about itself, read once at validation.

Every algorithm has one declaration module in `rlfleet.algos.specs` holding its config
dataclass and a module-level ``SPEC = AlgoSpec(...)``. Declarations import no torch: classes
that need torch (the algorithm, the agent, the default model) are named by import path and
imported only when a run is built, so ``rlfleet list`` and config errors answer at once.

Everything downstream (validation, the composition root, the runners) reads these fields;
nothing discovers behaviour with getattr/hasattr/isinstance on algorithms, agents or models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rlfleet.config.schema import SAMPLER_KINDS
from rlfleet.utils.imports import import_object

ActionSpaceKind = Literal["discrete", "box"]
ON_POLICY_RUNNERS = ("minibatch", "data_parallel")
OFF_POLICY_RUNNERS = ("minibatch", "async")
# value-based algorithms also run as Ape-X on Ray (rlfleet.distributed.learner)
VALUE_BASED_RUNNERS = (*OFF_POLICY_RUNNERS, "ray")


def _by_space(value: str | Mapping[str, str], space: str) -> str:
    """The import path for action-space kind ``space`` (one path serves every kind)."""
    return value if isinstance(value, str) else value[space]


@dataclass(frozen=True, kw_only=True)
class AlgoSpec:
    """An algorithm's declaration.

    Attributes:
        name: CLI name (``rlfleet train NAME``).
        description: one line for ``rlfleet list``.
        config: the hyperparameter dataclass (the ``algo:`` section).
        algorithm: import path of the `Algorithm` class, built as ``cls(config)``.
        agent_config: the agent's option dataclass (the ``agent:`` section).
        agent: import path of the `Agent` class, or one per action-space kind
            (``{"discrete": ..., "box": ...}``); built as ``cls(model_factory, agent_config, device)``.
        default_model: import path of the model class used when YAML names no ``model._target_``,
            or one per action-space kind.
        default_model_kwargs: keyword arguments the algorithm fixes on its default model
            (Rainbow's ``dueling`` and ``noisy``); ``model.*`` overrides them.
        model_kwargs: keyword arguments the algorithm's options require of whichever model it
            trains, ``f(config) -> Mapping`` (PPO with ``algo.rnd.enabled``: ``value_heads=2``,
            one value per reward stream). Applied by the composition root over ``model.*`` and
            ``default_model_kwargs``; a ``model.*`` value that contradicts one is a ConfigError.
            None: the options require nothing.
        action_spaces: action-space kinds the algorithm acts in.
        policy: ``on`` (learns from the latest batch) or ``off`` (learns from a replay, built
            from the ``replay:`` section and handed to the algorithm).
        replay_defaults: the algorithm's defaults for the ``replay:`` section (off-policy only).
        runner_defaults: the algorithm's defaults for the ``runner:`` section (``apex``:
            ``kind: ray``).
        ray_mode: how ``runner.kind=ray`` trains it (`rlfleet.distributed.learner`): ``apex``
            (actors feed replay shards; the default of off-policy algorithms), ``impala``
            (actors send their batches to the learner; the default of on-policy ones) or
            ``a3c`` (actors push gradients to a parameter server).
        replay_kinds: ``replay.kind`` values it trains from (off-policy only): transitions
            (uniform, prioritized) or sequences (sequence).
        runner_kinds: ``runner.kind`` values it runs under.
        sampler_kinds: ``sampler.kind`` values it runs with.
        recurrent_agent: import path of the agent built when the model has a recurrent core
            (``model.core=lstm|gru``), or one per action-space kind; None: the algorithm has
            no recurrent form and such a config is refused at validation.
        check: cross-field rules of this algorithm, ``f(config) -> None`` raising ConfigError;
            run once at validation.
    """

    name: str
    description: str
    config: type
    algorithm: str
    agent_config: type
    agent: str | Mapping[str, str]
    default_model: str | Mapping[str, str]
    default_model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    model_kwargs: Callable[[Any], Mapping[str, Any]] | None = None
    action_spaces: tuple[ActionSpaceKind, ...]
    policy: Literal["on", "off"]
    replay_defaults: Mapping[str, Any] = field(default_factory=dict)
    runner_defaults: Mapping[str, Any] = field(default_factory=dict)
    ray_mode: Literal["apex", "impala", "a3c"] | None = None
    replay_kinds: tuple[str, ...] = ("uniform", "prioritized")
    runner_kinds: tuple[str, ...]
    sampler_kinds: tuple[str, ...] = SAMPLER_KINDS
    recurrent_agent: str | Mapping[str, str] | None = None
    check: Callable[[Any], None] | None = None

    @property
    def off_policy(self) -> bool:
        return self.policy == "off"

    @property
    def distributed_mode(self) -> str:
        """``ray_mode``, else ``apex`` for off-policy and ``impala`` for on-policy algorithms."""
        return self.ray_mode or ("apex" if self.off_policy else "impala")

    def algorithm_class(self) -> type:
        return import_object(self.algorithm, what="algorithm")

    @property
    def recurrent(self) -> bool:
        """Whether a recurrent core (``model.core``) is supported."""
        return self.recurrent_agent is not None

    def agent_class(self, space: ActionSpaceKind, recurrent: bool = False) -> type:
        path = self.recurrent_agent if recurrent else self.agent
        return import_object(_by_space(path, space), what="agent")

    def default_model_class(self, space: ActionSpaceKind) -> type:
        return import_object(_by_space(self.default_model, space), what="model")
