"""A user's own env and model, named by import path (``custom_components:CorridorEnv``,
``custom_components:TinyModel``): training from the CLI, models from YAML, env kwargs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml

from cli_helpers import rlfleet
from conftest import QUIET, latest_state, read_progress
from custom_components import CorridorEnv, TinyModel
from rlfleet.build import build_experiment
from rlfleet.config.loader import load_yaml, validate
from rlfleet.envs.gym_env import GymEnv
from rlfleet.evaluate import evaluate_run
from rlfleet.experiment import train

ENV = "custom_components:CorridorEnv"
MODEL = "custom_components:TinyModel"


def random_policy_steps_distribution(length: int, max_steps: int) -> np.ndarray:
    """Exact ``p[k]`` = P(an episode of the uniformly random policy lasts k steps) in CorridorEnv
    (the return is ``-k``): a random walk from cell 0 with a wall at 0, absorbed at
    ``length - 1`` or cut at ``max_steps``."""
    p = np.zeros(max_steps + 1)
    cells = np.zeros(length)
    cells[0] = 1.0
    for t in range(1, max_steps + 1):
        moved = np.zeros(length)
        for x in range(length - 1):
            moved[min(x + 1, length - 1)] += cells[x] / 2
            moved[max(x - 1, 0)] += cells[x] / 2
        p[t] = moved[length - 1]
        moved[length - 1] = 0.0
        cells = moved
    p[max_steps] += cells.sum()  # truncated episodes
    return p


def prob_random_mean_return_at_least(threshold: float, episodes: int, length: int, max_steps: int) -> float:
    """Exact P(mean return over ``episodes`` random-policy episodes >= threshold)."""
    p = random_policy_steps_distribution(length, max_steps)
    total = np.array([1.0])
    for _ in range(episodes):
        total = np.convolve(total, p)  # distribution of the summed episode lengths
    return float(total[: int(np.floor(-threshold * episodes)) + 1].sum())


def test_random_policy_model_is_right():
    """The exact distribution above agrees with simulated random-policy episodes."""
    p = random_policy_steps_distribution(10, 40)
    assert abs(p.sum() - 1) < 1e-12 and p[:9].sum() == 0 and p[9] == 0.5**9
    env, rng = CorridorEnv(), np.random.default_rng(0)
    steps = []
    for _ in range(4000):
        env.reset()
        k, done = 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(2)))
            k, done = k + 1, terminated or truncated
        steps.append(k)
    expected_mean = float((np.arange(41) * p).sum())
    assert abs(np.mean(steps) - expected_mean) < 0.5  # > 4 standard errors (std of steps < 10)


@pytest.mark.slow
def test_cli_trains_ppo_on_a_user_env(tmp_path):
    # Optimal return in the default corridor (length 10) is -9; every eval episode of a
    # deterministic policy that goes right everywhere returns exactly -9, one that loops
    # anywhere returns -40 (truncation at 4 * length steps).
    threshold, episodes = -12.0, 10
    # A uniformly random policy reaches a mean return >= -12 over 10 episodes with probability
    # (exact, computed from the random walk) below 1e-12: that level is out of its reach.
    assert prob_random_mean_return_at_least(threshold, episodes, 10, 40) < 1e-12
    # and its expected return is far below it
    p = random_policy_steps_distribution(10, 40)
    assert -(np.arange(41) * p).sum() < -30

    proc = rlfleet(
        "train",
        "ppo",
        "-e",
        ENV,
        "--runs-dir",
        "runs",
        "--name",
        "corridor",
        "runner.n_steps=4096",
        "sampler.batch_T=32",
        "sampler.batch_B=8",
        "algo.lr=0.001",
        "algo.anneal_lr=true",
        "runner.eval_interval_steps=1024",
        "runner.log_interval_steps=1024",
        f"runner.eval_episodes={episodes}",
        *QUIET,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs/custom_components-CorridorEnv/ppo/corridor/seed0"
    assert f"run directory: {run_dir.relative_to(tmp_path)}" in proc.stdout
    rows = read_progress(run_dir)
    first, last = rows[0], rows[-1]
    assert int(first["CumSteps"]) == 0 and int(last["CumSteps"]) == 4096
    assert float(first["EvalReturnAverage"]) < threshold  # the untrained policy does not solve it
    assert int(last["EvalEpisodes"]) == episodes
    assert float(last["EvalReturnAverage"]) >= threshold
    assert float(last["EvalReturnMax"]) <= -9  # sanity: nothing beats the optimum

    # rlfleet eval loads the user env (and the run's default model) back in a fresh process
    proc = rlfleet("eval", str(run_dir.relative_to(tmp_path)), "--episodes", str(episodes), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    match = re.match(rf"{episodes} episodes at 4096 steps: return (-?\d+\.\d+) ", proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) >= threshold


@pytest.mark.slow
def test_custom_model_from_yaml(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": {"_target_": MODEL, "width": 16}}))
    proc = rlfleet(
        "train",
        "ppo",
        "-e",
        ENV,
        "--config",
        str(config),
        "--runs-dir",
        "runs",
        "--name",
        "tiny",
        "runner.n_steps=512",
        "sampler.batch_T=16",
        "sampler.batch_B=4",
        "runner.eval_episodes=2",
        *QUIET,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs/custom_components-CorridorEnv/ppo/tiny/seed0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"] == {"_target_": MODEL, "width": 16}

    # the trained model is a TinyModel(width=16): same parameter names and shapes
    spaces = GymEnv(CorridorEnv()).spaces
    expected = TinyModel(spaces.observation, spaces.action, width=16).state_dict()
    trained = latest_state(run_dir)["agent"]["model"]
    assert {k: tuple(v.shape) for k, v in trained.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert trained["body.weight"].shape == (16, 10) and trained["pi.weight"].shape == (2, 16)
    assert latest_state(run_dir)["algo"]["updates"] > 0

    data = load_yaml(run_dir / "config.yaml")
    exp = build_experiment(validate(data, spaces))
    try:
        assert type(exp.agent.model) is TinyModel and exp.agent.model.body.out_features == 16
    finally:
        exp.close()

    # evaluation rebuilds the custom model from the run's config (in this process)
    result = evaluate_run(run_dir, episodes=2)
    assert result["episodes"] == 2 and -40 <= result["mean"] <= -9

    def train_bad(override: str):
        return rlfleet(
            "train", "ppo", "-e", ENV, "--config", str(config), "--runs-dir", "runs", "--name", "bad", override, *QUIET,
            cwd=tmp_path,
        )  # fmt: skip

    # a misspelt kwarg of the custom model: one line naming the real one, no run written
    proc = train_bad("model.widht=3")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlfleet: error: "), proc.stderr
    assert "'model.widht'" in lines[0] and "'model.width'" in lines[0]
    assert not (run_dir.parent.parent / "bad").exists()

    # and a value of the wrong type for it
    proc = train_bad("model.width=wide")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == ["rlfleet: error: config key 'model.width' expects int, got 'wide' (str)"]


@pytest.mark.slow
def test_env_kwargs(tmp_path):
    # batch_B=4 envs, each episode cut at 4 * length = 20 steps
    run_dir, row = train(
        "ppo",
        ENV,
        [
            "env.kwargs.length=5",
            "runner.n_steps=512",
            "sampler.batch_T=16",
            "sampler.batch_B=4",
            "runner.eval_episodes=2",
            *QUIET,
        ],
        name="short",
        root=tmp_path,
    )
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["env"]["id"] == ENV and saved["env"]["kwargs"] == {"length": 5}
    state = latest_state(run_dir)
    # the observation is one-hot over the corridor: its size is the length the env was built with
    assert state["sampler"]["observation"].shape == (4, 5)
    first_layer = [v for k, v in state["agent"]["model"].items() if k.endswith("weight") and v.dim() == 2]
    assert first_layer[0].shape[1] == 5
    # every episode lasted between 4 steps (the optimum for length 5) and the 20-step limit
    assert "LengthMin" in row and 4 <= row["LengthMin"] and row["LengthMax"] <= 20
    assert row["EvalLengthMax"] <= 20

    # misspelt or mistyped env kwargs of a user env are config errors, not tracebacks
    for override, message in [
        ("env.kwargs.lenght=5", "did you mean 'env.kwargs.length'"),
        ("env.kwargs.length=abc", "'env.kwargs.length' expects int"),
    ]:
        proc = rlfleet("train", "ppo", "-e", ENV, "--runs-dir", "runs", override, *QUIET, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_tiny_model_leading_dims():
    """The custom model follows the default model's contract: [T,B], [B] or no leading dims."""
    spaces = GymEnv(CorridorEnv(length=6)).spaces
    model = TinyModel(spaces.observation, spaces.action, width=8)
    obs = torch.eye(6)[torch.tensor([[0, 1, 2], [3, 4, 5]])]  # [T=2, B=3, 6]
    logits, value = model(obs, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    assert logits.shape == (2, 3, 2) and value.shape == (2, 3)
    logits_b, value_b = model(obs[0], torch.zeros(3, dtype=torch.long), torch.zeros(3))
    assert logits_b.shape == (3, 2) and value_b.shape == (3,)
    torch.testing.assert_close(logits_b, logits[0])
    logits_1, value_1 = model(obs[1, 2], torch.zeros((), dtype=torch.long), torch.zeros(()))
    assert logits_1.shape == (2,) and value_1.shape == ()
    torch.testing.assert_close(logits_1, logits[1, 2])
