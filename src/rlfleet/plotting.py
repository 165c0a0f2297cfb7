"""Learning curves from run directories: aggregate seeds and plot them to a PNG.

from rlfleet.plotting import plot_runs
plot_runs(["runs/CartPole-v1/ppo/x/seed0", "runs/CartPole-v1/ppo/x/seed1"], x="steps", out="ppo.png")

Runs are grouped by (algorithm, env id) and, within that, by the config values that differ
between them (`config_differences`: ``seed``, ``logger.*`` and path or name keys aside), so a
sweep's points become one curve each, labelled ``algo.lr=0.001``. Each seed's curve is
linearly interpolated onto a common grid (the union of the seeds' x values, limited to the
range every seed covers); a curve is the median over seeds with a band from the minimum to the
maximum over seeds at each grid point.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    variant: str = ""  # the config values that set these runs apart, e.g. ``algo.lr=0.001``

    @property
    def label(self) -> str:
        return f"{self.algorithm} {self.variant}" if self.variant else self.algorithm

    @property
    def legend(self) -> str:
        """The legend entry: ``ppo algo.lr=0.001 (2 seeds)``."""
        return f"{self.label} ({self.n_seeds} seed{'' if self.n_seeds == 1 else 's'})"


# Config keys that never set runs apart: the seed (aggregated over), where diagnostics go, and
# paths and names (a key whose last part is, ends in or starts with one of these words).
_IGNORED_KEYS = ("seed",)
_IGNORED_SECTIONS = ("logger",)
_IGNORED_WORDS = ("path", "dir", "name", "project")


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of the leaves of a nested mapping (an empty mapping is a leaf)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _ignored(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].lower()
    return (
        key in _IGNORED_KEYS
        or key.split(".", 1)[0] in _IGNORED_SECTIONS
        or any(last == w or last.endswith(f"_{w}") or last.startswith(f"{w}_") for w in _IGNORED_WORDS)
    )


def _format(value: Any) -> str:
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format(v) for v in value) + "]"
    return str(value)


def config_differences(configs: Sequence[dict]) -> list[dict[str, Any]]:
    """For each config (a run's config.yaml), the ``{dotted key: value}`` of the keys whose
    values differ between ``configs`` (a key some configs lack counts as differing, its value
    None there), ignoring ``seed``, ``logger.*`` and path or name keys."""
    flats = [_flatten(c) for c in configs]
    keys = sorted({k for f in flats for k in f if not _ignored(k)})
    missing = object()
    differing = [k for k in keys if len({repr(f.get(k, missing)) for f in flats}) > 1]
    return [{k: f.get(k) for k in differing} for f in flats]


def _sort_key(values: tuple[Any, ...]) -> tuple:
    return tuple(
        (0, v, "") if isinstance(v, int | float) and not isinstance(v, bool) else (1, 0, str(v)) for v in values
    )


def read_config(run_dir: str | os.PathLike) -> dict:
    """A run's config.yaml as a mapping (RlfleetError if it cannot be read)."""
    path = Path(run_dir) / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RlfleetError(f"{path}: cannot read ({e!r})") from e
    if not isinstance(config, dict):
        raise RlfleetError(f"{path}: not a mapping")
    return config


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
    """Group runs by (algorithm, env), then by the config values that differ between the
    group's runs (`config_differences`), and aggregate the seeds of each; curves are sorted by
    env, algorithm, then those values. ``labels`` maps a run directory to the name it is grouped
    and drawn under instead of its algorithm (e.g. ``dqn+per``)."""
    if x not in X_COLUMNS:
        raise RlfleetError(f"unknown x axis {x!r}; choose one of {', '.join(X_COLUMNS)}")
    x_col = X_COLUMNS[x]
    by_algorithm: dict[tuple[str, str], list[tuple[dict, tuple[np.ndarray, np.ndarray]]]] = {}
    for run_dir in run_dirs:
        algorithm, env_id, df = load_run(run_dir, columns=(x_col, y))
        algorithm = (labels or {}).get(str(run_dir), algorithm)
        seed_curve = _seed_curve(Path(run_dir), df, x_col, y)
        by_algorithm.setdefault((env_id, algorithm), []).append((read_config(run_dir), seed_curve))
    if not by_algorithm:
        raise RlfleetError("no runs to aggregate")
    groups: dict[tuple[str, str, tuple], tuple[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for (env_id, algorithm), runs in by_algorithm.items():
        for differences, (_, seed_curve) in zip(config_differences([c for c, _ in runs]), runs):
            variant = " ".join(f"{k}={_format(v)}" for k, v in differences.items())
            key = (env_id, algorithm, _sort_key(tuple(differences.values())))
            groups.setdefault(key, (variant, []))[1].append(seed_curve)

    curves = []
    for (env_id, algorithm, _), (variant, seeds) in sorted(groups.items()):
        lo = max(xs[0] for xs, _ in seeds)
        hi = min(xs[-1] for xs, _ in seeds)
        if lo > hi:
            name = f"{algorithm} {variant}" if variant else algorithm
            raise RlfleetError(f"{name} on {env_id}: the seeds' {x_col} ranges do not overlap")
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
                variant=variant,
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
    """Plot curves to one PNG: an axes per env, a median line and min/max band per curve (an
    algorithm, or one of its config variants, labelled with its differing values), and a dashed
    line per env for ``anchors[env]`` where given. Written atomically; returns the path."""
    # Figure without pyplot: no global backend or figure registry is touched; savefig renders with Agg.
    from matplotlib.figure import Figure

    if not curves:
        raise RlfleetError("no curves to plot")
    anchors = anchors or {}
    envs = list(dict.fromkeys(c.env for c in curves))
    labels = list(dict.fromkeys(c.label for c in curves))
    ncols = min(len(envs), 3)
    nrows = math.ceil(len(envs) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, env_id in zip(axes, envs):
        for curve in (c for c in curves if c.env == env_id):
            color = f"C{labels.index(curve.label) % 10}"
            marker = "o" if len(curve.x) == 1 else None
            ax.plot(curve.x, curve.median, color=color, marker=marker, label=curve.legend)
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
