"""Diagonal Gaussian over ``dim`` continuous actions, optionally squashed by tanh."""

from __future__ import annotations

import math

import torch

from rlfleet.utils.namedarraytuple import namedarraytuple
from rlfleet.utils.rng import randn

DistInfoStd = namedarraytuple("DistInfoStd", ["mean", "log_std"])  # each [...,dim]

_LOG_2PI = math.log(2 * math.pi)


class Gaussian:
    """N(mean, exp(log_std)^2) per dimension; log-likelihoods are summed over dimensions.

    With ``squash=True`` samples are ``tanh(u)`` and ``log_likelihood`` includes the change of
    variables ``-sum log(1 - tanh(u)^2)`` (SAC, Haarnoja et al. 2018, appendix C).
    """

    def __init__(self, dim: int, squash: bool = False, min_log_std: float = -20.0, max_log_std: float = 2.0):
        self.dim = dim
        self.squash = squash
        self.min_log_std = min_log_std
        self.max_log_std = max_log_std

    def _log_std(self, dist_info: DistInfoStd) -> torch.Tensor:
        return dist_info.log_std.clamp(self.min_log_std, self.max_log_std)

    def sample_pre_squash(self, dist_info: DistInfoStd, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = randn(dist_info.mean.shape, generator, dist_info.mean.device)
        return dist_info.mean + noise * self._log_std(dist_info).exp()

    def sample(self, dist_info: DistInfoStd, generator: torch.Generator | None = None) -> torch.Tensor:
        u = self.sample_pre_squash(dist_info, generator)
        return torch.tanh(u) if self.squash else u

    def mode(self, dist_info: DistInfoStd) -> torch.Tensor:
        return torch.tanh(dist_info.mean) if self.squash else dist_info.mean

    def log_likelihood_pre_squash(self, u: torch.Tensor, dist_info: DistInfoStd) -> torch.Tensor:
        """log p(u) of the unsquashed sample, with the tanh correction when squashing."""
        log_std = self._log_std(dist_info)
        z = (u - dist_info.mean) / log_std.exp()
        logli = -(0.5 * z.pow(2) + log_std + 0.5 * _LOG_2PI).sum(dim=-1)
        if self.squash:
            # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), numerically stable.
            logli = logli - (2 * (math.log(2) - u - torch.nn.functional.softplus(-2 * u))).sum(dim=-1)
        return logli

    def log_likelihood(self, action: torch.Tensor, dist_info: DistInfoStd) -> torch.Tensor:
        if self.squash:
            action = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
        return self.log_likelihood_pre_squash(action, dist_info)

    def entropy(self, dist_info: DistInfoStd) -> torch.Tensor:
        """Entropy of the unsquashed Gaussian (the squashed one has no closed form)."""
        return (self._log_std(dist_info) + 0.5 * (_LOG_2PI + 1)).sum(dim=-1)

    def kl(self, old: DistInfoStd, new: DistInfoStd) -> torch.Tensor:
        old_log_std, new_log_std = self._log_std(old), self._log_std(new)
        num = (old.mean - new.mean).pow(2) + (2 * old_log_std).exp() - (2 * new_log_std).exp()
        den = 2 * (2 * new_log_std).exp() + 1e-8
        return (num / den + new_log_std - old_log_std).sum(dim=-1)
