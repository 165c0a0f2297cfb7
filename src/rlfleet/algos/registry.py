"""Registered algorithms: what the CLI's ``train ALGO`` can build.

A new algorithm registers one `AlgoSpec`: its config dataclass, its Algorithm class, and how
to build its agent and default model for the env's spaces.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from rlfleet.agents import CategoricalPgAgent, DqnAgent, GaussianPgAgent
from rlfleet.agents.base import Agent, ModelFactory
from rlfleet.agents.ddpg import DdpgAgent, DdpgAgentConfig
from rlfleet.agents.distributional import CategoricalDqnAgent, FqfAgent, IqnAgent, QuantileDqnAgent
from rlfleet.agents.sac import SacAgent, SacAgentConfig, SacDiscreteAgent
from rlfleet.algos.base import Algorithm
from rlfleet.algos.dqn.c51 import CategoricalDQN, RainbowConfig
from rlfleet.algos.dqn.dqn import DQN, DQNConfig
from rlfleet.algos.dqn.fqf import FQF, FQFConfig
from rlfleet.algos.dqn.iqn import IQN, IQNConfig
from rlfleet.algos.dqn.munchausen import MunchausenDQN, MunchausenDQNConfig, MunchausenIQN, MunchausenIQNConfig
from rlfleet.algos.dqn.qr_dqn import QRDQN, QRDQNConfig
from rlfleet.algos.pg.a2c import A2C, A2CConfig
from rlfleet.algos.pg.ppo import PPO, PPOConfig
from rlfleet.algos.qpg.ddpg import DDPG, DDPGConfig
from rlfleet.algos.qpg.sac import SAC, SACConfig
from rlfleet.algos.qpg.sac_discrete import SACDiscrete, SACDiscreteConfig
from rlfleet.algos.qpg.tac import TAC, TACConfig
from rlfleet.algos.qpg.td3 import TD3, TD3Config
from rlfleet.envs.spaces import Box, Discrete, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.models import CategoricalActorCriticModel, GaussianActorCriticModel, QModel
from rlfleet.models.ddpg import DeterministicActorCriticModel
from rlfleet.models.distributional import CategoricalQModel, ImplicitQuantileModel, QuantileQModel
from rlfleet.models.fqf import FqfModel
from rlfleet.models.sac import SacDiscreteModel, SacModel


@dataclass
class PgAgentConfig:
    """Policy-gradient agents have no options of their own yet."""


@dataclass
class DqnAgentConfig:
    """Epsilon-greedy exploration.

    Attributes:
        eps_start, eps_end: epsilon annealed linearly from start to end ...
        eps_steps: ... over this many env steps.
        eps_eval: epsilon during evaluation.
    """

    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_steps: int = 10_000
    eps_eval: float = 0.0


@dataclass
class AlgoSpec:
    """How to build one algorithm.

    Attributes:
        name: CLI name.
        description: one line for ``rlfleet list``.
        config_class, algo_class: the algorithm's hyperparameters and implementation.
        agent_config_class: the agent's options.
        default_model: ``f(env_spaces) -> model class`` used when YAML names no ``_target_``.
        make_agent: ``f(env_spaces, agent_config, model_factory, device) -> Agent``.
        action_spaces: action space types the algorithm supports.
    """

    name: str
    description: str
    config_class: type
    algo_class: Callable[..., Algorithm]
    agent_config_class: type
    default_model: Callable[[EnvSpaces], type[nn.Module]]
    make_agent: Callable[[EnvSpaces, object, ModelFactory, str], Agent]
    action_spaces: tuple[type, ...]

    def check_action_space(self, env_spaces: EnvSpaces, env_id: str) -> None:
        if not isinstance(env_spaces.action, self.action_spaces):
            supported = ", ".join(t.__name__ for t in self.action_spaces)
            others = [s.name for s in ALGORITHMS.values() if isinstance(env_spaces.action, s.action_spaces)]
            hint = f"; algorithms that can: {', '.join(others)}" if others else ""
            raise ConfigError(
                f"{self.name} cannot act in {env_id}: its action space is "
                f"{type(env_spaces.action).__name__}, {self.name} needs {supported}{hint}"
            )


def _pg_model(env_spaces: EnvSpaces) -> type[nn.Module]:
    return CategoricalActorCriticModel if isinstance(env_spaces.action, Discrete) else GaussianActorCriticModel


def _pg_agent(env_spaces: EnvSpaces, config: PgAgentConfig, model_factory: ModelFactory, device: str) -> Agent:
    cls = CategoricalPgAgent if isinstance(env_spaces.action, Discrete) else GaussianPgAgent
    return cls(model_factory, device=device)


@dataclass
class CategoricalAgentConfig(DqnAgentConfig):
    """Epsilon-greedy exploration over a categorical return distribution.

    Attributes:
        v_min, v_max: edges of the support (the model's ``n_atoms`` atoms span it).
    """

    v_min: float = -10.0
    v_max: float = 10.0


@dataclass
class RainbowAgentConfig(CategoricalAgentConfig):
    """Rainbow explores with its noisy layers, so epsilon defaults to 0."""

    eps_start: float = 0.0
    eps_end: float = 0.0


@dataclass
class IqnAgentConfig(DqnAgentConfig):
    """Epsilon-greedy exploration on the mean of sampled quantiles.

    Attributes:
        policy_quantiles: fractions sampled per acting step (the paper's K = 32).
    """

    policy_quantiles: int = 32


def _value_agent(agent_class: type[DqnAgent]):
    """``make_agent`` for a DQN-family agent: every agent-config field is a constructor argument."""

    def make(env_spaces: EnvSpaces, config: DqnAgentConfig, model_factory: ModelFactory, device: str) -> Agent:
        return agent_class(model_factory, device=device, **dataclasses.asdict(config))

    return make


ALGORITHMS: dict[str, AlgoSpec] = {
    spec.name: spec
    for spec in (
        AlgoSpec(
            "a2c",
            "Advantage actor-critic (synchronous), discrete or continuous actions",
            A2CConfig,
            A2C,
            PgAgentConfig,
            _pg_model,
            _pg_agent,
            (Discrete, Box),
        ),
        AlgoSpec(
            "ppo",
            "Proximal policy optimisation (clipped), discrete or continuous actions",
            PPOConfig,
            PPO,
            PgAgentConfig,
            _pg_model,
            _pg_agent,
            (Discrete, Box),
        ),
        AlgoSpec(
            "dqn",
            "Deep Q-network: double, dueling, n-step, noisy, uniform or prioritized replay",
            DQNConfig,
            DQN,
            DqnAgentConfig,
            lambda spaces: QModel,
            _value_agent(DqnAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "c51",
            "Categorical distributional DQN (C51)",
            DQNConfig,
            CategoricalDQN,
            CategoricalAgentConfig,
            lambda spaces: CategoricalQModel,
            _value_agent(CategoricalDqnAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "rainbow",
            "Rainbow: C51 + double + dueling + n-step + prioritized replay + noisy nets",
            RainbowConfig,
            CategoricalDQN,
            RainbowAgentConfig,
            lambda spaces: functools.partial(CategoricalQModel, dueling=True, noisy=True),
            _value_agent(CategoricalDqnAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "qrdqn",
            "Quantile-regression DQN (QR-DQN)",
            QRDQNConfig,
            QRDQN,
            DqnAgentConfig,
            lambda spaces: QuantileQModel,
            _value_agent(QuantileDqnAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "iqn",
            "Implicit quantile networks (IQN)",
            IQNConfig,
            IQN,
            IqnAgentConfig,
            lambda spaces: ImplicitQuantileModel,
            _value_agent(IqnAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "fqf",
            "Fully parameterized quantile function (FQF)",
            FQFConfig,
            FQF,
            IqnAgentConfig,
            lambda spaces: FqfModel,
            _value_agent(FqfAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "mdqn",
            "Munchausen DQN (M-DQN)",
            MunchausenDQNConfig,
            MunchausenDQN,
            DqnAgentConfig,
            lambda spaces: QModel,
            _value_agent(DqnAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "miqn",
            "Munchausen IQN (M-IQN)",
            MunchausenIQNConfig,
            MunchausenIQN,
            IqnAgentConfig,
            lambda spaces: ImplicitQuantileModel,
            _value_agent(IqnAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "ddpg",
            "Deep deterministic policy gradient (Lillicrap or Fujimoto form), continuous actions",
            DDPGConfig,
            DDPG,
            DdpgAgentConfig,
            lambda spaces: DeterministicActorCriticModel,
            _value_agent(DdpgAgent),
            (Box,),
        ),
        AlgoSpec(
            "td3",
            "Twin delayed DDPG (TD3), continuous actions",
            TD3Config,
            TD3,
            DdpgAgentConfig,
            lambda spaces: functools.partial(DeterministicActorCriticModel, twin_critic=True),
            _value_agent(DdpgAgent),
            (Box,),
        ),
        AlgoSpec(
            "sac",
            "Soft actor-critic: twin critics, squashed Gaussian, automatic or fixed temperature",
            SACConfig,
            SAC,
            SacAgentConfig,
            lambda spaces: SacModel,
            _value_agent(SacAgent),
            (Box,),
        ),
        AlgoSpec(
            "sac_discrete",
            "Soft actor-critic for discrete actions (exact expectations over actions)",
            SACDiscreteConfig,
            SACDiscrete,
            SacAgentConfig,
            lambda spaces: SacDiscreteModel,
            _value_agent(SacDiscreteAgent),
            (Discrete,),
        ),
        AlgoSpec(
            "tac",
            "Tsallis actor-critic: SAC with the Tsallis entropy of entropic index q",
            TACConfig,
            TAC,
            SacAgentConfig,
            lambda spaces: SacModel,
            _value_agent(SacAgent),
            (Box,),
        ),
    )
}


def get_algorithm(name: str) -> AlgoSpec:
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    close = difflib.get_close_matches(name.lower(), list(ALGORITHMS), n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown algorithm {name!r}{hint} (available: {', '.join(sorted(ALGORITHMS))})")
