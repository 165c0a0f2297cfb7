"""Learning curves from run directories: aggregate seeds and plot them to a PNG.

from rlfleet.plotting import plot_runs
plot_runs(["runs/CartPole-v1/ppo/x/seed0", "runs/CartPole-v1/ppo/x/seed1"], x="steps", out="ppo.png")

Runs are grouped by (algorithm, env id). Each seed's curve is linearly interpolated onto a common
grid (the union of the seeds' x values, limited to the range every seed covers); a curve is the
median over seeds with a band from the minimum to the maximum over seeds at each grid point.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rlfleet.errors import RlfleetError
from rlfleet.utils.atomic import atomic_write

X_COLUMNS = {"steps": "CumSteps", "time": "CumTime"}
X_LABELS = {"steps": "Environment steps", "time": "Wall-clock time (s)"}


@dataclass
class Curve:
    """One (algorithm, env) learning curve aggregated over seeds.

    ``low`` and ``high`` are the minimum and maximum over seeds at each grid point (not a percentile band).
    """

    algorithm: str
    env: str
    x: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_seeds: int


def load_run(run_dir: str | os.PathLike, columns: Sequence[str] = ()) -> tuple[str, str, pd.DataFrame]:
    """Return ``(algorithm, env id, progress rows)`` of a run; ``columns`` must all be in progress.csv."""
    run_dir = Path(run_dir)
    progress, config_path = run_dir / "progress.csv", run_dir / "config.yaml"
    missing = [p.name for p in (progress, config_path) if not p.is_file()]
    if missing:
        raise RlfleetError(f"{run_dir} is not a run directory: no {' or '.join(missing)}")
    try:
        config = yaml.safe_load(config_path.read_text())
        algorithm, env_id = str(config["algorithm"]), str(config["env"]["id"])
    except (yaml.YAMLError, TypeError, KeyError) as e:
        raise RlfleetError(f"{config_path}: cannot read algorithm and env.id ({e!r})") from e
    try:
        df = pd.read_csv(progress)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise RlfleetError(f"{progress}: cannot read ({str(e).strip()})") from e
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise RlfleetError(
            f"{progress}: no column {', '.join(absent)}; available columns: {', '.join(map(str, df.columns))}"
        )
    return algorithm, env_id, df


def _seed_curve(run_dir: Path, df: pd.DataFrame, x_col: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) points of one run where ``y`` is present, sorted by x, one point per x value."""
    points = pd.DataFrame(
        {"x": pd.to_numeric(df[x_col], errors="coerce"), "y": pd.to_numeric(df[y], errors="coerce")}
    ).dropna()
    if points.empty:
        raise RlfleetError(f"{run_dir}: no rows with a value for {y}")
    points = points.sort_values("x", kind="stable").drop_duplicates("x", keep="last")
    return points["x"].to_numpy(dtype=float), points["y"].to_numpy(dtype=float)


def aggregate_curves(
    run_dirs: Iterable[str | os.PathLike],
    x: str = "steps",
    y: str = "EvalReturnAverage",
    labels: dict[str, str] | None = None,
) -> list[Curve]:
    """Group runs by (algorithm, env) and aggregate their seeds; curves are sorted by env, then
    algorithm. ``labels`` maps a run directory to the name it is grouped and drawn under
    instead of its algorithm (e.g. ``dqn+per``)."""
    if x not in X_COLUMNS:
        raise RlfleetError(f"unknown x axis {x!r}; choose one of {', '.join(X_COLUMNS)}")
    x_col = X_COLUMNS[x]
    groups: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for run_dir in run_dirs:
        algorithm, env_id, df = load_run(run_dir, columns=(x_col, y))
        algorithm = (labels or {}).get(str(run_dir), algorithm)
        groups.setdefault((env_id, algorithm), []).append(_seed_curve(Path(run_dir), df, x_col, y))
    if not groups:
        raise RlfleetError("no runs to aggregate")

    curves = []
    for (env_id, algorithm), seeds in sorted(groups.items()):
        lo = max(xs[0] for xs, _ in seeds)
        hi = min(xs[-1] for xs, _ in seeds)
        if lo > hi:
            raise RlfleetError(f"{algorithm} on {env_id}: the seeds' {x_col} ranges do not overlap")
        grid = np.unique(np.concatenate([xs for xs, _ in seeds]))
        grid = grid[(grid >= lo) & (grid <= hi)]
        values = np.stack([np.interp(grid, xs, ys) for xs, ys in seeds])
        curves.append(
            Curve(
                algorithm=algorithm,
                env=env_id,
                x=grid,
                median=np.median(values, axis=0),
                low=values.min(axis=0),
                high=values.max(axis=0),
                n_seeds=len(seeds),
            )
        )
    return curves


def plot_curves(
    curves: Sequence[Curve],
    out_path: str | os.PathLike,
    anchors: dict[str, float] | None = None,
    title: str | None = None,
    x_label: str = X_LABELS["steps"],
    y_label: str = "Evaluation return",
) -> Path:
    """Plot curves to one PNG: an axes per env, a median line and min/max band per algorithm, and a dashed
    line per env for ``anchors[env]`` where given. Written atomically; returns the path."""
    # Figure without pyplot: no global backend or figure registry is touched; savefig renders with Agg.
    from matplotlib.figure import Figure

    if not curves:
        raise RlfleetError("no curves to plot")
    anchors = anchors or {}
    envs = list(dict.fromkeys(c.env for c in curves))
    algorithms = list(dict.fromkeys(c.algorithm for c in curves))
    ncols = min(len(envs), 3)
    nrows = math.ceil(len(envs) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, env_id in zip(axes, envs):
        for curve in (c for c in curves if c.env == env_id):
            color = f"C{algorithms.index(curve.algorithm) % 10}"
            marker = "o" if len(curve.x) == 1 else None
            seeds = f"{curve.n_seeds} seed{'' if curve.n_seeds == 1 else 's'}"
            ax.plot(curve.x, curve.median, color=color, marker=marker, label=f"{curve.algorithm} ({seeds})")
            ax.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.2, linewidth=0)
        if env_id in anchors:
            value = anchors[env_id]
            ax.axhline(value, color="0.3", linestyle="--", linewidth=1, label=f"anchor ({value:g})")
        ax.set_title(env_id)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(envs) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    out_path = Path(out_path)
    with atomic_write(out_path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return out_path


def plot_runs(
    run_dirs: Iterable[str | os.PathLike],
    x: str = "steps",
    y: str = "EvalReturnAverage",
    out: str | os.PathLike | None = None,
    anchors: dict[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Aggregate ``run_dirs`` and plot them; writes ``plot.png`` in the current directory by default."""
    curves = aggregate_curves(run_dirs, x=x, y=y)
    y_label = "Evaluation return" if y == "EvalReturnAverage" else y
    out_path = Path(out) if out is not None else Path.cwd() / "plot.png"
    return plot_curves(curves, out_path, anchors=anchors, title=title, x_label=X_LABELS[x], y_label=y_label)
