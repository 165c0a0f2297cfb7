"""Network zoo: building blocks (MLP, Nature-CNN, noisy layers) and the default models each agent uses."""

from rlfleet.models.cnn import NatureCNN
from rlfleet.models.distributional import (
    CategoricalQModel,
    FractionProposal,
    ImplicitQuantileModel,
    QuantileQModel,
)
from rlfleet.models.mlp import MLP
from rlfleet.models.noisy import NoisyLinear, NoisyMLP, has_noise, reset_noise, set_noise
from rlfleet.models.pg import CategoricalActorCriticModel, GaussianActorCriticModel
from rlfleet.models.q import ActionValueModel, QModel

__all__ = [
    "MLP",
    "NatureCNN",
    "NoisyLinear",
    "NoisyMLP",
    "has_noise",
    "reset_noise",
    "set_noise",
    "CategoricalActorCriticModel",
    "GaussianActorCriticModel",
    "ActionValueModel",
    "QModel",
    "CategoricalQModel",
    "QuantileQModel",
    "ImplicitQuantileModel",
    "FractionProposal",
]
