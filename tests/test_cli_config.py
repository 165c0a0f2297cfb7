"""``rlfleet --version``, ``rlfleet config``, the ``--steps``/``--device`` short forms and the
``rlfleet eval`` argument checks (issue 12, items 5 and 8)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cli_helpers import rlfleet
from conftest import QUIET
from rlfleet.cli import main
from rlfleet.config.describe import field_docs, parse_docstring_fields


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlfleet: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_version_imports_no_torch():
    code = (
        "import sys\nfrom rlfleet.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["rlfleet 0.1.0", "False"]


def test_version_command(tmp_path):
    proc = rlfleet("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "rlfleet 0.1.0\n", proc.stderr


def test_config_shows_types_defaults_docs_and_changes(capsys):
    code, out, _ = run_main(capsys, "config", "ppo", "-e", "CartPole-v1")
    assert code == 0
    lines = out.splitlines()
    assert "runner:  # RunnerConfig: The training loop." in lines
    assert "  n_steps: 100000  (int >= 1, default 100000)  env-step budget." in lines
    # the CartPole preset's learning rate differs from PPOConfig's default: marked with *
    assert "  lr: 0.001 *  (float > 0, default 0.0003)  learning rate (Adam)." in lines
    assert "  gamma: 0.98 *  (float in [0, 1], default 0.99)  discount." in lines
    assert "  clip_range: 0.2  (float > 0, default 0.2)" in out  # same as the default: no *
    assert "model:  # CategoricalActorCriticModel (the default model), its keyword arguments" in lines
    assert any(line.startswith("  hidden_sizes: [64, 64]  (list of int >= 1, default [64, 64])") for line in lines)
    assert all(len(line) < 200 for line in lines)


def test_config_of_an_off_policy_algorithm(capsys):
    code, out, _ = run_main(capsys, "config", "rainbow", "-e", "CartPole-v1", "replay.size=5000")
    assert code == 0
    assert "replay:  # ReplayConfig" in out
    # the algorithm's replay defaults are the defaults; inherited fields keep their docs
    assert re.search(r"^  kind: prioritized  \(uniform\|prioritized\|sequence, default prioritized\)", out, re.M)
    assert re.search(r"^  size: 5000 \*  \(int >= 1, default 100000\)  transitions the replay holds\.$", out, re.M)
    assert re.search(r"^  batch_size: \d+ .*transitions per gradient step\.$", out, re.M)
    assert re.search(r"^  eps_eval: .*epsilon during evaluation\.$", out, re.M)
    assert re.search(r"^  noisy: true  \(bool, default true\)", out, re.M)  # fixed by the spec


def test_config_unknown_key_is_one_line(capsys):
    code, out, err = run_main(capsys, "config", "ppo", "-e", "CartPole-v1", "algo.lrr=1")
    assert code == 2 and out == ""
    assert one_error_line(err) == "rlfleet: error: unknown config key 'algo.lrr'; did you mean 'algo.lr'?"


def test_config_bad_value_is_one_line(capsys):
    code, _, err = run_main(capsys, "config", "ppo", "-e", "CartPole-v1", "--steps", "many")
    assert code == 2 and "runner.n_steps" in one_error_line(err)


def test_steps_short_form_accepts_rl_zoo_numbers(capsys):
    code, out, _ = run_main(capsys, "config", "ppo", "-e", "CartPole-v1", "--steps", "2e4", "--device", "cpu")
    assert code == 0
    assert "  n_steps: 20000 *  (int >= 1, default 100000)  env-step budget." in out.splitlines()
    assert re.search(r"^  device: cpu  \(torch device, default cpu\)", out, re.M)


def test_short_forms_win_over_the_same_override(capsys):
    code, out, _ = run_main(capsys, "config", "ppo", "-e", "CartPole-v1", "runner.n_steps=5", "--steps", "7")
    assert code == 0 and re.search(r"^  n_steps: 7 \*", out, re.M)


def test_device_short_form_on_a_machine_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, _, err = run_main(capsys, "config", "ppo", "-e", "CartPole-v1", "--device", "cuda")
    assert code == 2
    assert one_error_line(err).startswith("rlfleet: error: runner.device 'cuda': no CUDA device on this machine")
    code, _, err = run_main(capsys, "train", "ppo", "-e", "CartPole-v1", "--device", "cuda", "--steps", "100")
    assert code == 2 and "no CUDA device" in one_error_line(err)


def test_train_help_names_the_config_command(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "rlfleet config ALGO -e ENV" in out and "--steps N" in out and "--device D" in out


def test_docstring_attributes_parsing():
    doc = """Summary.

    Attributes:
        a, b: edges
            of the range.
        c: one line.

    Notes:
        d: not a field.
    """
    assert parse_docstring_fields(doc) == {"a": "edges of the range.", "b": "edges of the range.", "c": "one line."}
    from rlfleet.agents.config import RainbowAgentConfig

    docs = field_docs(RainbowAgentConfig)  # fields documented by its base classes
    assert docs["v_min"] == docs["v_max"] and docs["eps_steps"] == "... over this many env steps."


# -- rlfleet eval -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_start_run(tmp_path_factory):
    """A tiny PPO run on `eval_envs.RandomStartEnv` (returns are the episodes' start values)."""
    root = tmp_path_factory.mktemp("eval_runs")
    proc = rlfleet(
        "train", "ppo", "-e", "eval_envs:RandomStartEnv", "--steps", "32", "--name", "r", "--runs-dir", str(root),
        "sampler.batch_T=8", "sampler.batch_B=2", "algo.minibatch_size=16", "algo.epochs=1",
        "runner.log_interval_steps=16", "runner.eval_interval_steps=0", *QUIET,
        cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root, proc.stdout.split("run directory: ")[1].split("\n")[0].strip()


@pytest.mark.parametrize("episodes", ["0", "-3"])
def test_eval_needs_at_least_one_episode(tmp_path, episodes):
    proc = rlfleet("eval", str(tmp_path), "--episodes", episodes, cwd=tmp_path)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == f"rlfleet: error: --episodes must be at least 1, got {episodes}"


def test_eval_video_of_an_env_that_cannot_render(random_start_run):
    root, run_dir = random_start_run
    proc = rlfleet("eval", run_dir, "--episodes", "1", "--video", cwd=root)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "cannot render" in line and "render_mode" in line, line


def test_render_env_that_renders_no_image():
    from rlfleet.config.schema import EnvConfig
    from rlfleet.envs.render import make_render_env
    from rlfleet.errors import RlfleetError

    with pytest.raises(RlfleetError, match="cannot render.*returned None"):
        make_render_env(EnvConfig(id="eval_envs:BlankRenderEnv"))
    pytest.importorskip("pygame")  # CartPole renders with pygame
    env = make_render_env(EnvConfig(id="CartPole-v1"))
    env.close()


@pytest.mark.slow
def test_eval_seed_picks_the_episodes(random_start_run):
    root, run_dir = random_start_run

    def returns(seed: str) -> str:
        proc = rlfleet("eval", run_dir, "--episodes", "3", "--seed", seed, cwd=root)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()[0]

    first = returns("1")
    assert first.startswith("3 episodes at ")
    assert returns("1") == first
    assert returns("2") != first
