"""PPG's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import PgAgentConfig
from rlfleet.algos.spec import ON_POLICY_RUNNERS, AlgoSpec
from rlfleet.config.rules import Count, NonNegative, Positive, Probability


@dataclass
class PPGConfig:
    """Phasic Policy Gradient hyperparameters (Cobbe et al. 2020; defaults: the paper's, with
    gamma 0.99 in place of Procgen's 0.999). The paper's (and CleanRL's ``ppg_procgen.py``)
    names in brackets.

    The arrangement of the networks (a separate value network, or one trunk whose value head
    reads it detached or jointly) is the model's ``model.value_network`` (`rlfleet.models.ppg`).

    Attributes:
        lr: learning rate (Adam), both phases (``learning_rate``).
        anneal_lr: decay the learning rate linearly to 0 over the run.
        gamma: discount.
        gae_lambda: GAE lambda; the lambda-returns are the value targets ``V_targ`` of both phases.
        clip_range: epsilon of the clipped ratio ``clip(r, 1 - eps, 1 + eps)`` (``clip_coef``).
        entropy_coef: weight of the entropy bonus (``ent_coef``).
        value_coef: weight of the policy phase's value loss ``E[(V - V_targ)^2]`` (0.5: the
            paper's ``0.5 * MSE``).
        normalize_advantage: standardise the advantages over the whole batch (as the paper's
            code; ``adv_norm_fullbatch``).
        max_grad_norm: global gradient-norm clip, both phases (0 disables).
        optimizer_eps: Adam epsilon.
        minibatch_size: transitions per policy-phase gradient step (the ``[T,B]`` batch is
            flattened and shuffled).
        policy_epochs: passes over each batch with the policy loss (``E_pi``, ``e_policy``).
        value_epochs: passes over each batch with the value loss (``E_V``, ``v_value``); an
            epoch beyond the other's trains that loss alone.
        n_policy_iterations: policy iterations (sampler batches) per phase before each
            auxiliary phase (``N_pi``, ``n_iteration``); not a number of epochs.
        aux_epochs: passes over the phase's stored batches in the auxiliary phase (``E_aux``,
            ``e_auxiliary``).
        beta_clone: weight of the behaviour-cloning term ``KL(pi_old || pi)`` of the joint
            loss (``beta_clone``).
        aux_minibatch_size: transitions per auxiliary gradient step (shuffled over all
            ``n_policy_iterations * batch_T * batch_B`` stored transitions; the paper's
            ``num_aux_rollouts`` = 4 whole rollouts of 256 steps is 1024).
    """

    lr: Positive = 5e-4
    anneal_lr: bool = False
    gamma: Probability = 0.99
    gae_lambda: Probability = 0.95
    clip_range: Positive = 0.2
    entropy_coef: NonNegative = 0.01
    value_coef: NonNegative = 0.5
    normalize_advantage: bool = True
    max_grad_norm: NonNegative = 0.5
    optimizer_eps: Positive = 1e-8
    minibatch_size: Count = 64
    policy_epochs: Count = 1
    value_epochs: Count = 1
    n_policy_iterations: Count = 32
    aux_epochs: Count = 6
    beta_clone: NonNegative = 1.0
    aux_minibatch_size: Count = 256


SPEC = AlgoSpec(
    name="ppg",
    description="Phasic policy gradient: PPO policy phases, then auxiliary value distillation",
    config=PPGConfig,
    algorithm="rlfleet.algos.pg.ppg:PPG",
    agent_config=PgAgentConfig,
    agent={"discrete": "rlfleet.agents.ppg:PhasicCategoricalAgent", "box": "rlfleet.agents.ppg:PhasicGaussianAgent"},
    default_model={
        "discrete": "rlfleet.models.ppg:PhasicCategoricalModel",
        "box": "rlfleet.models.ppg:PhasicGaussianModel",
    },
    action_spaces=("discrete", "box"),
    policy="on",
    runner_kinds=ON_POLICY_RUNNERS,
)
