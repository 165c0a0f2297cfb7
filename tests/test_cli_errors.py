"""User errors on the command line: each bad command, run as a real ``rlfleet`` process, must
exit non-zero with exactly one ``rlfleet: error: ...`` line naming the problem, print no
traceback, and leave existing run data byte-for-byte untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_helpers import rlfleet
from conftest import QUIET

RUN_NAME = "existing"
RUN_REL = Path("runs", "CartPole-v1", "ppo", RUN_NAME, "seed0")


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file (bytes, mtime) and every directory under ``root``."""
    out: dict[str, tuple[bytes, int] | None] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = (path.read_bytes(), path.stat().st_mtime_ns) if path.is_file() else None
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory holding one real finished run (``runs/CartPole-v1/ppo/existing/seed0``) and a
    copy of it whose checkpoint is truncated to half its bytes (``broken_copy``)."""
    cwd = tmp_path_factory.mktemp("cli")
    proc = rlfleet(
        "train",
        "ppo",
        "-e",
        "CartPole-v1",
        "--runs-dir",
        "runs",
        "--name",
        RUN_NAME,
        "runner.n_steps=512",
        "sampler.batch_T=32",
        "sampler.batch_B=4",
        "runner.eval_episodes=2",
        "runner.log_interval_steps=256",
        *QUIET,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = cwd / RUN_REL
    assert (run_dir / "config.yaml").is_file() and (run_dir / "progress.csv").is_file()
    assert len(list((run_dir / "checkpoints").glob("ckpt_*.pt"))) == 1

    copy = cwd / "broken_copy"
    shutil.copytree(run_dir, copy)
    (ckpt,) = (copy / "checkpoints").glob("ckpt_*.pt")
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    (cwd / "not_a_run").mkdir()
    return cwd


def check_one_line_error(cwd: Path, args: list[str], *expected: str) -> str:
    """Run a bad command; everything under ``cwd`` must be unchanged afterwards."""
    before = snapshot(cwd)
    proc = rlfleet(*args, cwd=cwd)
    after = snapshot(cwd)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    assert proc.stdout == "", output
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("rlfleet: error: "), line
    for text in expected:
        assert text in line, line
    assert after.keys() == before.keys(), "files were created or removed"
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"files changed: {changed}"
    return line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["ppo2", "-e", "CartPole-v1"], ["unknown algorithm", "'ppo2'", "did you mean 'ppo'"], id="unknown-algorithm"
        ),
        pytest.param(
            ["ppo", "-e", "CartPole-v2"],
            ["unknown env id", "'CartPole-v2'", "did you mean 'CartPole-v1'"],
            id="unknown-env-version",
        ),
        pytest.param(
            ["ppo", "-e", "CartPol-v1"],
            ["unknown env id", "'CartPol-v1'", "did you mean 'CartPole-v1'"],
            id="misspelt-env",
        ),
        pytest.param(
            ["ppo", "-e", "CartPole-v1", "algo.lrr=0.1"],
            ["unknown config key", "'algo.lrr'", "'algo.lr'"],
            id="unknown-key",
        ),
        pytest.param(
            ["ppo", "-e", "CartPole-v1", "algo.lr=abc"], ["'algo.lr'", "float", "'abc'"], id="lr-not-a-number"
        ),
        pytest.param(
            ["ppo", "-e", "CartPole-v1", "sampler.batch_B=1.5"],
            ["'sampler.batch_B'", "int", "1.5"],
            id="batch-not-an-int",
        ),
        pytest.param(
            ["dqn", "-e", "Pendulum-v1"], ["dqn", "Pendulum-v1", "Box", "Discrete"], id="dqn-continuous-actions"
        ),
    ],
)
def test_bad_train_command(workdir, args, expected):
    check_one_line_error(workdir, ["train", *args, "--runs-dir", "runs", *QUIET], *expected)


def test_train_into_existing_run_without_resume(workdir):
    """The run is not overwritten; the message names it and points at --resume."""
    args = ["train", "ppo", "-e", "CartPole-v1", "--name", RUN_NAME, "--runs-dir", "runs", *QUIET]
    check_one_line_error(workdir, args, "already holds a run", str(RUN_REL), "--resume")


@pytest.mark.parametrize("target", ["not_a_run", "runs/CartPole-v1", "does_not_exist"])
def test_resume_into_a_directory_that_is_not_a_run(workdir, target):
    line = check_one_line_error(workdir, ["train", "--resume", target], target, "not a run directory")
    assert "config.yaml" in line


def test_resume_truncated_checkpoint(workdir):
    check_one_line_error(
        workdir, ["train", "--resume", "broken_copy", *QUIET], "checkpoint", "ckpt_", "corrupt or truncated"
    )


def test_eval_truncated_checkpoint(workdir):
    check_one_line_error(
        workdir, ["eval", "broken_copy", "--episodes", "1"], "checkpoint", "ckpt_", "corrupt or truncated"
    )


def test_the_intact_run_still_evaluates(workdir):
    """Control for the cases above: the untouched original run is fine."""
    proc = rlfleet("eval", str(RUN_REL), "--episodes", "1", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1 episodes at 512 steps: return ")


def test_exponent_floats_without_a_decimal_point_are_floats():
    from rlfleet.config.loader import apply_overrides, validate

    config = validate(apply_overrides({"algorithm": "ppo"}, ["algo.lr=1e-4", "algo.optimizer_eps=2E-05"]))
    assert config.algo.lr == 1e-4 and config.algo.optimizer_eps == 2e-5
