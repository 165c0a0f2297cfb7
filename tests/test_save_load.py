"""Save/load round trip: a trained agent, rebuilt from its run's config and checkpoint, acts
exactly like the agent that was saved; ``rlfleet eval`` reads the same run."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import torch

from cli_helpers import rlfleet_cmd
from conftest import QUIET, latest_state
from rlfleet.build import Experiment, build_experiment, probe_spaces
from rlfleet.config.loader import load_yaml, save_config, validate
from rlfleet.experiment import prepare_new_run
from rlfleet.utils.buffers import buffer_from_example

N_STEPS = 1024
CASES = [
    pytest.param("ppo", "CartPole-v1", ["sampler.batch_T=32", "sampler.batch_B=4"], id="ppo"),
    pytest.param("a2c", "CartPole-v1", ["sampler.batch_T=8", "sampler.batch_B=4"], id="a2c"),
    pytest.param(
        "dqn",
        "CartPole-v1",
        ["sampler.batch_T=16", "algo.learning_starts=256", "replay.size=2000", "agent.eps_steps=512"],
        id="dqn",
    ),
    # continuous actions, with observation normalisation (its statistics live in the checkpoint)
    pytest.param("a2c", "Pendulum-v1", ["sampler.batch_T=8", "sampler.batch_B=4"], id="a2c-pendulum"),
]


def train_in_process(algo: str, env_id: str, overrides: list[str], root) -> Experiment:
    """What ``rlfleet.experiment.train`` does, keeping the built experiment (and its agent)."""
    config, run_dir, spaces = prepare_new_run(algo, env_id, overrides, name="saved", root=root)
    run_dir.mkdir(parents=True)
    exp = build_experiment(config, run_dir, spaces)
    save_config(config, run_dir / "config.yaml")
    try:
        exp.runner.train()
    finally:
        exp.close()
    return exp


def rebuild(run_dir) -> tuple[Experiment, dict]:
    state = latest_state(run_dir)
    data = load_yaml(run_dir / "config.yaml")
    config = validate(data, probe_spaces(validate(data)))
    exp = build_experiment(config, run_dir=None)
    return exp, state


def fixed_inputs(exp: Experiment, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    spaces = exp.agent.env_spaces
    rng = np.random.default_rng(123)
    obs = torch.as_tensor(rng.uniform(-1.5, 1.5, (batch, *spaces.observation.shape)), dtype=torch.float32)
    prev_action = torch.from_numpy(buffer_from_example(spaces.action.null_value(), (batch,)))
    return obs, prev_action, torch.zeros(batch)


def outputs(agent, inputs) -> list[torch.Tensor]:
    step = agent.step(*inputs)
    return [step.action, *(t for t in _leaves(step.agent_info))]


def _leaves(x):
    if isinstance(x, torch.Tensor):
        yield x
    else:
        for item in x:
            yield from _leaves(item)


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(("algo", "env_id", "overrides"), CASES)
def test_reloaded_agent_acts_like_the_saved_one(tmp_path, algo, env_id, overrides):
    extra = ["env.normalize_obs=true"] if env_id == "Pendulum-v1" else []
    saved = train_in_process(
        algo, env_id, [*overrides, *extra, f"runner.n_steps={N_STEPS}", "runner.eval_episodes=2", *QUIET], tmp_path
    )
    run_dir = saved.run_dir
    loaded, state = rebuild(run_dir)
    try:
        assert state["runner"]["cum_steps"] == N_STEPS and state["algo"]["updates"] > 0
        inputs = fixed_inputs(saved)

        # before loading, the fresh agent (same seed, untrained) answers differently
        saved.agent.eval_mode(N_STEPS)
        loaded.agent.eval_mode(N_STEPS)
        assert not same(outputs(saved.agent, inputs)[1:], outputs(loaded.agent, inputs)[1:])

        loaded.runner.load_state_dict(state)
        assert loaded.runner.cum_steps == N_STEPS
        saved_params, loaded_params = saved.agent.model.state_dict(), loaded.agent.model.state_dict()
        assert saved_params.keys() == loaded_params.keys()
        assert all(torch.equal(saved_params[k], loaded_params[k]) for k in saved_params)

        # sampling mode first (it draws from the checkpointed exploration generator) ...
        saved.agent.sample_mode(N_STEPS)
        loaded.agent.sample_mode(N_STEPS)
        for _ in range(3):
            assert same(outputs(saved.agent, inputs), outputs(loaded.agent, inputs))
        # ... then the deterministic evaluation policy
        saved.agent.eval_mode(N_STEPS)
        loaded.agent.eval_mode(N_STEPS)
        eval_saved, eval_loaded = outputs(saved.agent, inputs), outputs(loaded.agent, inputs)
        assert same(eval_saved, eval_loaded)
        assert same(eval_saved, outputs(saved.agent, inputs))  # deterministic: same answer twice

        if loaded.sampler.obs_normalizer is not None:
            raw = inputs[0].numpy()
            np.testing.assert_array_equal(
                saved.sampler.obs_normalizer(raw, update=False), loaded.sampler.obs_normalizer(raw, update=False)
            )
    finally:
        loaded.close()


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_rlfleet_eval_prints_a_return_line(tmp_path, algo):
    overrides = {"ppo": CASES[0], "a2c": CASES[1], "dqn": CASES[2]}[algo].values[2]
    saved = train_in_process(
        algo, "CartPole-v1", [*overrides, "runner.n_steps=512", "runner.eval_episodes=2", *QUIET], tmp_path
    )
    proc = subprocess.run(
        rlfleet_cmd("eval", str(saved.run_dir), "--episodes", "2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    number = r"-?\d+\.\d\d"
    pattern = rf"2 episodes at 512 steps: return ({number}) \+/- {number} \(min ({number}), max ({number})\)"
    match = re.fullmatch(pattern, proc.stdout.strip())
    assert match, proc.stdout
    mean, low, high = map(float, match.groups())
    assert 1 <= low <= mean <= high <= 500  # CartPole-v1 returns are episode lengths
