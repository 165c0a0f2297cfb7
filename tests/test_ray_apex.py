"""Ape-X, R2D2, IMPALA and A3C on Ray (``runner.kind=ray``): a local run with its per-role columns,
a simulated two-node cluster, an actor killed mid-run, Ctrl-C then ``--resume``, sequence shards
holding the actors' recurrent states, and the config's refusals.

Each test starts its own Ray (about 4 s and 0.5 GB on an idle 2-core machine) and shuts it down.
"""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

from cli_helpers import cli_env, interrupt_after_rows, rlfleet_cmd  # noqa: E402
from conftest import latest_state, read_progress  # noqa: E402
from rlfleet.build import build_experiment  # noqa: E402
from rlfleet.config.loader import resolve, validate  # noqa: E402
from rlfleet.errors import ConfigError  # noqa: E402
from rlfleet.experiment import train  # noqa: E402

# Two actors of 2 envs x 32 steps (128 env steps per iteration when both report), 1 update per
# 32 sampled steps, weights published every 4 updates.
TINY = [
    "sampler.batch_T=32",
    "sampler.batch_B=2",
    "model.hidden_sizes=[32]",
    "algo.batch_size=32",
    "algo.replay_ratio=1",
    "algo.learning_starts=128",
    "replay.size=4096",
    "runner.weight_sync_interval=4",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=0",
    "logger.tensorboard=false",
    "logger.console=false",
]
ROLE_COLUMNS = ["Actor0StepsPerSecond", "Actor1StepsPerSecond", "WeightLag", "ReplaySize", "ActorRestarts"]


@pytest.fixture
def ray_env(monkeypatch, tmp_path_factory):
    """Ray's environment for a test: auth off, workers at nice 0, temp files in a short dir."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_worker_niceness", "0")
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_apex_trains_on_a_local_ray_and_logs_each_roles_throughput(tmp_path, ray_env):
    run_dir, row = train("apex", "CartPole-v1", [*TINY, "runner.n_steps=1024"], root=tmp_path)
    progress = read_progress(run_dir)
    for column in ROLE_COLUMNS:
        assert column in progress[-1], column
    assert row["CumSteps"] >= 1024 and row["CumUpdates"] > 0
    assert 0 < row["ReplayRatio"] <= 1.0  # held at most at algo.replay_ratio
    assert row["ReplaySize"] >= row["CumSteps"]  # the shards hold every reported batch
    assert row["ActorRestarts"] == 0
    assert all(float(r["Actor0StepsPerSecond"]) > 0 for r in progress if r.get("Actor0StepsPerSecond"))
    assert latest_state(run_dir)["runner"]["cum_steps"] == row["CumSteps"]
    assert not ray.is_initialized()  # the run's own Ray is shut down


def test_apex_on_a_two_node_cluster_places_its_actors_on_the_second_node(tmp_path, ray_env):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # nothing schedulable on the head
    try:
        worker_node = cluster.add_node(num_cpus=3)
        ray.init(address=cluster.address)
        config = validate(resolve("apex", "CartPole-v1", [*TINY, "runner.n_steps=512"], None, 0))
        experiment = build_experiment(config)
        try:
            row = experiment.runner.train()
            placement = experiment.sampler.node_ids()
        finally:
            experiment.close()
        head_id = ray.get_runtime_context().get_node_id()
        assert row["CumSteps"] >= 512
        assert placement["actors"] == [worker_node.node_id] * 2 and worker_node.node_id != head_id
        assert ray.is_initialized()  # the pool did not start this Ray, so it leaves it running
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_killed_actor_is_restarted_by_ray_and_the_run_completes(tmp_path, ray_env):
    config = validate(resolve("apex", "CartPole-v1", [*TINY, "runner.n_steps=2048"], None, 0))
    experiment = build_experiment(config)
    pool, before = experiment.sampler, {}

    def kill_actor_0_then_wait_for_its_restart(row: dict) -> None:
        if not before:  # first row: kill it (Ray restarts it: runner.actor_max_restarts)
            before.update(pool.incarnations)
            ray.kill(pool.workers[0], no_restart=False)
        elif "restarted" not in before:  # second row: wait until the restarted worker answers
            deadline = time.monotonic() + 120
            while True:
                try:
                    ray.get(pool.workers[0].pid.remote())
                    break
                except ray.exceptions.RayActorError:  # still restarting
                    assert time.monotonic() < deadline, "actor 0 was not restarted within 120 s"
                    time.sleep(0.5)
            before["restarted"] = True

    experiment.runner.on_log = kill_actor_0_then_wait_for_its_restart
    try:
        row = experiment.runner.train()
    finally:
        experiment.close()
    assert row["CumSteps"] >= 2048 and row["ActorRestarts"] == 1
    assert pool.incarnations[0] != before[0]  # batches came from the restarted worker
    assert pool.incarnations[1] == before.get(1, pool.incarnations[1])  # actor 1 ran on untouched


# R2D2 on CartPoleNoVel: two actors of 2 envs x 20 steps, sequences of 4 burn-in + 8 trained +
# 5 bootstrap steps, one update of 8 sequences per 64 sampled steps.
R2D2_TINY = [
    "runner.kind=ray",
    "sampler.batch_T=20",
    "sampler.batch_B=2",
    "model.hidden_sizes=[32]",
    "model.core_size=16",
    "algo.batch_size=8",
    "algo.replay_ratio=1",
    "algo.learning_starts=200",
    "replay.size=4000",
    "replay.sequence_length=8",
    "replay.sequence_overlap=4",
    "replay.burn_in=4",
    "runner.weight_sync_interval=2",
    "runner.log_interval_steps=200",
    "runner.eval_interval_steps=0",
    "logger.tensorboard=false",
    "logger.console=false",
]


def test_r2d2_trains_on_sequence_shards_holding_the_actors_recurrent_states(tmp_path, ray_env):
    config = validate(resolve("r2d2", "CartPoleNoVel-v1", [*R2D2_TINY, "runner.n_steps=1200"], None, 0))
    experiment = build_experiment(config)
    try:
        row = experiment.runner.train()
        shard = ray.get(experiment.sampler.shards[0].state_dict.remote())
    finally:
        experiment.close()
    assert row["CumSteps"] >= 1200 and row["CumUpdates"] > 0 and row["ReplaySize"] >= row["CumSteps"]
    for column in ROLE_COLUMNS:
        assert column in row, column
    assert sorted(shard["sources"]) == [0, 1]  # one sequence ring per actor
    for ring in shard["sources"].values():
        # the LSTM states the actors acted with came through the object store with their batches
        assert ring["start_state"].shape == (ring["start_state"].shape[0], 2, 2 * 16)
        assert ring["start_state"].abs().sum() > 0
        assert ring["tree"] is not None  # prioritized sequences (R2D2's priorities from the learner)


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resume_continues(tmp_path):
    import subprocess

    run_dir = tmp_path / "runs/CartPole-v1/apex/stop/seed0"
    args = ["train", "apex", "-e", "CartPole-v1", "--runs-dir", "runs", "--name", "stop", *TINY]
    returncode, _, err = interrupt_after_rows(rlfleet_cmd(*args, "runner.n_steps=100000"), tmp_path, run_dir, rows=2)
    assert returncode == 130, err
    assert "checkpoint written" in err
    stopped = latest_state(run_dir)["runner"]["cum_steps"]
    assert stopped >= 512
    resumed = subprocess.run(
        rlfleet_cmd("train", "--resume", str(run_dir), f"runner.n_steps={stopped + 512}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=cli_env(),
    )
    assert resumed.returncode == 0, resumed.stderr
    progress = read_progress(run_dir)
    steps = [int(float(r["CumSteps"])) for r in progress]
    assert steps[-1] >= stopped + 512 and steps == sorted(steps)
    assert latest_state(run_dir)["algo"]["updates"] > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["env.normalize_obs=true"], "keeps no shared normaliser statistics"),
        (["runner.n_replay_shards=3"], r"runner.n_replay_shards=3 exceeds runner.n_actors=2"),
        (["replay.size=200"], "raise replay.size"),
        (["runner.kind=minibatch"], "apex is off-policy: use runner.kind ray"),
        (["model.core=lstm"], "apex on runner.kind=ray trains feed-forward agents: remove model.core"),
    ],
)
def test_ray_runner_refuses_what_it_cannot_do(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train("apex", "CartPole-v1", [*TINY, *overrides], root=tmp_path)


def test_impala_on_ray_trains_on_the_actors_lagging_batches(tmp_path, ray_env):
    overrides = [
        "sampler.batch_T=8",
        "sampler.batch_B=2",
        "runner.n_steps=1024",
        "runner.log_interval_steps=256",
        "runner.eval_interval_steps=0",
        "runner.weight_sync_interval=1",
        "logger.tensorboard=false",
        "logger.console=false",
    ]
    run_dir, row = train("impala", "CartPole-v1", ["runner.kind=ray", *overrides], root=tmp_path)
    progress = read_progress(run_dir)
    assert row["CumSteps"] >= 1024
    assert row["CumUpdates"] == row["CumSteps"] // 16  # one update per reported 8x2 batch
    lags = [float(r["WeightLag"]) for r in progress if r.get("WeightLag")]
    assert lags and max(lags) > 0  # batches sampled with weights older than the learner's
    rhos = [float(r["clipped_rho"]) for r in progress if r.get("clipped_rho")]
    assert rhos and all(rho <= 1.0 for rho in rhos) and min(rhos) < 1.0  # V-trace's truncation at work


def test_a3c_workers_push_gradients_the_parameter_server_applies(tmp_path, ray_env):
    overrides = [
        "sampler.batch_T=8",
        "sampler.batch_B=2",
        "runner.n_steps=1024",
        "runner.log_interval_steps=256",
        "runner.eval_interval_steps=0",
        "logger.tensorboard=false",
        "logger.console=false",
    ]
    run_dir, row = train("a3c", "CartPole-v1", overrides, root=tmp_path)
    progress = read_progress(run_dir)
    assert row["CumSteps"] >= 1024
    # one pushed gradient per 8x2 batch; up to 2 x 2 queued calls may have pushed but not reported yet
    assert row["CumSteps"] // 16 <= row["CumUpdates"] <= row["CumSteps"] // 16 + 4
    assert "GradientStaleness" in progress[-1] and float(progress[-1]["GradientStaleness"]) >= 0
    state = latest_state(run_dir)  # the server's state, mirrored into the learner's at the checkpoint
    assert state["algo"]["updates"] >= row["CumUpdates"]
    assert state["algo"]["optimizer"]["steps"] == state["algo"]["updates"]  # every push one server step


def test_a3c_refuses_an_annealed_learning_rate(tmp_path):
    with pytest.raises(ConfigError, match="constant learning rate"):
        train("a3c", "CartPole-v1", ["algo.anneal_lr=true"], root=tmp_path)


def test_seed_style_central_inference_leaves_the_actors_without_a_model(tmp_path, ray_env):
    overrides = [
        "runner.kind=ray",
        "runner.inference=central",
        "sampler.batch_T=8",
        "sampler.batch_B=2",
        "runner.n_steps=512",
        "runner.log_interval_steps=128",
        "runner.eval_interval_steps=0",
        "runner.weight_sync_interval=1",
    ]
    config = validate(resolve("impala", "CartPole-v1", overrides, None, 0))
    experiment = build_experiment(config)
    try:
        row = experiment.runner.train()
        held = experiment.sampler.actor_parameters()
    finally:
        experiment.close()
    assert held == [0, 0]  # the workers step envs only; the server holds the model
    assert row["CumSteps"] >= 512 and row["CumUpdates"] == row["CumSteps"] // 16
    assert 1 <= row["InferenceBatchSize"] <= 4  # 2 envs per worker, up to both workers' requests at once


def test_central_inference_is_for_impala_only(tmp_path):
    with pytest.raises(ConfigError, match="serves IMPALA's actor workers"):
        train("apex", "CartPole-v1", [*TINY, "runner.inference=central"], root=tmp_path)
