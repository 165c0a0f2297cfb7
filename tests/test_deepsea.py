"""DeepSea (`rlfleet.envs.deepsea`): bsuite's dynamics, registration, suite and presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import read_progress
from rlfleet.bench import BenchEntry, load_suite, run_one
from rlfleet.config.loader import env_suite, resolve, validate
from rlfleet.config.schema import EnvConfig
from rlfleet.envs.deepsea import DeepSea
from rlfleet.envs.make import make_env
from rlfleet.errors import ConfigError
from rlfleet.samplers.traj_info import TrajInfo


def run_episode(env: DeepSea, choose) -> tuple[float, int, dict, list[np.ndarray]]:
    """Play one episode with ``choose(env) -> action``: (return, length, last info, observations)."""
    obs, _ = env.reset(seed=0)
    observations, total, length = [obs], 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(choose(env))
        observations.append(obs)
        total += reward
        length += 1
        assert not truncated
        if terminated:
            return total, length, info, observations


def right(env: DeepSea) -> int:
    return int(env.action_right[env.row, env.column])


@pytest.mark.parametrize("size", [2, 5, 10])
def test_optimal_actions_find_the_treasure(size):
    env = DeepSea(size)
    total, length, info, observations = run_episode(env, right)
    # N moves right, each costing 0.01 / N, and the treasure's 1 on the last one
    assert total == pytest.approx(1.0 - size * (0.01 / size), abs=1e-12)
    assert total == pytest.approx(0.99, abs=1e-12)
    assert length == size
    assert info == {"found_treasure": 1.0}
    for row, obs in enumerate(observations[:-1]):  # the one-hot position on the diagonal
        assert obs.shape == (size, size) and obs.dtype == np.float32
        assert obs.sum() == 1.0 and obs[row, row] == 1.0
    assert not observations[-1].any()  # after the last step: the null observation


def test_one_wrong_action_misses_the_treasure():
    size = 6
    env = DeepSea(size)
    left_first = lambda e: 1 - right(e) if e.row == 0 else right(e)  # noqa: E731
    total, length, info, _ = run_episode(env, left_first)
    # left from column 0 stays there; the N-1 rights after it end in the last column too late
    assert length == size and info == {"found_treasure": 0.0}
    assert total == pytest.approx(-(size - 1) * 0.01 / size, abs=1e-12)
    assert env.column == size - 1


def test_mapping_is_drawn_from_its_seed():
    a, b, c = DeepSea(10, mapping_seed=3), DeepSea(10, mapping_seed=3), DeepSea(10, mapping_seed=4)
    np.testing.assert_array_equal(a.action_right, b.action_right)
    assert not np.array_equal(a.action_right, c.action_right)
    assert set(np.unique(a.action_right)) == {0, 1}  # both actions mean "right" somewhere
    np.testing.assert_array_equal(DeepSea(4, randomize_actions=False).action_right, np.ones((4, 4)))


def test_stochastic_version_is_reproducible_from_the_reset_seed():
    def returns(seed: int) -> list[float]:
        env = DeepSea(5, deterministic=False)
        env.reset(seed=seed)
        out = []
        for _ in range(20):
            total, done = 0.0, False
            while not done:
                _, reward, done, _, _ = env.step(right(env))
                total += reward
            out.append(total)
            env.reset()
        return out

    assert returns(1) == returns(1)
    assert len(set(returns(1))) > 1  # right sometimes fails, the corners add noise


def test_registered_id_suite_and_traj_info():
    env = make_env(EnvConfig(id="DeepSea-v0", kwargs={"size": 7}))
    assert env.spaces.observation.shape == (7, 7)
    env.close()
    assert env_suite("DeepSea-v0") == "exploration"
    traj = TrajInfo()
    traj.step(-0.001, {})
    traj.step(0.999, {"found_treasure": 1.0})
    assert traj.completed()["found_treasure"] == 1.0  # progress.csv's found_treasureAverage
    with pytest.raises(ConfigError, match="env.kwargs.size"):
        DeepSea(1)


def test_preset_is_ppo_with_rnd_on_size_20():
    config = validate(resolve("ppo", "DeepSea-v0"))
    assert config.algo.rnd.enabled and config.env.kwargs == {"size": 20}


def test_bench_entry_metric_reports_a_progress_column(tmp_path):
    quick = ["env.kwargs.size=4", "sampler.batch_T=16", "runner.log_interval_steps=128", "runner.eval_interval_steps=0"]
    entry = BenchEntry("ppo", "DeepSea-v0", steps=512, threshold=0.5, seeds=[0], overrides=quick)
    entry.metric = "found_treasureAverage"
    result = run_one(entry, 0, str(tmp_path / "runs"), "metric")
    rows = read_progress(Path(result.run_dir))
    assert result.final_return == float(rows[-1]["found_treasureAverage"])
    hits = [int(r["CumSteps"]) for r in rows if float(r["found_treasureAverage"] or 0) >= 0.5]
    assert result.steps_to_threshold == (hits[0] if hits else None)
    entry.metric, entry.label = "no_such_column", "other"
    with pytest.raises(ConfigError, match="has no column 'no_such_column'"):
        run_one(entry, 0, str(tmp_path / "runs"), "metric")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "entries: [{algorithm: ppo, env: DeepSea-v0, steps: 10, threshold: 0.9, metric: found_treasureAverage}]\n"
    )
    assert load_suite(suite).entries[0].metric == "found_treasureAverage"
