"""PPO on Atari through the CLI: the Atari preset with the parallel sampler, then eval --video."""

import subprocess

import pytest
import torch

from cli_helpers import rlfleet_cmd

pytest.importorskip("ale_py")


@pytest.mark.slow
def test_ppo_pong_parallel_sampler_and_video(tmp_path):
    run = rlfleet_cmd(
        "train",
        "ppo",
        "-e",
        "ALE/Pong-v5",
        "--name",
        "t",
        "--runs-dir",
        "runs",
        "runner.n_steps=2048",
        "sampler.batch_T=64",
        "runner.eval_interval_steps=0",
        "logger.console=false",
    )
    out = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "runs" / "ALE-Pong-v5" / "ppo" / "t" / "seed0"
    config = (run_dir / "config.yaml").read_text()
    assert "kind: parallel" in config and "frame_stack: 4" in config
    state = torch.load(next((run_dir / "checkpoints").glob("ckpt_*.pt")), weights_only=False)
    assert state["runner"]["cum_steps"] == 2048
    assert state["agent"]["model"]["pi_encoder.cnn.conv.0.weight"].shape == (32, 4, 8, 8)  # Nature-CNN on 4 frames

    out = subprocess.run(
        rlfleet_cmd("eval", str(run_dir), "--episodes", "1", "--video"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    videos = list((run_dir / "videos").glob("eval_*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 10_000
    assert "video:" in out.stdout
