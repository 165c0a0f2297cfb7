"""The agents' options (the ``agent:`` config section), one dataclass per agent family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlfleet.config.rules import Check, Count, NonNegative, NonNegInt, Positive, Probability


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

    eps_start: Probability = 1.0
    eps_end: Probability = 0.05
    eps_steps: NonNegInt = 10_000
    eps_eval: Probability = 0.0


@dataclass
class CategoricalAgentConfig(DqnAgentConfig):
    """Epsilon-greedy exploration over a categorical return distribution.

    Attributes:
        v_min, v_max: edges of the support (the model's ``n_atoms`` atoms span it).
    """

    v_min: float = -10.0
    v_max: float = 10.0

    checks: ClassVar[tuple[Check, ...]] = (Check(("v_min", "v_max"), lambda c: c.v_min < c.v_max, "v_min < v_max"),)


@dataclass
class ReactorAgentConfig(CategoricalAgentConfig):
    """Reactor's acting: a draw from the actor's policy ``pi``, mixed with uniform actions at
    the epsilon of the schedule (``eps_*``; 0 by default: ``pi`` explores by itself); the most
    probable action of ``pi`` in evaluation. ``v_min``, ``v_max``: the critic's support."""

    eps_start: Probability = 0.0
    eps_end: Probability = 0.0


@dataclass
class RainbowAgentConfig(CategoricalAgentConfig):
    """Rainbow explores with its noisy layers, so epsilon defaults to 0."""

    eps_start: Probability = 0.0
    eps_end: Probability = 0.0


@dataclass
class IqnAgentConfig(DqnAgentConfig):
    """Epsilon-greedy exploration on the mean of sampled quantiles.

    Attributes:
        policy_quantiles: fractions sampled per acting step (the paper's K = 32).
    """

    policy_quantiles: Count = 32


@dataclass
class DdpgAgentConfig:
    """Exploration of a deterministic policy (actions in [-1, 1]).

    Attributes:
        exploration_noise: ``gaussian`` (independent per step; Fujimoto et al. 2018), ``ou``
            (Ornstein-Uhlenbeck, one process per env, restarted at every episode start;
            Lillicrap et al. 2016) or ``none``.
        noise_std: standard deviation of the Gaussian noise.
        ou_theta: OU mean-reversion rate.
        ou_sigma: OU diffusion scale.
        ou_dt: OU time step (1e-2 as in OpenAI Baselines and Stable-Baselines3; 1 gives
            rllab's undiscretised recursion).
        random_action_steps: env steps at the start of training with uniform random actions
            instead of the policy (Stable-Baselines3's behaviour before ``learning_starts``;
            the TD3 paper's initial pure exploration). 0 disables.
    """

    exploration_noise: Literal["gaussian", "ou", "none"] = "gaussian"
    noise_std: NonNegative = 0.1
    ou_theta: NonNegative = 0.15
    ou_sigma: NonNegative = 0.2
    ou_dt: Positive = 1e-2
    random_action_steps: NonNegInt = 0


@dataclass
class SacAgentConfig:
    """Options of the soft actor-critic agents.

    Attributes:
        random_action_steps: act uniformly at random (``U[-1, 1]^d``, or uniform over the discrete
            actions) for this many env steps before using the policy, as SB3 and CleanRL do
            until ``learning_starts``; usually set equal to ``algo.learning_starts``.
    """

    random_action_steps: NonNegInt = 0
