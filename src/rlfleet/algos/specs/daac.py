"""DAAC's and IDAAC's declaration and hyperparameters (Raileanu and Fergus 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import PgAgentConfig
from rlfleet.algos.spec import ON_POLICY_RUNNERS, AlgoSpec
from rlfleet.config.rules import Count, HiddenSizes, NonNegative, Positive, Probability


@dataclass
class DAACConfig:
    """DAAC hyperparameters (defaults: the paper's Procgen settings, except ``minibatch_size``).

    Attributes:
        lr: learning rate of the policy network, the value network and the discriminator (Adam).
        anneal_lr: decay the learning rates linearly to 0 over the run.
        gamma: discount.
        gae_lambda: GAE lambda.
        clip_range: epsilon of the clipped ratio ``clip(r, 1 - eps, 1 + eps)``.
        clip_value: clip the value network's update to this range around the value at sampling
            time (0 disables; the paper clips it with ``clip_range``).
        entropy_coef: weight ``alpha_s`` of the entropy bonus.
        advantage_coef: weight ``alpha_a`` of the advantage head's loss ``L_A``.
        policy_epochs: passes ``E_pi`` of the policy network over each batch.
        value_epochs: passes ``E_V`` of the value network over a batch, when it is trained.
        value_freq: the value network is trained every ``N_pi`` batches (the first included).
        minibatch_size: transitions per gradient step (the ``[T,B]`` batch is flattened), in
            both phases.
        normalize_advantage: standardise the GAE advantages over the whole batch, once; the
            standardised advantages weight the surrogate and are the advantage head's target
            (as in the authors' code).
        max_grad_norm: global gradient-norm clip of each network (0 disables).
        optimizer_eps: Adam epsilon.
        idaac: IDAAC: train the policy network's features adversarially against a
            discriminator that tells which of two observations of one episode came first.
        idaac_coef: weight ``alpha_i`` of the adversarial loss.
        discriminator_hidden_sizes: hidden widths of the discriminator (ReLU); empty: linear,
            as in the paper for most games.
    """

    lr: Positive = 5e-4
    anneal_lr: bool = False
    gamma: Probability = 0.999
    gae_lambda: Probability = 0.95
    clip_range: Positive = 0.2
    clip_value: NonNegative = 0.2
    entropy_coef: NonNegative = 0.01
    advantage_coef: NonNegative = 0.25
    policy_epochs: Count = 1
    value_epochs: Count = 9
    value_freq: Count = 1
    minibatch_size: Count = 64
    normalize_advantage: bool = True
    max_grad_norm: NonNegative = 0.5
    optimizer_eps: Positive = 1e-5
    idaac: bool = False
    idaac_coef: NonNegative = 0.001
    discriminator_hidden_sizes: HiddenSizes = ()


DAAC_AGENTS = {"discrete": "rlfleet.agents.daac:CategoricalDaacAgent", "box": "rlfleet.agents.daac:GaussianDaacAgent"}
DAAC_MODELS = {"discrete": "rlfleet.models.daac:CategoricalDaacModel", "box": "rlfleet.models.daac:GaussianDaacModel"}

SPEC = AlgoSpec(
    name="daac",
    description="Decoupled advantage actor-critic (IDAAC with algo.idaac=true), discrete or continuous actions",
    config=DAACConfig,
    algorithm="rlfleet.algos.pg.daac:DAAC",
    agent_config=PgAgentConfig,
    agent=DAAC_AGENTS,
    default_model=DAAC_MODELS,
    action_spaces=("discrete", "box"),
    policy="on",
    runner_kinds=ON_POLICY_RUNNERS,
)
