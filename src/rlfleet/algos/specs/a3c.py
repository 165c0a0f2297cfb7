"""A3C's declaration (Mnih et al. 2016): A2C's loss, trained gradient-parallel on Ray."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import PgAgentConfig
from rlfleet.algos.spec import AlgoSpec
from rlfleet.algos.specs.a2c import PG_AGENTS, PG_MODELS, A2CConfig
from rlfleet.errors import ConfigError


@dataclass
class A3CConfig(A2CConfig):
    """A3C's hyperparameters: A2C's (`A2CConfig`), its optimizer run by the parameter server on
    the gradients the workers push (RMSprop with statistics shared by all workers, as the
    paper's best variant). ``anneal_lr`` is refused: the server applies a constant rate."""


def check_a3c(config) -> None:
    if config.algo.anneal_lr:
        raise ConfigError("a3c's parameter server applies a constant learning rate: set algo.anneal_lr=false")


SPEC = AlgoSpec(
    name="a3c",
    description="Asynchronous advantage actor-critic on Ray: workers push gradients to a parameter server",
    config=A3CConfig,
    algorithm="rlfleet.algos.pg.a2c:A2C",
    agent_config=PgAgentConfig,
    agent=PG_AGENTS,
    default_model=PG_MODELS,
    action_spaces=("discrete", "box"),
    policy="on",
    runner_kinds=("ray",),
    runner_defaults={"kind": "ray"},
    ray_mode="a3c",
    check=check_a3c,
)
