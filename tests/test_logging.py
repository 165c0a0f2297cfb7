"""Run-directory logging: progress.csv columns, TensorBoard scalars, W&B offline."""

import pytest

from conftest import read_progress
from rlfleet.experiment import train
from rlfleet.logging.progress import ProgressLogger

SHORT = ["runner.n_steps=2048", "runner.log_interval_steps=1024", "logger.console=false"]


def test_progress_csv_has_rlpyt_columns_and_tensorboard_scalars(tmp_path):
    run_dir, _ = train("ppo", "CartPole-v1", SHORT, seed=0, name="l", root=tmp_path)
    rows = read_progress(run_dir)
    header = set(rows[0])
    for column in (
        "Iteration",
        "CumSteps",
        "CumTime",
        "StepsPerSecond",
        "UpdatesPerSecond",
        "ReplayRatio",
        "ReturnAverage",
        "ReturnStd",
        "ReturnMin",
        "ReturnMax",
        "LengthAverage",
        "EvalReturnAverage",
        "loss",
        "pi_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
    ):
        assert column in header, column
    assert [int(r["CumSteps"]) for r in rows] == [0, 1024, 2048]
    # PPO's preset trains 20 epochs over each 256-step batch: 20 sample passes per env step
    assert float(rows[-1]["ReplayRatio"]) == pytest.approx(20.0)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/EvalReturnAverage")] == [0, 2048]  # evaluated at start and end
    assert [e.step for e in events.Scalars("time/StepsPerSecond")] == [0, 1024, 2048]


def test_new_columns_widen_the_header(tmp_path):
    logger = ProgressLogger(tmp_path, tensorboard=False)
    logger.log({"CumSteps": 1, "a": 1.0}, 1)
    logger.log({"CumSteps": 2, "a": 2.0, "b": 3.0}, 2)
    rows = read_progress(tmp_path)
    assert rows == [{"CumSteps": "1", "a": "1.0", "b": ""}, {"CumSteps": "2", "a": "2.0", "b": "3.0"}]
    logger.truncate_after(1)
    assert [r["CumSteps"] for r in read_progress(tmp_path)] == ["1"]


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir, _ = train("ppo", "CartPole-v1", SHORT + ["logger.wandb=true"], seed=0, name="w", root=tmp_path)
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("*.wandb"))  # the run's history file
