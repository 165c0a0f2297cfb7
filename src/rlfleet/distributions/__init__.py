"""Action distributions. Each works on a `dist_info` namedarraytuple with leading dims [T,B]."""

from rlfleet.distributions.categorical import Categorical, DistInfo
from rlfleet.distributions.epsilon_greedy import EpsilonGreedy
from rlfleet.distributions.gaussian import DistInfoStd, Gaussian

__all__ = ["Categorical", "DistInfo", "DistInfoStd", "EpsilonGreedy", "Gaussian"]
