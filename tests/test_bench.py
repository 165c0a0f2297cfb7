"""``rlfleet bench``: suites as data, one fresh process per run, a report with plots."""

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from cli_helpers import rlfleet_cmd
from rlfleet.bench import RESULT_FILE, BenchEntry, Suite, _median_or_none, load_suite, run_one, run_suite
from rlfleet.errors import ConfigError
from rlfleet.experiment import run_path

QUICK = ["runner.eval_interval_steps=1024", "runner.log_interval_steps=1024", "sampler.batch_T=64"]


def test_median_steps_to_threshold_counts_missing_seeds_as_never():
    assert _median_or_none([100, 300, 200]) == 200
    assert _median_or_none([100, None, 200]) == 200  # sorted [100, 200, inf]
    assert _median_or_none([100, None, None]) is None  # most seeds never got there


def test_suite_validation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {"entries": [{"algorithm": "ppo", "env": "CartPole-v1", "steps": 10, "threshold": 1, "seedz": [0]}]}
        )
    )
    with pytest.raises(ConfigError, match="did you mean 'entries\\[0\\].seeds'"):
        load_suite(path)


@pytest.mark.slow
def test_bench_cli_writes_report_and_plots(tmp_path):
    suite = {
        "name": "tiny",
        "description": "two entries on CartPole",
        "entries": [
            # CartPole returns are in [8, 500]: 0 is always met and 1000 never, so the report
            # must show one pass and one FAIL whatever the runs learn.
            {
                "algorithm": "ppo",
                "env": "CartPole-v1",
                "steps": 2048,
                "seeds": [0, 1],
                "threshold": 0,
                "overrides": QUICK,
                "anchor": {"value": 500, "source": "test anchor"},
            },
            {
                "algorithm": "a2c",
                "env": "CartPole-v1",
                "steps": 2048,
                "seeds": [0],
                "threshold": 1000,
                "overrides": QUICK,
            },
        ],
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(suite))
    out = subprocess.run(
        rlfleet_cmd(
            "bench",
            str(tmp_path / "tiny.yaml"),
            "--workers",
            "2",
            "--runs-dir",
            "runs",
            "--out-dir",
            "report",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    report = (tmp_path / "report" / "tiny.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ppo") or line.startswith("| a2c")]
    assert len(rows) == 2
    ppo, a2c = rows
    assert "| 2 |" in ppo and "| pass |" in ppo and "test anchor" in ppo
    assert "| 1 |" in a2c and "| FAIL |" in a2c
    png = tmp_path / "report" / "tiny_CartPole-v1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![CartPole-v1](tiny_CartPole-v1.png)" in report
    assert len(list((tmp_path / "runs" / "CartPole-v1" / "ppo").glob("*/seed*"))) == 2


@pytest.mark.slow
def test_interrupted_suite_is_finished_under_its_name(tmp_path):
    entry = BenchEntry("ppo", "CartPole-v1", steps=2048, threshold=0, seeds=[0, 1], overrides=QUICK)
    suite = Suite("tiny", [entry])
    runs = str(tmp_path / "runs")
    first = run_one(entry, 0, runs, "named")  # seed 0 finished before the interruption
    interrupted = run_path("CartPole-v1", "ppo", "named", 1, runs)
    interrupted.mkdir(parents=True)
    (interrupted / "progress.csv").write_text("Iteration\n")  # a run killed before its first checkpoint
    report = run_suite(suite, runs_root=runs, out_dir=tmp_path / "report", name="named")
    result_0 = json.loads((Path(first.run_dir) / RESULT_FILE).read_text())
    assert result_0 == dataclasses.asdict(first)  # reused, not trained again
    assert (interrupted / RESULT_FILE).is_file()  # restarted from scratch and finished
    assert "| ppo | CartPole-v1 | 2,048 | 2 |" in report.read_text()


def test_ctrl_c_stops_the_suite_with_one_line_and_starts_nothing_more(tmp_path):
    suite = {
        "name": "cut",
        "description": "a long run and one queued behind it",
        "entries": [{"algorithm": "ppo", "env": "CartPole-v1", "steps": 10_000_000, "seeds": [0, 1], "threshold": 0}],
    }
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump(suite))
    cmd = rlfleet_cmd("bench", "cut.yaml", "--name", "cut", "--runs-dir", "runs", "--out-dir", "out")
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    first = run_path("CartPole-v1", "ppo", "cut", 0, tmp_path / "runs")
    try:
        deadline = time.monotonic() + 120
        while not ((first / "progress.csv").is_file() and len((first / "progress.csv").read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and proc.poll() is None, "the first run did not start"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("rlfleet: suite cut interrupted") and "--name cut" in err, err
    assert list((first / "checkpoints").glob("ckpt_*.pt")), "the running run wrote no checkpoint"
    assert not run_path("CartPole-v1", "ppo", "cut", 1, tmp_path / "runs").exists(), "the queued run started"


def test_a_killed_bench_leaves_no_run_training_on_and_its_runs_checkpoint(tmp_path):
    suite = {
        "name": "orphan",
        "description": "one long run whose bench process is killed",
        "entries": [{"algorithm": "ppo", "env": "CartPole-v1", "steps": 10_000_000, "seeds": [0], "threshold": 0}],
    }
    (tmp_path / "orphan.yaml").write_text(yaml.safe_dump(suite))
    cmd = rlfleet_cmd("bench", "orphan.yaml", "--name", "orphan", "--runs-dir", "runs", "--out-dir", "out")
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    run = run_path("CartPole-v1", "ppo", "orphan", 0, tmp_path / "runs")
    try:
        deadline = time.monotonic() + 120
        while not ((run / "progress.csv").is_file() and len((run / "progress.csv").read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and proc.poll() is None, "the run did not start"
            time.sleep(0.2)
        proc.kill()  # the bench process only (SIGKILL: no handler runs); its worker is orphaned
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 60
        while subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the orphaned run is still training 60 s after the bench died"
            time.sleep(0.5)
    finally:
        if subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).returncode == 0:
            os.killpg(proc.pid, signal.SIGKILL)
    assert list((run / "checkpoints").glob("ckpt_*.pt")), "the orphaned run wrote no checkpoint"
