"""Ape-X DQN's declaration (Horgan et al. 2018): DQN trained on Ray by actor workers feeding
prioritized replay shards (`rlfleet.distributed.learner`)."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import DqnAgentConfig
from rlfleet.algos.spec import AlgoSpec
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.config.rules import Count


@dataclass
class ApexConfig(DQNConfig):
    """Ape-X's defaults on top of DQN's: double targets with 3-step returns; prioritized replay
    (alpha 0.6, beta 0.4 -> 1: ``replay_defaults``) whose new transitions get the priorities
    the actors compute; a dueling network (``default_model_kwargs``); ``runner.kind=ray`` with
    Ape-X's actor epsilons (``runner.actor_epsilon``, ``runner.actor_epsilon_alpha``). Every
    other value-based algorithm runs the same way with ``runner.kind=ray``."""

    double: bool = True
    n_step: Count = 3


SPEC = AlgoSpec(
    name="apex",
    description="Ape-X DQN on Ray: actor workers, prioritized replay shards, a learner (dueling, double, 3-step)",
    config=ApexConfig,
    algorithm="rlfleet.algos.dqn.dqn:DQN",
    agent_config=DqnAgentConfig,
    agent="rlfleet.agents.dqn:DqnAgent",
    default_model="rlfleet.models.q:QModel",
    default_model_kwargs={"dueling": True},
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=("ray",),
    runner_defaults={"kind": "ray"},
    replay_defaults={"kind": "prioritized"},
)
