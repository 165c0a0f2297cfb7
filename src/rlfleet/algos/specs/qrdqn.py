"""QR-DQN's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import DqnAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.config.rules import NonNegative


@dataclass
class QRDQNConfig(DQNConfig):
    """QR-DQN hyperparameters (the number of quantiles is the model's ``n_quantiles``).

    Attributes:
        kappa: Huber threshold of the quantile loss (0: plain quantile loss).
    """

    kappa: NonNegative = 1.0


SPEC = AlgoSpec(
    name="qrdqn",
    description="Quantile-regression DQN (QR-DQN)",
    config=QRDQNConfig,
    algorithm="rlfleet.algos.dqn.qr_dqn:QRDQN",
    agent_config=DqnAgentConfig,
    agent="rlfleet.agents.distributional:QuantileDqnAgent",
    default_model="rlfleet.models.distributional:QuantileQModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
)
