"""Tsallis actor-critic (Lee et al. 2018, "Tsallis Reinforcement Learning: A Unified Framework
for Maximum Entropy Reinforcement Learning"; Lee et al. 2020, "Generalized Tsallis Entropy
Reinforcement Learning and Its Application to Soft Mobile Robots"): SAC with the Tsallis
entropy ``S_q(pi) = E[-ln_q pi(a|s)]`` of entropic index q in place of the Shannon entropy.

Convention: the entropic index is the papers' q, with ``ln_q(x) = (x^(q-1) - 1) / (q - 1)``
(``log x`` at q = 1): q = 1 is SAC, q = 2 the sparse Tsallis entropy ``1 - E[pi]``. This is the
standard (Tsallis 1988) q-logarithm ``(x^(1-q') - 1) / (1 - q')`` at ``q' = 2 - q``, which is how
the authors' code evaluates it.
"""

from __future__ import annotations

import numpy as np
import torch

from rlfleet.algos.qpg.sac import SAC
from rlfleet.algos.specs.tac import TACConfig
from rlfleet.envs.spaces import EnvSpaces


def ln_q_of_log(log_x: torch.Tensor, q: float) -> torch.Tensor:
    """``ln_q(x) = (x^(q-1) - 1) / (q - 1)`` computed from ``log x`` as
    ``expm1((q-1) log x) / (q-1)`` (exact for the log-densities the losses hold, which can
    exceed what ``x`` itself represents); ``log x`` itself at q = 1."""
    if q == 1.0:
        return log_x
    return torch.expm1((q - 1) * log_x) / (q - 1)


def ln_q(x: torch.Tensor, q: float) -> torch.Tensor:
    """The q-logarithm ``(x^(q-1) - 1) / (q - 1)`` of ``x > 0`` (``log x`` at q = 1)."""
    return ln_q_of_log(torch.log(x), q)


class TAC(SAC):
    """SAC with ``log pi`` replaced by ``ln_q pi`` wherever the entropy enters:

    critic target ``y = reward_scale R + gamma_n (min_i Q'_i(s', a') - alpha ln_q pi(a'|s'))``;
    actor ``E[alpha ln_q pi(a|s) - min_i Q_i(s, a)]`` (reparameterised ``a``);
    temperature ``E[-log alpha (ln_q pi(a|s) + target_entropy)]``, the target now a Tsallis
    entropy: by default ``-ln_q(e^dim(A))``, the value at the density ``e^dim(A)`` where SAC's
    default target ``-dim(A)`` puts the Shannon entropy (equal to it at q = 1). The papers keep
    alpha fixed (``auto_alpha=false``); the learned temperature is this library's extension.
    """

    config: TACConfig

    def default_target_entropy(self, env_spaces: EnvSpaces) -> float:
        """``-ln_q(exp(dim(A)))``."""
        dim = torch.tensor(float(np.prod(env_spaces.action.shape)), dtype=torch.float64)
        return -ln_q_of_log(dim, self.config.entropic_index).item()

    def entropy_log(self, log_pi: torch.Tensor) -> torch.Tensor:
        """``ln_q pi`` from ``log pi``."""
        return ln_q_of_log(log_pi, self.config.entropic_index)
