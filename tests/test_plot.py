"""Learning-curve aggregation and plotting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rlfleet.errors import RlfleetError
from rlfleet.plotting import aggregate_curves, load_run, plot_curves, plot_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(path, algorithm, env_id, rows, seed=0, extra=""):
    """A hand-made run: ``rows`` are (CumSteps, EvalReturnAverage or None); ``extra``: more config.yaml lines."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        f"algorithm: {algorithm}\nseed: {seed}\nenv:\n  id: {env_id}\n  kwargs: {{}}\n{extra}"
    )
    lines = ["Iteration,CumSteps,CumTime,EvalReturnAverage,ReturnAverage"]
    for i, (steps, value) in enumerate(rows):
        lines.append(f"{i},{steps},{steps / 1000},{'' if value is None else value},1.0")
    (path / "progress.csv").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def synthetic(tmp_path):
    a = tmp_path / "E-v0" / "a" / "x"
    return [
        write_run(a / "seed0", "a", "E-v0", [(0, 0), (100, 10), (150, None), (200, 20)]),
        write_run(a / "seed1", "a", "E-v0", [(0, 10), (100, 20), (200, 30)], seed=1),
        write_run(a / "seed2", "a", "E-v0", [(0, 30), (50, 40), (200, 70), (300, 100)], seed=2),
        write_run(tmp_path / "E-v0" / "b" / "x" / "seed0", "b", "E-v0", [(0, 1), (400, 5)]),
    ]


def test_aggregate_median_band_and_grouping(synthetic):
    curves = aggregate_curves(synthetic, x="steps")
    assert [(c.algorithm, c.env, c.n_seeds) for c in curves] == [("a", "E-v0", 3), ("b", "E-v0", 1)]
    a, b = curves
    # Union of x where y is present (150 has no eval), limited to [0, 200] that all seeds cover.
    np.testing.assert_array_equal(a.x, [0, 50, 100, 200])
    # Per seed on the grid: seed0 [0, 5, 10, 20], seed1 [10, 15, 20, 30], seed2 [30, 40, 50, 70] (50 interpolated).
    np.testing.assert_allclose(a.median, [10, 15, 20, 30])
    np.testing.assert_allclose(a.low, [0, 5, 10, 20])
    np.testing.assert_allclose(a.high, [30, 40, 50, 70])
    np.testing.assert_array_equal(b.x, [0, 400])
    np.testing.assert_allclose(b.median, [1, 5])
    np.testing.assert_allclose(b.low, b.high)


def test_aggregate_time_axis_and_other_column(synthetic):
    (a, _) = aggregate_curves(synthetic, x="time", y="EvalReturnAverage")
    np.testing.assert_allclose(a.x, [0, 0.05, 0.1, 0.2])
    (a, _) = aggregate_curves(synthetic, y="ReturnAverage")
    np.testing.assert_array_equal(a.x, [0, 50, 100, 150, 200])
    np.testing.assert_allclose(a.median, 1.0)


def test_plot_curves_with_anchors(synthetic, tmp_path):
    curves = aggregate_curves(synthetic) + aggregate_curves(
        [write_run(tmp_path / "F-v0" / "seed0", "a", "F-v0", [(0, 1)])]
    )
    out = plot_curves(curves, tmp_path / "out" / "p.png", anchors={"E-v0": 50.0}, title="t")
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1]
    assert not [p for p in out.parent.iterdir() if p.name != "p.png"]


def test_sweep_points_are_curves_labelled_by_their_values(tmp_path):
    """Two lr values x two seeds, laid out as `rlfleet sweep` does: two curves of 2 seeds each,
    labelled with the lr; seeds, logger options and paths/names never split a curve."""
    sweep = tmp_path / "E-v0" / "ppo" / "s"
    runs = [
        write_run(
            sweep / f"lr={lr}" / f"seed{seed}",
            "ppo",
            "E-v0",
            [(0, base + seed), (100, base + 10 + seed)],
            seed=seed,
            extra=f"algo:\n  lr: {lr}\n  gamma: 0.99\nlogger:\n  console: {seed == 0}\nrun_name: r{seed}\n",
        )
        for lr, base in ((0.001, 100), (0.0003, 0))
        for seed in (0, 1)
    ]
    curves = aggregate_curves(runs)
    assert [(c.variant, c.n_seeds) for c in curves] == [("algo.lr=0.0003", 2), ("algo.lr=0.001", 2)]
    assert [c.legend for c in curves] == ["ppo algo.lr=0.0003 (2 seeds)", "ppo algo.lr=0.001 (2 seeds)"]
    np.testing.assert_allclose(curves[0].median, [0.5, 10.5])
    np.testing.assert_allclose(curves[1].low, [100, 110])
    # Another algorithm keeps its own curve, unlabelled (its runs agree with each other).
    other = write_run(
        tmp_path / "E-v0" / "b" / "x" / "seed0", "b", "E-v0", [(0, 1), (100, 5)], extra="algo:\n  lr: 1\n"
    )
    legends = [c.legend for c in aggregate_curves([*runs, other])]
    assert legends == ["b (1 seed)", "ppo algo.lr=0.0003 (2 seeds)", "ppo algo.lr=0.001 (2 seeds)"]
    out = plot_runs(runs, out=tmp_path / "sweep.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    from rlfleet.experiment import train

    root = tmp_path_factory.mktemp("runs")
    overrides = [
        "runner.n_steps=4096",
        "runner.eval_interval_steps=1024",
        "logger.console=false",
        "logger.tensorboard=false",
    ]
    return [train("ppo", "CartPole-v1", overrides, seed=s, name="x", root=root)[0] for s in range(3)]


def test_plot_runs_real(real_runs, tmp_path, monkeypatch):
    (curve,) = aggregate_curves(real_runs)
    assert (curve.algorithm, curve.env, curve.n_seeds) == ("ppo", "CartPole-v1", 3)
    np.testing.assert_array_equal(curve.x, [0, 1024, 2048, 3072, 4096])
    assert np.all(curve.low <= curve.median) and np.all(curve.median <= curve.high)

    monkeypatch.chdir(tmp_path)
    out = plot_runs(real_runs)
    assert out == tmp_path / "plot.png"
    assert out.stat().st_size > 0 and out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as img:
        img.verify()
    out = plot_runs(real_runs, x="time", out=tmp_path / "time.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_not_a_run_dir(tmp_path):
    with pytest.raises(RlfleetError, match="not a run directory: no progress.csv or config.yaml"):
        load_run(tmp_path)
    with pytest.raises(RlfleetError, match="not a run directory"):
        plot_runs([tmp_path], out=tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_missing_column(synthetic):
    with pytest.raises(RlfleetError, match=r"no column Nope; available columns: Iteration, CumSteps") as info:
        aggregate_curves(synthetic, y="Nope")
    assert "\n" not in str(info.value)


def test_bad_arguments(synthetic, tmp_path):
    with pytest.raises(RlfleetError, match="unknown x axis"):
        aggregate_curves(synthetic, x="episodes")
    with pytest.raises(RlfleetError, match="no runs"):
        aggregate_curves([])
    late = write_run(tmp_path / "late", "a", "E-v0", [(500, 1), (600, 2)])
    with pytest.raises(RlfleetError, match="do not overlap"):
        aggregate_curves([synthetic[0], late])
