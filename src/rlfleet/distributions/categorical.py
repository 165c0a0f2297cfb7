"""Categorical distribution over ``n`` discrete actions, parameterised by logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlfleet.utils.namedarraytuple import namedarraytuple
from rlfleet.utils.rng import rand

DistInfo = namedarraytuple("DistInfo", ["logits"])  # logits: [...,n]


class Categorical:
    """Categorical(logits). Actions are int64 tensors of shape ``[...]``."""

    def __init__(self, n: int):
        self.n = n

    def sample(self, dist_info: DistInfo, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inverse-CDF sampling: the number of CDF entries below a uniform draw (one draw per
        sample; cheaper than ``torch.multinomial`` for the small batches of acting)."""
        cdf = F.softmax(dist_info.logits, dim=-1).cumsum(dim=-1)
        u = rand(cdf.shape[:-1] + (1,), generator, cdf.device)
        return (cdf < u).sum(dim=-1).clamp_(max=self.n - 1)

    def mode(self, dist_info: DistInfo) -> torch.Tensor:
        return dist_info.logits.argmax(dim=-1)

    def log_likelihood(self, action: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
        log_probs = F.log_softmax(dist_info.logits, dim=-1)
        return log_probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, dist_info: DistInfo) -> torch.Tensor:
        log_probs = F.log_softmax(dist_info.logits, dim=-1)
        return -(log_probs.exp() * log_probs).sum(dim=-1)

    def kl(self, old: DistInfo, new: DistInfo) -> torch.Tensor:
        """KL(old || new) per sample."""
        old_log = F.log_softmax(old.logits, dim=-1)
        new_log = F.log_softmax(new.logits, dim=-1)
        return (old_log.exp() * (old_log - new_log)).sum(dim=-1)
