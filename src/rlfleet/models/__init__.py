"""Network zoo: building blocks (MLP, Nature-CNN) and the default models each agent uses."""

from rlfleet.models.cnn import NatureCNN
from rlfleet.models.mlp import MLP
from rlfleet.models.pg import CategoricalActorCriticModel, GaussianActorCriticModel
from rlfleet.models.q import QModel

__all__ = ["MLP", "NatureCNN", "CategoricalActorCriticModel", "GaussianActorCriticModel", "QModel"]
