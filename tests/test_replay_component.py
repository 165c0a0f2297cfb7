"""The replay as a component: its own ``replay:`` section, built by the composition root with
the algorithm's n-step horizon and discount, handed to the algorithm and the runner; replay
keys left under ``algo:`` get one line naming where they moved."""

from __future__ import annotations

import pytest

from cli_helpers import rlfleet
from conftest import QUIET
from rlfleet.build import build_experiment
from rlfleet.config.loader import MOVED_TO_REPLAY, resolve, validate
from rlfleet.errors import ConfigError
from rlfleet.replays.n_step import NStepReplayBuffer
from rlfleet.replays.prioritized import PrioritizedReplayBuffer


def built(algorithm: str, env_id: str, overrides: list[str]):
    return build_experiment(validate(resolve(algorithm, env_id, [*QUIET, "runner.eval_interval_steps=0", *overrides])))


def test_replay_is_built_from_its_section_and_shared_by_algorithm_and_runner():
    overrides = ["replay.kind=prioritized", "replay.size=5000", "replay.alpha=0.7", "algo.n_step=3"]
    exp = built("dqn", "CartPole-v1", overrides)
    try:
        replay = exp.replay
        assert isinstance(replay, PrioritizedReplayBuffer)
        assert replay is exp.algo.replay is exp.runner.replay
        assert (replay.T * replay.B, replay.alpha, replay.n_step, replay.gamma) == (5000, 0.7, 3, exp.config.algo.gamma)
        # the beta schedule anneals from replay.beta_start to 1 over the run (replay.beta_steps=0)
        assert replay.beta(0) == pytest.approx(0.4) and replay.beta(exp.config.runner.n_steps) == pytest.approx(1.0)
    finally:
        exp.close()


def test_spec_defaults_fill_the_replay_section():
    rainbow = validate(resolve("rainbow", "CartPole-v1", []))
    assert (rainbow.replay.kind, rainbow.replay.alpha) == ("prioritized", 0.5)
    sac = validate(resolve("sac", "Pendulum-v1", ["replay.size=5000"]))
    assert (sac.replay.kind, sac.replay.size) == ("uniform", 5000)
    assert validate(resolve("sac", "Pendulum-v1", [])).replay.size == 1_000_000


def test_on_policy_algorithms_have_no_replay():
    exp = built("ppo", "CartPole-v1", [])
    try:
        assert exp.replay is None and exp.config.replay is None and exp.runner.replay is None
    finally:
        exp.close()
    with pytest.raises(ConfigError, match="on-policy and uses no replay"):
        validate(resolve("ppo", "CartPole-v1", ["replay.size=100"]))


def test_uniform_replay_keeps_the_interface():
    exp = built("dqn", "CartPole-v1", [])
    try:
        assert type(exp.replay) is NStepReplayBuffer
        assert exp.replay.diagnostics(0) == {}
    finally:
        exp.close()


@pytest.mark.parametrize("old_key", sorted(MOVED_TO_REPLAY))
def test_old_replay_keys_under_algo_name_their_new_place(old_key):
    with pytest.raises(ConfigError) as err:
        validate(resolve("dqn", "CartPole-v1", [f"algo.{old_key}=1"]))
    assert str(err.value) == f"config key 'algo.{old_key}' moved to {MOVED_TO_REPLAY[old_key]}"


def test_old_config_file_gets_one_line(tmp_path):
    (tmp_path / "old.yaml").write_text("algorithm: dqn\nenv: {id: CartPole-v1}\nalgo: {lr: 0.001, prioritized: true}\n")
    proc = rlfleet("train", "--config", "old.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rlfleet: error: config key 'algo.prioritized' moved to replay.kind (uniform or prioritized)"
    ]
    assert not (tmp_path / "runs").exists()
