"""Procgen (`rlfleet.envs.procgen`): ``procgen:<game>`` ids, spaces, seeding, gym3's automatic
resets, Procgen's options, and the held-out evaluation (``env.test_kwargs``: ``EvalTest*``
columns and ``GeneralizationGap``), on Procgen and on a cheap Gymnasium env."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import QUIET, assert_exact_resume, latest_state, read_progress
from rlfleet.build import build_experiment
from rlfleet.config.loader import env_suite, resolve, validate
from rlfleet.config.schema import EnvConfig
from rlfleet.envs import procgen
from rlfleet.envs.make import check_env_id, held_out_config, make_env
from rlfleet.envs.spaces import Box, Discrete
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from rlfleet.samplers.evaluation import EvaluationInterrupted

needs_procgen = pytest.mark.skipif(
    importlib.util.find_spec("procgen") is None or importlib.util.find_spec("gym3") is None,
    reason=f"needs Procgen, which this install lacks: {procgen.INSTALL_COMMAND} (scripts/install_procgen.sh)",
)
NOOP = 4  # Procgen's action 4 presses no key

# A2C with the default image encoder, short evaluations cut at 64 steps on both splits.
TINY_RUN = [
    "env.kwargs.distribution_mode=easy",
    "env.kwargs.num_levels=10",
    "sampler.batch_T=32",
    "sampler.batch_B=4",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=512",
    "runner.eval_episodes=2",
    "runner.eval_envs=2",
    "runner.eval_max_steps=64",
    *QUIET,
]


def procgen_env(game: str = "coinrun", **kwargs):
    return make_env(EnvConfig(id=f"procgen:{game}", kwargs={"distribution_mode": "easy", **kwargs}))


def play(env, actions) -> tuple[list[np.ndarray], list[float], list[tuple[bool, bool]]]:
    """Step ``actions``, resetting after each episode end: observations, rewards, (terminated,
    truncated) per step."""
    observations, rewards, ends = [], [], []
    for action in actions:
        step = env.step(np.array(action))
        observations.append(step.observation)
        rewards.append(step.reward)
        ends.append((step.terminated, step.truncated))
        if step.terminated or step.truncated:
            observations.append(env.reset())
    return observations, rewards, ends


# ----- ids, options, errors (no Procgen needed) -----
def test_unknown_game_names_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown Procgen game 'coinrn'.*did you mean 'procgen:coinrun'\?$"):
        check_env_id("procgen:coinrn")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_level": 200}, r"unknown env.kwargs key 'num_level' for procgen:coinrun; did you mean 'num_levels'\?"),
        ({"distributon_mode": "easy"}, r"did you mean 'distribution_mode'\?"),
        ({"distribution_mode": "eazy"}, r"distribution_mode='eazy' is not a Procgen mode .* did you mean 'easy'\?"),
        ({"distribution_mode": "memory"}, r"procgen:coinrun has no 'memory' distribution mode; .*: caveflyer,"),
        ({"num_levels": -1}, r"env.kwargs.num_levels must be an integer >= 0, got -1"),
        ({"use_backgrounds": 0}, r"env.kwargs.use_backgrounds must be true or false"),
    ],
)
def test_bad_kwargs_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        procgen.procgen_options("procgen:coinrun", kwargs)
    assert "\n" not in str(err.value)


def test_options_are_procgen_defaults_completed():
    options = procgen.procgen_options("procgen:maze", {"distribution_mode": "memory", "num_levels": 200})
    assert options == {**procgen.OPTIONS, "distribution_mode": "memory", "num_levels": 200}
    assert procgen.step_limit("maze", "easy") == 500 and procgen.step_limit("jumper", "memory") == 2000
    assert procgen.step_limit("coinrun", "hard") == 1000


def test_missing_procgen_is_one_line_naming_the_install_command(monkeypatch):
    monkeypatch.setattr(procgen, "_import_gym3_env_class", lambda: None)
    with pytest.raises(ConfigError) as err:
        check_env_id("procgen:coinrun")
    message = str(err.value)
    assert "\n" not in message and message.startswith("env 'procgen:coinrun' needs Procgen")
    assert "pip install --no-deps procgen-mirror==0.10.7 gym3==0.3.3" in message
    assert "scripts/install_procgen.sh" in message


def test_suite_and_default_test_split():
    assert env_suite("procgen:starpilot") == "procgen"
    train_env = EnvConfig(id="procgen:coinrun", kwargs={"distribution_mode": "easy", "num_levels": 200})
    test_env = held_out_config(train_env)
    assert test_env.kwargs == {"distribution_mode": "easy", "num_levels": 0}  # the full distribution
    assert held_out_config(EnvConfig(id="procgen:coinrun")) is None  # trains on every level already
    assert held_out_config(EnvConfig(id="procgen:coinrun", kwargs={"num_levels": 200}, test_kwargs={})) is None
    explicit = EnvConfig(id="procgen:coinrun", kwargs={"num_levels": 200}, test_kwargs={"start_level": 1000})
    assert held_out_config(explicit).kwargs == {"num_levels": 200, "start_level": 1000}
    assert held_out_config(EnvConfig(id="CartPole-v1")) is None


# ----- the env -----
@needs_procgen
@pytest.mark.parametrize("game", procgen.GAMES)
def test_every_game_gives_channel_first_uint8_frames(game):
    env = procgen_env(game)
    space = env.observation_space
    assert isinstance(space, Box) and space.shape == (3, 64, 64) and space.dtype == np.uint8
    assert (space.low.min(), space.high.max()) == (0, 255)
    assert isinstance(env.action_space, Discrete) and env.action_space.n == 15
    obs = env.reset(seed=1)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8 and obs.std() > 0
    step = env.step(np.array(NOOP))
    assert step.observation.shape == (3, 64, 64) and isinstance(step.reward, float)
    env.close()


@needs_procgen
def test_same_seed_same_episodes_other_seed_other_levels():
    actions = np.random.default_rng(0).integers(15, size=1500)
    runs = []
    for seed in (7, 7, 8):
        env = procgen_env("coinrun")
        first = env.reset(seed=seed)
        runs.append((first, *play(env, actions)))
        env.close()
    (first_a, obs_a, rew_a, end_a), (first_b, obs_b, rew_b, end_b), (first_c, *_) = runs
    assert sum(map(any, end_a)) >= 2  # the steps cross episode ends
    assert np.array_equal(first_a, first_b) and rew_a == rew_b and end_a == end_b
    assert all(np.array_equal(a, b) for a, b in zip(obs_a, obs_b))
    assert not np.array_equal(first_a, first_c)
    env = procgen_env("coinrun")  # reset(seed) on a used env starts the same again
    env.reset(seed=3)
    play(env, actions[:100])
    again = env.reset(seed=7)
    assert np.array_equal(again, first_a)


@needs_procgen
def test_step_limit_truncates_and_reset_hands_out_the_next_first_frame():
    """maze has a limit of 500 steps; standing still never reaches the cheese. One level
    (``num_levels=1``): every episode starts from the same frame."""
    env = procgen_env("maze", num_levels=1, start_level=5)
    first = env.reset(seed=0)
    previous, steps = first, 0
    while True:
        step = env.step(np.array(NOOP))
        steps += 1
        if step.terminated or step.truncated:
            break
        previous = step.observation
    assert (steps, step.terminated, step.truncated) == (500, False, True)
    assert np.array_equal(step.observation, previous)  # Procgen shows no frame after the last step
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.array(NOOP))
    assert np.array_equal(env.reset(), first)
    step = env.step(np.array(NOOP))
    assert not (step.terminated or step.truncated)


@needs_procgen
def test_level_end_terminates_and_a_mid_episode_reset_starts_the_level_again():
    env = procgen_env("coinrun", num_levels=1, start_level=2)
    first = env.reset(seed=0)
    _, _, ends = play(env, np.random.default_rng(1).integers(15, size=3000))
    terminated = [i for i, (term, trunc) in enumerate(ends) if term]
    assert terminated and not any(term and trunc for term, trunc in ends)
    play(env, [NOOP] * 20)
    assert np.array_equal(env.reset(), first)  # mid-episode: Procgen's forced reset, a new episode
    assert env.step(np.array(NOOP)).info["level_complete"] == 0.0


@needs_procgen
def test_pickled_env_continues_exactly():
    env = procgen_env("starpilot")
    env.reset(seed=4)
    actions = np.random.default_rng(2).integers(15, size=400)
    play(env, actions[:150])
    copy = pickle.loads(pickle.dumps(env.env))
    a = play(env, actions[150:])
    env.env = copy
    b = play(env, actions[150:])
    assert a[1] == b[1] and a[2] == b[2] and all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))


# ----- held-out evaluation -----
def eval_rows(run_dir: str | Path) -> list[dict[str, float]]:
    """The progress rows of the evaluations, as numbers (empty cells left out)."""
    rows = read_progress(Path(run_dir))
    return [{k: float(v) for k, v in r.items() if v != ""} for r in rows if r["EvalReturnAverage"]]


def assert_held_out_columns(rows: list[dict[str, float]], episodes: int) -> None:
    assert rows
    for row in rows:
        for split in ("Eval", "EvalTest"):
            assert {f"{split}Return{s}" for s in ("Average", "Std", "Min", "Max")} <= row.keys()
            assert row[f"{split}Episodes"] == episodes
        assert row["GeneralizationGap"] == pytest.approx(row["EvalReturnAverage"] - row["EvalTestReturnAverage"])


def test_test_kwargs_evaluates_a_held_out_env_too(tmp_path):
    """CartPole with Sutton and Barto's reward (0 a step, -1 at the end) as the held-out
    split: its returns are <= 0, so the gap is at least the training split's return."""
    run_dir, _ = train(
        "ppo",
        "CartPole-v1",
        [
            "env.test_kwargs.sutton_barto_reward=true",
            "runner.n_steps=1024",
            "runner.eval_interval_steps=512",
            "runner.eval_episodes=3",
            *QUIET,
        ],
        root=tmp_path,
    )
    rows = eval_rows(run_dir)
    assert [r["CumSteps"] for r in rows] == [0, 512, 1024]
    assert_held_out_columns(rows, episodes=3)
    assert all(r["EvalTestReturnMax"] <= 0 < r["EvalReturnMin"] for r in rows)
    assert all(r["GeneralizationGap"] >= r["EvalReturnAverage"] for r in rows)
    assert latest_state(run_dir)["evaluations"] == 3  # one count for both splits


def test_ctrl_c_in_the_held_out_split_abandons_the_whole_evaluation():
    """An interruption while the held-out envs run puts the one count back: the evaluation run
    again gives the row an uninterrupted one gives."""
    overrides = ["env.test_kwargs.sutton_barto_reward=true", "runner.eval_episodes=2", *QUIET]
    exp, reference = (build_experiment(validate(resolve("ppo", "CartPole-v1", overrides))) for _ in range(2))
    runner, test_env = exp.runner, exp.evaluator.test_envs[0]
    step = test_env.step

    def interrupting_step(action):
        runner._interrupted = True  # Ctrl-C while the held-out split runs
        return step(action)

    test_env.step = interrupting_step
    with pytest.raises(EvaluationInterrupted):
        runner.evaluate()
    assert (exp.evaluator.count, runner._eval_pending) == (0, True)
    runner._interrupted, test_env.step = False, step
    row = runner.evaluate()
    assert row == reference.runner.evaluate() and "GeneralizationGap" in row
    assert exp.evaluator.count == 1
    exp.close()
    reference.close()


def test_without_test_kwargs_no_held_out_columns(tmp_path):
    run_dir, _ = train(
        "ppo", "CartPole-v1", ["runner.n_steps=512", "runner.eval_interval_steps=512", *QUIET], root=tmp_path
    )
    assert not any(k.startswith("EvalTest") or k == "GeneralizationGap" for k in read_progress(run_dir)[0])


@pytest.fixture(scope="module")
def procgen_bench(tmp_path_factory):
    """One tiny Procgen run through the benchmark runner: (its result, the runs root)."""
    from rlfleet.bench import BenchEntry, run_one

    root = tmp_path_factory.mktemp("runs")
    entry = BenchEntry("a2c", "procgen:coinrun", steps=1024, threshold=5.0, seeds=[0], overrides=TINY_RUN)
    return entry, run_one(entry, 0, str(root), "tiny"), root


@needs_procgen
def test_procgen_run_logs_both_splits(procgen_bench):
    _, result, _ = procgen_bench
    rows = eval_rows(result.run_dir)
    assert [r["CumSteps"] for r in rows] == [0, 512, 1024]
    assert_held_out_columns(rows, episodes=2)
    assert all(r["EvalCapped"] == 2 and r["EvalTestCapped"] == 2 for r in rows)  # cut at 64 steps
    assert all(r["EvalLengthMax"] == 64 for r in rows)
    config = validate(resolve("a2c", "procgen:coinrun", TINY_RUN))
    assert held_out_config(config.env).kwargs == {"distribution_mode": "easy", "num_levels": 0}


@needs_procgen
def test_plot_and_bench_report_read_runs_with_held_out_columns(procgen_bench, tmp_path):
    from rlfleet.bench import Suite, write_report
    from rlfleet.plotting import plot_runs

    entry, result, _ = procgen_bench
    assert result.final_return == eval_rows(result.run_dir)[-1]["EvalReturnAverage"]
    for y in ("EvalReturnAverage", "EvalTestReturnAverage", "GeneralizationGap"):
        out = plot_runs([result.run_dir], y=y, out=tmp_path / f"{y}.png")
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = write_report(Suite("procgen-tiny", [entry]), {0: [result]}, tmp_path / "report")
    assert "procgen:coinrun" in report.read_text()


@needs_procgen
def test_procgen_exact_resume_with_held_out_evaluation(tmp_path):
    """N steps in one go == N/2 steps, then a resume to N: the envs (pickled through Procgen's
    state) and the evaluation count continue exactly."""
    n = 1024
    full, _ = train("a2c", "procgen:coinrun", [*TINY_RUN, f"runner.n_steps={n}"], name="full", root=tmp_path)
    half, _ = train("a2c", "procgen:coinrun", [*TINY_RUN, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    assert latest_state(half)["sampler"]["stepper"]["envs"] is not None  # pickled, not to be reset
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)
    assert latest_state(full)["evaluations"] == latest_state(half)["evaluations"] == 3


# ----- the preset -----
@needs_procgen
def test_ppo_preset_maps_cobbe_et_al():
    """Needs ``model.encoder`` (impala_cnn) in the actor-critic models."""
    config = validate(resolve("ppo", "procgen:starpilot"))
    s, a, e = config.sampler, config.algo, config.env
    assert (s.batch_B, s.batch_T, a.epochs, s.batch_B * s.batch_T // a.minibatch_size) == (64, 256, 3, 8)
    assert (a.lr, a.anneal_lr, a.gamma, a.gae_lambda, a.clip_range, a.clip_value) == (
        5e-4,
        False,
        0.999,
        0.95,
        0.2,
        0.2,
    )
    assert (a.entropy_coef, a.value_coef, a.max_grad_norm) == (0.01, 0.25, 0.5)
    assert e.normalize_reward and e.kwargs == {"distribution_mode": "easy", "num_levels": 200, "start_level": 0}
    assert config.runner.n_steps == 25_000_000
    assert config.model["encoder"] == {"kind": "impala_cnn", "channels": [16, 32, 32]}
    assert held_out_config(e).kwargs["num_levels"] == 0
