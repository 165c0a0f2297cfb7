"""PPO's declaration and hyperparameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from rlfleet.agents.config import PgAgentConfig
from rlfleet.algos.spec import ON_POLICY_RUNNERS, AlgoSpec
from rlfleet.algos.specs.a2c import PG_AGENTS, PG_MODELS, RECURRENT_PG_AGENT
from rlfleet.config.rules import (
    Count,
    EncoderSections,
    HiddenSizes,
    NonNegative,
    NonNegInt,
    Positive,
    Probability,
    Range,
)
from rlfleet.errors import ConfigError


@dataclass
class RNDConfig:
    """Random network distillation (Burda et al. 2018), the ``algo.rnd`` section of PPO.

    An intrinsic reward ``||f_hat(s') - f(s')||^2``: the error of a trained predictor ``f_hat``
    against a fixed random target network ``f``, both on observations normalised by their
    running mean and std and clipped to +-5; divided by the running std of its discounted
    return (filtered over time per env), treated as non-episodic, and learnt by a second value
    head with its own discount. See `rlfleet.algos.pg.rnd`.

    Attributes:
        enabled: add the intrinsic reward (the model gets two value heads).
        int_coef: weight of the intrinsic advantage in ``A = ext_coef A_ext + int_coef A_int``.
        ext_coef: weight of the extrinsic advantage.
        int_gamma: discount of the intrinsic return (the extrinsic one uses ``algo.gamma``).
        update_proportion: the fraction of each minibatch (a random mask) the predictor trains on.
        warmup_steps: env steps at the start whose batches only update the observation
            statistics (nothing is trained on them); the initial policy's near-zero logits make
            those steps near-uniformly random.
        target_hidden_sizes: MLP widths of the target network (after ``encoder``).
        predictor_hidden_sizes: MLP widths of the predictor (deeper than the target, as in the
            paper).
        output_size: the embedding size both networks output.
        encoder: block sections (`rlfleet.models.blocks`, as ``model.encoder``) before both MLPs,
            e.g. a conv stack for images; None: the default encoder of the observation space
            (flattening for vectors, a CNN for images).
    """

    enabled: bool = False
    int_coef: NonNegative = 1.0
    ext_coef: NonNegative = 2.0
    int_gamma: Probability = 0.99
    update_proportion: Annotated[float, Range(gt=0, le=1)] = 0.25
    warmup_steps: NonNegInt = 0
    target_hidden_sizes: HiddenSizes = (256,)
    predictor_hidden_sizes: HiddenSizes = (256, 256)
    output_size: Count = 64
    encoder: EncoderSections | None = None


@dataclass
class PPOConfig:
    """PPO hyperparameters (defaults follow Stable-Baselines3).

    Attributes:
        lr: learning rate (Adam).
        anneal_lr: decay the learning rate linearly to 0 over the run.
        gamma: discount.
        gae_lambda: GAE lambda.
        epochs: passes over each batch.
        minibatch_size: transitions per gradient step (the ``[T,B]`` batch is flattened; with a
            recurrent model, ``minibatch_size / sequence_length`` whole sequences).
        sequence_length: recurrent models: the length ``L`` of the training sequences each env
            column of a batch is cut into, each unrolled from the state stored at its start
            (0: the whole ``batch_T``; must divide ``sampler.batch_T``).
        clip_range: epsilon of the clipped ratio ``clip(r, 1 - eps, 1 + eps)``.
        anneal_clip: decay ``clip_range`` linearly to 0 over the run.
        clip_value: clip the value update to ``clip_value_range`` around the old value
            (0 disables; PPO2-style).
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        normalize_advantage: standardise advantages per minibatch.
        max_grad_norm: global gradient-norm clip (0 disables).
        target_kl: stop the epochs early once approx-KL exceeds it (0 disables).
        optimizer_eps: Adam epsilon.
        rnd: random network distillation (`RNDConfig`; off by default).
    """

    lr: Positive = 3e-4
    anneal_lr: bool = False
    gamma: Probability = 0.99
    gae_lambda: Probability = 0.95
    epochs: Count = 10
    minibatch_size: Count = 64
    sequence_length: NonNegInt = 0
    clip_range: Positive = 0.2
    anneal_clip: bool = False
    clip_value: NonNegative = 0.0
    value_coef: NonNegative = 0.5
    entropy_coef: NonNegative = 0.0
    normalize_advantage: bool = True
    max_grad_norm: NonNegative = 0.5
    target_kl: NonNegative = 0.0
    optimizer_eps: Positive = 1e-5
    rnd: RNDConfig = field(default_factory=RNDConfig)


def ppo_model_kwargs(config: Any) -> Mapping[str, Any]:
    """What PPO's options require of its model: two value heads (extrinsic, intrinsic) with RND."""
    return {"value_heads": 2} if config.algo.rnd.enabled else {}


def check_ppo(config: Any) -> None:
    """Replicas would stop their epochs at different points on their own KL; sequences must
    tile the batch; RND's networks and normalisers are per process."""
    L, T = config.algo.sequence_length, config.sampler.batch_T
    if L and T % L:
        raise ConfigError(
            f"algo.sequence_length={L} must divide sampler.batch_T={T} (each env column is cut into "
            f"sequences of that length); e.g. algo.sequence_length={next(d for d in range(L, 0, -1) if T % d == 0)}"
        )
    if config.runner.kind == "data_parallel" and config.algo.target_kl > 0:
        raise ConfigError(
            "algo.target_kl stops PPO's epochs on each replica's own KL, so replicas would disagree "
            "on the number of gradient steps: set algo.target_kl=0 with runner.kind=data_parallel"
        )
    heads = config.model.get("value_heads", 1)
    if not config.algo.rnd.enabled and heads != 1:
        raise ConfigError(
            f"model.value_heads={heads!r}: ppo trains one value head, two with algo.rnd.enabled=true "
            "(which sets them itself): remove model.value_heads"
        )
    if config.algo.rnd.enabled and config.runner.kind == "data_parallel":
        raise ConfigError(
            "algo.rnd keeps its networks and observation statistics in one process: "
            "use runner.kind=minibatch with algo.rnd.enabled=true"
        )


SPEC = AlgoSpec(
    name="ppo",
    description="Proximal policy optimisation (clipped), discrete or continuous actions",
    config=PPOConfig,
    algorithm="rlfleet.algos.pg.ppo:PPO",
    agent_config=PgAgentConfig,
    agent=PG_AGENTS,
    default_model=PG_MODELS,
    action_spaces=("discrete", "box"),
    policy="on",
    runner_kinds=ON_POLICY_RUNNERS,
    recurrent_agent=RECURRENT_PG_AGENT,
    model_kwargs=ppo_model_kwargs,
    check=check_ppo,
)
