"""progress.csv (rlpyt/viskit-compatible columns), TensorBoard and optional W&B."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from rlfleet.utils.atomic import atomic_write

TIME_KEYS = frozenset({"CumSteps", "CumTime", "StepsPerSecond", "UpdatesPerSecond", "Iteration"})
ROLLOUT_PREFIXES = ("Return", "Length", "DiscountedReturn")


def scalar_tag(column: str) -> str:
    """The TensorBoard / W&B name of a progress.csv column, grouped as Stable-Baselines3 does:
    ``eval/`` (``Eval*``), ``rollout/`` (``Return*``, ``Length*``, ``DiscountedReturn*``,
    ``NewCompletedTrajs`` and the ``<info key>Average`` means of env info values), ``time/``
    (`TIME_KEYS`) and ``train/`` (everything else: losses, grad norms and other algorithm
    diagnostics, ReplayRatio, CumUpdates)."""
    if column.startswith("Eval"):
        return f"eval/{column}"
    if column in TIME_KEYS:
        return f"time/{column}"
    if column == "NewCompletedTrajs" or column.startswith(ROLLOUT_PREFIXES) or column.endswith("Average"):
        return f"rollout/{column}"
    return f"train/{column}"


class ProgressLogger:
    """Appends one row per log interval to ``progress.csv`` and mirrors it to TensorBoard
    (and W&B when enabled) under the grouped names of `scalar_tag` (the csv columns keep their
    own). A row with new keys rewrites the file atomically with a wider header; missing values
    are left empty.

    Args:
        run_dir: the run directory.
        tensorboard: write TensorBoard event files under ``run_dir/tb``.
        wandb: log to Weights & Biases (``wandb_mode`` ``offline`` needs no network).
        config: the resolved config, for W&B.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_mode: str = "offline",
        wandb_project: str = "rlfleet",
        config: dict | None = None,
    ):
        self.path = Path(run_dir) / "progress.csv"
        self.columns: list[str] = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                self.columns = next(csv.reader(f), [])
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
        self.wandb_run = None
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                from rlfleet.errors import ConfigError

                raise ConfigError("logger.wandb=true needs wandb: pip install 'rlfleet[wandb]'") from None
            self.wandb_run = wandb_module.init(project=wandb_project, mode=wandb_mode, dir=str(run_dir), config=config)

    def truncate_after(self, cum_steps: int) -> None:
        """Drop rows logged after ``cum_steps`` (used when resuming from a checkpoint)."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if float(r.get("CumSteps") or 0) <= cum_steps]
        self._rewrite(kept)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with atomic_write(self.path, "w") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, float], step: int) -> None:
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            rows: list[dict[str, Any]] = []
            if self.path.exists():
                with open(self.path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self.columns += new
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, restval="").writerow(row)
            f.flush()
        finite = {scalar_tag(k): v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if self.tb is not None:
            for key, value in finite.items():
                self.tb.add_scalar(key, value, step)
            self.tb.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(finite, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
